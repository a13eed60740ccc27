"""MetaWorld MT10: BC from a few scripted demos, then `reinflow train` with its defaults, per task.

Each task runs the user-facing commands in order (printed, and stored with the numbers):

    reinflow demos    --env metaworld:Meta-World/MT1 --env-kwargs '{"env_name": T}' --episodes N
    reinflow pretrain --demos ... --chunk-size 50 --steps S
    reinflow eval     BC   --episodes E --json-out before.json
    reinflow train    --env ... --policy-path BC --iterations I      (every other flag: the defaults)
    reinflow eval     RUN/best --episodes E --json-out after.json     (the kept policy)
    reinflow eval     RUN  --episodes E --json-out final.json            (the final policy)

and appends one JSON line per task to --results (tasks already there are skipped, so a stopped run
continues where it was). ``--markdown`` prints the table of docs/benchmarks.md §1.2 from that file.

    python benchmarks/metaworld_mt10.py --env-steps 100000 --eval-episodes 50
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from reinflow.rl.keep_best import heldout_seed

MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]
ENV = "metaworld:Meta-World/MT1"
# TrainConfig defaults: 10 envs x 8 decisions of a whole 50-step chunk per iteration (at most: a
# chunk cut short by a success executes fewer steps, so a run stays within --env-steps).
STEPS_PER_ITERATION = 10 * 8 * 50


def run(cmd: list[str], log: Path) -> float:
    """Run one reinflow command (output to log); return its wall seconds."""
    print("  $ " + shlex.join(cmd), flush=True)
    t = time.time()
    with log.open("a") as f:
        f.write("$ " + shlex.join(cmd) + "\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"failed ({rc}): {shlex.join(cmd)}; see {log}")
    return time.time() - t


def bench_task(task: str, a: argparse.Namespace, rl_seed: int) -> dict:
    """BC once per task (reused when ``<out>/<task>/bc`` exists), then one fine-tuning run per RL seed.
    Before and after are measured on held-out episodes (seed 20000 + RL seed) that training's
    evaluations never select on; after = the kept best policy (``train/best``) when the run kept one."""
    out = Path(a.out) / task
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    env = ["--env", ENV, "--env-kwargs", json.dumps({"env_name": task, **json.loads(a.env_kwargs)})]
    iterations = max(1, a.env_steps // STEPS_PER_ITERATION)
    run_dir = out / ("train" if rl_seed == a.seed else f"train_s{rl_seed}")
    eval_seed = str(heldout_seed(rl_seed))
    cmds = {
        "demos": ["reinflow", "demos", *env, "--episodes", str(a.demos), "--out", str(out / "demos"),
                  "--seed", str(a.seed), "--no-progress"],
        "pretrain": ["reinflow", "pretrain", "--demos", str(out / "demos"), "--out", str(out / "bc"),
                     "--chunk-size", str(a.chunk_size), "--steps", str(a.bc_steps), "--seed", str(a.seed),
                     "--no-progress"],
        "eval_before": ["reinflow", "eval", str(out / "bc"), "--episodes", str(a.eval_episodes), "--seed", eval_seed,
                        "--json-out", str(run_dir) + "_before.json"],
        "train": ["reinflow", "train", *env, "--policy-path", str(out / "bc"), "--iterations", str(iterations),
                  "--seed", str(rl_seed), "--out", str(run_dir), "--no-progress", *shlex.split(a.train_args)],
    }
    if (out / "bc" / "config.json").is_file():     # BC shared by every RL seed of the task
        del cmds["demos"], cmds["pretrain"]
    seconds = {name: run(cmd, log) for name, cmd in cmds.items()}
    kept = run_dir / "best" if (run_dir / "best" / "config.json").is_file() else run_dir
    cmds["eval_after"] = ["reinflow", "eval", str(kept), "--episodes", str(a.eval_episodes), "--seed", eval_seed,
                          "--json-out", str(run_dir) + "_after.json"]
    seconds["eval_after"] = run(cmds["eval_after"], log)
    # The final policy on the same held-out episodes: how far it fell from the kept one, if at all.
    cmds["eval_final"] = ["reinflow", "eval", str(run_dir), "--episodes", str(a.eval_episodes), "--seed", eval_seed,
                          "--json-out", str(run_dir) + "_final.json"]
    seconds["eval_final"] = run(cmds["eval_final"], log)
    before, after, final = (json.loads(Path(f"{run_dir}_{f}.json").read_text()) for f in ("before", "after", "final"))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evals = [r["eval/success_rate"] for r in rows if r.get("eval/iteration") == r["iteration"]]
    return {"task": task, "rl_seed": rl_seed, "success_before": before["success_rate"],
            "success_after": after["success_rate"], "policy_after": kept.name, "success_final": final["success_rate"],
            "best_selection_success": max(evals, default=None), "last_selection_success": evals[-1] if evals else None,
            "eval_episodes": after["episodes"], "eval_seed": int(eval_seed), "return_before": before["return_mean"],
            "return_after": after["return_mean"], "env_steps": rows[-1]["env_steps"], "iterations": iterations,
            "train_s": seconds["train"], "total_s": sum(seconds.values()), "seconds": seconds,
            "demos": a.demos, "bc_steps": a.bc_steps, "chunk_size": a.chunk_size,
            "commands": {k: shlex.join(v) for k, v in cmds.items()}}


def markdown(results: Path) -> str:
    rows = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    lines = ["| task | success before (BC) | after (kept policy) | change | final policy | env steps | train wall | task wall |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b, f = r["success_before"], r["success_after"]
        name = r["task"] + (f" (RL seed {r['rl_seed']}, {r['policy_after']})" if "rl_seed" in r else "")
        final = f"{100 * r['success_final']:.0f} %" if r.get("success_final") is not None else "–"
        lines.append(f"| {name} | {100 * b:.0f} % | {100 * f:.0f} % | {100 * (f - b):+.0f} pp | {final} | "
                     f"{r['env_steps']:,} | {r['train_s'] / 60:.1f} min | {r['total_s'] / 60:.1f} min |")
    if rows:
        mb = sum(r["success_before"] for r in rows) / len(rows)
        ma = sum(r["success_after"] for r in rows) / len(rows)
        lines.append(f"| **mean of {len(rows)}** | {100 * mb:.1f} % | {100 * ma:.1f} % | {100 * (ma - mb):+.1f} pp | | | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=MT10, help="MetaWorld task names (default: MT10)")
    p.add_argument("--demos", type=int, default=3, help="scripted demos BC trains on")
    p.add_argument("--bc-steps", type=int, default=1000, help="BC gradient steps")
    p.add_argument("--chunk-size", type=int, default=50, help="policy chunk H (executed whole: D = H x 4)")
    p.add_argument("--env-steps", type=int, default=100_000, help="fine-tuning env steps per task")
    p.add_argument("--eval-episodes", type=int, default=50, help="evaluation episodes, before and after")
    p.add_argument("--seed", type=int, default=0, help="seed of demos and BC")
    p.add_argument("--rl-seeds", type=int, nargs="+", default=None, help="fine-tuning seeds (default: --seed)")
    p.add_argument("--env-kwargs", default="{}",
                   help='extra MetaWorld env kwargs (JSON), e.g. \'{"terminate_on_success": false}\' for 500-step episodes')
    p.add_argument("--train-args", default="",
                   help="extra reinflow train flags, e.g. '--algorithm chain-ppo' or '--algorithm dsrl'")
    p.add_argument("--out", default="runs/mt10", help="run folders")
    p.add_argument("--results", default="benchmarks/results/metaworld_mt10.jsonl", help="one JSON line per task")
    p.add_argument("--markdown", action="store_true", help="print the table from --results and exit")
    a = p.parse_args()
    results = Path(a.results)
    if a.markdown:
        print(markdown(results))
        return
    results.parent.mkdir(parents=True, exist_ok=True)
    lines = results.read_text().splitlines() if results.exists() else []
    done = {(r["task"], r.get("rl_seed", a.seed)) for r in map(json.loads, filter(str.strip, lines))}
    for task, rl_seed in ((t, s) for t in a.tasks for s in (a.rl_seeds or [a.seed])):
        if (task, rl_seed) in done:
            print(f"{task} (RL seed {rl_seed}): already in {results}, skipped")
            continue
        print(f"{task} (RL seed {rl_seed}):", flush=True)
        r = bench_task(task, a, rl_seed)
        with results.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"  success {r['success_before']:.2f} -> {r['success_after']:.2f}, {r['env_steps']} env steps, "
              f"{r['total_s'] / 60:.1f} min", flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
