"""The plots of docs/benchmarks.md, drawn from the result files committed under benchmarks/results/.

    python benchmarks/plot_results.py                 # every figure into docs/img/
    python benchmarks/plot_results.py --only throughput --out /tmp/img

Nothing is trained or measured here: each figure reads the files named in its function and in the
caption of docs/benchmarks.md, so a rerun of a benchmark followed by this script updates the docs.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ALGO_NAMES = {"residual": "residual-ppo", "reinflow": "chain-ppo", "default": "chain-ppo"}  # recipes.py labels of the time
COLORS = {"BC": "0.6", "residual-ppo": "tab:blue", "chain-ppo": "tab:orange"}


def jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (RESULTS / name).read_text().splitlines() if line.strip()]


def md_tables(name: str, captions: bool = False) -> list:
    """Every markdown table of a results file, as a list of {header: cell} rows; with ``captions``,
    (the text line just above the table, rows) pairs."""
    tables, header, rows, caption, last_text = [], None, [], "", ""
    for line in (RESULTS / name).read_text().splitlines() + [""]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            if header:
                tables.append((caption, rows) if captions else rows)
            header, rows = None, []
            last_text = line.strip() or last_text
        elif header is None:
            header, caption = cells, last_text
        elif not all(set(c) <= set("-: ") for c in cells):
            rows.append(dict(zip(header, cells)))
    return tables


def md_table(name: str, column: str) -> list[dict]:
    """The first table of ``name`` that has ``column``."""
    return next(t for t in md_tables(name) if t and column in t[0])


def mean_std(cell: str) -> tuple[float, float]:
    """'92 ± 3' -> (92.0, 3.0); a single number -> (x, 0)."""
    nums = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", cell)]
    return nums[0], nums[1] if len(nums) > 1 else 0.0


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def bars(ax, groups: list[str], series: dict[str, list[tuple[float, float, list[float]]]], ylabel: str, title: str,
         colors: dict | None = None) -> None:
    """Grouped bars: series name -> per group (mean, std, individual values drawn as dots)."""
    width = 0.8 / len(series)
    for i, (name, vals) in enumerate(series.items()):
        x = np.arange(len(groups)) + (i - (len(series) - 1) / 2) * width
        means = [v[0] for v in vals]
        err = [v[1] for v in vals] if any(v[1] for v in vals) else None
        ax.bar(x, means, width, yerr=err, capsize=3, label=name,
               color=(colors or COLORS).get(name), edgecolor="black", linewidth=0.4)
        for xi, v in zip(x, vals):
            if len(v[2]) > 1:
                ax.plot([xi] * len(v[2]), v[2], "k.", ms=3)
    ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def stat(xs: list[float]) -> tuple[float, float, list[float]]:
    return float(np.mean(xs)), float(np.std(xs)), list(xs)


def before_after(ax, rows: list[dict], before: str, after: str, title: str) -> None:
    """BC against residual-ppo per task, over the seeds of ``rows`` (one row per task and seed)."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    bars(ax, tasks, {
        "BC": [stat([100 * r[before] for r in rows if r["task"] == t]) for t in tasks],
        "residual-ppo": [stat([100 * r[after] for r in rows if r["task"] == t]) for t in tasks]},
        "", title)


def what_learns(plt, out: Path) -> Path:
    """Section 1: arm (arm_2m_heldout.jsonl), MetaWorld (metaworld_success_ends_2m.jsonl), SmolVLA (smolvla_quickstart.jsonl)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [3, 2, 2]})
    arm = [r for r in jsonl("arm_2m_heldout.jsonl") if r["algorithm"] == "residual-ppo"]
    tasks = list(dict.fromkeys(r["task"] for r in arm))
    bars(axes[0], tasks, {
        "BC": [stat([100 * next(r["bc_heldout"] for r in arm if r["task"] == t)]) for t in tasks],
        "residual-ppo": [stat([100 * r["heldout"] for r in arm if r["task"] == t]) for t in tasks]},
        "success % (100 held-out episodes)", "built-in arm, 3 seeds, 2 M env steps")
    before_after(axes[1], jsonl("metaworld_success_ends_2m.jsonl"), "success_before", "success_after",
                 "MetaWorld, 3 seeds, <= 2 M env steps")
    vla = jsonl("smolvla_quickstart.jsonl")
    before_after(axes[2], vla, "before", "after",
                 f"SmolVLA (tiny), quickstart, {len(vla) // max(len({r['task'] for r in vla}), 1)} seeds")
    for ax in axes:
        ax.set_ylim(0, 105)
    return save(fig, out / "what_learns.png")


def how_fast(plt, out: Path) -> Path:
    """Section 2: the arm's evaluations at 0, 1/4, 1/2 and all of 2 M env steps (residual_2m.md) and the
    quickstarts' success against wall time (quickstarts.jsonl; SmolVLA's against CPU time, smolvla_quickstart.jsonl)."""
    rows = md_table("residual_2m.md", "success % at ¼ / ½ budget")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks) + 1, figsize=(4 * (len(tasks) + 1), 3.6))
    xs = np.array([0, 0.5, 1.0, 2.0])
    for ax, task in zip(axes, tasks):
        for r in (r for r in rows if r["task"] == task):
            q1, q2 = r["success % at ¼ / ½ budget"].split("/")
            pts = [(float(r["BC %"]), 0.0), mean_std(q1), mean_std(q2), mean_std(r["final success % (mean ± std)"])]
            name = ALGO_NAMES.get(r["preset"], r["preset"])
            ax.errorbar(xs, [p[0] for p in pts], yerr=[p[1] for p in pts], marker="o", capsize=3, label=name,
                        color=COLORS.get(name))
        ax.set(title=f"arm {task}", xlabel="env steps (millions)", ylabel="success % (selection episodes)", ylim=(0, 105))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[-1]
    for r in jsonl("quickstarts.jsonl"):
        ax.plot([0, r["wall_min"]], [100 * r["before"], 100 * r["after"]], "o-", label=r["name"])
    for i, r in enumerate(jsonl("smolvla_quickstart.jsonl")):  # CPU minutes: their wall time measured the load
        ax.plot([0, r["cpu_min"]], [100 * r["before"], 100 * r["after"]], "s--", lw=0.8, color="0.4",
                label=None if i else "SmolVLA (tiny) quickstarts, CPU minutes")
    ax.set(title="quickstarts: BC -> kept policy", xlabel="wall minutes (whole command)",
           ylabel="success % (100 held-out episodes)", ylim=(0, 105))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return save(fig, out / "how_fast.png")


def choice_costs(plt, out: Path) -> Path:
    """Section 3: residual-ppo against chain-ppo (arm_2m_heldout.jsonl), MetaWorld's episodes and demos
    (metaworld_residual_1m.jsonl, metaworld_episodes_ablation_1m.jsonl), white against smooth noise
    (smooth_noise_screening.md)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    arm = jsonl("arm_2m_heldout.jsonl")
    tasks = list(dict.fromkeys(r["task"] for r in arm))

    def pick(algo: str, task: str) -> list[float]:
        return [100 * r["heldout"] for r in arm if r["algorithm"] == algo and r["task"] == task]
    bars(axes[0], tasks, {"BC": [stat([100 * next(r["bc_heldout"] for r in arm if r["task"] == t)]) for t in tasks],
                          "chain-ppo": [stat(pick("chain-ppo", t)) for t in tasks],
                          "residual-ppo": [stat(pick("residual-ppo", t)) for t in tasks]},
         "success % (100 held-out episodes)", "algorithm: arm, 3 seeds, 2 M env steps")
    variants = {"demos 500 steps, RL 500 steps": [dict(r, variant="") for r in jsonl("metaworld_residual_1m.jsonl")]}
    for r in jsonl("metaworld_episodes_ablation_1m.jsonl"):
        demos = "500 steps" if r["variant"].startswith("demos: 500") else "end at success"
        rl = "500 steps" if "RL: 500" in r["variant"] else "end at success"
        variants.setdefault(f"demos {demos}, RL {rl}", []).append(r)
    order = ["demos 500 steps, RL 500 steps", "demos 500 steps, RL end at success",
             "demos end at success, RL 500 steps", "demos end at success, RL end at success"]
    tasks = ["pick-place-v3", "push-v3"]
    colors = dict(zip(order, ["0.75", "0.5", "tab:cyan", "tab:blue"]))
    bars(axes[1], tasks, {v: [stat([100 * next(r["success_after"] for r in variants[v] if r["task"] == t)]) for t in tasks]
                          for v in order}, "kept policy, success % (100 held-out)",
         "MetaWorld episodes: 1 seed, 1 M env steps", colors)
    rows = [r for r in md_table("smooth_noise_screening.md", "flags") if r["task"] == "pick-lift"]
    chosen = {"white noise (D = 300)": "**white noise**", "reinflow-paper": "**previous default**",
              "smooth noise (default)": "**default**"}
    series = {"start": [], "best": [], "last": []}
    for key in chosen.values():
        r = next(r for r in rows if r["variant (what differs from the default)"].startswith(key)
                 and r["iterations run / planned"] == "100 / 100")
        nums = [float(x) for x in re.findall(r"(\d+)(?: \(|$| →)", r[next(k for k in r if k.startswith("eval success"))])]
        for k, v in zip(series, nums):
            series[k].append(stat([v]))
    bars(axes[2], list(chosen), series, "eval success % (30 episodes)", "noise: pick-lift, chain-ppo, 1 seed, ~390k steps",
         {"start": "0.75", "best": "tab:green", "last": "tab:blue"})
    for ax in axes:
        ax.set_ylim(0, 105)
    return save(fig, out / "choice_costs.png")


def throughput(plt, out: Path) -> Path:
    """Section 4 (throughput.md): the bare simulator loop, the raw vector env and reinflow's rollout (the
    state-only table, a panel per vector mode) and, where the file has camera tables, the camera rollout's
    speed relative to the state-mode rollout, one series per table (e.g. before / after a change)."""
    tables = [(c, t) for c, t in md_tables("throughput.md", captions=True)
              if t and "reinflow rollout env steps/s" in t[0]]
    state = next(t for c, t in tables if "obs" not in t[0])
    cams = [(c, t) for c, t in tables if "obs" in t[0] and "rollout ratio to state mode" in t[0]]
    vectors = list(dict.fromkeys(r["vector"] for r in state))
    fig, axes = plt.subplots(1, len(vectors) + bool(cams), figsize=(6 * (len(vectors) + bool(cams)), 3.8), squeeze=False)
    cols = {"bare loop": "bare loop env steps/s", "raw vector": "raw vector env steps/s",
            "reinflow rollout": "reinflow rollout env steps/s"}
    for ax, vector in zip(axes[0], vectors):
        rs = [r for r in state if r["vector"] == vector]
        bars(ax, [label(r) for r in rs], {k: [stat([number(r[c])]) for r in rs] for k, c in cols.items()},
             "env steps/s", f"{vector} vector env, state observations",
             {"bare loop": "0.75", "raw vector": "0.5", "reinflow rollout": "tab:blue"})
        ax.tick_params(axis="x", labelsize=6)
    if cams:
        groups = [label(r) for r in cams[0][1] if r["obs"] != "state"]
        series = {c.split("(")[0].strip(" :") or f"table {i}": [stat([number(r["rollout ratio to state mode"])])
                                                              for r in t if r["obs"] != "state"]
                  for i, (c, t) in enumerate(cams)}
        palette = ["tab:blue", "0.6", "tab:orange", "tab:green"]
        bars(axes[0][-1], groups, series, "camera rollout / state-mode rollout",
             "arm, two 64x64 cameras, sync (before / after frames-when-read)",
             dict(zip(series, palette)))
        axes[0][-1].set_ylim(0, 1.1)
    return save(fig, out / "throughput.png")


def label(row: dict) -> str:
    """'reinflow/ArmReach-v0', 10 -> 'ArmReach\\n10 env'."""
    return f"{row['env'].split('/')[-1].replace('-v0', '')}\n{row['envs']} env"


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()
    return path


FIGURES = {"what_learns": what_learns, "how_fast": how_fast, "choice_costs": choice_costs, "throughput": throughput}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(FIGURES), default=list(FIGURES))
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only:
        print(f"wrote {FIGURES[name](plt, args.out)}")
        plt.close("all")


if __name__ == "__main__":
    main()
