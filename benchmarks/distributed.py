"""1 vs N data-parallel processes (torchrun, gloo on CPU / nccl on GPUs).

  python benchmarks/distributed.py [--nprocs 1 2] [--env reinflow/ArmReach-v0] [--iterations 6]

Each configuration is a real `reinflow train --nproc N` run with the same per-rank settings
(so env steps per iteration grow with N). Reports env steps/s over all ranks (rollout phase),
update samples/s (all ranks' samples / update time) and wall time per iteration, from the
run's own metrics.jsonl (first iteration dropped as warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from throughput import machine  # noqa: E402


def run(nproc: int, args: argparse.Namespace, out: Path) -> dict:
    cmd = [sys.executable, "-m", "reinflow", "train", "--env", args.env, "--iterations", str(args.iterations),
           "--parallel-envs", str(args.envs), "--rollout-steps", str(args.rollout_steps), "--chunk-size", "50",
           "--eval-every", "0", "--eval-episodes", "1", "--no-progress", "--no-tensorboard", "--nproc", str(nproc),
           "--check-sync", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()][1:]
    samples = args.envs * args.rollout_steps * nproc
    upd = sum(r["time/update_s"] for r in rows) / len(rows)
    roll = sum(r["time/rollout_s"] for r in rows) / len(rows)
    steps = (rows[-1]["env_steps"] - rows[0]["env_steps"]) / max(len(rows) - 1, 1)
    return {"nproc": nproc, "env_steps_per_s": steps / roll, "update_samples_per_s": samples / upd,
            "s_per_iteration": roll + upd, "max_param_diff": max(r["dist/param_max_abs_diff"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--env", default="reinflow/ArmReach-v0")
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--rollout-steps", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=6)
    args = ap.parse_args()
    print(machine() + "\n")
    print(f"env {args.env}, {args.envs} envs per rank x {args.rollout_steps} chunks of 50, MLP policy, D = 300\n")
    print("| processes | env steps/s (all ranks) | update samples/s | s per iteration | max param diff across ranks |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nprocs:
            r = run(n, args, Path(tmp) / f"n{n}")
            print(f"| {n} | {r['env_steps_per_s']:,.0f} | {r['update_samples_per_s']:,.0f} | {r['s_per_iteration']:.2f} "
                  f"| {r['max_param_diff']:g} |", flush=True)


if __name__ == "__main__":
    main()
