"""MetaWorld MT10: BC from a few scripted demos, then `reinflow train` with its defaults, per task.

Each task runs the user-facing commands in order (printed, and stored with the numbers):

    reinflow demos    --env metaworld:Meta-World/MT1 --env-kwargs '{"env_name": T}' --episodes N
    reinflow pretrain --demos ... --chunk-size 50 --steps S
    reinflow eval     BC   --episodes E --json-out before.json
    reinflow train    --env ... --policy-path BC --iterations I      (every other flag: the defaults)
    reinflow eval     RUN  --episodes E --json-out after.json

and appends one JSON line per task to --results (tasks already there are skipped, so a stopped run
continues where it was). ``--markdown`` prints the table of docs/benchmarks.md from that file.

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

MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]
ENV = "metaworld:Meta-World/MT1"
# TrainConfig defaults: 10 envs x 8 decisions of a whole 50-step chunk per iteration.
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


def bench_task(task: str, a: argparse.Namespace) -> dict:
    out = Path(a.out) / task
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    env = ["--env", ENV, "--env-kwargs", json.dumps({"env_name": task})]
    iterations = max(1, a.env_steps // STEPS_PER_ITERATION)
    cmds = {
        "demos": ["reinflow", "demos", *env, "--episodes", str(a.demos), "--out", str(out / "demos"),
                  "--seed", str(a.seed), "--no-progress"],
        "pretrain": ["reinflow", "pretrain", "--demos", str(out / "demos"), "--out", str(out / "bc"),
                     "--chunk-size", str(a.chunk_size), "--steps", str(a.bc_steps), "--seed", str(a.seed),
                     "--no-progress"],
        "eval_before": ["reinflow", "eval", str(out / "bc"), "--episodes", str(a.eval_episodes),
                        "--json-out", str(out / "before.json")],
        "train": ["reinflow", "train", *env, "--policy-path", str(out / "bc"), "--iterations", str(iterations),
                  "--seed", str(a.seed), "--out", str(out / "train"), "--no-progress"],
        "eval_after": ["reinflow", "eval", str(out / "train"), "--episodes", str(a.eval_episodes),
                       "--json-out", str(out / "after.json")],
    }
    seconds = {name: run(cmd, log) for name, cmd in cmds.items()}
    before, after = (json.loads((out / f).read_text()) for f in ("before.json", "after.json"))
    rows = [json.loads(x) for x in (out / "train" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {"task": task, "success_before": before["success_rate"], "success_after": after["success_rate"],
            "eval_episodes": after["episodes"], "return_before": before["return_mean"],
            "return_after": after["return_mean"], "env_steps": rows[-1]["env_steps"], "iterations": iterations,
            "train_s": seconds["train"], "total_s": sum(seconds.values()), "seconds": seconds,
            "demos": a.demos, "bc_steps": a.bc_steps, "chunk_size": a.chunk_size,
            "commands": {k: shlex.join(v) for k, v in cmds.items()}}


def markdown(results: Path) -> str:
    rows = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    lines = ["| task | success before (BC) | after (ReinFlow) | change | env steps | train wall | task wall |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b, f = r["success_before"], r["success_after"]
        lines.append(f"| {r['task']} | {100 * b:.0f} % | {100 * f:.0f} % | {100 * (f - b):+.0f} pp | "
                     f"{r['env_steps']:,} | {r['train_s'] / 60:.1f} min | {r['total_s'] / 60:.1f} min |")
    if rows:
        mb = sum(r["success_before"] for r in rows) / len(rows)
        ma = sum(r["success_after"] for r in rows) / len(rows)
        lines.append(f"| **mean of {len(rows)}** | {100 * mb:.1f} % | {100 * ma:.1f} % | {100 * (ma - mb):+.1f} pp | | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=MT10, help="MetaWorld task names (default: MT10)")
    p.add_argument("--demos", type=int, default=3, help="scripted demos BC trains on")
    p.add_argument("--bc-steps", type=int, default=1000, help="BC gradient steps")
    p.add_argument("--chunk-size", type=int, default=50, help="policy chunk H (executed whole: D = H x 4)")
    p.add_argument("--env-steps", type=int, default=100_000, help="fine-tuning env steps per task")
    p.add_argument("--eval-episodes", type=int, default=50, help="evaluation episodes, before and after")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/mt10", help="run folders")
    p.add_argument("--results", default="benchmarks/results/metaworld_mt10.jsonl", help="one JSON line per task")
    p.add_argument("--markdown", action="store_true", help="print the table from --results and exit")
    a = p.parse_args()
    results = Path(a.results)
    if a.markdown:
        print(markdown(results))
        return
    results.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(x)["task"] for x in results.read_text().splitlines() if x.strip()} if results.exists() else set()
    for task in a.tasks:
        if task in done:
            print(f"{task}: already in {results}, skipped")
            continue
        print(f"{task}:", flush=True)
        r = bench_task(task, a)
        with results.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"  success {r['success_before']:.2f} -> {r['success_after']:.2f}, {r['env_steps']} env steps, "
              f"{r['total_s'] / 60:.1f} min", flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()
