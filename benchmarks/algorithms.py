"""Compare the three algorithms (chain-ppo, residual-ppo, dsrl) at equal env steps and equal wall time.

Every algorithm starts from the same BC checkpoint per (task, seed), built as ``reinflow quickstart``
builds it (its demos, BC, chunk and env settings, seeded by the seed: ``quickstart.make_plan``), and runs
``reinflow train``'s defaults for that algorithm with the quickstart's per-env settings (the SO-101's
async envs). The number reported is the kept best policy (``<run>/best``, chosen on 20-episode
selection evaluations every ``--eval-every`` iterations) re-measured on 100 held-out episodes
(deterministic, seed 20000 + seed: the quickstart's), and the BC policy on the same episodes.

* equal env steps (``--env-steps``): an iteration takes at most parallel_envs x rollout_steps x chunk
  env steps (4000 on the arm, 1280 on the SO-101), so a budget B runs B // that iterations and never
  more than B env steps. The PPO
  algorithms get one run per budget (their cosine lr schedule is planned for it); dsrl (constant lr)
  runs once, in segments continued with resume, its kept best measured at the end of each segment.
* equal wall time (``--minutes``): one run per algorithm stopped by ``--time-limit-min``.

    python benchmarks/algorithms.py --task pick-lift --seeds 0 1 2 --env-steps 100000 300000 1000000 \\
        --minutes 10 --out runs/bench_algorithms

Finished runs under ``--out`` are reused (an interrupted benchmark continues). Each result is appended
to ``<out>/results.jsonl`` as it exists, with its wall and CPU seconds (this process and its env
workers); ``<out>/table.md`` is rewritten after each.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from reinflow.quickstart_policies import TASKS as ARM_TASKS  # noqa: E402

ALGORITHMS = ("chain-ppo", "residual-ppo", "dsrl")
TASKS = {**ARM_TASKS, "so101": "lerobot_env_so101/SO101PickPlace-v0"}   # --task: the quickstart's names + the SO-101


@functools.lru_cache(maxsize=None)
def plan(task: str, seed: int):
    """The quickstart's plan for the task: env, env kwargs, demos, BC steps, chunk, per-env train settings
    (made once per task and seed: making it builds the env to read its spaces). Read, never modified."""
    from reinflow.quickstart import KINDS, QuickstartConfig, make_plan
    return make_plan(QuickstartConfig(env=TASKS[task], seed=seed), KINDS["mlp"])


def per_iteration(task: str) -> int:
    """Most env steps an iteration takes: TrainConfig's parallel_envs x rollout_steps x the executed chunk."""
    from reinflow.rl.config import TrainConfig
    return TrainConfig.parallel_envs * TrainConfig.rollout_steps * plan(task, 0).act_steps


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (async env workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def build_bc(task: str, seed: int, out: Path) -> Path:
    """The quickstart's BC checkpoint for (task, seed), built once (a copy of a quickstart's own
    ``pretrain/`` placed there first is used as it is)."""
    from reinflow.bc.pretrain import PretrainConfig, pretrain
    from reinflow.envs.demos import record_demos
    ck = out / task / f"seed{seed}" / "bc"
    if not (ck / "config.json").is_file():
        p = plan(task, seed)
        record_demos(p.env_id, p.demo_episodes, ck.parent / "demos", seed=seed, progress=False, **p.env_kwargs)
        pretrain(PretrainConfig(demos=str(ck.parent / "demos"), out=str(ck), chunk_size=p.chunk_size, denoise_steps=1,
                                steps=p.bc_steps, max_episodes=p.bc_episodes, seed=seed, progress=False))
    return ck


def heldout(task: str, ck: Path, seed: int, episodes: int = 100) -> float:
    """Deterministic success of a checkpoint on the quickstart's held-out episodes (cached beside it)."""
    cache = ck / f"heldout_{episodes}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["success_rate"]
    from reinflow.quickstart import evaluate_agent
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.keep_best import heldout_seed
    p = plan(task, seed)
    agent = load_agent(ck, sampler_overrides={"act_steps": p.act_steps})[0]
    res = evaluate_agent(agent, p.env_id, p.env_kwargs, episodes, heldout_seed(seed), p.settings.train.get("vector", "sync"))
    cache.write_text(json.dumps(res))
    return res["success_rate"]


def train_cfg(task: str, algo: str, seed: int, bc: Path, out: Path, iterations: int, eval_every: int,
              minutes: float | None = None):
    from reinflow.rl.config import TrainConfig
    p = plan(task, seed)
    env = dict(p.settings.train, env=p.env_id, env_kwargs=json.dumps(p.env_kwargs) if p.env_kwargs else "",
               chunk_size=p.chunk_size, act_steps=p.act_steps)
    return TrainConfig(**env | dict(policy_path=str(bc), algorithm=algo, seed=seed, out=str(out), iterations=iterations,
                                    eval_every=eval_every, eval_episodes=20, checkpoint_every=10**6,
                                    time_limit_min=minutes, progress=False, tensorboard=False))


def record(out: Path, row: dict) -> None:
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    (out / "table.md").write_text(table(rows))
    print(json.dumps(row), flush=True)


def done(out: Path) -> set[tuple]:
    path = out / "results.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    return {(r["task"], r["algorithm"], r["seed"], r["kind"], r["budget"]) for r in rows}


def stop_if_signalled(res) -> None:
    """A run cut by SIGINT / SIGTERM ends gracefully inside ``train``; it is no result for its budget, so
    the benchmark stops there instead of recording it and going on (rerun to continue)."""
    if res.stopped_by == "signal":
        raise SystemExit(f"{res.out}: stopped by a signal after {res.iterations} iterations; not recorded")


def run_budgets(task: str, algo: str, seed: int, bc: Path, out: Path, budgets: list[int], eval_every: int) -> None:
    from reinflow.rl.trainer import train
    have = done(out)
    run = out / task / f"seed{seed}" / algo
    for b in sorted(budgets):
        if (task, algo, seed, "env_steps", b) in have:
            continue
        its = max(1, b // per_iteration(task))
        if algo == "dsrl":   # one run, continued: its first `its` iterations are a run planned for b
            first = not (run / "checkpoints").is_dir()
            cfg = train_cfg(task, algo, seed, bc, run, its, eval_every)
            t, c = time.time(), cpu_seconds()
            res = train(cfg if first else replace(cfg, resume=True))
            before = json.loads((run / "wall.json").read_text()) if (run / "wall.json").is_file() else {}
            if not isinstance(before, dict):  # written by the version that kept only the wall
                before = {"wall_s": before}
            wall = before.get("wall_s", 0.0) + time.time() - t
            cpu = before.get("cpu_s", 0.0) + cpu_seconds() - c
            (run / "wall.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}))
        else:
            t, c = time.time(), cpu_seconds()
            res = train(train_cfg(task, algo, seed, bc, run.with_name(f"{algo}_{b}"), its, eval_every))
            wall, cpu = time.time() - t, cpu_seconds() - c
        stop_if_signalled(res)
        best = Path(res.out) / "best"   # measured now: a continued run may replace best/ later
        record(out, {"task": task, "algorithm": algo, "seed": seed, "kind": "env_steps", "budget": b,
                     "env_steps": res.env_steps, "iterations": res.iterations, "wall_s": wall, "cpu_s": cpu,
                     "bc": heldout(task, bc, seed), "kept": heldout(task, best, seed) if best.is_dir() else None,
                     "kept_iteration": (res.best or {}).get("iteration")})


def run_minutes(task: str, algo: str, seed: int, bc: Path, out: Path, minutes: float, eval_every: int) -> None:
    from reinflow.rl.trainer import train
    if (task, algo, seed, "minutes", minutes) in done(out):
        return
    run = out / task / f"seed{seed}" / f"{algo}_{minutes:g}min"
    t, c = time.time(), cpu_seconds()
    res = train(train_cfg(task, algo, seed, bc, run, 10**5, eval_every, minutes))
    stop_if_signalled(res)
    best = run / "best"
    record(out, {"task": task, "algorithm": algo, "seed": seed, "kind": "minutes", "budget": minutes,
                 "env_steps": res.env_steps, "iterations": res.iterations, "wall_s": time.time() - t,
                 "cpu_s": cpu_seconds() - c,
                 "bc": heldout(task, bc, seed), "kept": heldout(task, best, seed) if best.is_dir() else None,
                 "kept_iteration": (res.best or {}).get("iteration")})


def fmt(xs: list) -> str:
    xs = [100 * x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{np.mean(xs):.0f} ± {np.std(xs):.0f}" if len(xs) > 1 else f"{xs[0]:.0f}"


def wall_cpu(rows: list[dict]) -> str:
    """Mean wall / CPU minutes of runs ("wall 2.1 min" where an older row has no CPU figure)."""
    wall = np.mean([r["wall_s"] for r in rows]) / 60
    cpus = [r["cpu_s"] for r in rows if r.get("cpu_s") is not None]
    return f"{wall:.1f} / {np.mean(cpus) / 60:.1f} min" if len(cpus) == len(rows) else f"wall {wall:.1f} min"


def table(rows: list[dict]) -> str:
    """Markdown: kept-best held-out success (mean ± std over seeds) per algorithm and budget."""
    lines = [f"Machine: {platform.node()} ({os.cpu_count()} CPUs seen, shared), {platform.platform()}", "",
             "Kept best, held-out success %; in brackets a run's wall / CPU minutes (env-step budgets) or its env "
             "steps (minute budgets).", ""]
    for kind, unit in (("env_steps", "env steps"), ("minutes", "min wall")):
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        budgets = sorted({r["budget"] for r in part})
        head = " | ".join(f"{b:,} {unit}" if kind == "env_steps" else f"{b:g} {unit}" for b in budgets)
        lines += [f"| task | algorithm | BC % | {head} | seeds |", "|" + " --- |" * (len(budgets) + 4)]
        for task in sorted({r["task"] for r in part}):
            for algo in ALGORITHMS:
                rs = [r for r in part if r["task"] == task and r["algorithm"] == algo]
                if not rs:
                    continue
                cells = []
                for b in budgets:
                    at = [r for r in rs if r["budget"] == b]
                    extra = (f" ({np.mean([r['env_steps'] for r in at]) / 1e3:.0f}k steps)" if kind == "minutes"
                             else f" ({wall_cpu(at)})") if at else ""
                    cells.append(fmt([r["kept"] for r in at]) + extra if at else "")
                seeds = len({r["seed"] for r in rs})
                bc = fmt(list({r["seed"]: r["bc"] for r in rs}.values()))   # one BC per seed
                lines.append(f"| {task} | {algo} | {bc} | {' | '.join(cells)} | {seeds} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="pick-lift", choices=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    p.add_argument("--env-steps", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--minutes", type=float, nargs="*", default=[])
    p.add_argument("--eval-every", type=int, default=5, help="iterations between selection evaluations")
    p.add_argument("--out", default="runs/bench_algorithms")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in a.seeds:
        bc = build_bc(a.task, seed, out)
        for algo in a.algorithms:
            if a.env_steps:
                run_budgets(a.task, algo, seed, bc, out, a.env_steps, a.eval_every)
            for m in a.minutes:
                run_minutes(a.task, algo, seed, bc, out, m, a.eval_every)
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
