"""Bad input ends with one clear line naming the field, and exit code 2 (no traceback)."""

import json

import pytest

from reinflow.cli import main

BASE = ["train", "--env", "Pendulum-v1", "--iterations", "1", "--parallel-envs", "1", "--rollout-steps", "2",
        "--hidden", "16", "--no-progress", "--no-tensorboard", "--eval-episodes", "1"]


@pytest.fixture(scope="module")
def pendulum_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck")
    assert main([*BASE, "--chunk-size", "4", "--out", str(out)]) == 0
    return out


def run(argv, capsys):
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("args,needle", [
    (["--sigma-min", "0.3", "--sigma-max", "0.2"], "sigma_min=0.3 must be < sigma_max=0.2"),
    (["--sigma-min", "0", "--sigma-max", "0.2"], "sigma_min=0.0: must be > 0"),
    (["--sigma-min", "-0.1"], "sigma_min=-0.1: must be > 0"),
    (["--chunk-size", "4", "--act-steps", "8"], "act_steps=8: must be <= chunk_size=4"),
    (["--env", "NoSuchEnv-v9"], "env='NoSuchEnv-v9': not a registered gymnasium id"),
    (["--env", "CartPole-v1"], "action space Discrete is not a Box"),
    (["--iterations", "0"], "iterations=0: must be >= 1"),
    (["--gamma", "1.5"], "gamma=1.5: allowed range [0, 1]"),
    (["--clip-epsilon", "0"], "clip_epsilon=0.0: must be > 0"),
    (["--noise-schedule", "decay"], "sigma_max_final=None"),
    (["--env-kwargs", "{bad"], "env_kwargs='{bad': not valid JSON"),
    (["--preset", "nope"], "preset='nope': allowed"),
    (["--policy-path", "/nonexistent/ckpt"], "checkpoint /nonexistent/ckpt: no such folder"),
])
def test_bad_train_input(args, needle, capsys, tmp_path):
    code, err = run([*BASE, "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 2
    assert err.startswith("error: ") and needle in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_checkpoint_mismatches(pendulum_ckpt, capsys, tmp_path):
    code, err = run([*BASE, "--out", str(tmp_path / "a"), "--policy-path", str(pendulum_ckpt),
                     "--chunk-size", "8"], capsys)
    assert code == 2 and "chunk_size=8: the checkpoint" in err and "chunk_size=4" in err
    code, err = run([*BASE, "--out", str(tmp_path / "b"), "--policy-path", str(pendulum_ckpt),
                     "--env", "MountainCarContinuous-v0"], capsys)
    assert code == 2 and "checkpoint obs_dim=3 but env MountainCarContinuous-v0 observations have 2 values" in err
    code, err = run([*BASE, "--out", str(tmp_path / "c"), "--policy-path", str(pendulum_ckpt),
                     "--env", "Reacher-v5"], capsys)
    assert code == 2 and "checkpoint action_dim=1 but env Reacher-v5 has 2 action dims" in err


def test_corrupt_and_foreign_checkpoints(pendulum_ckpt, capsys, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(pendulum_ckpt / "checkpoints" / "iter_000000", bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, err = run(["eval", str(bad), "--episodes", "1"], capsys)
    assert code == 2 and "corrupt or truncated" in err and "model.safetensors" in err
    cfg = json.loads((bad / "config.json").read_text())
    cfg["format_version"] = 99
    (bad / "config.json").write_text(json.dumps(cfg))
    code, err = run(["eval", str(bad)], capsys)
    assert code == 2 and "format_version=99 is newer" in err
    (bad / "config.json").write_text("{not json")
    code, err = run(["eval", str(bad)], capsys)
    assert code == 2 and "malformed JSON" in err
    cfg["format_version"] = 1
    cfg["policy"]["type"] = "transformer9000"
    (bad / "config.json").write_text(json.dumps(cfg))
    code, err = run(["eval", str(bad)], capsys)
    assert code == 2 and "policy type='transformer9000'" in err


def test_config_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sigma_min: 0.5\nsigma_max: 0.4\n")
    code, err = run([*BASE, "--out", str(tmp_path / "o"), "--config", str(cfg)], capsys)
    assert code == 2 and "sigma_min=0.5 must be < sigma_max=0.4" in err
    cfg.write_text("sigma_mn: 0.5\n")
    code, err = run([*BASE, "--config", str(cfg)], capsys)
    assert code == 2 and "unknown field(s) sigma_mn" in err
    code, err = run([*BASE, "--config", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "no such file" in err
    code, err = run(["train", "--resume", "--out", str(tmp_path / "never")], capsys)
    assert code == 2 and "not found; is --out the folder of an earlier run" in err


def test_unknown_command(capsys):
    code, err = run(["frobnicate"], capsys)
    assert code == 2 and "unknown command 'frobnicate'" in err
