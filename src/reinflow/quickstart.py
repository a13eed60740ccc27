"""``reinflow quickstart``: the whole pipeline on a built-in arm task (``--task``), or on any env
with an expert (``--env ID --env-kwargs JSON [--expert module:callable]``, MetaWorld's included),
with a report folder.

demos (scripted expert) -> flow-matching BC of a deliberately imperfect policy -> evaluation ->
ReinFlow + PPO fine-tuning on parallel headless envs (chunk 50 x 6, K = 1, smooth noise: D = 4 x 6) ->
evaluation on the same held-out seeds -> ``summary.json``, ``summary.md`` and PNG plots.

Everything goes through the library (``record_demos``, ``pretrain``, ``train``,
``run_episodes``, ``plot_run``); the fine-tuning recipe is TrainConfig's defaults, the same on
every task (compared against the alternatives in ``benchmarks/recipes.py``).

The ``--minutes`` budget covers the whole command: fine-tuning runs a fixed number of iterations
per task (so its cosine LR schedule is the benchmarked one) and ``TrainConfig.time_limit_min``,
set to what is left after BC and the first evaluation, stops it earlier on a slow machine,
keeping a reserve for the final evaluation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal


from reinflow import ConfigError
from reinflow.rl.keep_best import BEST_DIR, heldout_seed
from reinflow.rl.runfolder import check_out, claim_out
from reinflow.validate import check_fields

TASKS = {
    "reach": "reinflow/ArmReach-v0",
    "push": "reinflow/ArmPush-v0",
    "pick-lift": "reinflow/ArmPickLift-v0",
}

# Per-task BC imperfection (demo episodes used, BC gradient steps): chosen so the pretrained
# policy succeeds sometimes but clearly not always. Measured (deterministic, 100 episodes): reach
# 10 x 100 -> 21 %, push 20 x 400 -> 28 % (20 x 200 gave 5 %), pick-lift 20 x 200 -> 32 %
# (docs/benchmarks.md §1.1; these are also the benchmark's starting checkpoints).
BC_SETTINGS = {
    "reach": dict(episodes=10, steps=100),
    "push": dict(episodes=20, steps=400),
    "pick-lift": dict(episodes=20, steps=200),
}

# PPO iterations per task with the default recipe (TrainConfig's defaults, no per-task preset):
# where the benchmark's success curves flatten (docs/benchmarks.md §2.1). The --minutes budget stops
# training earlier on a slower machine (checkpoint + the same final evaluation).
QUICKSTART_ITERATIONS = {"reach": 300, "push": 300, "pick-lift": 300}


# --env: any env with an expert (envs/experts.py). 10 demos x 1000 BC steps at chunk 50: on MetaWorld,
# with episodes that end at success, a BC of 49 % (pick-place-v3) and 59 % (push-v3), 100 episodes;
# 250 iterations (<= 1 M env steps): the quickstart then gave 49 -> 78 % and 59 -> 90 % in ~9 min
# (docs/metaworld.md). The --minutes budget stops a slower env earlier.
ENV_BC_SETTINGS = dict(episodes=10, steps=1000)
ENV_ITERATIONS = 250

# --algorithm dsrl: an env-step budget per task (docs/benchmarks.md, DSRL section) instead of PPO's
# iterations; an iteration takes at most parallel_envs x rollout_steps x act_steps env steps, so the
# budget is never exceeded. SAC's gradient steps cost CPU time per sample: a larger default budget.
DSRL_ENV_STEPS = {"reach": 100_000, "push": 300_000, "pick-lift": 200_000}
ENV_DSRL_ENV_STEPS = 300_000
MINUTES = {"dsrl": 30.0}
DEFAULT_MINUTES = 15.0


@dataclass
class QuickstartConfig:
    """Demos -> BC pretraining -> eval -> ReinFlow fine-tuning (chunk 50 x 6, D = 4 x 6) -> eval -> report."""

    out: str = "runs/quickstart"
    """report folder (summary.json, summary.md, plots/, plus demos/, pretrain/, train/)"""
    task: Literal["reach", "push", "pick-lift"] = "pick-lift"
    """built-in arm task (pick-lift: the grasp the seed system failed at)"""
    env: str | None = None
    """instead of --task: any env id with an expert, e.g. metaworld:Meta-World/MT1 (docs/metaworld.md)"""
    env_kwargs: str = ""
    """--env's gymnasium.make kwargs as JSON, e.g. '{"env_name": "reach-v3"}'"""
    expert: str | None = None
    """--env's demo expert as module:callable (default: the built-in one of arm and MetaWorld ids)"""
    minutes: float | None = None
    """wall-clock budget of the whole command, in minutes (default 15; dsrl 30)"""
    seed: int = 0
    """seed of demos, BC, envs and PPO"""
    eval_episodes: int = 100
    """held-out evaluation episodes, before and after fine-tuning (same seeds)"""
    demo_episodes: int | None = None
    """expert demos recorded (default: what BC uses for the task)"""
    bc_episodes: int | None = None
    """demo episodes BC trains on (fewer = a weaker starting policy; default per task)"""
    bc_steps: int | None = None
    """BC gradient steps (fewer = a weaker starting policy; default per task)"""
    chunk_size: int = 50
    """actions per chunk H (K = 1: D = H x 6 with white noise, 4 x 6 with the default smooth noise)"""
    act_steps: int | None = None
    """chunk steps executed per decision (default: the whole chunk, open loop)"""
    parallel_envs: int | None = None
    """parallel envs (default: TrainConfig's)"""
    rollout_steps: int | None = None
    """decisions per env per iteration (default: TrainConfig's)"""
    train_eval_episodes: int = 20
    """episodes of the periodic in-training evaluation (the success curve)"""
    algorithm: Literal["auto", "chain-ppo", "residual-ppo", "dsrl"] = "auto"
    """reinflow train --algorithm (auto: residual from the BC policy; on a new task try chain-ppo too; dsrl: SAC on x_0)"""
    iterations: int | None = None
    """PPO iterations (default: per task, QUICKSTART_ITERATIONS); the --minutes budget may stop earlier"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """a non-empty --out (an earlier quickstart) is moved aside to <out>.old-N instead of being refused"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"minutes={self.minutes}: must be > 0")
        for name in ("eval_episodes", "train_eval_episodes", "chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("demo_episodes", "bc_episodes", "bc_steps", "act_steps", "parallel_envs", "rollout_steps", "iterations"):
            val = getattr(self, name)
            if val is not None and val < 1:
                raise ConfigError(f"{name}={val}: must be >= 1")
        if self.act_steps is not None and self.act_steps > self.chunk_size:
            raise ConfigError(f"act_steps={self.act_steps}: must be <= chunk_size={self.chunk_size}")


def dsrl_iterations(cfg: QuickstartConfig, act_steps: int) -> int:
    """--algorithm dsrl: the iterations that fit the task's env-step budget (DSRL_ENV_STEPS) at most."""
    from reinflow.rl.config import TrainConfig
    budget = DSRL_ENV_STEPS[cfg.task] if cfg.env is None else ENV_DSRL_ENV_STEPS
    per_iteration = (cfg.parallel_envs or TrainConfig.parallel_envs) * (cfg.rollout_steps or TrainConfig.rollout_steps)
    return max(1, budget // (per_iteration * act_steps))


def _stage(msg: str, t0: float) -> None:
    print(f"[quickstart {time.time() - t0:6.1f}s] {msg}", flush=True)


@dataclass
class Target:
    """What the pipeline runs on: --task's arm env with its settings, or --env's."""

    label: str
    env_id: str
    env_kwargs: dict
    bc: dict
    iterations: int
    action_dim: int


def _target(cfg: QuickstartConfig) -> Target:
    from reinflow.envs.factory import env_spaces
    from reinflow.rl.build import resolve_env_kwargs
    if cfg.env is None:
        return Target(cfg.task, TASKS[cfg.task], {}, BC_SETTINGS[cfg.task], QUICKSTART_ITERATIONS[cfg.task], 6)
    kw = resolve_env_kwargs(cfg.env_kwargs, cfg.env, "mlp")
    label = kw.get("env_name", cfg.env)  # MetaWorld: the task name
    return Target(label, cfg.env, kw, ENV_BC_SETTINGS, ENV_ITERATIONS, int(env_spaces(cfg.env, kw)[1].shape[-1]))


def _score(res: dict) -> str:
    ok = res["success_rate"]
    return (f"success {ok:.3f}, " if ok is not None else "") + f"return {res['return_mean']:.4g}"


def _evaluate(ckpt: Path, env_id: str, act_steps: int, episodes: int, seed: int, parallel: int,
              env_kwargs: dict | None = None) -> dict:
    from reinflow.envs.factory import make_vector_env
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.evaluate import run_episodes
    agent, _, _ = load_agent(ckpt, sampler_overrides={"act_steps": act_steps})
    envs = make_vector_env(env_id, min(parallel, episodes), act_steps, "sync", env_kwargs or {})
    try:
        t = time.time()
        res = run_episodes(agent, envs, episodes, seed=seed, deterministic=True)
        res["seconds"] = time.time() - t
        res["env_steps"] = int(round(res["length_mean"] * res["episodes"]))
    finally:
        envs.close()
    return res


def kept_policy(run: Path, res: Any) -> dict:
    """The policy a quickstart reports: ``<run>/best`` when training kept one, else the last checkpoint."""
    if res.best is not None:
        b = res.best
        return {"path": run / BEST_DIR, "iteration": b["iteration"],
                "what": f"kept best: iteration {b['iteration']}, chosen on {b['episodes']} training-evaluation "
                        f"episodes with success {b['success_rate']:.2f}; the episodes below are disjoint"}
    return {"path": run, "iteration": res.iterations - 1, "what": "the last checkpoint"}


def run_quickstart(cfg: QuickstartConfig) -> dict:
    """Run the pipeline; returns the summary dict (also written to <out>/summary.json)."""
    from reinflow.bc.pretrain import PretrainConfig, pretrain
    from reinflow.envs.demos import record_demos
    from reinflow.envs.factory import set_headless_gl
    from reinflow.report.logger import read_metrics
    from reinflow.report.plots import plot_run
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.trainer import train

    t0 = time.time()
    minutes = cfg.minutes or MINUTES.get(cfg.algorithm, DEFAULT_MINUTES)
    budget_s = minutes * 60.0
    set_headless_gl()
    tgt = _target(cfg)
    env_id, kw = tgt.env_id, tgt.env_kwargs
    out = Path(cfg.out)
    # Like train: an earlier report folder is never deleted; refused, or moved aside with --overwrite.
    check_out(out, overwrite=cfg.overwrite)
    held = claim_out(out, cfg.overwrite)  # locked: one process per report folder, until the report is written
    bc = tgt.bc
    bc_episodes = cfg.bc_episodes or bc["episodes"]
    bc_steps = cfg.bc_steps or bc["steps"]
    demo_episodes = cfg.demo_episodes or bc_episodes
    act_steps = cfg.act_steps or cfg.chunk_size
    # Held-out episodes: never the ones training's evaluations pick the kept (best) policy on.
    eval_seed = heldout_seed(cfg.seed)
    eval_parallel = 10
    # the default recipe's noise, capped at the executed steps as sampler_config does: D = coefficients x A
    basis = min(TrainConfig().noise_basis, act_steps)
    dims = (basis or act_steps) * tgt.action_dim

    _stage(f"task {tgt.label} ({env_id}); budget {minutes:g} min; chain D = {basis or act_steps} x "
           f"{tgt.action_dim} = {dims}, K = 1", t0)
    if act_steps < cfg.chunk_size:
        print(f"  note: act_steps={act_steps} < chunk {cfg.chunk_size}: closed-loop execution, D = {dims} "
              "(asked for on the command line)")

    # 1. demos
    _stage(f"1/6 recording {demo_episodes} scripted-expert demos", t0)
    demos = record_demos(env_id, demo_episodes, out / "demos", seed=cfg.seed, progress=cfg.progress,
                         expert=cfg.expert, **kw)
    _stage(f"    {demos['episodes']} demos, {demos['steps']} steps, expert success {demos['success_rate']:.2f}", t0)

    # 2. BC
    _stage(f"2/6 flow-matching BC on {min(bc_episodes, demos['episodes'])} demos x {bc_steps} steps "
           "(deliberately imperfect)", t0)
    pre = pretrain(PretrainConfig(demos=str(out / "demos"), out=str(out / "pretrain"), chunk_size=cfg.chunk_size,
                                  denoise_steps=1, steps=bc_steps, max_episodes=bc_episodes, seed=cfg.seed,
                                  progress=cfg.progress))
    _stage(f"    BC loss {pre['loss_first_100']:.3f} -> {pre['loss_last_100']:.3f}", t0)

    # 3. eval before
    _stage(f"3/6 evaluating the pretrained policy on {cfg.eval_episodes} held-out episodes", t0)
    before = _evaluate(out / "pretrain", env_id, act_steps, cfg.eval_episodes, eval_seed, eval_parallel, kw)
    _stage(f"    {_score(before)} ({before['episodes']} episodes)", t0)

    # 4. fine-tune: one run with the default recipe; what is left of the budget caps it.
    iterations = cfg.iterations or tgt.iterations
    if cfg.algorithm == "dsrl" and not cfg.iterations:
        iterations = dsrl_iterations(cfg, act_steps)
    # The after-evaluation costs about what the before one did (often less: successes end early).
    reserve = before["seconds"] * 1.3 + 10.0
    left_min = (budget_s - (time.time() - t0) - reserve) / 60.0
    if left_min <= 0:
        raise ConfigError(f"minutes={minutes:g}: the budget is spent before fine-tuning starts "
                          f"({(time.time() - t0) / 60:.1f} min so far); give more minutes")
    tcfg = TrainConfig(env=env_id, env_kwargs=json.dumps(kw) if kw else "", out=str(out / "train"),
                       policy_path=str(out / "pretrain"), act_steps=act_steps, algorithm=cfg.algorithm,
                       seed=cfg.seed, iterations=iterations, eval_every=max(1, iterations // 10),
                       eval_episodes=cfg.train_eval_episodes, progress=cfg.progress, checkpoint_every=max(1, iterations // 4),
                       time_limit_min=left_min)
    if cfg.parallel_envs:
        tcfg = replace(tcfg, parallel_envs=cfg.parallel_envs)
    if cfg.rollout_steps:
        tcfg = replace(tcfg, rollout_steps=cfg.rollout_steps)
    tcfg = tcfg.resolved()  # what train() runs: the algorithm and lr 'auto' picks from a pretrained policy
    _stage(f"4/6 fine-tuning ({tcfg.algorithm}): {iterations} iterations (at most {left_min:.1f} min) of "
           f"{tcfg.parallel_envs} envs x {tcfg.rollout_steps} decisions, " + _recipe(tcfg, act_steps, tgt.action_dim), t0)
    res = train(tcfg)
    done_iters = res.iterations
    rows = read_metrics(out / "train" / "metrics.jsonl")
    stopped = " (stopped by the time budget)" if done_iters < iterations else ""
    _stage(f"    {done_iters} iterations{stopped}, {res.env_steps} env steps", t0)

    # 5. eval after: the kept policy (best of training's evaluations), on the held-out episodes
    kept = kept_policy(out / "train", res)
    _stage(f"5/6 evaluating the fine-tuned policy ({kept['what']}) on the same {cfg.eval_episodes} episodes", t0)
    after = _evaluate(kept["path"], env_id, act_steps, cfg.eval_episodes, eval_seed, eval_parallel, kw)
    _stage(f"    {_score(after)} ({after['episodes']} episodes)", t0)

    # 6. report
    _stage("6/6 writing the report", t0)
    plots = plot_run(out / "train", out / "plots")
    clip = [r["ppo/clip_fraction"] for r in rows if r.get("ppo/clip_fraction") is not None]
    def col(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]
    wall = time.time() - t0
    d_before, d_after = before["success_rate"] or 0.0, after["success_rate"] or 0.0
    summary = {
        "task": tgt.label, "env": env_id, "env_kwargs": kw,
        "success_before": before["success_rate"], "success_after": after["success_rate"],
        "success_gain_pp": 100.0 * (d_after - d_before),
        "eval_episodes_before": before["episodes"], "eval_episodes_after": after["episodes"],
        "eval_seed": eval_seed, "eval_mode": "deterministic (ODE, no injected noise)",
        "eval_before": before, "eval_after": after,
        "env_steps": res.env_steps, "iterations": done_iters, "iterations_planned": iterations,
        "policy_evaluated": kept["what"], "kept_iteration": kept["iteration"],
        "last_policy_selection_success": (res.final_eval or {}).get("success_rate"),
        "wall_time_s": wall, "budget_s": budget_s,
        "clip_fraction_max": max(clip) if clip else None,
        "clip_fraction_median": sorted(clip)[len(clip) // 2] if clip else None,
        "ratio_min": min(col("ppo/ratio_min")) if col("ppo/ratio_min") else None,
        "ratio_max": max(col("ppo/ratio_max")) if col("ppo/ratio_max") else None,
        "chain_dims": dims, "noise_basis": basis, "action_dim": tgt.action_dim, "chunk_size": cfg.chunk_size,
        "act_steps": act_steps, "denoise_steps": 1,
        "demos": demos, "pretrain": pre,
        "config": {"quickstart": asdict(cfg), "train": asdict(tcfg)},
        "plots": [str(p) for p in plots],
        "run_folder": str(out / "train"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text(_markdown(summary, tcfg))
    _stage(f"done in {wall / 60:.1f} min: success {d_before:.2f} -> {d_after:.2f} "
           f"({summary['success_gain_pp']:+.0f} pp, {after['episodes']} episodes each), "
           f"max clip fraction {summary['clip_fraction_max'] if clip else float('nan'):.2f}", t0)
    print(f"report: {out}/summary.md  (summary.json, plots/*.png; run folder {out}/train)")
    held.close()
    return summary


def _recipe(tcfg: Any, act_steps: int, action_dim: int) -> str:
    if tcfg.algorithm == "dsrl":
        m = tcfg.dsrl_components
        return (f"SAC over x_0's {m or act_steps} x {action_dim} {'DCT coefficients' if m else 'entries'} "
                f"(bound {tcfg.dsrl_bound:g}), UTD {tcfg.dsrl_utd:g}, batch {tcfg.dsrl_batch_size}, lr {tcfg.lr_actor:g}")
    return (f"noise basis {tcfg.noise_basis} (chain D = {tcfg.noise_basis or act_steps} x {action_dim}), sigma in "
            f"[{tcfg.sigma_min}, {tcfg.sigma_max}], lr {tcfg.lr_actor:g}, clip {tcfg.clip_epsilon}")


def _markdown(s: dict, tcfg) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"
    lines = [
        f"# reinflow quickstart: {s['task']} ({s['env']})", "",
        f"| | before (BC) | after (fine-tuned, {tcfg.algorithm}) |", "| --- | --- | --- |",
        f"| success (deterministic, same seeds) | {pct(s['success_before'])} | {pct(s['success_after'])} |",
        f"| episodes | {s['eval_episodes_before']} | {s['eval_episodes_after']} |",
        f"| mean return | {s['eval_before']['return_mean']:.2f} | {s['eval_after']['return_mean']:.2f} |",
        f"| mean episode length | {s['eval_before']['length_mean']:.1f} | {s['eval_after']['length_mean']:.1f} |",
        "",
        f"* gain: **{s['success_gain_pp']:+.1f} percentage points**",
        f"* policy evaluated after: {s.get('policy_evaluated', 'the last checkpoint')}",
        f"* fine-tuning: {s['iterations']} of {s['iterations_planned']} planned iterations, {s['env_steps']} env steps; "
        f"whole command {s['wall_time_s'] / 60:.1f} min (budget {s['budget_s'] / 60:.1f} min)",
        f"* chain: chunk {s['chunk_size']} x {s.get('action_dim', 6)} dims, {s['act_steps']} executed per decision, K = 1, "
        f"noise basis {s.get('noise_basis', 0)} (0 = white): D = {s['chain_dims']}",
        f"* recipe: algorithm dsrl, {_recipe(tcfg, s['act_steps'], s.get('action_dim', 6))}" if tcfg.algorithm == "dsrl" else
        f"* recipe: algorithm {tcfg.algorithm}, noise basis {tcfg.noise_basis} (0 = white), reduction `{tcfg.logprob_reduction}`, "
        f"sigma in [{tcfg.sigma_min}, {tcfg.sigma_max}], "
        f"lr_actor {tcfg.lr_actor:g}, clip {tcfg.clip_epsilon}, target_kl {tcfg.target_kl}, "
        f"{tcfg.parallel_envs} envs x {tcfg.rollout_steps} decisions, {tcfg.update_epochs} epochs, "
        f"minibatch {tcfg.minibatch_size}, critic warm-up {tcfg.critic_warmup_iters} iterations",
        f"* clip fraction: max {s['clip_fraction_max']:.3f}, median {s['clip_fraction_median']:.3f}; "
        f"PPO ratio range [{s['ratio_min']:.3f}, {s['ratio_max']:.3f}]" if s["clip_fraction_max"] is not None else "",
        "", "## Plots", "",
    ]
    for p in s["plots"]:
        name = Path(p).name
        lines.append(f"![{name}](plots/{name})")
    lines += ["", f"Run folder: `{s['run_folder']}` (metrics.jsonl, checkpoints; `reinflow doctor {s['run_folder']}`)", ""]
    return "\n".join(lines)
