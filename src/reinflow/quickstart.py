"""``reinflow quickstart``: the whole pipeline, for every policy kind (``--policy mlp|smolvla``) on a
built-in arm task (``--task``) or any env with an expert (``--env ID --env-kwargs JSON [--expert
module:callable]``, MetaWorld's included), with a report folder.

demos (scripted expert) -> BC of a deliberately imperfect policy -> evaluation on held-out episodes ->
fine-tuning (``reinflow train``'s default from a BC policy, or ``--algorithm`` / ``--preset``) on
parallel headless envs (chunk 50 x A, K = 1, smooth noise: D = 4 x A) -> the kept policy on the same
held-out episodes -> ``summary.json``, ``summary.md`` and PNG plots.

What differs per policy kind (demo format, BC, what it adds to the env and the run, report notes)
is a small class in ``reinflow.quickstart_policies``, with the per-env settings (demos, BC steps,
iterations; ``--algorithm dsrl``: an env-step budget). A fixed iteration count decides the result, so it
does not depend on machine load;
``--minutes`` only caps the whole command (``TrainConfig.time_limit_min`` is what is left after BC
and the first evaluation, keeping a reserve for the last one), and the report says when it cut the run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from reinflow import ConfigError
from reinflow.quickstart_policies import KINDS, MLP_TASKS, TASKS, PolicyKind, Settings
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.config import SharedFields
from reinflow.rl.keep_best import BEST_DIR, heldout_seed
from reinflow.rl.presets import preset_overrides
from reinflow.rl.runfolder import check_out, claim_out
from reinflow.validate import check_fields

# the MLP's per-task BC settings under their old name (benchmarks/recipes.py builds the same BCs)
BC_SETTINGS = {t: dict(episodes=MLP_TASKS[i].bc_episodes, steps=MLP_TASKS[i].bc_steps) for t, i in TASKS.items()}
QUICKSTART_ITERATIONS = {t: MLP_TASKS[i].iterations for t, i in TASKS.items()}


@dataclass
class QuickstartConfig(SharedFields):
    """Demos -> BC -> eval -> fine-tuning (chunk 50 x A, D = 4 x A) -> eval -> report, for any policy kind."""

    policy: str = "mlp"
    """policy kind: mlp (reinflow's flow policy) or smolvla (LeRobot's SmolVLA, tiny offline backbone)"""
    out: str | None = None
    """report folder (summary.json, summary.md, plots/, plus the stages' folders; default runs/quickstart[_smolvla])"""
    task: Literal["reach", "push", "pick-lift"] = "pick-lift"
    """built-in arm task (pick-lift: the grasp the seed system failed at)"""
    env: str | None = None
    """instead of --task: any env id with an expert, e.g. metaworld:Meta-World/MT1 (docs/metaworld.md)"""
    expert: str | None = None
    """--env's demo expert as module:callable (default: the built-in one of arm and MetaWorld ids)"""
    minutes: float | None = None
    """cap on the whole command's wall time, in minutes (default per env and policy: 15, SmolVLA 30; dsrl 30)"""
    heldout_episodes: Annotated[int, tyro.conf.arg(aliases=("--eval-episodes",))] = 100
    """held-out evaluation episodes, before and after fine-tuning (same seeds); --eval-episodes: its old, deprecated name"""
    demo_episodes: int | None = None
    """expert demos recorded (default per env and policy)"""
    demo_noise: float | None = None
    """std of noise on the actions executed while recording demos, [-1, 1] units (clean ones recorded; default: the env's)"""
    demo_only_success: bool = True
    """keep only the expert's successful demo episodes (--no-demo-only-success keeps failures too)"""
    bc_episodes: int | None = None
    """demo episodes BC trains on (fewer = a weaker starting policy; default: all recorded)"""
    bc_steps: int | None = None
    """BC gradient steps (fewer = a weaker starting policy; default per env and policy)"""
    bc_batch_size: int | None = None
    """BC batch size (default: mlp 256, smolvla 32)"""
    bc_lr: float = 1e-3
    """BC learning rate (cosine-decayed)"""
    image_size: tuple[int, int] | None = None
    """policies that read cameras (smolvla): camera images H W (default 32 32)"""
    parallel_envs: int | None = None
    """parallel envs (default: TrainConfig's)"""
    rollout_steps: int | None = None
    """decisions per env per iteration (default: TrainConfig's)"""
    train_eval_episodes: int = 20
    """episodes of the periodic in-training evaluation (the success curve): the run's --eval-episodes"""
    preset: str = "default"
    """reinflow train --preset (src/reinflow/rl/presets.py); --algorithm and the quickstart's flags win"""
    trainable: Literal["heads", "expert"] | None = None
    """smolvla: parameters chain-ppo trains (default expert; both keep the prefix frozen and reuse it)"""
    iterations: int | None = None
    """iterations (default per env and policy; dsrl: the most that fit its env-step budget); --minutes may cut the run earlier"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.policy not in KINDS:
            raise ConfigError(f"policy={self.policy!r}: allowed {', '.join(KINDS)}")
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError(f"minutes={self.minutes}: must be > 0")
        if not self.bc_lr > 0:
            raise ConfigError(f"bc_lr={self.bc_lr}: must be > 0")
        self.check_shared()  # sizes have their ranges in validate.RANGES (checked above)
        preset_overrides(self.preset)  # an unknown name ends here, before any demo is recorded
        kind = KINDS[self.policy]
        for name, ok in (("image_size", kind.cameras), ("trainable", kind.name == "smolvla")):
            if getattr(self, name) is not None and not ok:
                raise ConfigError(f"{name}={getattr(self, name)}: only for --policy smolvla")


def _stage(msg: str, t0: float) -> None:
    print(f"[quickstart {time.time() - t0:6.1f}s] {msg}", flush=True)


@dataclass
class Plan:
    """What the pipeline runs: the env, and the settings with the flags applied."""

    label: str
    env_id: str
    env_kwargs: dict
    action_dim: int
    demo_episodes: int
    bc_episodes: int
    bc_steps: int
    chunk_size: int
    act_steps: int
    iterations: int
    minutes: float
    image_size: list[int]
    settings: Settings


def make_plan(cfg: QuickstartConfig, kind: PolicyKind) -> Plan:
    from reinflow.envs.factory import env_spaces
    from reinflow.rl.build import resolve_env_kwargs
    env_id = TASKS[cfg.task] if cfg.env is None else cfg.env
    s = kind.settings(env_id)
    image = list(cfg.image_size or (s.image_size, s.image_size))
    kw = kind.env_kwargs(resolve_env_kwargs(cfg.env_kwargs, env_id, kind.name, defaults=s.env), image)
    label = cfg.task if cfg.env is None else kw.get("env_name", cfg.env)  # MetaWorld: the task name
    bc_episodes = cfg.bc_episodes or cfg.demo_episodes or s.bc_episodes
    demo_episodes = cfg.demo_episodes or cfg.bc_episodes or s.demo_episodes
    chunk = cfg.chunk_size or s.chunk_size
    act_steps = cfg.act_steps or chunk  # <= chunk: TrainConfig's rule (train_config), before any demo is recorded
    iterations, minutes = cfg.iterations or s.iterations, cfg.minutes or s.minutes
    if cfg.algorithm != "auto" and algorithm_class(cfg.algorithm).budget_in_env_steps:  # its own wall-time cap too
        iterations, minutes = cfg.iterations or dsrl_iterations(cfg, kind, s, act_steps), cfg.minutes or s.dsrl_minutes
    return Plan(label, env_id, kw, int(env_spaces(env_id, kw)[1].shape[-1]), demo_episodes, bc_episodes,
                cfg.bc_steps or s.bc_steps, chunk, act_steps, iterations, minutes, image, s)


def dsrl_iterations(cfg: QuickstartConfig, kind: PolicyKind, s: Settings, act_steps: int) -> int:
    """--algorithm dsrl: the most iterations that fit ``s.dsrl_env_steps``; an iteration takes at most
    parallel_envs x rollout_steps x act_steps env steps (fewer when episodes end early)."""
    from reinflow.rl.config import TrainConfig
    f = run_fields(cfg, kind, s)
    width = f.get("parallel_envs", TrainConfig.parallel_envs) * f.get("rollout_steps", TrainConfig.rollout_steps)
    return max(1, s.dsrl_env_steps // (width * act_steps))


def _score(res: dict) -> str:
    ok = res["success_rate"]
    return (f"success {ok:.3f}, " if ok is not None else "") + f"return {res['return_mean']:.4g}"


def evaluate_agent(agent: Any, env_id: str, env_kwargs: dict, episodes: int, seed: int, vector: str = "sync") -> dict:
    """Deterministic (ODE, no injected noise) episodes from ``reset(seed=seed + i)``, 10 envs in parallel."""
    from reinflow.envs.factory import make_vector_env
    from reinflow.rl.evaluate import run_episodes
    envs = make_vector_env(env_id, min(10, episodes), agent.sampler.act_steps, vector, env_kwargs)
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


# QuickstartConfig fields handed to its run as they are (the others the pipeline resolves: out, env, env_kwargs,
# chunk_size, act_steps, iterations, trainable, preset; overwrite is the report folder's); None / "auto": not given
HANDED_TO_THE_RUN = ("seed", "algorithm", "precision", "progress", "parallel_envs", "rollout_steps")


def train_config(cfg: QuickstartConfig, kind: PolicyKind, plan: Plan, out: Path, extra: dict) -> Any:
    """The run's TrainConfig, resolved ('auto' made): the pipeline's fields, the env's settings, the
    policy kind's, the preset, then the flags."""
    from reinflow.rl.config import TrainConfig
    it = plan.iterations
    fields = dict(env=plan.env_id, env_kwargs=json.dumps(plan.env_kwargs) if plan.env_kwargs else "",
                  out=str(out / "train"), policy_path=str(out / kind.bc_dir), act_steps=plan.act_steps,
                  chunk_size=plan.chunk_size,  # BC's: a LeRobot folder does not tell train its chunk
                  iterations=it, eval_every=max(1, it // 10), eval_episodes=cfg.train_eval_episodes,
                  checkpoint_every=max(1, it // 4))
    fields |= run_fields(cfg, kind, plan.settings, extra)
    return TrainConfig(**fields).resolved()  # what train() runs: the algorithm and lr 'auto' picks


def run_fields(cfg: QuickstartConfig, kind: PolicyKind, s: Settings, extra: dict | None = None) -> dict:
    """TrainConfig fields from the env's settings, the policy kind, the preset, ``extra``, then the flags."""
    flags = {k: v for k in HANDED_TO_THE_RUN if (v := getattr(cfg, k)) is not None and v != "auto"}
    return s.train | kind.train_fields(cfg) | preset_overrides(cfg.preset) | (extra or {}) | flags


def run_quickstart(cfg: QuickstartConfig) -> dict:
    """Run the pipeline; returns the summary dict (also written to <out>/summary.json)."""
    from reinflow.bc.pretrain import PretrainConfig, pretrain
    from reinflow.envs.factory import env_spaces, set_headless_gl
    from reinflow.quickstart_report import summarize, write_report
    from reinflow.rl.build import build_agent
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.dist import resolve_device
    from reinflow.rl.precision import autocast
    from reinflow.rl.trainer import train

    t0 = time.time()
    set_headless_gl()
    kind = KINDS[cfg.policy]
    plan = make_plan(cfg, kind)
    budget_s = plan.minutes * 60.0
    out = Path(cfg.out or ("runs/quickstart" if kind.name == "mlp" else f"runs/quickstart_{kind.name}"))
    tcfg = train_config(cfg, kind, plan, out, {})  # its rules (act_steps <= chunk ...) checked before any write
    # Like train: an earlier report folder is never deleted; refused, or moved aside with --overwrite.
    check_out(out, overwrite=cfg.overwrite, can_resume=False)
    held = claim_out(out, cfg.overwrite)  # locked: one process per report folder, until the report is written
    eval_seed = heldout_seed(cfg.seed)  # never the episodes training's evaluations pick the kept policy on
    text = algorithm_class(tcfg.algorithm).describe(tcfg, plan.act_steps, plan.action_dim)
    basis = min(tcfg.noise_basis, plan.act_steps)  # capped at the executed steps, as sampler_config does
    dims = (basis or plan.act_steps) * plan.action_dim
    cams = f", cameras {plan.image_size[0]}x{plan.image_size[1]}" if kind.cameras else ""
    _stage(f"task {plan.label} ({plan.env_id}), {kind.label}{cams}; {plan.iterations} iterations, at most "
           f"{plan.minutes:g} min; chunk {plan.chunk_size} x {plan.action_dim}, K = 1, {text['space']}", t0)
    if plan.act_steps < plan.chunk_size:
        print(f"  note: act_steps={plan.act_steps} < chunk {plan.chunk_size}: closed-loop execution, D = {dims} "
              "(asked for on the command line)")

    _stage(f"1/6 recording {plan.demo_episodes} scripted-expert demos ({kind.demo_dir}/)", t0)
    demos = kind.record_demos(plan.env_id, plan.demo_episodes, out / kind.demo_dir, plan.env_kwargs, seed=cfg.seed,
                              progress=cfg.progress, expert=cfg.expert, action_noise=cfg.demo_noise,
                              only_success=cfg.demo_only_success)
    _stage(f"    {demos['episodes']} demos, {demos['steps']} steps, expert success {demos['success_rate']:.2f}", t0)

    n_bc = min(plan.bc_episodes, demos["episodes"])
    _stage(f"2/6 {kind.name} BC on {n_bc} demos x {plan.bc_steps} steps (deliberately imperfect)", t0)
    bc = pretrain(PretrainConfig(demos=str(out / kind.demo_dir), out=str(out / kind.bc_dir), policy=kind.name,
                                 chunk_size=plan.chunk_size, denoise_steps=1, steps=plan.bc_steps,
                                 batch_size=cfg.bc_batch_size or kind.bc_batch_size, lr=cfg.bc_lr,
                                 max_episodes=plan.bc_episodes, seed=cfg.seed, progress=cfg.progress,
                                 **kind.prepare(out)))
    first, last = kind.loss_keys
    _stage(f"    BC loss {bc[first]:.3f} -> {bc[last]:.3f}", t0)

    # the agent training starts from (its sampler: act_steps, x_0 rule), before any fine-tuning
    _stage(f"3/6 evaluating the BC policy on {cfg.heldout_episodes} held-out episodes", t0)
    start = build_agent(tcfg, *env_spaces(plan.env_id, plan.env_kwargs))
    with autocast(tcfg.precision, resolve_device(tcfg.device)):  # both evaluations in the numerics fine-tuning uses
        before = evaluate_agent(start, plan.env_id, plan.env_kwargs, cfg.heldout_episodes, eval_seed, tcfg.vector)
    del start
    _stage(f"    {_score(before)} ({before['episodes']} episodes, {before['seconds']:.0f}s)", t0)

    # The after-evaluation costs about what the before one did (often less: successes end early).
    reserve = before["seconds"] * 1.3 + 15.0
    left_min = (budget_s - (time.time() - t0) - reserve) / 60.0
    if left_min <= 0:
        raise ConfigError(f"minutes={plan.minutes:g}: the budget is spent before fine-tuning starts "
                          f"({(time.time() - t0) / 60:.1f} min so far); give more minutes")
    tcfg = replace(tcfg, time_limit_min=left_min)
    _stage(f"4/6 fine-tuning ({tcfg.algorithm}): {tcfg.iterations} iterations (cut at {left_min:.1f} min) of "
           f"{tcfg.parallel_envs} envs x {tcfg.rollout_steps} decisions, {text['recipe']}", t0)
    res = train(tcfg)
    why = "a signal (Ctrl-C / SIGTERM) stopped" if res.stopped_by == "signal" else "--minutes cut"
    cut = f" ({why} the run at {res.iterations} of {tcfg.iterations})" if res.iterations < tcfg.iterations else ""
    _stage(f"    {res.iterations} iterations{cut}, {res.env_steps} env steps", t0)

    kept = kept_policy(out / "train", res)
    _stage(f"5/6 evaluating the fine-tuned policy ({kept['what']}) on the same {cfg.heldout_episodes} episodes", t0)
    agent = load_agent(kept["path"], sampler_overrides={"act_steps": plan.act_steps})[0]
    with autocast(tcfg.precision, resolve_device(tcfg.device)):
        after = evaluate_agent(agent, plan.env_id, plan.env_kwargs, cfg.heldout_episodes, eval_seed, tcfg.vector)
    _stage(f"    {_score(after)} ({after['episodes']} episodes)", t0)

    _stage("6/6 writing the report", t0)
    summary = summarize(cfg, kind, plan, tcfg, res, kept, before, after, demos, bc, out, eval_seed, dims, basis,
                        time.time() - t0, budget_s)
    write_report(summary, kind, tcfg, out)
    pct = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    _stage(f"done in {summary['wall_time_s'] / 60:.1f} min: success {pct(summary['success_before'])} -> "
           f"{pct(summary['success_after'])} ({summary['success_gain_pp']:+.0f} pp, {after['episodes']} episodes "
           f"each)" + (f", max clip fraction {c:.2f}" if (c := summary["clip_fraction_max"]) is not None else "") + cut, t0)
    print(f"report: {out}/summary.md  (summary.json, plots/*.png; run folder {out}/train)")
    held.close()
    return summary
