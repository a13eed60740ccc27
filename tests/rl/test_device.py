"""Device-correct by construction (issue 30, item 1): one iteration of every algorithm, and an
evaluation, with the agent on the CPU and every tensor created without an explicit device forced
onto ``meta``. A tensor that does not follow the agent's device (or say ``device="cpu"`` on
purpose) then meets the agent's tensors and raises, the same class of error a CUDA run would hit
at its first update. This machine has no GPU; ``meta`` stands in for "any other device"."""

from dataclasses import replace

import pytest
import torch

from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.flow.chain import randn
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.build import build_agent, env_kwargs
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import DistInfo
from reinflow.rl.evaluate import run_episodes
from reinflow.rl.seeding import env_generators, seeded_reset

SMALL = {"env": "Pendulum-v1", "chunk_size": 8, "act_steps": 4, "rollout_steps": 4, "parallel_envs": 2, "hidden": [16, 16],
             "minibatch_size": 4, "update_epochs": 1, "dsrl_warmup": 4, "dsrl_batch_size": 4, "dsrl_hidden": [16],
             "dsrl_components": 2, "progress": False, "tensorboard": False}


def _one_iteration(algorithm: str, tmp_path, forced=lambda: torch.device("meta")) -> dict:
    cfg = TrainConfig(out=str(tmp_path / algorithm), algorithm=algorithm, **SMALL).resolved()
    kw = env_kwargs(cfg)
    agent = build_agent(cfg, *env_spaces(cfg.env, kw))
    # residual-ppo and dsrl only check that a pretrained policy was named; this one's BC weights
    # do not matter for where tensors live
    agent = algorithm_class(algorithm).prepare_agent(replace(cfg, policy_path="bc"), agent).to("cpu").train()
    envs = make_vector_env(cfg.env, cfg.parallel_envs, agent.sampler.act_steps, "sync", kw)
    try:
        algo = algorithm_class(algorithm)(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap")
        raw = seeded_reset(envs, cfg.seed, 0, 0)
        with forced():
            out = {}
            for it in range(2):  # dsrl: warm-up collection, then SAC updates
                algo.begin_iteration(it)
                exp, raw = algo.collect(envs, raw, it, env_generators(cfg.seed, it, 0, cfg.parallel_envs))
                out = algo.update(exp, it)
            ev = run_episodes(agent, envs, 2, seed=0)
        return {**out, **ev}
    finally:
        envs.close()


@pytest.mark.parametrize("algorithm", ["chain-ppo", "residual-ppo", "dsrl"])
def test_one_iteration_never_mixes_devices(algorithm, tmp_path):
    out = _one_iteration(algorithm, tmp_path)
    assert out["episodes"] == 2
    assert ("ppo/first_minibatch_ratio_max_dev" in out) == (algorithm != "dsrl")
    if algorithm == "dsrl":
        assert out["sac/updates"] > 0


def test_randn_takes_any_generator_device_pair():
    g = torch.Generator().manual_seed(0)
    with torch.device("meta"):
        x = randn((3, 2), g, torch.device("cpu"))
        y = randn((3, 2), [torch.Generator().manual_seed(i) for i in range(3)], torch.device("cpu"))
    assert x.device.type == "cpu" and y.device.type == "cpu"
    # a CPU generator and another device: drawn on the generator's device, then moved
    z = randn((3, 2), torch.Generator().manual_seed(0), torch.device("meta"))
    assert z.device.type == "meta"
    assert torch.equal(x, torch.randn((3, 2), generator=torch.Generator().manual_seed(0)))
