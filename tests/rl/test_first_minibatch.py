"""Invariant 1 at the update's own shape and precision (issue 30, item 3), and the precision setting
(item 4): the first minibatch's ratio, exactly as PPO computes it, is checked before any optimizer
step; ``--old-logprob update`` recomputes the old log-probs in the update's own layout; ``--precision``
is recorded and frozen on resume."""

import json

import pytest
import torch

from reinflow import InvariantError
from reinflow.cli import main
from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.report.logger import read_metrics
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.build import build_agent, env_kwargs
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import DistInfo
from reinflow.rl.seeding import env_generators, seeded_reset

SMALL = {"env": "Pendulum-v1", "chunk_size": 8, "act_steps": 4, "rollout_steps": 4, "parallel_envs": 2, "hidden": [16, 16],
             "minibatch_size": 8, "update_epochs": 2, "progress": False, "tensorboard": False}


def _update_with_shifted_old_logp(tmp_path, shift: float, old_logprob: str) -> dict:
    """One chain-ppo iteration whose stored log-probs of decisions 1.. are moved by ``shift`` nats:
    what a rollout computed at another batch shape or precision hands the update. Decision 0 stays
    exact, so the rollout-shape check (pre_update_check) passes and only the new check can see it."""
    cfg = TrainConfig(out=str(tmp_path), old_logprob=old_logprob, **SMALL).resolved()
    kw = env_kwargs(cfg)
    agent = build_agent(cfg, *env_spaces(cfg.env, kw)).train()
    envs = make_vector_env(cfg.env, cfg.parallel_envs, agent.sampler.act_steps, "sync", kw)
    try:
        algo = algorithm_class("chain-ppo")(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap")
        algo.begin_iteration(0)
        exp, _ = algo.collect(envs, seeded_reset(envs, 0, 0, 0), 0, env_generators(0, 0, 0, cfg.parallel_envs))
        exp.data.logp[1:] += shift
        return algo.update(exp, 0)   # minibatch = the whole batch: the shifted rows are in the first one
    finally:
        envs.close()


def test_a_shift_at_the_update_shape_stops_with_cause_and_fix(tmp_path):
    with pytest.raises(InvariantError, match="kernel/precision nondeterminism") as exc:
        _update_with_shifted_old_logp(tmp_path, 1e-3, "rollout")
    assert "first_minibatch_ratio_max_dev = 0.001" in str(exc.value) and "--old-logprob update" in str(exc.value)
    out = _update_with_shifted_old_logp(tmp_path, 0.0, "auto")
    assert out["ppo/first_minibatch_ratio_max_dev"] <= 1e-5 and out["ppo/old_logprob_relayout_shift"] == 0.0
    assert out["ppo/old_logprob_recomputed"] == 0.0                  # CPU fp32 without a shift: no extra pass


@pytest.mark.parametrize("old_logprob", ["update", "auto"])
def test_old_logprob_update_recomputes_in_the_update_layout(tmp_path, old_logprob, capsys):
    out = _update_with_shifted_old_logp(tmp_path, 1e-3, old_logprob)
    assert out["ppo/first_minibatch_ratio_max_dev"] == 0.0          # the same computation, the same answer
    assert out["ppo/old_logprob_relayout_shift"] == pytest.approx(1e-3, abs=1e-5)   # + this layout's own shift
    assert out["ppo/old_logprob_recomputed"] == 1.0
    # auto (CPU, fp32) starts without it and switches on, before any optimizer step, when the shift shows
    assert ("--old-logprob auto recomputes" in capsys.readouterr().err) == (old_logprob == "auto")


FAST = ["--env", "Pendulum-v1", "--chunk-size", "8", "--act-steps", "4", "--rollout-steps", "4", "--parallel-envs",
        "2", "--hidden", "16", "16", "--minibatch-size", "8", "--update-epochs", "2", "--eval-episodes", "2",
        "--eval-every", "0", "--no-progress", "--no-tensorboard"]


def test_bf16_is_recorded_relayouts_by_default_and_is_frozen_on_resume(tmp_path, refused):
    out = tmp_path / "bf16"
    assert main(["train", *FAST, "--iterations", "2", "--precision", "bf16", "--out", str(out)]) == 0
    num = json.loads((out / "config.json").read_text())["derived"]["numerics"]
    assert num == {"precision": "bf16", "device_type": "cpu", "autocast_dtype": "bfloat16", "tf32": False,
                   "cudnn_benchmark": False, "deterministic_algorithms": True, "logprob_dtype": "float64",
                   "weights": {"dtype": ["float32"], "checkpoint_dtype": ["float32"]}}
    rows = read_metrics(out / "metrics.jsonl")
    assert all(r["ppo/first_minibatch_ratio_max_dev"] == 0.0 for r in rows)    # auto: recomputed in bf16
    assert all(r["ppo/old_logprob_relayout_shift"] >= 0 for r in rows)        # (0 here: this CPU's bf16 kernels
    # do not depend on the batch shape of this small MLP; docs/smolvla.md measures SmolVLA's)
    assert all(r["ppo/old_logprob_recomputed"] == 1.0 for r in rows)         # bf16 on a CPU: from the first update
    fp32 = tmp_path / "fp32"
    assert main(["train", *FAST, "--iterations", "1", "--out", str(fp32)]) == 0
    first = read_metrics(fp32 / "metrics.jsonl")[0]
    assert first["ppo/first_minibatch_ratio_max_dev"] <= 1e-5 and first["ppo/old_logprob_relayout_shift"] == 0.0
    assert first["ppo/old_logprob_recomputed"] == 0.0                           # fp32 on a CPU: not recomputed
    # autocast reached the networks: the same seed's first log-probs differ from float32's
    assert abs(first["logprob/old_mean"] - rows[0]["logprob/old_mean"]) > 1e-4
    assert not torch.are_deterministic_algorithms_enabled()                   # the process's settings are back
    refused(["train", "--out", str(out), "--resume", "--iterations", "3", "--precision", "fp32", "--no-progress"],
            "precision='fp32' but the run")
    assert main(["eval", str(out), "--episodes", "2", "--json-out", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["precision"] == "bf16"   # evaluated as it was trained


def test_bf16_updates_reach_the_residual_policys_log_prob(tmp_path):
    """Under --precision bf16 the residual offset, sigma and the chain's mean stay float32, so one update
    moves PPO's ratio. Computed in bf16 the offset rounded away next to the base's velocity and the ratio
    read exactly 1 through every epoch of every iteration (the SmolVLA bf16 quickstart, docs/smolvla.md)."""
    from reinflow.rl.checkpoint import save_agent
    from reinflow.rl.precision import autocast
    small = {k: v for k, v in SMALL.items() if k not in ("progress", "tensorboard")}
    base_cfg = TrainConfig(out=str(tmp_path / "unused"), algorithm="chain-ppo", **small).resolved()
    torch.manual_seed(0)
    base = save_agent(tmp_path / "base", build_agent(base_cfg, *env_spaces(base_cfg.env)))
    cfg = TrainConfig(out=str(tmp_path / "run"), algorithm="residual-ppo", policy_path=str(base), precision="bf16",
                      old_logprob="rollout", **small).resolved()
    cls = algorithm_class(cfg.algorithm)
    agent = cls.prepare_agent(cfg, build_agent(cfg, *env_spaces(cfg.env)))
    envs = make_vector_env(cfg.env, cfg.parallel_envs, cfg.act_steps)
    try:
        algo = cls(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap")
        with autocast("bf16", "cpu"):
            for it in range(2):   # the offset starts at exactly 0: the second update starts from a non-zero one
                algo.begin_iteration(it)
                exp, _ = algo.collect(envs, seeded_reset(envs, 0, it, 0), it, env_generators(0, it, 0, cfg.parallel_envs))
                m = algo.update(exp, it)
    finally:
        envs.close()
    assert m["ppo/first_minibatch_ratio_max_dev"] == 0.0
    assert max(m["ppo/ratio_max"] - 1.0, 1.0 - m["ppo/ratio_min"]) > 1e-4, m
    from reinflow.flow.chain import transition
    obs = agent.policy.prepare_obs(torch.zeros(2, 3).numpy())
    with torch.no_grad(), autocast("bf16", "cpu"):
        ctx = agent.policy.encode(obs)
        mu, sigma = transition(agent.policy, agent.noise_head, torch.zeros(2, cfg.chunk_size, 1), 0, ctx)
    assert (mu.dtype, sigma.dtype) == (torch.float32, torch.float32)
    with torch.no_grad(), autocast("bf16", "cpu"):   # the offset: float32, not rounded next to a bf16 velocity
        assert agent.policy.offset(ctx).dtype == torch.float32
