"""Time and memory of the real SmolVLA architecture (450M, random weights, built offline) under reinflow.

Per rollout chunk (``Agent.act``: encode the prefix once + K-step chain, batch = n envs, no grad)
and per PPO update (what the trainer runs: ``pre_update_check`` + ``ppo_update`` with its post-step
KL, on one rollout of ``--rollout-steps`` x ``--batch`` chunks) for each trainable preset, two ways:
re-encoding the prefix in every minibatch (the only way for ``all``), and reusing the rollout's
kept prefix cache (``heads`` / ``expert``: the prefix is frozen). Also checks that the two give the
same log-probs (the pre-update max |ratio - 1| of both paths) and prints markdown tables.

    python benchmarks/smolvla_speed.py --batch 4 --minibatch 4 --presets heads expert        # CPU
    python benchmarks/smolvla_speed.py --device cuda --batch 10 --rollout-steps 8 --minibatch 40 \
        --epochs 5 --presets heads expert all                                              # GPU (seed setting)
    python benchmarks/smolvla_speed.py --tiny                                              # smoke test, seconds
    python benchmarks/smolvla_speed.py --tiny --ratio-table --rollout-steps 4             # invariant 1 by shape

``--ratio-table`` (issue 30): PPO's ratio before any optimizer step at rollout batch ``--batch`` against
update minibatches of 1, ``--batch`` and the whole rollout, in fp32 and bf16 (autocast), as the old
log-probs come from the rollout ("rollout") and recomputed in the update's layout ("update",
``--old-logprob update``); summed log-prob over the executed chunk (D = 300 at chunk 50 x 6), the
prefix kept from the rollout as the trainer does for a frozen encoder. Also the speed of a rollout
chunk and of one update in each precision, and what the recomputation costs.

``--precision fp32|bf16`` (issue 30): rollout and update run as ``reinflow train --precision`` runs them
(``rl.precision.use_numerics`` + ``autocast``; float32 master weights; under bf16 the old log-probs are
recomputed in the update's layout, as ``--old-logprob auto`` does). Memory per precision wants one
fresh process per precision (a second measurement in the same process reuses the first one's freed
memory). ``--keep-contexts``: keep the rollout's per-step prefix caches alive beside their concatenated
copy through the update (ppo.py before issue 30); by default they are dropped once concatenated, as
``ChainPPO.update`` does. ``--jsonl PATH`` appends the process's numbers as one JSON line.

    python benchmarks/smolvla_speed.py --batch 4 --rollout-steps 2 --minibatch 4 --presets heads \
        --no-reencode --threads 1 --precision bf16 [--keep-contexts] --jsonl OUT.jsonl   # one process each

Needs the smolvla extra (see docs/smolvla.md). CPU peak memory is the process RSS sampled every
5 ms during a phase, minus the RSS before it; on CUDA it is torch's peak allocated memory. The
update's phase starts before the rollout's contexts are concatenated (its delta holds the copy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import torch


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread (CUDA: torch's peak
    allocated memory during the phase, absolute)."""

    def __init__(self, device: str = "cpu") -> None:
        self.proc = psutil.Process()
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> "PeakRSS":
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
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
        if self.cuda:
            torch.cuda.synchronize()
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta_gib(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**30
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
    if torch.cuda.is_available():
        cpu = f"{torch.cuda.get_device_name()} (host {cpu})"
    return (f"{cpu}; {os.cpu_count()} cores; {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads); lerobot {lerobot.__version__}; "
            f"python {platform.python_version()}")


def spaces(image: int):
    import gymnasium as gym
    img = gym.spaces.Box(0, 255, (image, image, 3), np.uint8)
    obs = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (6,), np.float32), "top": img, "wrist": img})
    return obs, gym.spaces.Box(-1.0, 1.0, (6,), np.float32)


def raw(batch: int, image: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"state": rng.normal(size=(batch, 6)).astype(np.float32),
            "top": rng.integers(0, 256, (batch, image, image, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (batch, image, image, 3), dtype=np.uint8)}


class Timer:
    """Wall and process-CPU seconds of a phase (synchronising CUDA at both ends)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> "Timer":
        if self.cuda:
            torch.cuda.synchronize()
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0


def rollout(agent, args) -> tuple[list, list, list]:
    """``--rollout-steps`` chunks of ``--batch`` envs: (prepared obs, ActResults, per-chunk rows)."""
    obs, acts, rows = [], [], []
    for t in range(args.rollout_steps):
        o = agent.policy.prepare_obs(raw(args.batch, args.image, seed=t))
        with PeakRSS(args.device) as mem, Timer(args.device) as tm, torch.no_grad():
            # one CPU generator per env, as the trainer does (noise drawn on CPU, then moved to the device)
            res = agent.act(o, generator=[torch.Generator().manual_seed(1000 * t + i) for i in range(args.batch)])
        obs.append(o)
        acts.append(res)
        rows.append((tm.wall, tm.cpu, mem.delta_gib))
    return obs, acts, rows


def split_context(ctx, sizes: list[int]) -> list:
    """Per-step views of a concatenated context (the inverse of ``cat_contexts``, without a copy)."""
    if isinstance(ctx, torch.Tensor):
        return list(ctx.split(sizes))
    if isinstance(ctx, dict):
        parts = {k: split_context(v, sizes) for k, v in ctx.items()}
        return [{k: parts[k][i] for k in ctx} for i in range(len(sizes))]
    if isinstance(ctx, (list, tuple)):
        parts = [split_context(v, sizes) for v in ctx]
        return [type(ctx)(p[i] for p in parts) for i in range(len(sizes))]
    return [ctx] * len(sizes)


def one_update(agent, obs, acts, args, reuse: bool) -> dict:
    """The trainer's update on this rollout, as ``ChainPPO.update`` runs it: pre-update check, the batch
    (kept contexts concatenated, then the per-step ones dropped unless ``--keep-contexts``), ppo_update
    (epochs x minibatches, post-step KL; bf16 or a GPU: old log-probs recomputed in the update's layout).
    Weights are restored afterwards so every measured update starts from the rollout's."""
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.context import cat_contexts, context_nbytes
    from reinflow.rl.algorithms.ppo import Batch, cat_obs, ppo_update, pre_update_check, relayout_from_start

    dev = acts[0].chain.device
    trainable = [p for p in agent.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in trainable]
    n = args.batch * args.rollout_steps
    gen = torch.Generator().manual_seed(0)
    adv, ret = torch.randn(n, generator=gen).to(dev), torch.randn(n, generator=gen).to(dev)
    cfg = TrainConfig(update_epochs=args.epochs, minibatch_size=args.minibatch, target_kl=1e9)  # no early stop
    relayout = relayout_from_start("auto", dev, args.precision)   # ChainPPO's --old-logprob auto
    actor_opt = torch.optim.AdamW(agent.actor_parameters(), lr=1e-5)
    critic_opt = torch.optim.AdamW(agent.critic_parameters(), lr=1e-4)
    with PeakRSS(args.device) as mem, Timer(args.device) as tm:
        ctxs = [a.context for a in acts] if reuse else None   # the rollout's list (Rollout.contexts)
        ratio_dev = pre_update_check(agent, obs[0], acts[0].chain, acts[0].logp, ctxs[0] if reuse else None)
        batch = Batch(obs=cat_obs(obs), chains=torch.cat([a.chain for a in acts]), logp=torch.cat([a.logp for a in acts]),
                      advantages=adv, returns=ret, values=torch.cat([a.value for a in acts]),
                      weights=torch.ones(n, device=dev), context=cat_contexts(ctxs) if reuse else None)
        if reuse and not args.keep_contexts:   # roll.contexts = None; del ctxs
            for a in acts:
                a.context = None
            del ctxs
        upd = ppo_update(agent, actor_opt, critic_opt, batch, cfg, True, gen, relayout=relayout)
    with torch.no_grad():
        for p, s in zip(trainable, saved):
            p.copy_(s)
    if reuse and not args.keep_contexts:   # later updates of this process read views of the batch's copy
        for a, c in zip(acts, split_context(batch.context, [a.chain.shape[0] for a in acts])):
            a.context = c
    kept = context_nbytes(batch.context) / n if reuse else 0.0
    return {"wall": tm.wall, "cpu": tm.cpu, "mem": mem.delta_gib, "ratio_dev": ratio_dev, "bytes_per_sample": kept,
            "epochs": upd["ppo/epochs_run"], "first_minibatch_dev": upd["ppo/first_minibatch_ratio_max_dev"]}


def maxrss_gib() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10, help="envs per rollout chunk")
    ap.add_argument("--rollout-steps", type=int, default=1, help="chunks per env in the rollout the update trains on")
    ap.add_argument("--minibatch", type=int, default=10, help="PPO minibatch size")
    ap.add_argument("--epochs", type=int, default=1, help="PPO epochs per update")
    ap.add_argument("--denoise-steps", type=int, default=1)
    ap.add_argument("--presets", nargs="+", default=["heads", "expert"], choices=["heads", "expert", "all"])
    ap.add_argument("--no-reencode", action="store_true", help="time only the kept-prefix path (heads/expert)")
    ap.add_argument("--image", type=int, default=64, help="env camera size (SmolVLA resizes to 512)")
    ap.add_argument("--act-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--tiny", action="store_true", help="the tiny offline backbone instead of the real sizes (smoke test)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--ratio-table", action="store_true", help="max |ratio - 1| before any step by shape and precision")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="numerics of rollout and update, as reinflow train --precision (not with --ratio-table: both)")
    ap.add_argument("--keep-contexts", action="store_true",
                    help="keep the per-step prefix caches alive beside their concatenated copy (ppo.py before issue 30)")
    ap.add_argument("--jsonl", default=None, help="append this process's numbers as one JSON line to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch.cuda.is_available() is False")

    from reinflow.policies.smolvla import build_smolvla_policy
    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    from reinflow.rl.agent import Agent, SamplerConfig

    vlm = write_tiny_vlm(tempfile.mkdtemp(prefix="smolvla_arch_"), real_sizes=not args.tiny)
    presets = sorted(args.presets, key=["heads", "expert", "all"].index)
    torch.manual_seed(0)
    policy = build_smolvla_policy(*spaces(args.image), vlm_path=str(vlm), denoise_steps=args.denoise_steps,
                                  trainable=presets[0], instruction="pick up the red cube and lift it",
                                  device=args.device)
    agent = Agent(policy, SamplerConfig(act_steps=args.act_steps, reduction="mean", logprob_clamp=1.0,
                                        mask_executed=True, sigma_lo=0.08, sigma_hi=0.16,
                                        constant_sigma=False, noise_basis=0, initial_noise="sample",
                                        initial_noise_seed=0)).to(args.device)
    if args.ratio_table:
        return ratio_table(policy, args)
    from reinflow.rl.precision import autocast, use_numerics

    mem = {"weights_gib": sum(t.numel() * t.element_size() for t in [*agent.parameters(), *agent.buffers()]) / 2**30,
           "weights_dtype": sorted({str(p.dtype).removeprefix("torch.") for p in agent.parameters()}),
           "maxrss_build_gib": maxrss_gib()}
    with use_numerics(args.precision, args.device), autocast(args.precision, args.device):   # as the trainer
        obs, acts, roll_rows = rollout(agent, args)  # the rollout's cost does not depend on the preset
        mem["maxrss_rollout_gib"] = maxrss_gib()
        upd_rows = []
        for preset in presets:
            policy.settings.trainable = preset
            policy._apply_preset()
            paths = ([] if args.no_reencode and policy.frozen_encoder else [False]) + ([True] if policy.frozen_encoder else [])
            for reuse in paths:
                upd_rows.append((preset, reuse, policy.num_parameters(), one_update(agent, obs, acts, args, reuse)))
    mem["maxrss_gib"] = maxrss_gib()
    report(args, roll_rows, upd_rows, mem)
    out = {"rollout": roll_rows, "updates": upd_rows, "memory": mem}
    if args.jsonl:
        rec = {"argv": argv if argv is not None else sys.argv[1:], "machine": machine(),
               "loadavg_1m": os.getloadavg()[0],
               "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
               "precision": args.precision, "keep_contexts": args.keep_contexts,
               "tiny": args.tiny, "batch": args.batch, "rollout_steps": args.rollout_steps,
               "minibatch": args.minibatch, "epochs": args.epochs, **mem,
               "rollout_wall_s": [r[0] for r in roll_rows], "rollout_cpu_s": [r[1] for r in roll_rows],
               "rollout_peak_delta_gib": [r[2] for r in roll_rows],
               "updates": [{"preset": p, "prefix": "kept" if reuse else "re-encoded", **r} for p, reuse, _, r in upd_rows]}
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return out


def ratio_table(policy, args) -> dict:
    """Per precision: a rollout at batch ``--batch``, then max |ratio - 1| over every minibatch of the first
    epoch, before any optimizer step, computed as PPO computes it (grad enabled, the update's shape)."""
    from reinflow.rl.agent import Agent, SamplerConfig
    from reinflow.rl.algorithms.ppo import Batch, cat_obs, index_obs, relayout_old_logp
    from reinflow.rl.context import cat_contexts, index_context
    from reinflow.rl.precision import autocast

    agent = Agent(policy, SamplerConfig(act_steps=args.act_steps, reduction="sum", logprob_clamp=None, mask_executed=True,
                                        sigma_lo=0.08, sigma_hi=0.16, constant_sigma=False, noise_basis=0,
                                        initial_noise="sample", initial_noise_seed=0)).to(args.device)
    n = args.batch * args.rollout_steps
    sizes = sorted({1, args.batch, n})
    out: dict = {"sizes": sizes, "rows": []}
    first_logp = {}
    for precision in ("fp32", "bf16"):
        with autocast(precision, args.device):
            obs, acts, roll = rollout(agent, args)
            first_logp[precision] = acts[0].logp.double()
            for old, prefix in (("rollout", "kept"), ("update", "kept"), ("rollout", "re-encoded"), ("update", "re-encoded")):
                for mb in sizes:
                    batch = Batch(obs=cat_obs(obs), chains=torch.cat([a.chain for a in acts]),
                                  logp=torch.cat([a.logp for a in acts]), advantages=torch.zeros(n),
                                  returns=torch.zeros(n), values=torch.zeros(n), weights=torch.ones(n),
                                  context=cat_contexts([a.context for a in acts]) if prefix == "kept" else None)
                    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(batch.chains.device)
                    with Timer(args.device) as t_re:
                        shift = relayout_old_logp(agent, batch, perm, mb) if old == "update" else 0.0
                    dev = 0.0
                    with Timer(args.device) as t_up:
                        for start in range(0, n, mb):   # as ppo_update: grad on, the minibatch's shape
                            idx = perm[start:start + mb]
                            ctx = None if batch.context is None else index_context(batch.context, idx)
                            lp, v = agent.evaluate(index_obs(batch.obs, idx), batch.chains[idx], ctx)
                            dev = max(dev, float((torch.exp(lp.logp.detach() - batch.logp[idx]) - 1).abs().max()))
                            (lp.logp.sum() + v.sum()).backward()   # an epoch's forward + backward, for the cost
                    agent.zero_grad(set_to_none=True)
                    out["rows"].append({"precision": precision, "old_logprob": old, "prefix": prefix, "minibatch": mb,
                                        "max_dev": dev,
                                        "shift": shift, "relayout_s": t_re.wall, "epoch_s": t_up.wall,
                                        "rollout_chunk_s": float(np.mean([r[0] for r in roll]))})
    print(f"**Machine**: {machine()}; device {args.device}\n")
    print(f"SmolVLA {'tiny random backbone' if args.tiny else 'real architecture, random weights'}, preset "
          f"{policy.settings.trainable} (prefix kept from the rollout), rollout {args.rollout_steps} x batch {args.batch} "
          f"= {n} chains, summed log-prob over D = {agent.num_dims}; max |ratio - 1| over the first epoch's "
          "minibatches before any optimizer step.\n")
    print("| precision | prefix in the update | old log-probs | " + " | ".join(f"minibatch {m}" for m in sizes)
          + " | recomputed − rollout, max nats |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in sizes) + " | --- |")
    keys = {(r["precision"], r["prefix"], r["old_logprob"]) for r in out["rows"]}
    for key in sorted(keys, key=lambda k: (k[0] == "bf16", k[1] != "kept", k[2])):
        rs = [r for r in out["rows"] if (r["precision"], r["prefix"], r["old_logprob"]) == key]
        shift = f"{max(r['shift'] for r in rs):.2g}" if key[2] == "update" else ""
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{r['max_dev']:.2g}" for r in rs) + f" | {shift} |")
    diff = float((first_logp["bf16"] - first_logp["fp32"]).abs().max())
    out["bf16_vs_fp32_logp"] = diff
    print(f"\nbf16 reached the model: the first rollout chunk's log-probs differ from fp32's by up to {diff:.3g} nats "
          "(same noise).")
    print(f"\n| precision | rollout chunk s (batch {args.batch}) | epoch fwd+bwd s (minibatch {n}) | recompute s (no grad) |")
    print("| --- | --- | --- | --- |")
    for precision in ("fp32", "bf16"):
        r = next(r for r in out["rows"] if r["precision"] == precision and r["old_logprob"] == "update"
                 and r["minibatch"] == n and r["prefix"] == "kept")
        print(f"| {precision} | {r['rollout_chunk_s']:.2f} | {r['epoch_s']:.2f} | {r['relayout_s']:.2f} |")
    return out


def report(args, roll_rows: list, upd_rows: list, memory: dict) -> None:
    size = "tiny random backbone (smoke test)" if args.tiny else \
        "real architecture (SmolVLM2-500M sizes, 16 VLM layers, expert width 0.75), random weights"
    mem = "peak GPU GiB" if args.device.startswith("cuda") else "peak +GiB"
    print(f"**Machine**: {machine()}; device {args.device}\n")
    print(f"SmolVLA {size}; 2 cameras {args.image}x{args.image} (resized by SmolVLA to its vision size), "
          f"rollout {args.rollout_steps} x batch {args.batch}, PPO minibatch {args.minibatch} x {args.epochs} epoch(s), "
          f"K = {args.denoise_steps}, chunk 50, act_steps {args.act_steps}, precision {args.precision} (weights "
          f"{'/'.join(memory['weights_dtype'])}, {memory['weights_gib']:.2f} GiB), per-step contexts "
          f"{'kept beside their concatenated copy' if args.keep_contexts else 'dropped once concatenated'}. "
          "CPU s is the process's CPU time.\n")
    print(f"Process peak RSS (ru_maxrss): {memory['maxrss_build_gib']:.2f} GiB after the build, "
          f"{memory['maxrss_rollout_gib']:.2f} after the rollout, {memory['maxrss_gib']:.2f} GiB at the end.\n")
    print(f"| rollout chunk (Agent.act, batch {args.batch}) | wall s | CPU s | {mem} |")
    print("| --- | --- | --- | --- |")
    wall, cpu = (float(np.mean([r[i] for r in roll_rows])) for i in range(2))
    peak = max(r[2] for r in roll_rows)
    print(f"| mean of {len(roll_rows)} | {wall:.2f} | {cpu:.2f} | {peak:.3f} |")
    print("\n| update (pre-update check + ppo_update) | prefix | params total / trainable | wall s | CPU s "
          f"| {mem} | kept MB/sample | pre-update max abs(ratio-1) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = {p: r["wall"] for p, reuse, _, r in upd_rows if not reuse}
    for preset, reuse, n, r in upd_rows:
        speed = f"{base[preset] / r['wall']:.2f}x" if reuse and preset in base else ""
        print(f"| {preset} | {'kept from rollout' if reuse else 're-encoded'} | {n['total'] / 1e6:.0f}M / "
              f"{n['trainable'] / 1e6:.1f}M | {r['wall']:.2f} | {r['cpu']:.2f} | {r['mem']:.3f} | "
              f"{r['bytes_per_sample'] / 2**20:.2f} | {r['ratio_dev']:.3g} | {speed} |")


if __name__ == "__main__":
    main()
