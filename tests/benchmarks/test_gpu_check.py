"""The GPU check's logic on the CPU (issue 30, item 6: it has not run on a GPU): the ratio table of
smolvla_speed.py, and (slow) the whole benchmarks/gpu_check.py with tiny settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("lerobot")
BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ratio_table_recomputed_old_logprobs_give_ratio_one(capsys):
    res = _load("smolvla_speed").main(["--tiny", "--ratio-table", "--batch", "2", "--rollout-steps", "1"])
    assert res["sizes"] == [1, 2] and len(res["rows"]) == 2 * 4 * 2
    assert all(r["max_dev"] == 0.0 for r in res["rows"] if r["old_logprob"] == "update")
    assert all(r["max_dev"] == 0.0 for r in res["rows"] if r["prefix"] == "kept")    # the rollout's own tensors
    assert res["bf16_vs_fp32_logp"] > 1e-3                                            # autocast reached SmolVLA
    assert "| fp32 | re-encoded | rollout |" in capsys.readouterr().out


@pytest.mark.slow
def test_gpu_check_passes_with_tiny_settings_on_cpu(tmp_path, capsys):
    assert _load("gpu_check").main(["--device", "cpu", "--tiny", "--json-out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "OK: every invariant held" in out and "| smolvla_bf16 | 0 | 1 |" in out
