"""Time and memory of the real SmolVLA architecture (450M, random weights, built offline) under reinflow.

Per rollout chunk (encode the prefix once + K-step chain, batch = n envs, no grad) and per PPO
minibatch (encode + chain log-prob + backward, for a trainable preset). Prints a markdown table
with the machine it ran on.

    python benchmarks/smolvla_speed.py --batch 10 --minibatch 10 --presets heads expert

Needs the smolvla extra (see docs/smolvla.md). Peak memory is the process RSS sampled every
5 ms during a phase, minus the RSS before it.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time

import numpy as np
import psutil
import torch


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __init__(self) -> None:
        self.proc = psutil.Process()

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta_gib(self) -> float:
        return (self.peak - self.base) / 2**30


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import lerobot
    return (f"{cpu}; {os.cpu_count()} cores; {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads); lerobot {lerobot.__version__}; "
            f"python {platform.python_version()}")


def spaces(image: int):
    import gymnasium as gym
    img = gym.spaces.Box(0, 255, (image, image, 3), np.uint8)
    obs = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (6,), np.float32), "top": img, "wrist": img})
    return obs, gym.spaces.Box(-1.0, 1.0, (6,), np.float32)


def raw(batch: int, image: int) -> dict:
    rng = np.random.default_rng(0)
    return {"state": rng.normal(size=(batch, 6)).astype(np.float32),
            "top": rng.integers(0, 256, (batch, image, image, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (batch, image, image, 3), dtype=np.uint8)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10, help="envs per rollout chunk")
    ap.add_argument("--minibatch", type=int, default=10, help="PPO minibatch size")
    ap.add_argument("--denoise-steps", type=int, nargs="+", default=[1])
    ap.add_argument("--presets", nargs="+", default=["heads", "expert"])
    ap.add_argument("--image", type=int, default=64, help="env camera size (SmolVLA resizes to 512)")
    ap.add_argument("--act-steps", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from reinflow.flow.chain import build_mask, chain_log_prob, sample_chain
    from reinflow.flow.noise import NoiseHead
    from reinflow.policies.smolvla import build_smolvla_policy
    from reinflow.policies.smolvla.tiny import write_tiny_vlm

    vlm = write_tiny_vlm(tempfile.mkdtemp(prefix="smolvla_real_arch_"), real_sizes=True)
    roll_rows, ppo_rows = [], []
    for k in args.denoise_steps:
        torch.manual_seed(0)
        policy = build_smolvla_policy(*spaces(args.image), vlm_path=str(vlm), denoise_steps=k,
                                      trainable=args.presets[0], instruction="pick up the red cube and lift it")
        head = NoiseHead(policy.noise_feature_dim, 50, 32, per_step=True, sigma_lo=0.08, sigma_hi=0.16)
        mask = build_mask(policy, args.act_steps)
        obs = policy.prepare_obs(raw(args.batch, args.image))
        with PeakRSS() as mem, torch.no_grad():  # rollout cost does not depend on the preset
            t0, c0 = time.perf_counter(), time.process_time()
            ctx = policy.encode(obs)
            t_enc = time.perf_counter() - t0
            s = sample_chain(policy, head, ctx, args.batch, mask)
            roll_rows.append((k, t_enc, time.perf_counter() - t0, time.process_time() - c0, mem.delta_gib))
        del ctx
        mb = {key: v[: args.minibatch] for key, v in obs.items()}
        chain = s.chain[: args.minibatch]
        for preset in args.presets:
            policy.settings.trainable = preset
            policy._apply_preset()
            n = policy.num_parameters()
            opt = torch.optim.AdamW(policy.trainable_parameters() + list(head.parameters()), lr=1e-5)
            with PeakRSS() as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                lp = chain_log_prob(policy, head, policy.encode(mb), chain, mask)
                (-lp.logp.mean()).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                ppo_rows.append((preset, k, n, time.perf_counter() - t0, time.process_time() - c0, mem.delta_gib))
            del opt, lp
        del policy
    print(f"**Machine**: {machine()}\n")
    print(f"SmolVLA real architecture (SmolVLM2-500M sizes, 16 VLM layers, expert width 0.75), random "
          f"weights; 2 cameras {args.image}x{args.image} (resized to 512x512 by SmolVLA), rollout batch "
          f"{args.batch}, PPO minibatch {args.minibatch}, act_steps {args.act_steps}. Wall s on a shared "
          "machine can exceed CPU s / threads; CPU s is the process's CPU time.\n")
    print("| rollout chunk | K | encode wall s | chunk wall s | chunk CPU s | peak +GiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k, te, tr, cr, mr in roll_rows:
        print(f"| batch {args.batch} | {k} | {te:.1f} | {tr:.1f} | {cr:.1f} | {mr:.2f} |")
    print("\n| PPO minibatch (encode + log-prob + backward + AdamW step) | K | params total / trainable "
          "| wall s | CPU s | peak +GiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for preset, k, n, tp, cp, mp in ppo_rows:
        print(f"| {preset}, minibatch {args.minibatch} | {k} | {n['total'] / 1e6:.0f}M / "
              f"{n['trainable'] / 1e6:.1f}M | {tp:.1f} | {cp:.1f} | {mp:.2f} |")


if __name__ == "__main__":
    main()
