"""Check docs/design.md §4's scaling law on the library's own chain: how the PPO log-ratio spreads
after one optimizer step, as a function of the chain dimension D.

For D in {28, 75, 150, 300, 600} (chunk H x action dims A, K = 1) and one fixed Adam step size, each
variant builds a fresh ``MLPFlowPolicy`` + ``Agent``, samples chains for a batch of random
observations (``Agent.act``), takes ONE Adam step on the PPO clipped surrogate with random
advantages (log-probs from ``Agent.evaluate``, the trainer's likelihood), recomputes the log-probs of
the same stored chains and reports:

* ``std`` / ``mean`` of log pi_new - log pi_old (as it enters the ratio: summed, or averaged),
* the clip fraction |r - 1| > eps for eps = 0.05 and 0.2 (the trainer's definition),
* ``delta``: the RMS over masked entries of mu_new - mu_old (mu from the deterministic ODE step of
  the same x_0, ``Agent.act(deterministic=True, x0=...)``), i.e. the per-dimension mean shift,
* ``pred``: the Gaussian identity's std sqrt(E||delta||^2)/sigma (divided by D for the mean
  reduction) = sqrt(D)*delta/sigma, from the measured delta,
* ``rule``: docs/design.md §4's rule of thumb, the D = 28 measurement of the same variant scaled by sqrt(D/28)
  (sum) or sqrt(28/D) (mean) and by the variant's sigma / lr factors - it assumes the optimizer fixes
  delta independently of D,
* ``KL``: the sample estimate mean(log pi_old - log pi_new) of the summed log-probs vs the prediction
  E||delta||^2 / (2 sigma^2).

Variants: (a) sum, sigma fixed 0.1; (b) sum, sigma = 0.1 sqrt(D/28); (c) sum, sigma 0.1, lr x sqrt(28/D);
(d) mean reduction, sigma 0.1; (e) sum with the learned bounded sigma in [0.08, 0.16] (the seed regime:
the noise head moves too). sigma is constant (``constant_sigma``) in (a)-(d), so only the mean moves.

    OMP_NUM_THREADS=1 python benchmarks/scaling_law.py --seeds 0 1 2 3 4 --out runs/bench_scaling_law
    python benchmarks/scaling_law.py --warm-steps 20   # one step of an Adam that has already taken 20

Writes ``<out>/results.json``, ``<out>/table.md`` and ``--png`` (default docs/img/scaling_law.png).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reinflow.flow.scaling import predicted_clip_fraction  # noqa: E402
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig  # noqa: E402
from reinflow.rl.agent import Agent, SamplerConfig  # noqa: E402

SHAPES = {28: (4, 7), 75: (15, 5), 150: (25, 6), 300: (50, 6), 600: (50, 12)}   # D: (H, A)
D_REF = 28
SIGMA = 0.1
VARIANTS = {
    "a": "sum, sigma fixed",
    "b": "sum, sigma x sqrt(D/28)",
    "c": "sum, lr x sqrt(28/D)",
    "d": "mean reduction",
    "e": "sum, learned sigma in [0.08, 0.16]",
}
EPS = (0.05, 0.2)


def build(variant: str, dim: int, obs_dim: int, hidden: list[int], seed: int) -> tuple[Agent, float]:
    """Fresh agent for (variant, D); returns it and the sigma the predictions use."""
    torch.manual_seed(seed)
    h, a = SHAPES[dim]
    policy = MLPFlowPolicy(MLPPolicyConfig(obs_dim=obs_dim, action_dim=a, chunk_size=h, denoise_steps=1,
                                           hidden=list(hidden)))
    sigma = SIGMA * math.sqrt(dim / D_REF) if variant == "b" else SIGMA
    if variant == "e":
        sampler = SamplerConfig(act_steps=h, reduction="sum", sigma_lo=0.08, sigma_hi=0.16,
                                mask_executed=True, logprob_clamp=None,
                                constant_sigma=False, noise_basis=0, initial_noise="sample", initial_noise_seed=0)
    else:
        sampler = SamplerConfig(act_steps=h, reduction="mean" if variant == "d" else "sum",
                                sigma_lo=sigma, sigma_hi=sigma,
                                constant_sigma=True, mask_executed=True, logprob_clamp=None, noise_basis=0,
                                initial_noise="sample", initial_noise_seed=0)
    return Agent(policy, sampler), sigma


def surrogate_step(agent: Agent, opt: torch.optim.Optimizer, obs: torch.Tensor, gen: torch.Generator,
                   clip: float) -> dict:
    """Sample chains, one Adam step on the clipped surrogate with N(0,1) advantages; log-ratio stats."""
    with torch.no_grad():
        chain = agent.act(obs, generator=gen).chain
        held = agent.act(obs, generator=gen).chain                # fresh chains, not in the gradient
        old, _ = agent.evaluate(obs, chain)
        old_h, _ = agent.evaluate(obs, held)
        mu_old = agent.act(obs, deterministic=True, x0=held[:, 0]).chain[:, 1]
    adv = torch.randn(obs.shape[0], generator=gen, dtype=torch.float64)[:, None]
    new, _ = agent.evaluate(obs, chain)
    ratio = torch.exp(new.logp - old.logp)
    loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
    before = [p.detach().clone() for p in agent.actor_parameters()]
    opt.zero_grad(set_to_none=True)
    loss.float().backward()
    opt.step()
    with torch.no_grad():
        new, _ = agent.evaluate(obs, chain)
        new_h, _ = agent.evaluate(obs, held)
        mu_new = agent.act(obs, deterministic=True, x0=held[:, 0]).chain[:, 1]
        sig = agent.noise_head(agent.policy.velocity(held[:, 0], torch.zeros(obs.shape[0]),
                                                     agent.policy.encode(obs)).noise_features)
    m = agent.mask.double()
    d2 = (((mu_new - mu_old).double() ** 2) * m).sum((-1, -2))                  # ||delta_b||^2, [B]
    # ||delta_b / sigma_b||^2 with the sigma in force (constant, or the learned head's after the step)
    z2 = ((((mu_new - mu_old).double() / sig.double()) ** 2) * m).sum((-1, -2))
    lr_ = (new.logp - old.logp)[:, 0]                   # log-ratio as PPO sees it, on the chains it stepped on
    lr_h = (new_h.logp - old_h.logp)[:, 0]              # ... on held-out chains of the same old policy
    dtot = new_h.total - old_h.total                    # summed, held out: E[-dtot] = KL(old || new)
    steps = [(p.detach() - b) for p, b in zip(agent.actor_parameters(), before)]
    moved = sum(int((s != 0).sum()) for s in steps)
    return {"std": float(lr_.std()), "mean": float(lr_.mean()), "std_held": float(lr_h.std()),
            "mean_held": float(lr_h.mean()),
            **{f"clip_{e}": float(((lr_.exp() - 1).abs() > e).double().mean()) for e in EPS},
            **{f"clip_held_{e}": float(((lr_h.exp() - 1).abs() > e).double().mean()) for e in EPS},
            "delta": float(math.sqrt(d2.mean() / m.sum())), "z2": float(z2.mean()),
            "kl": float(-dtot.mean()), "step_norm": float(math.sqrt(sum(float((s ** 2).sum()) for s in steps))),
            "params_moved": moved}


def run_one(variant: str, dim: int, seed: int, args: argparse.Namespace) -> dict:
    agent, sigma = build(variant, dim, args.obs_dim, args.hidden, seed)
    lr = args.lr * (math.sqrt(D_REF / dim) if variant == "c" else 1.0)
    opt = torch.optim.Adam(agent.actor_parameters(), lr=lr)
    gen = torch.Generator().manual_seed(10_000 + seed)
    for _ in range(args.warm_steps):          # an Adam that has already stepped: m/sqrt(v) no longer +-1
        obs = agent.policy.prepare_obs(torch.randn(args.batch, args.obs_dim, generator=gen).numpy())
        surrogate_step(agent, opt, obs, gen, args.clip)
    obs = agent.policy.prepare_obs(torch.randn(args.batch, args.obs_dim, generator=gen).numpy())
    r = surrogate_step(agent, opt, obs, gen, args.clip)
    scale = 1.0 / dim if variant == "d" else 1.0
    r.update(pred=math.sqrt(r["z2"]) * scale, kl_pred=r["z2"] / 2, sigma=sigma, lr=lr,
             n_params=sum(p.numel() for p in agent.actor_parameters()))
    return r


def aggregate(rows: list[dict], key: str) -> tuple[float, float]:
    v = np.array([r[key] for r in rows], dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def rule_of_thumb(variant: str, dim: int, ref_std: float) -> float:
    """docs/design.md §4 with delta fixed by the optimizer: the D = 28 std scaled to D."""
    g = math.sqrt(dim / D_REF)
    return ref_std * {"a": g, "b": 1.0, "c": 1.0, "d": 1.0 / g, "e": g}[variant]


def fmt(m: float, s: float) -> str:
    return f"{m:.3g} ± {s:.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, nargs="+", default=list(SHAPES))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam step size (the trainer's default actor lr)")
    ap.add_argument("--clip", type=float, default=0.05, help="eps of the surrogate the step is taken on")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--obs-dim", type=int, default=17)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256])
    ap.add_argument("--warm-steps", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_scaling_law")
    ap.add_argument("--png", default="docs/img/scaling_law.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    results: dict = {}
    for v in args.variants:
        for d in args.dims:
            results[f"{v}/{d}"] = [run_one(v, d, s, args) for s in args.seeds]
            r = results[f"{v}/{d}"]
            print(f"{v} D={d:4d}: std {fmt(*aggregate(r, 'std'))} pred {fmt(*aggregate(r, 'pred'))} "
                  f"delta {fmt(*aggregate(r, 'delta'))} clip.05 {fmt(*aggregate(r, 'clip_0.05'))}", flush=True)
    wall = time.time() - t0

    lines = [f"lr {args.lr:g} (Adam, {'first step' if not args.warm_steps else f'step {args.warm_steps + 1}'}), "
             f"batch {args.batch}, MLP {args.hidden}, sigma {SIGMA} unless scaled, seeds {args.seeds} "
             f"(mean ± std), wall {wall:.0f} s", "",
             "| variant | D (H×A) | std(log r) stepped-on | std(log r) held-out | pred √D·δ̄/σ | rule (from D=28) "
             "| δ̄ (RMS μ shift) | ‖Δθ‖ | clip ε=0.05 | clip ε=0.2 | held-out clip 0.05 / 0.2 | pred clip 0.05 / 0.2 "
             "| mean(log r) held-out | KL held-out | KL pred ‖δ‖²/2σ² |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in args.variants:
        ref = aggregate(results[f"{v}/{args.dims[0]}"], "std")[0] if args.dims[0] == D_REF else float("nan")
        for d in args.dims:
            r = results[f"{v}/{d}"]
            pm = aggregate(r, "pred")[0]
            a = {k: fmt(*aggregate(r, k)) for k in r[0] if isinstance(r[0][k], float)}
            c = {k: aggregate(r, k)[0] for k in ("clip_held_0.05", "clip_held_0.2")}
            lines.append(
                f"| ({v}) {VARIANTS[v]} | {d} ({SHAPES[d][0]}×{SHAPES[d][1]}) | {a['std']} | {a['std_held']} | "
                f"{a['pred']} | {rule_of_thumb(v, d, ref):.3g} | {a['delta']} | {a['step_norm']} | "
                f"{a['clip_0.05']} | {a['clip_0.2']} | {c['clip_held_0.05']:.2f} / {c['clip_held_0.2']:.2f} | "
                f"{predicted_clip_fraction(pm, 0.05):.2f} / {predicted_clip_fraction(pm, 0.2):.2f} | "
                f"{a['mean_held']} | {a['kl']} | {a['kl_pred']} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"args": vars(args), "wall_s": wall, "machine": {"nproc": os.cpu_count(), "cpu": _cpu_model(),
                                                             "python": platform.python_version(),
                                                             "torch": torch.__version__}}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "table.md").write_text(table + "\n")
    if args.png:
        plot(results, args, Path(args.png))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def plot(results: dict, args: argparse.Namespace, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7.2, 5.0), dpi=80)
    dims = np.array(args.dims, dtype=float)
    for i, v in enumerate(args.variants):
        c = f"C{i}"
        ms = [aggregate(results[f"{v}/{d}"], "std") for d in args.dims]
        hs = [aggregate(results[f"{v}/{d}"], "std_held") for d in args.dims]
        x = dims * (1 + 0.025 * (i - 2))        # (b) and (c) coincide exactly on the first step: offset
        ax.errorbar(x, [m for m, _ in ms], yerr=[s for _, s in ms], fmt="o", color=c, capsize=3, ms=4,
                    label=f"({v}) {VARIANTS[v]}")
        ax.errorbar(x, [m for m, _ in hs], yerr=[s for _, s in hs], fmt="s", mfc="none", color=c,
                    capsize=2, ms=4)
        ax.plot(dims, [aggregate(results[f"{v}/{d}"], "pred")[0] for d in args.dims], "-", color=c, lw=1,
                alpha=0.8)
        if args.dims[0] == D_REF:
            ax.plot(dims, [rule_of_thumb(v, d, ms[0][0]) for d in args.dims], ":", color=c, lw=1)
    ax.plot([], [], "ko", ms=4, label="measured on the chains stepped on")
    ax.plot([], [], "ks", mfc="none", ms=4, label="measured on held-out chains")
    ax.plot([], [], "k-", lw=1, label="√D·δ̄/σ with measured δ̄")
    ax.plot([], [], "k:", lw=1, label="rule of thumb: δ̄ fixed at its D=28 value")
    for e in EPS:
        ax.axhline(e, color="grey", lw=0.6, ls="--")
    ax.set(xscale="log", yscale="log", xlabel="D = H × A (K = 1)", ylabel="std(log π_new − log π_old)",
           title=f"one Adam step, lr {args.lr:g}" + (f" (after {args.warm_steps} steps)" if args.warm_steps else ""))
    ax.set_xticks(dims, [str(int(d)) for d in dims])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
