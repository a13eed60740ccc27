"""benchmarks/dsrl_headroom.py against the package's own evaluation: its c = 0 column is the BC's
deterministic ODE from x_0 = 0 on the same held-out states, and a search over more latents never scores
below the latents it contains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from reinflow.cli import main as cli
from reinflow.quickstart import evaluate_agent
from reinflow.rl.checkpoint import load_agent

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ENV = "reinflow/ArmPickLift-v0"


def _headroom():
    spec = importlib.util.spec_from_file_location("dsrl_headroom", BENCH / "dsrl_headroom.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_zero_latent_replays_the_bc_at_x0_zero_on_the_same_states(tmp_path):
    # a weak pick-lift BC (5 demos, 100 steps) that succeeds on some of the first 6 held-out states
    assert cli(["demos", "--env", ENV, "--episodes", "5", "--seed", "0", "--out", str(tmp_path / "d"), "--no-progress"]) == 0
    assert cli(["pretrain", "--demos", str(tmp_path / "d"), "--out", str(tmp_path / "bc"), "--chunk-size", "50",
                "--denoise-steps", "1", "--steps", "100", "--seed", "0", "--no-progress"]) == 0
    row = _headroom().main(["--policy-path", str(tmp_path / "bc"), "--env", ENV, "--states", "6", "--draws", "3"])
    agent = load_agent(tmp_path / "bc", {"initial_noise": "zero"})[0].eval()
    ref = evaluate_agent(agent, ENV, {}, 6, 20000)["success_rate"]
    assert 0 < row["zero"] == ref, (row, ref)
    assert row["best_of_k"] >= max(row["zero"], row["best_of_8"]) and row["best_of_k"] > 0
