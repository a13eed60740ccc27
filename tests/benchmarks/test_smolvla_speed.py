"""The SmolVLA speed / GPU benchmark runs (tiny backbone, CPU) and its two update paths agree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("lerobot")


def _bench():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "smolvla_speed.py"
    spec = importlib.util.spec_from_file_location("smolvla_speed", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_smoke_both_paths_exact(capsys):
    res = _bench().main(["--tiny", "--batch", "2", "--rollout-steps", "2", "--minibatch", "4",
                    "--presets", "heads", "expert", "all"])
    rows = {(preset, reuse): r for preset, reuse, _, r in res["updates"]}
    assert set(rows) == {("heads", False), ("heads", True), ("expert", False), ("expert", True), ("all", False)}
    assert all(r["ratio_dev"] == 0.0 for r in rows.values())        # re-encoded or kept: the same log-probs
    assert rows[("expert", True)]["bytes_per_sample"] > 0 and rows[("all", False)]["bytes_per_sample"] == 0
    assert "kept from rollout" in capsys.readouterr().out


def test_precision_reaches_the_kept_contexts_and_freed_contexts_serve_later_updates(tmp_path):
    """bf16 runs the rollout under autocast (the kept prefix cache is half fp32's bytes), and with the
    per-step contexts dropped after the first kept-prefix update a second preset still reuses them."""
    mod, out = _bench(), tmp_path / "mem.jsonl"
    common = ["--tiny", "--batch", "2", "--rollout-steps", "2", "--minibatch", "4", "--no-reencode",
              "--presets", "heads", "expert", "--jsonl", str(out)]
    mod.main(common)
    mod.main([*common, "--precision", "bf16", "--keep-contexts"])
    fp32, bf16 = (json.loads(line) for line in out.read_text().splitlines())
    assert (fp32["precision"], fp32["keep_contexts"], bf16["precision"], bf16["keep_contexts"]) == ("fp32", False, "bf16", True)
    per_sample = {r["precision"]: [u["bytes_per_sample"] for u in r["updates"]] for r in (fp32, bf16)}
    assert len(per_sample["fp32"]) == 2 and all(b > 0 for b in per_sample["fp32"])   # expert reused after heads freed
    assert per_sample["bf16"][0] < 0.6 * per_sample["fp32"][0]
    assert all(u["ratio_dev"] == 0.0 for r in (fp32, bf16) for u in r["updates"])
    assert fp32["weights_gib"] == bf16["weights_gib"] > 0 and fp32["maxrss_gib"] >= fp32["maxrss_build_gib"] > 0
