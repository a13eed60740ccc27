"""End-to-end `reinflow train` on a cheap gymnasium env: metrics, checkpoint, eval, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reinflow.cli import main
from reinflow.report.logger import read_metrics
from reinflow.rl.checkpoint import load_agent
from reinflow.rl.trainer_state import read_trainer_state

REQUIRED = [
    "logprob/new_mean", "logprob/per_dimension", "ppo/clip_fraction", "ppo/ratio_min", "ppo/ratio_max",
    "gradients/policy_norm", "gradients/critic_norm", "gradients/policy_clipped", "gradients/critic_clipped",
    "logprob/num_dims", "logprob/per_dimension_bound", "ppo/pre_update_ratio_max_dev", "ppo/approx_kl",
    "ppo/post_update_kl", "ppo/explained_variance", "ppo/epochs_run", "noise/sigma_mean",
    "rollout/reward_mean", "rollout/success_rate", "eval/success_rate", "time/env_steps_per_s", "time/rollout_s",
    "time/update_s", "iteration", "env_steps",
]
FAST = ["--env", "Pendulum-v1", "--chunk-size", "8", "--act-steps", "4", "--rollout-steps", "4",
        "--parallel-envs", "2", "--hidden", "32", "32", "--eval-episodes", "2", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *FAST, "--iterations", "3", "--out", str(out), "--denoise-steps", "4", "--eval-every", "2"]) == 0
    return out


def test_train_writes_every_metric(run_dir):
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    for r in rows:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, missing
    assert rows[-1]["env_steps"] == 3 * 4 * 2 * 4
    for r in rows:
        assert r["ppo/pre_update_ratio_max_dev"] <= 1e-5
        assert r["logprob/num_dims"] == 4 * 4 * 1  # K=4 x 4 smooth-noise coefficients x 1 action dim
        assert r["logprob/per_dimension"] <= r["logprob/per_dimension_bound"]
        assert 0.16 <= r["noise/sigma_mean"] <= 0.32
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["derived"]["num_dims"] == 16 and cfg["train"]["denoise_steps"] == 4


def test_checkpoint_carries_the_sampler_and_eval_loads_it(run_dir, capsys):
    agent, cfg, ck = load_agent(run_dir)
    assert ck.name == "iter_000002"
    assert cfg["sampler"]["act_steps"] == 4 and cfg["policy"]["denoise_steps"] == 4
    assert agent.policy.denoise_steps == 4 and agent.sampler.sigma_lo == pytest.approx(0.16)
    state = load_file(str(ck / "model.safetensors"))
    for k, v in agent.state_dict().items():
        assert torch.equal(v, state[k]), k
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "2", "--parallel-envs", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["episodes"] == 2 and res["mode"] == "deterministic" and res["length_mean"] == 200
    assert main(["eval", str(run_dir), "--episodes", "2", "--stochastic"]) == 0


def test_resume_after_kill(tmp_path):
    """SIGKILL a real training process after its first checkpoint; --resume continues from the
    last complete iteration with the same parameters and no duplicated metric lines."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "reinflow", "train", *FAST, "--iterations", "40", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.exists() and (out / "checkpoints" / "iter_000001").exists()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    agent_before, _, ck = load_agent(out)
    done_it = int(ck.name.split("_")[1])
    assert done_it < 39
    params_before = {k: v.clone() for k, v in agent_before.state_dict().items()}
    # Resume only one more iteration: the run continues at done_it + 1 with the saved parameters.
    assert main(["train", "--out", str(out), "--resume", "--iterations", str(done_it + 2), "--no-progress"]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    its = [r["iteration"] for r in rows]
    assert its == list(range(done_it + 2)), its
    state = read_trainer_state(out / "checkpoints" / f"iter_{done_it + 1:06d}")
    assert state["iteration"] == done_it + 1
    # Parameters changed by exactly one more update from where the killed run stopped.
    after, _, _ = load_agent(out)
    assert any(not torch.equal(after.state_dict()[k], v) for k, v in params_before.items())


def test_sigterm_checkpoints_and_exits_zero(tmp_path):
    out = tmp_path / "term"
    cmd = [sys.executable, "-m", "reinflow", "train", *FAST, "--iterations", "200", "--out", str(out)]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "latest").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, text
    assert "--resume" in text
    rows = read_metrics(out / "metrics.jsonl")
    _, _, ck = load_agent(out)
    assert int(ck.name.split("_")[1]) == rows[-1]["iteration"] < 199


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "reinflow"
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "quickstart" in res.stdout


def test_tensorboard_wandb_offline_and_user_flags(tmp_path, monkeypatch):
    """The sinks users chart from, and the flags their scripts already pass."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "sinks"
    args = [a for a in FAST if a != "--no-tensorboard"]
    assert main(["train", *args, "--env", "Hopper-v5", "--iterations", "1", "--headless", "--no-render",
                 "--wandb", "--out", str(out)]) == 0
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert "ppo/clip_fraction" in acc.Tags()["scalars"]
    assert list((out / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("env,flag,expected", [("Pendulum-v1", [], "bootstrap"),
                                               ("Pendulum-v1", ["--truncation", "terminal"], "terminal"),
                                               ("reinflow/ArmReach-v0", [], "terminal"),
                                               ("reinflow/ArmReach-v0", ["--truncation", "bootstrap"], "bootstrap")])
def test_truncation_auto_follows_the_env_and_a_flag_overrides_it(tmp_path, env, flag, expected):
    out = tmp_path / "r"
    argv = [a if a != "Pendulum-v1" else env for a in FAST]
    assert main(["train", *argv, *flag, "--iterations", "1", "--eval-every", "0", "--eval-episodes", "1",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["derived"]["truncation"] == expected


def test_time_limit_stops_cleanly_with_checkpoint_and_final_eval(tmp_path, capsys):
    out = tmp_path / "limited"
    assert main(["train", *FAST, "--iterations", "50", "--time-limit-min", "1e-6", "--eval-every", "0",
                 "--out", str(out)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0]                # stopped after the first iteration
    assert rows[0]["eval/iteration"] == 0                       # ... with the final evaluation
    assert (out / "checkpoints" / "latest").read_text().strip() == "iter_000000"
    assert "time limit of 1e-06 min reached after iteration 0" in capsys.readouterr().out


def test_success_gap_is_deterministic_minus_stochastic(tmp_path):
    out = tmp_path / "arm"
    assert main(["train", "--env", "reinflow/ArmReach-v0", "--chunk-size", "10", "--parallel-envs", "4",
                 "--rollout-steps", "20", "--iterations", "2", "--eval-every", "1", "--eval-episodes", "4",
                 "--hidden", "32", "32", "--no-progress", "--no-tensorboard", "--out", str(out)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    gaps = [r for r in rows if r.get("rollout/success_gap") is not None]
    assert gaps, "an env that reports success must log the gap every iteration"
    for r in gaps:
        assert r["rollout/success_gap"] == pytest.approx(r["eval/success_rate"] - r["rollout/success_rate"])
