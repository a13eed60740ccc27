"""The benchmark plots are drawn from the committed result files, and the README and
docs/benchmarks.md quote the same numbers those files hold."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("plot_results", ROOT / "benchmarks" / "plot_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "benchmarks" / "results" / name).read_text().splitlines() if line]


def _pct(xs: list[float]) -> str:
    return f"{100 * np.mean(xs):.0f} ± {100 * np.std(xs):.0f} %"


def test_every_figure_is_drawn_from_the_results(tmp_path):
    _module().main(["--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["choice_costs.png", "how_fast.png", "throughput.png",
                                                           "what_learns.png"]


def test_markdown_tables_parse():
    mod = _module()
    rows = mod.md_table("residual_2m.md", "kept best, held-out %")
    kept = {r["task"]: mod.mean_std(r["kept best, held-out %"]) for r in rows if r["preset"] == "residual"}
    assert kept == {"reach": (99.0, 1.0), "push": (90.0, 3.0), "pick-lift": (97.0, 2.0)}
    assert mod.mean_std("92") == (92.0, 0.0) and mod.number("2,934") == 2934.0


def test_docs_quote_the_result_files():
    """One set of numbers: the per-seed files, the recipes table, benchmarks.md and the README agree."""
    mod = _module()
    readme, bench = (ROOT / "README.md").read_text(), (ROOT / "docs" / "benchmarks.md").read_text()
    table = {r["task"]: r["kept best, held-out %"] for r in mod.md_table("residual_2m.md", "kept best, held-out %")
             if r["preset"] == "residual"}
    arm = [r for r in _rows("arm_2m_heldout.jsonl") if r["algorithm"] == "residual-ppo"]
    for task in ("pick-lift", "push", "reach"):
        got = _pct([r["heldout"] for r in arm if r["task"] == task])
        assert got == table[task] + " %", task
        assert f"**{got}**" in readme and f"**{got}**" in bench, task
    mw = _rows("metaworld_success_ends_2m.jsonl")
    for task in ("pick-place-v3", "push-v3"):
        got = _pct([r["success_after"] for r in mw if r["task"] == task])
        assert f"**{got}**" in readme and f"**{got}**" in bench, task
