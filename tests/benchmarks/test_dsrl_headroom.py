"""benchmarks/dsrl_headroom.py against the package's own evaluation: env 0 of each state replays the BC's
deterministic ODE from x_0 = 0 (or, with ``--centre-seed``, the fixed draw) on that very held-out state, a dsrl
run's checkpoint measures its frozen base, and the row's searches are ordered as their definitions say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from reinflow.cli import main as cli
from reinflow.envs.factory import make_vector_env
from reinflow.policies.dsrl import DSRLFlowPolicy
from reinflow.quickstart import evaluate_agent
from reinflow.rl.algorithms.dsrl import DSRLAgent
from reinflow.rl.checkpoint import load_agent, save_agent

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ENV = "reinflow/ArmPickLift-v0"


def _headroom():
    spec = importlib.util.spec_from_file_location("dsrl_headroom", BENCH / "dsrl_headroom.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_env_zero_replays_the_bc_at_x0_zero_on_each_state(tmp_path):
    # a weak pick-lift BC (5 demos, 100 steps): it succeeds from x_0 = 0 on some of the first held-out states
    bc = tmp_path / "bc"
    assert cli(["demos", "--env", ENV, "--episodes", "5", "--seed", "0", "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert cli(["pretrain", "--demos", str(tmp_path / "d"), "--out", str(bc), "--chunk-size", "50",
                "--denoise-steps", "1", "--steps", "100", "--seed", "0", "--no-progress"]) == 0
    mod = _headroom()
    agent = load_agent(bc, {"initial_noise": "sample"})[0].eval()
    steer = DSRLFlowPolicy(agent.policy, agent.sampler.act_steps, 8, 2.5)
    envs = make_vector_env(ENV, 3, agent.sampler.act_steps, "sync", {})
    gen = torch.Generator().manual_seed(0)
    draws = lambda: (torch.rand(3, steer.latent_dim, generator=gen) * 2 - 1) * 2.5  # noqa: E731
    got = [bool(mod.episode(agent, steer, envs, 20000 + i, draws)[0]) for i in range(10)]
    envs.close()
    at_zero = load_agent(bc, {"initial_noise": "zero"})[0].eval()
    want = [evaluate_agent(at_zero, ENV, {}, 1, 20000 + i)["success_rate"] == 1.0 for i in range(10)]
    assert 0 < sum(want) < 10 and got == want, (got, want)

    row = mod.main(["--policy-path", str(bc), "--env", ENV, "--states", "10", "--draws", "2"])
    assert row["zero"] == sum(want) / 10
    assert row["best_of_k"] >= max(row["zero"], row["best_of_8"], row["random_mean"])

    # --centre-seed: env 0 plays the BC at its fixed x_0 draw, as `--initial-noise fixed` evaluates it
    fixed = load_agent(bc, {"initial_noise": "fixed", "initial_noise_seed": 0})[0].eval()
    want_fixed = [evaluate_agent(fixed, ENV, {}, 1, 20000 + i)["success_rate"] == 1.0 for i in range(10)]
    assert sum(want_fixed) != sum(want), "the fixed draw must score unlike x_0 = 0 here, or the row cannot tell them apart"
    centred = mod.main(["--policy-path", str(bc), "--env", ENV, "--states", "10", "--draws", "2", "--centre-seed", "0"])
    assert centred["zero"] == sum(want_fixed) / 10 and centred["centre_seed"] == 0

    # a dsrl checkpoint (an untrained actor over this BC, centred at draw 0): its frozen base gives the same row
    dsrl = DSRLAgent(DSRLFlowPolicy(agent.policy, agent.sampler.act_steps, 8, 2.5, x0_seed=0), agent.sampler)
    torch.nn.init.normal_(dsrl.policy.actor.net[-1].bias)   # an actor that moves x_0: the script must not use it
    save_agent(tmp_path / "dsrl", dsrl)
    via_dsrl = mod.main(["--policy-path", str(tmp_path / "dsrl"), "--env", ENV, "--states", "10", "--draws", "2",
                         "--centre-seed", "0"])
    assert {k: v for k, v in via_dsrl.items() if k != "policy_path"} == \
        {k: v for k, v in centred.items() if k != "policy_path"}
