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
from reinflow.envs.families import family_of
from reinflow.rl.keep_best import BEST_DIR, heldout_seed
from reinflow.rl.runfolder import check_out, claim_out
from reinflow.validate import check_fields

TASKS = {
    "reach": "reinflow/ArmReach-v0",
    "push": "reinflow/ArmPush-v0",
    "pick-lift": "reinflow/ArmPickLift-v0",
}


def _q(env_id: str):
    return family_of(env_id).quickstart(env_id)


# Per-task and per-env defaults (demos, BC steps, chunk size, PPO iterations) live in the env registry,
# reinflow.envs.families (QuickstartDefaults, with where each was measured); these views keep their names.
BC_SETTINGS = {t: dict(episodes=_q(i).bc_episodes, steps=_q(i).bc_steps) for t, i in TASKS.items()}
QUICKSTART_ITERATIONS = {t: _q(i).iterations for t, i in TASKS.items()}


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
    """wall-clock budget of the whole command, in minutes (default per env: 15, SO-101 30)"""
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
    chunk_size: int | None = None
    """actions per chunk H (default per env, 50 on the arm; K = 1: D = H x A with white noise, 4 x A with smooth noise)"""
    act_steps: int | None = None
    """chunk steps executed per decision (default: the whole chunk, open loop)"""
    parallel_envs: int | None = None
    """parallel envs (default: TrainConfig's)"""
    rollout_steps: int | None = None
    """decisions per env per iteration (default: TrainConfig's)"""
    train_eval_episodes: int = 20
    """episodes of the periodic in-training evaluation (the success curve)"""
    algorithm: Literal["auto", "reinflow", "residual"] = "auto"
    """reinflow train --algorithm (auto: residual from the BC policy; on a new task try reinflow too)"""
    iterations: int | None = None
    """PPO iterations (default per env: its family's QuickstartDefaults, envs/families.py); --minutes may stop earlier"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """a non-empty --out (an earlier quickstart) is moved aside to <out>.old-N instead of being refused"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"minutes={self.minutes}: must be > 0")
        for name in ("eval_episodes", "train_eval_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("demo_episodes", "bc_episodes", "bc_steps", "chunk_size", "act_steps", "parallel_envs", "rollout_steps", "iterations"):
            val = getattr(self, name)
            if val is not None and val < 1:
                raise ConfigError(f"{name}={val}: must be >= 1")
        if self.act_steps is not None and self.chunk_size is not None and self.act_steps > self.chunk_size:
            raise ConfigError(f"act_steps={self.act_steps}: must be <= chunk_size={self.chunk_size}")


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
    defaults: Any = None
    """the env family's QuickstartDefaults (reinflow.envs.families)"""


def _target(cfg: QuickstartConfig) -> Target:
    from reinflow.envs.factory import env_spaces
    from reinflow.rl.build import resolve_env_kwargs
    if cfg.env is None:
        q = _q(TASKS[cfg.task])
        return Target(cfg.task, TASKS[cfg.task], {}, BC_SETTINGS[cfg.task], QUICKSTART_ITERATIONS[cfg.task], 6, q)
    q = _q(cfg.env)
    kw = resolve_env_kwargs(cfg.env_kwargs, cfg.env, "mlp")
    label = kw.get("env_name", cfg.env)  # MetaWorld: the task name
    return Target(label, cfg.env, kw, dict(episodes=q.bc_episodes, steps=q.bc_steps), q.iterations,
                  int(env_spaces(cfg.env, kw)[1].shape[-1]), q)


def _score(res: dict) -> str:
    ok = res["success_rate"]
    return (f"success {ok:.3f}, " if ok is not None else "") + f"return {res['return_mean']:.4g}"


def _evaluate(ckpt: Path, env_id: str, act_steps: int, episodes: int, seed: int, parallel: int,
              env_kwargs: dict | None = None, vector: str = "sync") -> dict:
    from reinflow.envs.factory import make_vector_env
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.evaluate import run_episodes
    agent, _, _ = load_agent(ckpt, sampler_overrides={"act_steps": act_steps})
    envs = make_vector_env(env_id, min(parallel, episodes), act_steps, vector, env_kwargs or {})
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
    set_headless_gl()
    tgt = _target(cfg)
    env_id, kw = tgt.env_id, tgt.env_kwargs
    minutes = cfg.minutes or tgt.defaults.minutes
    budget_s = minutes * 60.0
    chunk_size = cfg.chunk_size or tgt.defaults.chunk_size
    if cfg.act_steps is not None and cfg.act_steps > chunk_size:
        raise ConfigError(f"act_steps={cfg.act_steps}: must be <= chunk_size={chunk_size}")
    out = Path(cfg.out)
    # Like train: an earlier report folder is never deleted; refused, or moved aside with --overwrite.
    check_out(out, overwrite=cfg.overwrite)
    claim_out(out, cfg.overwrite)
    bc = tgt.bc
    bc_episodes = cfg.bc_episodes or bc["episodes"]
    bc_steps = cfg.bc_steps or bc["steps"]
    demo_episodes = cfg.demo_episodes or cfg.bc_episodes or tgt.defaults.demo_episodes
    act_steps = cfg.act_steps or chunk_size
    # Held-out episodes: never the ones training's evaluations pick the kept (best) policy on.
    eval_seed = heldout_seed(cfg.seed)
    eval_parallel = 10
    vector = tgt.defaults.train.get("vector", "sync")
    # the default recipe's noise, capped at the executed steps as sampler_config does: D = coefficients x A
    basis = min(TrainConfig().noise_basis, act_steps)
    dims = (basis or act_steps) * tgt.action_dim

    _stage(f"task {tgt.label} ({env_id}); budget {minutes:g} min; chain D = {basis or act_steps} x "
           f"{tgt.action_dim} = {dims}, K = 1", t0)
    if act_steps < chunk_size:
        print(f"  note: act_steps={act_steps} < chunk {chunk_size}: closed-loop execution, D = {dims} "
              "(asked for on the command line)")

    # 1. demos
    _stage(f"1/6 recording {demo_episodes} scripted-expert demos", t0)
    demos = record_demos(env_id, demo_episodes, out / "demos", seed=cfg.seed, progress=cfg.progress,
                         expert=cfg.expert, **kw)
    _stage(f"    {demos['episodes']} demos, {demos['steps']} steps, expert success {demos['success_rate']:.2f}", t0)

    # 2. BC
    _stage(f"2/6 flow-matching BC on {min(bc_episodes, demos['episodes'])} demos x {bc_steps} steps "
           "(deliberately imperfect)", t0)
    pre = pretrain(PretrainConfig(demos=str(out / "demos"), out=str(out / "pretrain"), chunk_size=chunk_size,
                                  denoise_steps=1, steps=bc_steps, max_episodes=bc_episodes, seed=cfg.seed,
                                  progress=cfg.progress))
    _stage(f"    BC loss {pre['loss_first_100']:.3f} -> {pre['loss_last_100']:.3f}", t0)

    # 3. eval before
    _stage(f"3/6 evaluating the pretrained policy on {cfg.eval_episodes} held-out episodes", t0)
    before = _evaluate(out / "pretrain", env_id, act_steps, cfg.eval_episodes, eval_seed, eval_parallel, kw, vector)
    _stage(f"    {_score(before)} ({before['episodes']} episodes)", t0)

    # 4. fine-tune: one run with the default recipe; what is left of the budget caps it.
    iterations = cfg.iterations or tgt.iterations
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
    tcfg = replace(tcfg, **tgt.defaults.train)  # the env family's own settings (envs/families.py)
    if cfg.parallel_envs:
        tcfg = replace(tcfg, parallel_envs=cfg.parallel_envs)
    if cfg.rollout_steps:
        tcfg = replace(tcfg, rollout_steps=cfg.rollout_steps)
    tcfg = tcfg.resolved()  # what train() runs: the algorithm and lr 'auto' picks from a pretrained policy
    _stage(f"4/6 fine-tuning ({tcfg.algorithm}): {iterations} iterations (at most {left_min:.1f} min) of "
           f"{tcfg.parallel_envs} envs x {tcfg.rollout_steps} decisions, noise basis {tcfg.noise_basis} "
           f"(chain D = {tcfg.noise_basis or act_steps} x {tgt.action_dim}), sigma in [{tcfg.sigma_min}, {tcfg.sigma_max}], "
           f"lr {tcfg.lr_actor:g}, clip {tcfg.clip_epsilon}", t0)
    res = train(tcfg)
    done_iters = res.iterations
    rows = read_metrics(out / "train" / "metrics.jsonl")
    stopped = " (stopped by the time budget)" if done_iters < iterations else ""
    _stage(f"    {done_iters} iterations{stopped}, {res.env_steps} env steps", t0)

    # 5. eval after: the kept policy (best of training's evaluations), on the held-out episodes
    kept = kept_policy(out / "train", res)
    _stage(f"5/6 evaluating the fine-tuned policy ({kept['what']}) on the same {cfg.eval_episodes} episodes", t0)
    after = _evaluate(kept["path"], env_id, act_steps, cfg.eval_episodes, eval_seed, eval_parallel, kw, vector)
    _stage(f"    {_score(after)} ({after['episodes']} episodes)", t0)

    # 6. report
    _stage("6/6 writing the report", t0)
    plots = plot_run(out / "train", out / "plots")
    clip = [r["training/clip_fraction"] for r in rows if r.get("training/clip_fraction") is not None]
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
        "stopped_by_minutes": done_iters < iterations,
        "policy_evaluated": kept["what"], "kept_iteration": kept["iteration"],
        "last_policy_selection_success": (res.final_eval or {}).get("success_rate"),
        "wall_time_s": wall, "budget_s": budget_s,
        "clip_fraction_max": max(clip) if clip else None,
        "clip_fraction_median": sorted(clip)[len(clip) // 2] if clip else None,
        "ratio_min": min(col("ppo/ratio_min")) if col("ppo/ratio_min") else None,
        "ratio_max": max(col("ppo/ratio_max")) if col("ppo/ratio_max") else None,
        "chain_dims": dims, "noise_basis": basis, "action_dim": tgt.action_dim, "chunk_size": chunk_size,
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
    return summary


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
        f"* fine-tuning: {s['iterations']} of {s['iterations_planned']} planned PPO iterations"
        f"{' (--minutes cut the run)' if s.get('stopped_by_minutes') else ''}, {s['env_steps']} env steps; "
        f"whole command {s['wall_time_s'] / 60:.1f} min (budget {s['budget_s'] / 60:.1f} min)",
        f"* chain: chunk {s['chunk_size']} x {s.get('action_dim', 6)} dims, {s['act_steps']} executed per decision, K = 1, "
        f"noise basis {s.get('noise_basis', 0)} (0 = white): D = {s['chain_dims']}",
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


def cli_main(argv: list[str]) -> int:
    from reinflow.cli import _pop_flag, tyro_cli
    policy, argv = _pop_flag(list(argv), "--policy")
    if policy == "smolvla":  # LeRobot's SmolVLA end to end: reinflow/quickstart_smolvla.py
        from reinflow.quickstart_smolvla import cli_main as smolvla_main
        return smolvla_main(argv)
    if policy not in (None, "mlp"):
        raise ConfigError(f"policy={policy!r}: allowed mlp, smolvla")
    cfg = tyro_cli(QuickstartConfig, argv, "reinflow quickstart")
    run_quickstart(cfg)
    return 0
