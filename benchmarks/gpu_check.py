"""The GPU path in one command (issue 30, item 6): short ``reinflow train --device cuda`` runs on the arm
(MLP flow policy) and on SmolVLA (real architecture, random weights, the seed's 10 envs x chunk 50), in
fp32 and bf16, then the ratio table of ``smolvla_speed.py --ratio-table``. Prints speed, peak GPU memory
and max |ratio - 1| before any step; exits 1 on any invariant break (a run stopped by InvariantError,
a first-minibatch ratio past 1e-5, or the recomputed old log-probs not giving ratio 1).

    python benchmarks/gpu_check.py                        # one GPU, sized for < 8 min (NOT RUN YET on a GPU)
    python benchmarks/gpu_check.py --device cpu --tiny    # its logic on a CPU in ~2 min (tiny settings)

The train runs go through ``reinflow.cli.main`` in this process, so the rollout, GAE, PPO update,
evaluation and checkpoint of the real trainer all run on the device (the crash issue 30 found was in
code ``smolvla_speed.py`` bypasses).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

TOL = 1e-5  # reinflow.constants.PRE_UPDATE_TOL (kept literal: this script states its own pass mark)


def _speed_module():
    spec = importlib.util.spec_from_file_location("smolvla_speed", Path(__file__).with_name("smolvla_speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_run(name: str, argv: list[str], device: str, root: Path) -> dict:
    """One ``reinflow train`` in this process; its speed, memory and invariant metrics."""
    from reinflow.cli import main
    from reinflow.report.logger import read_metrics
    out = root / name
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    code = main(["train", *argv, "--device", device, "--on-unhealthy", "stop", "--no-progress", "--no-tensorboard",
                 "--eval-every", "0", "--out", str(out)])
    wall = time.perf_counter() - t0
    rows = read_metrics(out / "metrics.jsonl") if (out / "metrics.jsonl").exists() else []
    def mx(k: str) -> float:
        return max((r[k] for r in rows if r.get(k) is not None), default=float("nan"))

    def mean(k: str) -> float:
        return sum(r[k] for r in rows) / len(rows) if rows else float("nan")
    res = {"name": name, "exit": code, "iterations": len(rows), "wall_s": wall,
           "rollout_s": mean("time/rollout_s"), "update_s": mean("time/update_s"),
           "env_steps_per_s": mean("time/env_steps_per_s"),
           "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan"),
           "pre_update_dev": mx("ppo/pre_update_ratio_max_dev"), "first_minibatch_dev": mx("ppo/first_minibatch_ratio_max_dev"),
           "relayout_shift": mx("ppo/old_logprob_relayout_shift")}
    res["ok"] = code == 0 and len(rows) > 0 and res["first_minibatch_dev"] <= TOL and res["pre_update_dev"] <= TOL
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny SmolVLA backbone and few envs (a CPU smoke test)")
    ap.add_argument("--iterations", type=int, default=None, help="PPO iterations per train run (default 3; tiny 1)")
    ap.add_argument("--json-out", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: device=cuda: torch.cuda.is_available() is False; use --device cpu --tiny for a CPU smoke test")
        return 2
    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    root = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    envs, iters = ("2", args.iterations or 1) if args.tiny else ("10", args.iterations or 3)
    card = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"gpu_check: device {args.device} ({card}), torch {torch.__version__}, {'tiny' if args.tiny else 'full'} "
          f"settings, {iters} iterations per run; NOT a timing of record unless run on a GPU", flush=True)
    arm = ["--env", "reinflow/ArmPickLift-v0", "--parallel-envs", envs, "--iterations", str(iters),
           "--eval-episodes", envs]
    vlm = write_tiny_vlm(root / "vlm", real_sizes=not args.tiny)
    smol = ["--env", "reinflow/ArmPickLift-v0", "--policy", "smolvla", "--vlm-path", str(vlm), "--parallel-envs", envs,
            "--chunk-size", "50", "--rollout-steps", "2", "--minibatch-size", "10" if not args.tiny else "2",
            "--update-epochs", "2", "--iterations", str(max(iters - 1, 1)), "--eval-episodes", envs]
    runs = []
    for name, a in (("arm fp32", arm), ("arm bf16", arm), ("smolvla fp32", smol), ("smolvla bf16", smol)):
        prec = name.split()[1]
        runs.append(train_run(name.replace(" ", "_"), [*a, "--precision", prec], args.device, root))
        r = runs[-1]
        print(f"  {name}: exit {r['exit']}, {r['iterations']} it, {r['wall_s']:.1f} s", flush=True)
    ratio = _speed_module().main(["--ratio-table", "--device", args.device, "--batch", envs, "--rollout-steps",
                                  "2" if args.tiny else "4", *(["--tiny"] if args.tiny else [])])
    fixed = [r for r in ratio["rows"] if r["old_logprob"] == "update"]
    ratio_ok = all(r["max_dev"] <= TOL for r in fixed)
    print(f"\n**Card**: {card}\n")
    print("| run | exit | iterations | rollout s/it | update s/it | env steps/s | peak GPU GiB | pre-update max abs(ratio-1) "
          "| first-minibatch max abs(ratio-1) | old log-prob shift (nats) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in runs:
        print(f"| {r['name']} | {r['exit']} | {r['iterations']} | {r['rollout_s']:.2f} | {r['update_s']:.2f} | "
              f"{r['env_steps_per_s']:.0f} | {r['peak_gib']:.2f} | {r['pre_update_dev']:.2g} | "
              f"{r['first_minibatch_dev']:.2g} | {r['relayout_shift']:.2g} |")
    bad = [r["name"] for r in runs if not r["ok"]] + ([] if ratio_ok else ["ratio table: recomputed old log-probs"])
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"card": card, "runs": runs, "ratio": ratio}, indent=1))
    print("\nOK: every invariant held" if not bad else f"\nFAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
