"""Fault injection: kills at random points, env crashes and NaNs, failed checkpoint writes."""

import json
import os
import random
import resource
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
from reinflow.rl.checkpoint import CheckpointWriteError, load_agent, resolve_checkpoint, save_run_checkpoint

SMALL = ["--chunk-size", "4", "--act-steps", "4", "--parallel-envs", "2", "--rollout-steps", "3", "--hidden", "32", "32",
         "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_proc(args):
    return subprocess.Popen([sys.executable, "-m", "reinflow", "train", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def final_state(out: Path) -> dict:
    ck = resolve_checkpoint(out)
    return load_file(str(ck / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run that kill/resume runs must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref")
    args = ["--env", "Pendulum-v1", *SMALL, "--reset-each-iteration", "--iterations", "6", "--update-epochs", "8",
            "--out", str(out)]
    assert main(["train", *args]) == 0
    return out, args


@pytest.fixture(autouse=True)
def _rearm_faults():
    from reinflow.envs.faulty import reset_fault_counter
    reset_fault_counter()


def wait_for(pred, timeout=120.0, poll=0.002):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(poll)
    return False


@pytest.mark.parametrize("when", ["random-early", "random-late", "checkpoint-write"])
def test_sigkill_then_resume_is_equivalent(reference, tmp_path, when):
    ref_out, args = reference
    out = tmp_path / "run"
    args = [a if a != str(ref_out) else str(out) for a in args]
    proc = train_proc(args)
    ck = out / "checkpoints"
    if when == "checkpoint-write":  # the moment a checkpoint's temp folder exists
        assert wait_for(lambda: ck.exists() and any(p.name.startswith(".iter_") for p in ck.iterdir()))
    else:
        assert wait_for(lambda: (ck / "latest").exists())
        time.sleep(random.Random(when).uniform(0.0, 0.4 if when == "random-early" else 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "config.json").exists() and (ck / "latest").exists():
        assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    else:  # killed before the first checkpoint: nothing to resume, a fresh start (over it) is the same run
        assert main(["train", *args, "--overwrite"]) == 0
    rows, ref_rows = read_metrics(out / "metrics.jsonl"), read_metrics(ref_out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == list(range(6))  # no duplicated or half-written line
    for a, b in zip(rows, ref_rows):
        for k in ("rollout/reward_mean", "ppo/policy_loss", "logprob/new_mean", "env_steps"):
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), (a["iteration"], k)
    got, want = final_state(out), final_state(ref_out)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not [p for p in ck.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_env_exception_restarts_then_stops(tmp_path, capsys):
    out = tmp_path / "crash"
    kw = json.dumps({"raise_at": 2, "faults": 1})
    assert main(["train", "--env", "reinflow/Faulty-v0", "--env-kwargs", kw, *SMALL, "--iterations", "2",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "env 0: RuntimeError: simulated simulator crash" in err and "restart 1 of 3" in err
    assert sum(r["rollout/episodes_dropped"] for r in read_metrics(out / "metrics.jsonl")) >= 1
    from reinflow.envs.faulty import reset_fault_counter
    reset_fault_counter()
    out2 = tmp_path / "crash2"
    kw = json.dumps({"raise_at": 2, "faults": 99})
    code = main(["train", "--env", "reinflow/Faulty-v0", "--env-kwargs", kw, *SMALL, "--iterations", "3",
                 "--env-max-restarts", "0", "--out", str(out2)])
    err = capsys.readouterr().err
    assert code == 2 and "env 0: RuntimeError: simulated simulator crash" in err and "restarts used: 0 of 0" in err


def test_nan_episode_dropped_not_poisoning(tmp_path, capsys):
    out = tmp_path / "nan"
    kw = json.dumps({"nan_at": 2, "faults": 2})
    assert main(["train", "--env", "reinflow/Faulty-v0", "--env-kwargs", kw, *SMALL, "--iterations", "2",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "reward is nan at episode step 2; episode dropped" in err
    rows = read_metrics(out / "metrics.jsonl")
    assert sum(r["rollout/episodes_dropped"] for r in rows) == 2
    assert all(r["ppo/policy_loss"] is not None and r["rollout/reward_mean"] is not None for r in rows)
    from reinflow.envs.faulty import reset_fault_counter
    reset_fault_counter()
    code = main(["train", "--env", "reinflow/Faulty-v0", "--env-kwargs", kw, *SMALL, "--iterations", "2",
                 "--nonfinite", "stop", "--out", str(tmp_path / "nan2")])
    assert code == 2 and "env 0: reward is nan at episode step 2" in capsys.readouterr().err


@pytest.fixture
def run_with_checkpoint(tmp_path):
    out = tmp_path / "ck"
    assert main(["train", "--env", "Pendulum-v1", *SMALL, "--iterations", "1", "--out", str(out)]) == 0
    agent, cfg, ck = load_agent(out)
    return out, agent, cfg, ck


def test_checkpoint_into_read_only_dir_keeps_previous(run_with_checkpoint):
    out, agent, cfg, ck = run_with_checkpoint
    ckdir = out / "checkpoints"
    before = (ckdir / "latest").read_text()
    if subprocess.run(["chattr", "+i", str(ckdir)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported on this filesystem")
    try:
        with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint in .*checkpoints: Operation not permitted"):
            save_run_checkpoint(out, 1, agent, {"train": cfg["train"]}, {"iteration": 1})
    finally:
        subprocess.run(["chattr", "-i", str(ckdir)], check=True)
    assert (ckdir / "latest").read_text() == before
    load_agent(out)  # the previous checkpoint is still valid


def test_checkpoint_on_full_disk_keeps_previous(run_with_checkpoint, tmp_path):
    """A file-size limit makes writes fail with EFBIG, as a full disk fails them with ENOSPC: the real
    command ends with one `error:` line and exit 2, and the previous checkpoint stays valid."""
    out, _, _, _ = run_with_checkpoint

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    res = subprocess.run([sys.executable, "-m", "reinflow", "train", "--out", str(out), "--resume", "--iterations", "2",
                          "--no-progress"], capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limit)
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("[reinflow")]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("error: ") and "File too large" in lines[0]
    assert "the previous checkpoint is unchanged" in lines[0]
    _, _, ck = load_agent(out)
    assert ck.name == "iter_000000"
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
