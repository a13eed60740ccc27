"""The quickstart's report: ``summary.json`` (every number, the configs) and ``summary.md`` (the table,
the recipe, the plots), the same keys for every policy kind."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def summarize(cfg: Any, kind: Any, plan: Any, tcfg: Any, res: Any, kept: dict, before: dict, after: dict,
              demos: dict, bc: dict, out: Path, eval_seed: int, dims: int, basis: int, wall: float,
              budget_s: float) -> dict:
    """summary.json's dict (plots written to ``<out>/plots``)."""
    from reinflow.quickstart_policies import algorithm_choice
    from reinflow.report.logger import read_metrics
    from reinflow.report.plots import plot_run
    rows = read_metrics(out / "train" / "metrics.jsonl")

    def col(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    clip = col("ppo/clip_fraction")
    b, a = before["success_rate"], after["success_rate"]
    return {
        "policy": kind.label, "task": plan.label, "env": plan.env_id, "env_kwargs": plan.env_kwargs,
        "success_before": b, "success_after": a, "success_gain_pp": 100.0 * ((a or 0.0) - (b or 0.0)),
        "eval_episodes_before": before["episodes"], "eval_episodes_after": after["episodes"],
        "eval_seed": eval_seed, "eval_mode": "deterministic (ODE, no injected noise)",
        "eval_before": before, "eval_after": after,
        "env_steps": res.env_steps, "iterations": res.iterations, "iterations_planned": tcfg.iterations,
        "stopped_by_minutes": res.iterations < tcfg.iterations and res.stopped_by != "signal",
        "stopped_by_signal": res.stopped_by == "signal",
        "algorithm_choice": algorithm_choice(cfg.algorithm, tcfg.algorithm),
        "policy_evaluated": kept["what"], "kept_iteration": kept["iteration"],
        "last_policy_selection_success": (res.final_eval or {}).get("success_rate"),
        "wall_time_s": wall, "budget_s": budget_s, "train_wall_s": res.wall_s,
        "clip_fraction_max": max(clip) if clip else None,
        "clip_fraction_median": sorted(clip)[len(clip) // 2] if clip else None,
        "ratio_min": min(col("ppo/ratio_min"), default=None),
        "ratio_max": max(col("ppo/ratio_max"), default=None),
        "pre_update_ratio_max_dev": max(col("ppo/pre_update_ratio_max_dev"), default=None),
        "context_reused": min(col("ppo/context_reused"), default=0.0),
        "rollout_s_mean": sum(col("time/rollout_s")) / max(len(rows), 1),
        "update_s_mean": sum(col("time/update_s")) / max(len(rows), 1),
        "chain_dims": dims, "noise_basis": basis, "action_dim": plan.action_dim, "chunk_size": plan.chunk_size,
        "act_steps": plan.act_steps, "denoise_steps": 1,
        kind.demo_dir: demos, kind.bc_dir: bc,
        "config": {"quickstart": asdict(cfg), "train": asdict(tcfg)},
        "plots": [str(p) for p in plot_run(out / "train", out / "plots")],
        "run_folder": str(out / "train"),
    }


def write_report(s: dict, kind: Any, tcfg: Any, out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(s, indent=2, default=str))
    (out / "summary.md").write_text(markdown(s, tcfg, kind.title) + "\n".join(kind.notes(s)))


def markdown(s: dict, tcfg: Any, title: str = "reinflow quickstart") -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"
    from reinflow.rl.algorithms import algorithm_class
    algo = algorithm_class(tcfg.algorithm)
    text = algo.describe(tcfg, s["act_steps"], s["action_dim"])
    cut = " (**--minutes cut the run**)" if s["stopped_by_minutes"] else \
        " (**a signal stopped the run**)" if s.get("stopped_by_signal") else ""
    lines = [
        f"# {title}: {s['task']} ({s['env']})", "",
        f"| | before (BC) | after (fine-tuned, {tcfg.algorithm}) |", "| --- | --- | --- |",
        f"| success (deterministic, same seeds) | {pct(s['success_before'])} | {pct(s['success_after'])} |",
        f"| episodes | {s['eval_episodes_before']} | {s['eval_episodes_after']} |",
        f"| mean return | {s['eval_before']['return_mean']:.2f} | {s['eval_after']['return_mean']:.2f} |",
        f"| mean episode length | {s['eval_before']['length_mean']:.1f} | {s['eval_after']['length_mean']:.1f} |",
        "",
        f"* gain: **{s['success_gain_pp']:+.1f} percentage points**",
        f"* algorithm: {s.get('algorithm_choice') or tcfg.algorithm}",
        f"* policy: {s['policy']}; evaluated after: {s['policy_evaluated']}",
        f"* fine-tuning: {s['iterations']} of {s['iterations_planned']} planned "
        f"{algo.family} iterations{cut}, "
        f"{s['env_steps']} env steps; whole command {s['wall_time_s'] / 60:.1f} min (cap {s['budget_s'] / 60:.1f} min)",
        f"* chain: chunk {s['chunk_size']} x {s['action_dim']} dims, {s['act_steps']} executed per decision, K = 1, "
        + text["chain"],
        f"* recipe: {text['settings']}",
        f"* clip fraction: max {s['clip_fraction_max']:.3f}, median {s['clip_fraction_median']:.3f}; "
        f"PPO ratio range [{s['ratio_min']:.3f}, {s['ratio_max']:.3f}]" if s["clip_fraction_max"] is not None else "",
        "", "## Plots", "",
    ]
    lines += [f"![{Path(p).name}](plots/{Path(p).name})" for p in s["plots"]]
    lines += ["", f"Run folder: `{s['run_folder']}` (metrics.jsonl, checkpoints; `reinflow doctor {s['run_folder']}`)", ""]
    return "\n".join(lines)
