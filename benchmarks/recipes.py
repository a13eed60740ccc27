"""Compare the named recipes (``reinflow train --preset`` and the ablations below) at D = 300 (chunk
50 x 6, K = 1).

Every recipe starts from the same BC checkpoint per task and gets the same env-step budget and
the same seeds; the table reports final deterministic success (mean +- std over seeds), success
at 1/4 and 1/2 of the budget, median and max clip fraction, the PPO ratio range, the fraction of
actor steps whose gradient was clipped, and wall time. A PNG shows success against env steps.

    python benchmarks/recipes.py --tasks reach pick-lift --seeds 0 1 2 --env-steps 200000 \
        --out runs/bench_recipes

BC checkpoints are built once per task under ``<out>/<task>/bc`` (reused when present), or
given with ``--checkpoint reach=PATH``. Runs already finished under ``<out>`` are reused, so
an interrupted benchmark continues where it stopped. Results: ``<out>/results.json``,
``<out>/table.md``, ``<out>/success_vs_env_steps.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from reinflow.rl.presets import PRESET_ALIASES, PRESETS, white_noise  # noqa: E402

# Recipes only this benchmark compares (the white-noise ablations at D = 300); each spells out every
# setting it was measured with, so the defaults can move on.
ABLATIONS: dict[str, dict] = {
    # the fix that was applied to the seed run: sigma x sqrt(300/28) ~ x3.27
    "sum-sigma-scaled": white_noise(logprob_reduction="sum", sigma_min=0.25, sigma_max=0.50, clip_epsilon=0.05),
    # large-scale VLA-RL frameworks' default: chunk-level summed ratio, clip 0.2
    "chunk-sum-0.2": white_noise(logprob_reduction="sum", sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.2),
    # each executed action step its own PPO ratio term
    "per-step": white_noise(logprob_reduction="per_step", sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.1),
    # per-step ratios, wide noise so a larger lr stays inside the clip range, one full-batch minibatch of
    # 160 chunks, critic warm-up: fast on reach, wrecks push and pick-lift (the quickstart's reach recipe then)
    "arm-d300": white_noise(logprob_reduction="per_step", clip_epsilon=0.1, lr_schedule="constant", parallel_envs=40,
                            rollout_steps=4, minibatch_size=160, critic_warmup_iters=3, sigma_min=0.4, sigma_max=0.8,
                            lr_actor=2e-4),
    # arm-d300 with half the noise and half the lr (same lr / sigma: the same ratio spread)
    "per-step-mid-sigma": white_noise(logprob_reduction="per_step", clip_epsilon=0.1, lr_schedule="constant",
                                      parallel_envs=40, rollout_steps=4, minibatch_size=160, critic_warmup_iters=3,
                                      sigma_min=0.2, sigma_max=0.4, lr_actor=1e-4),
    # ... and with a quarter: the noise of the paper's sigma_min, for tasks that need precision
    "per-step-low-sigma": white_noise(logprob_reduction="per_step", clip_epsilon=0.1, lr_schedule="constant",
                                      parallel_envs=40, rollout_steps=4, minibatch_size=160, critic_warmup_iters=3,
                                      sigma_min=0.1, sigma_max=0.2, lr_actor=5e-5),
}
RECIPES = {**PRESETS, **ABLATIONS}


def recipe(name: str) -> dict:
    name = PRESET_ALIASES.get(name, name)
    if name not in RECIPES:
        raise SystemExit(f"error: recipe {name!r}: allowed {', '.join(RECIPES)}")
    return dict(RECIPES[name])


TASKS = {"reach": "reinflow/ArmReach-v0", "push": "reinflow/ArmPush-v0", "pick-lift": "reinflow/ArmPickLift-v0"}
PRESET_ORDER = ["sum-unscaled", "sum-sigma-scaled", "reinflow-paper", "chunk-sum-0.2", "per-step", "default",
                "arm-d300", "per-step-mid-sigma", "per-step-low-sigma"]


def build_bc(task: str, out: Path, episodes: int, steps: int, seed: int) -> Path:
    from reinflow.bc.pretrain import PretrainConfig, pretrain
    from reinflow.envs.demos import record_demos
    from reinflow.quickstart import BC_SETTINGS
    ck = out / task / "bc"
    if (ck / "config.json").is_file():
        return ck
    bc = BC_SETTINGS[task]
    episodes, steps = episodes or bc["episodes"], steps or bc["steps"]
    record_demos(TASKS[task], episodes, out / task / "demos", seed=seed, progress=False)
    pretrain(PretrainConfig(demos=str(out / task / "demos"), out=str(ck), chunk_size=50, steps=steps,
                            max_episodes=episodes, seed=seed, progress=False))
    return ck


def bc_success(task: str, ck: Path, out: Path, episodes: int) -> float:
    """Deterministic success of the starting BC policy on the runs' first evaluation seeds (cached)."""
    cache = out / task / f"bc_success_{episodes}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["success_rate"]
    from reinflow.envs.factory import make_vector_env
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.evaluate import run_episodes
    agent, _, _ = load_agent(ck)
    envs = make_vector_env(TASKS[task], 10, agent.sampler.act_steps, "sync", {})
    try:
        res = run_episodes(agent, envs, episodes, seed=10_000)  # = the trainer's evaluation seeds for seed 0
    finally:
        envs.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(res))
    return res["success_rate"]


def run_one(task: str, preset: str, seed: int, ck: Path, out: Path, budget: int, args: argparse.Namespace) -> dict:
    """Train until env_steps >= budget (segments of one run; resumed runs continue exactly)."""
    from reinflow.report.logger import read_metrics
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.trainer import train
    run = out / task / preset / f"seed{seed}"
    done_file = run / "bench_done.json"
    if done_file.is_file():
        return json.loads(done_file.read_text())
    cfg = TrainConfig(env=TASKS[task], policy_path=str(ck), out=str(run), seed=seed, progress=False,
                      tensorboard=False, checkpoint_every=10**6, eval_episodes=args.eval_episodes,
                      preset=PRESET_ALIASES.get(preset, preset) if PRESET_ALIASES.get(preset, preset) in PRESETS else None,
                      **recipe(preset))
    if args.parallel_envs:
        cfg = replace(cfg, parallel_envs=args.parallel_envs)
    if args.truncation:
        cfg = replace(cfg, truncation=args.truncation)
    per_iter_max = cfg.parallel_envs * cfg.rollout_steps * 50  # env steps if no episode ends mid-chunk
    iters = max(2, math.ceil(budget / per_iter_max))
    eval_every = max(1, math.ceil(budget / per_iter_max / args.curve_points))
    t0 = time.time()
    res = train(replace(cfg, iterations=iters, eval_every=eval_every, overwrite=True))  # a killed attempt: moved aside
    while res.env_steps < budget:  # episodes ended mid-chunk: fewer env steps per iteration
        per_iter = res.env_steps / res.iterations
        more = max(1, math.ceil((budget - res.env_steps) / per_iter))
        res = train(replace(cfg, iterations=res.iterations + more, eval_every=eval_every, resume=True))
    wall = time.time() - t0
    rows = read_metrics(run / "metrics.jsonl")
    curve = [(r["env_steps"], r["eval/success_rate"]) for r in rows
             if r.get("eval/iteration") == r["iteration"] and r.get("eval/success_rate") is not None]

    def at(frac: float) -> float | None:
        pts = [s for e, s in curve if e <= frac * budget]
        return pts[-1] if pts else None
    col = lambda k: [r[k] for r in rows if r.get(k) is not None]  # noqa: E731
    clip = col("ppo/clip_fraction")
    result = {"task": task, "preset": preset, "seed": seed, "env_steps": res.env_steps, "iterations": res.iterations,
              "final_success": res.final_eval["success_rate"] if res.final_eval else None,
              "success_q1": at(0.25), "success_q2": at(0.5), "curve": curve,
              "best_success": max((v for _, v in curve), default=None),
              # --keep-best: the policy kept at the best evaluation, re-measured on held-out episodes
              "kept_iteration": res.best["iteration"] if res.best else None,
              "kept_heldout_success": res.best["heldout"]["success_rate"] if res.best else None,
              "success_gap_median": float(np.median(col("rollout/success_gap"))) if col("rollout/success_gap") else None,
              "clip_median": float(np.median(clip)), "clip_max": float(np.max(clip)),
              "ratio_min": float(np.min(col("ppo/ratio_min"))), "ratio_max": float(np.max(col("ppo/ratio_max"))),
              "grad_clipped_frac": float(np.mean(col("gradients/policy_clipped"))),
              "epochs_run_mean": float(np.mean(col("ppo/epochs_run"))), "wall_s": wall}
    done_file.write_text(json.dumps(result, indent=2))
    return result


def fmt(xs: list, pct: bool = True) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    if pct:
        return f"{100 * np.mean(xs):.0f} ± {100 * np.std(xs):.0f}" if len(xs) > 1 else f"{100 * xs[0]:.0f}"
    return f"{np.mean(xs):.2f}"


def table(results: list[dict]) -> str:
    lines = ["| task | preset | BC % | final success % (mean ± std) | best % | kept best, held-out % "
             "| success % at ¼ / ½ budget | clip fraction median / max | ratio range | grad-clipped steps "
             "| det − stoch gap | wall (s/run) | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted({(r["task"], r["preset"]) for r in results},
                  key=lambda k: (list(TASKS).index(k[0]), PRESET_ORDER.index(k[1]) if k[1] in PRESET_ORDER else 99))
    for task, preset in keys:
        rs = [r for r in results if r["task"] == task and r["preset"] == preset]
        lines.append(
            f"| {task} | {preset} | {fmt([r.get('bc_success') for r in rs[:1]])} | "
            f"{fmt([r['final_success'] for r in rs])} | {fmt([r.get('best_success') for r in rs])} | "
            f"{fmt([r.get('kept_heldout_success') for r in rs])} | "
            f"{fmt([r['success_q1'] for r in rs])} / {fmt([r['success_q2'] for r in rs])} | "
            f"{np.median([r['clip_median'] for r in rs]):.2f} / {max(r['clip_max'] for r in rs):.2f} | "
            f"[{min(r['ratio_min'] for r in rs):.3g}, {max(r['ratio_max'] for r in rs):.3g}] | "
            f"{np.mean([r['grad_clipped_frac'] for r in rs]):.2f} | {fmt([r.get('success_gap_median') for r in rs])} | "
            f"{np.mean([r['wall_s'] for r in rs]):.0f} | {len(rs)} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = [t for t in TASKS if any(r["task"] == t for r in results)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    labels = list(dict.fromkeys(r["preset"] for r in results))
    colors = {name: plt.cm.tab20(i % 20) for i, name in enumerate(labels)}   # one colour per preset everywhere
    for ax, task in zip(axes[0], tasks):
        for preset in labels:
            rs = [r for r in results if r["task"] == task and r["preset"] == preset]
            if not rs:
                continue
            grid = sorted({e for r in rs for e, _ in r["curve"]})
            if not grid:
                continue
            xs = np.linspace(0, max(grid), 30)
            ys = np.array([np.interp(xs, [e for e, _ in r["curve"]], [s for _, s in r["curve"]]) for r in rs])
            main = preset == "default"
            ax.plot(xs, ys.mean(0), label=preset, color="black" if main else colors[preset], lw=2.5 if main else 1.2,
                    ls="-" if main or "terminal" in preset else "--")
            if len(rs) > 1 and main:
                ax.fill_between(xs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color="black", alpha=0.12)
        ax.set(title=f"{task}: deterministic eval success (default ± std in black)", xlabel="env steps",
               ylabel="success rate", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: list[dict], out: Path, with_plot: bool = True) -> str:
    """results.json, table.md (and the PNG) under ``out``; returns the table."""
    text = table(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "table.md").write_text(text + "\n")
    if with_plot:
        plot(results, out / "success_vs_env_steps.png")
    return text


def collect(out: Path) -> None:
    results = []
    for task in TASKS:
        bc = sorted((out / task).glob("bc_success_*.json"))
        bc_rate = json.loads(bc[-1].read_text())["success_rate"] if bc else None
        for done in sorted((out / task).glob("*/seed*/bench_done.json")):
            results.append(dict(json.loads(done.read_text()), preset=done.parent.parent.name, bc_success=bc_rate))
    print(write_outputs(results, out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["reach", "pick-lift"], choices=list(TASKS))
    p.add_argument("--presets", nargs="+", default=PRESET_ORDER)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--env-steps", type=int, default=200_000, help="env-step budget per run")
    p.add_argument("--eval-episodes", type=int, default=50, help="episodes per evaluation")
    p.add_argument("--curve-points", type=int, default=8, help="evaluations per run (the success curve)")
    p.add_argument("--parallel-envs", type=int, default=None, help="override the presets' parallel envs")
    p.add_argument("--truncation", choices=["auto", "bootstrap", "terminal"], default=None,
                   help="override the presets' time-limit handling (bootstrap: how the arm ran before it declared "
                        "its limit terminal)")
    p.add_argument("--checkpoint", action="append", default=[], help="TASK=PATH: BC checkpoint to start from")
    p.add_argument("--bc-episodes", type=int, default=None)
    p.add_argument("--bc-steps", type=int, default=None)
    p.add_argument("--out", default="runs/bench_recipes")
    p.add_argument("--collect-only", action="store_true",
                   help="train nothing: tabulate every <out>/<task>/<name>/seed*/bench_done.json, labelled <name> "
                        "(folders may be links to other --out runs, e.g. one per truncation mode)")
    args = p.parse_args()
    if args.collect_only:
        return collect(Path(args.out))
    import torch
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = dict(c.split("=", 1) for c in args.checkpoint)
    results = []
    for task in args.tasks:
        ck = Path(given[task]) if task in given else build_bc(task, out, args.bc_episodes, args.bc_steps, 0)
        for preset in args.presets:
            for seed in args.seeds:
                r = dict(run_one(task, preset, seed, ck, out, args.env_steps, args),
                         bc_success=bc_success(task, ck, out, args.eval_episodes))
                results.append(r)
                print(f"{task:9s} {preset:16s} seed {seed}: success {r['final_success']}, clip max "
                      f"{r['clip_max']:.2f}, {r['env_steps']} env steps, {r['wall_s']:.0f}s", flush=True)
                write_outputs(results, out, with_plot=False)     # an interrupted run keeps its rows
    print(write_outputs(results, out))
    print(f"\nwrote {out}/table.md, {out}/results.json, {out}/success_vs_env_steps.png")


if __name__ == "__main__":
    main()
