"""Shared test setup: one BLAS thread (3-6x faster and steadier on 2 cores), headless GL."""

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("WANDB_MODE", "offline")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def refused(capsys):
    """``refused(argv, needle)``: ``reinflow.cli.main(argv)`` ends with exit code 2 and one ``error:`` line
    (``[reinflow]`` notes aside) containing ``needle``, never a traceback; returns the line."""
    from reinflow.cli import main

    def check(argv: list[str], needle: str) -> str:
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("[reinflow")]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
        assert needle in lines[0], lines[0]
        return lines[0]
    return check


TINY_TRAIN = ["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
              "--hidden", "16", "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0",
              "--iterations", "1"]


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """``root``: ``demos/`` (2 ArmReach episodes), ``bc/`` (the pretrain checkpoint made from it) and ``run/``
    (one Pendulum iteration): small real folders for the untrusted-input tables."""
    from reinflow.cli import main
    root = tmp_path_factory.mktemp("hostile")
    assert main(["demos", "--env", "reinflow/ArmReach-v0", "--episodes", "2", "--out", str(root / "demos"),
                 "--no-progress"]) == 0
    assert main(["pretrain", "--demos", str(root / "demos"), "--out", str(root / "bc"), "--steps", "2",
                 "--hidden", "16", "--no-progress"]) == 0
    assert main([*TINY_TRAIN, "--out", str(root / "run")]) == 0
    return root


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``user_module(name, source)``: an importable module ``name`` (a user's env, expert, or a file a
    stored id names) in ``tmp_path``, forgotten from ``sys.modules`` afterwards; returns its path."""
    names = []

    def write(name: str, source: str):
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        names.append(name)
        return tmp_path / f"{name}.py"
    yield write
    for name in names:
        sys.modules.pop(name, None)
