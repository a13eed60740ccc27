"""Device-correct by construction (issue 30, item 1): one iteration of every algorithm, and an
evaluation, with the agent on the CPU and every tensor created without an explicit device forced
onto ``meta``. A tensor that does not follow the agent's device (or say ``device="cpu"`` on
purpose) then meets the agent's tensors and raises, the same class of error a CUDA run would hit
at its first update. This machine has no GPU; ``meta`` stands in for "any other device"."""

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import reinflow
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


SRC = str(Path(reinflow.__file__).parent)


def _one_iteration(algorithm: str, tmp_path, forced=lambda: torch.device("meta"), small=None, iterations=2) -> dict:
    cfg = TrainConfig(out=str(tmp_path / algorithm), algorithm=algorithm, **(small or SMALL)).resolved()
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
            for it in range(iterations):  # dsrl: warm-up collection, then SAC updates
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


class ReinflowTensorsElsewhere(TorchFunctionMode):
    """Every tensor that reinflow's own code creates without naming a device goes to ``meta`` (LeRobot's
    internals keep their defaults: its device processor step, not a default device, places them)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None:
            frame = sys._getframe(1)
            while frame is not None and f"{os.sep}torch{os.sep}" in frame.f_code.co_filename:
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(SRC):
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


def test_smolvla_iteration_never_mixes_devices(tmp_path):
    pytest.importorskip("lerobot")
    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    vlm = write_tiny_vlm(tmp_path / "vlm")
    small = {**{k: v for k, v in SMALL.items() if k != "hidden"}, "env": "reinflow/ArmReach-v0", "policy": "smolvla",
             "vlm_path": str(vlm), "chunk_size": None, "act_steps": 10, "rollout_steps": 2, "minibatch_size": 2}
    out = _one_iteration("chain-ppo", tmp_path, ReinflowTensorsElsewhere, small, iterations=1)
    assert out["episodes"] == 2 and out["ppo/context_reused"] == 1.0
