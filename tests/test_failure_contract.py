"""The top-level contract of every command: what the machine or the user causes (Ctrl-C, a missing
optional package, no CUDA; a full disk: tests/test_faults.py) is one `error:` line and exit 2; only a
bug shows a traceback, with a line saying how to report it (exit 1)."""

import os
import signal
import sys

import pytest
import torch

from reinflow import cli
from reinflow.cli import main

SMALL = ["--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2", "--hidden", "16",
         "--no-progress", "--no-tensorboard", "--eval-episodes", "1", "--eval-every", "0"]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("[reinflow")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_ctrl_c_during_start_up_is_one_error_line(monkeypatch, capsys):
    def start_up(argv):
        os.kill(os.getpid(), signal.SIGINT)   # a real SIGINT, before the trainer installs its handler
        return 0
    monkeypatch.setitem(cli.COMMANDS, "train", start_up)
    # Python's own handler, as in a terminal: a shell starts background jobs (`cmd &`, nohup) with SIGINT ignored
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main(["train"]) == 2
    finally:
        signal.signal(signal.SIGINT, old)
    assert "interrupted (Ctrl-C)" in one_error_line(capsys.readouterr().err)


def test_a_bug_shows_its_traceback_and_how_to_report_it(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "scale", lambda argv: 1 / 0)
    assert main(["scale"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "this is a bug in reinflow" in err
    assert "please report it" in err.lower()


def test_missing_optional_package_names_the_install_command(monkeypatch, capsys, tmp_path):
    ours = ("lerobot.", "reinflow.policies.smolvla", "reinflow.commands.smolvla_tiny")
    for name in [m for m in sys.modules if m == "lerobot" or m.startswith(ours)]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lerobot", None)   # what `import lerobot` does when it is not installed
    assert main(["smolvla-tiny", str(tmp_path / "vlm")]) == 2   # (--help works without it)
    line = one_error_line(capsys.readouterr().err)
    assert "lerobot" in line and "pip install 'reinflow[smolvla]'" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(tmp_path, capsys):
    assert main(["train", *SMALL, "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    assert "CUDA is not available" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()                 # refused before anything was written


def test_os_errors_name_the_file_and_a_way_on(tmp_path):
    msg = cli._os_message(OSError(28, "No space left on device", str(tmp_path / "ck")))
    assert msg == f"{tmp_path / 'ck'}: No space left on device; free disk space or choose another --out"
