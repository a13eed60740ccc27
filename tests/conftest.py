"""Shared test setup: one BLAS thread (3-6x faster and steadier on 2 cores), headless GL."""

import os

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
