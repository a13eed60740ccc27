"""PNG plots of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from reinflow.report.logger import read_metrics  # noqa: E402


def plot_curve(xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str,
               path: str | Path, logy: bool = False) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, ys)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# (file name, title, [(metric, label)], optional horizontal reference metric)
PANELS = [
    ("success.png", "success rate", [("eval/success_rate", "eval (deterministic)"),
                                     ("rollout/success_rate", "train episodes (stochastic)"),
                                     ("rollout/success_gap", "gap: deterministic - stochastic")]),
    ("reward.png", "reward", [("rollout/reward_mean", "mean reward per decision"),
                              ("rollout/episode_return", "episode return")]),
    ("clip_fraction.png", "PPO clip fraction", [("ppo/clip_fraction", "clip fraction")]),
    ("logprob_per_dimension.png", "per-dimension log-prob and its bound",
     [("logprob/per_dimension", "per-dim log-prob"), ("logprob/per_dimension_bound", "bound -0.5log(2pi)-log(sigma_min)")]),
    ("sigma.png", "noise sigma", [("noise/sigma_mean", "mean sigma"), ("noise/sigma_lo", "lower bound"),
                                  ("noise/sigma_hi", "upper bound")]),
    ("ratio_range.png", "PPO ratio range", [("ppo/ratio_min", "min"), ("ppo/ratio_max", "max")]),
    ("gradient_norms.png", "gradient norms (before clipping)", [("gradients/policy_norm", "policy"),
                                                                 ("gradients/critic_norm", "critic")]),
]


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """One PNG per panel of PANELS from ``run_dir/metrics.jsonl`` against env steps."""
    run_dir = Path(run_dir)
    out = Path(out_dir or run_dir / "plots")
    out.mkdir(parents=True, exist_ok=True)
    rows = read_metrics(run_dir / "metrics.jsonl")
    paths = []
    for name, title, series in PANELS:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in series:
            pts = [(r["env_steps"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, label=label)
        ax.set(title=title, xlabel="env steps")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths
