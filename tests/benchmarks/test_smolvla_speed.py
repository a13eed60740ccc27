"""The SmolVLA speed / GPU benchmark runs (tiny backbone, CPU) and its two update paths agree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("lerobot")


def test_tiny_smoke_both_paths_exact(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "smolvla_speed.py"
    spec = importlib.util.spec_from_file_location("smolvla_speed", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--tiny", "--batch", "2", "--rollout-steps", "2", "--minibatch", "4",
                    "--presets", "heads", "expert", "all"])
    rows = {(preset, reuse): r for preset, reuse, _, r in res["updates"]}
    assert set(rows) == {("heads", False), ("heads", True), ("expert", False), ("expert", True), ("all", False)}
    assert all(r["ratio_dev"] == 0.0 for r in rows.values())        # re-encoded or kept: the same log-probs
    assert rows[("expert", True)]["bytes_per_sample"] > 0 and rows[("all", False)]["bytes_per_sample"] == 0
    assert "kept from rollout" in capsys.readouterr().out
