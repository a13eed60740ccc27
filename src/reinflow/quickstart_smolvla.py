"""``reinflow quickstart --policy smolvla``: LeRobot's SmolVLA, end to end, on CPU, offline.

tiny random SmolVLM backbone (``reinflow smolvla-tiny``) -> scripted-expert pixel demos written as a
``LeRobotDataset`` -> SmolVLA behaviour cloning through LeRobot's own loss (``SmolVLAPolicy.forward``)
-> evaluation -> PPO fine-tuning on parallel headless arms with cameras (the default from a
pretrained policy: a zero-initialised residual offset over the frozen SmolVLA, smooth noise, every
chain started at one fixed x_0; the prefix is frozen, so the update reuses the rollout's prefix
cache) -> the kept best policy evaluated on the same held-out seeds -> the MLP quickstart's report
(``summary.json``, ``summary.md``, plots).

Sizes chosen to fit a 2-core CPU: 32x32 camera images (SmolVLA pads them to the tiny vision
tower's 64x64: 4 visual tokens per camera after pixel shuffle), a 4-layer 64-wide VLM and a
48-wide expert, chunk 50 x 6 dims, K = 1 (D = 4 x 6 smooth-noise coefficients). The budget covers
the whole command:
a short probe segment measures the seconds per iteration, then one resumed segment fills the rest.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from reinflow import ConfigError
from reinflow.quickstart import TASKS, _markdown, _stage, kept_policy
from reinflow.rl.keep_best import heldout_seed
from reinflow.rl.presets import preset_overrides
from reinflow.rl.runfolder import check_out, claim_out
from reinflow.validate import check_fields


@dataclass
class SmolVLAQuickstartConfig:
    """Tiny SmolVLA: pixel demos -> LeRobotDataset -> SmolVLA BC -> eval -> ReinFlow -> eval -> report."""

    out: str = "runs/quickstart_smolvla"
    """report folder (summary.json, summary.md, plots/, plus vlm/, dataset/, bc/, train/)"""
    task: Literal["reach", "push", "pick-lift"] = "reach"
    """built-in arm task (only reach is measured: docs/smolvla.md)"""
    minutes: float = 30.0
    """wall-clock budget of the whole command, in minutes"""
    seed: int = 0
    """seed of demos, BC, envs and PPO"""
    eval_episodes: int = 100
    """held-out evaluation episodes, before and after fine-tuning (same seeds)"""
    demo_episodes: int = 4
    """expert demos recorded into the LeRobot dataset (fewer = a weaker BC policy)"""
    bc_steps: int = 1000
    """SmolVLA BC gradient steps (fewer leave the action dependent on the initial noise: docs/smolvla.md)"""
    bc_batch_size: int = 32
    """SmolVLA BC batch size"""
    bc_lr: float = 1e-3
    """SmolVLA BC learning rate"""
    image_size: int = 32
    """camera images (square); SmolVLA pads them to the backbone's vision size"""
    trainable: Literal["heads", "expert"] = "expert"
    """SmolVLA parameters PPO trains with --preset chain-ppo (both keep the prefix frozen and reuse it)"""
    preset: str = "default"
    """reinflow train recipe (src/reinflow/rl/presets.py; default: residual from the BC policy)"""
    initial_noise: Literal["sample", "fixed", "zero"] = "fixed"
    """chain start x_0 (reinflow train --initial-noise): fixed = one draw seeded by --seed, in BC eval,
    rollout and eval alike"""
    train_eval_episodes: int = 20
    """episodes of the periodic in-training evaluation (the success curve)"""
    parallel_envs: int | None = None
    """parallel envs (default: the preset's)"""
    rollout_steps: int | None = None
    """decisions per env per iteration (default: the preset's)"""
    max_iterations: int | None = None
    """cap on PPO iterations (default: as many as the budget allows)"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """move an existing non-empty --out aside (never deleted) instead of refusing it"""

    def __post_init__(self) -> None:
        check_fields(self)  # types, finite numbers, the bounds every field has (validate.py)
        if not self.minutes > 0:
            raise ConfigError(f"minutes={self.minutes}: must be > 0")
        bad = [f"{n}={v}" for n in ("eval_episodes", "demo_episodes", "bc_steps", "bc_batch_size", "image_size",
                                    "train_eval_episodes", "parallel_envs", "rollout_steps", "max_iterations")
               if (v := getattr(self, n)) is not None and v < 1]
        if bad:
            raise ConfigError(f"{bad[0]}: must be >= 1")
        if not self.bc_lr > 0:
            raise ConfigError(f"bc_lr={self.bc_lr}: must be > 0")


def _evaluate(agent, env_id: str, env_kwargs: dict, episodes: int, seed: int) -> dict:
    """Deterministic (ODE) success on ``episodes`` held-out seeds, 10 envs in parallel."""
    from reinflow.envs.factory import make_vector_env
    from reinflow.rl.evaluate import run_episodes
    envs = make_vector_env(env_id, min(10, episodes), agent.sampler.act_steps, "sync", env_kwargs)
    try:
        t = time.time()
        res = run_episodes(agent, envs, episodes, seed=seed, deterministic=True)
        res["seconds"] = time.time() - t
    finally:
        envs.close()
    return res


def run_smolvla_quickstart(cfg: SmolVLAQuickstartConfig) -> dict:
    """Run the pipeline; returns the summary dict (also written to <out>/summary.json)."""
    try:
        from reinflow.bc.lerobot_data import record_lerobot_demos
        from reinflow.bc.smolvla_bc import SmolVLABCConfig, smolvla_bc
        from reinflow.policies.smolvla.tiny import write_tiny_vlm
    except ImportError as exc:
        raise ConfigError(f"quickstart --policy smolvla needs the extra: pip install -e '.[smolvla]' && pip install "
                          f"--no-deps lerobot==0.4.4 torchvision==0.28.0 (docs/smolvla.md) [{exc}]") from None
    from reinflow.envs.factory import env_spaces, set_headless_gl
    from reinflow.report.logger import read_metrics
    from reinflow.report.plots import plot_run
    from reinflow.rl.build import build_agent, resolve_env_kwargs
    from reinflow.rl.checkpoint import load_agent, resolve_checkpoint
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.trainer import train

    t0, budget_s = time.time(), cfg.minutes * 60.0
    set_headless_gl()
    env_id, out = TASKS[cfg.task], Path(cfg.out)
    # Like train: an earlier report folder is never deleted; refused, or moved aside with --overwrite.
    check_out(out, overwrite=cfg.overwrite)
    held = claim_out(out, cfg.overwrite)  # locked: one process per report folder, until the report is written
    size = [cfg.image_size, cfg.image_size]
    kw_text = json.dumps({"image_size": size})
    env_kw = resolve_env_kwargs(kw_text, env_id, "smolvla")
    eval_seed = heldout_seed(cfg.seed)  # never the episodes training's evaluations select the kept policy on
    _stage(f"task {cfg.task} ({env_id}), SmolVLA (tiny offline backbone), cameras {size[0]}x{size[1]}; "
           f"budget {cfg.minutes:g} min; chunk 50 x 6, K = 1", t0)

    _stage("1/7 writing the tiny SmolVLM backbone", t0)
    vlm = write_tiny_vlm(out / "vlm")
    _stage(f"2/7 recording {cfg.demo_episodes} pixel demos into a LeRobotDataset", t0)
    demos = record_lerobot_demos(env_id, cfg.demo_episodes, out / "dataset", seed=cfg.seed, progress=cfg.progress,
                                 obs_mode="pixels_state", image_size=tuple(size))
    _stage(f"    {demos['episodes']} episodes, {demos['steps']} frames -> {out / 'dataset'}", t0)
    _stage(f"3/7 SmolVLA BC (LeRobot's SmolVLAPolicy.forward), {cfg.bc_steps} steps x {cfg.bc_batch_size}", t0)
    bc = smolvla_bc(SmolVLABCConfig(dataset=str(out / "dataset"), out=str(out / "bc"), vlm_path=str(vlm),
                                    steps=cfg.bc_steps, batch_size=cfg.bc_batch_size, lr=cfg.bc_lr, seed=cfg.seed,
                                    progress=cfg.progress))
    _stage(f"    BC loss {bc['loss_first']:.3f} -> {bc['loss_last']:.3f} in {bc['seconds']:.0f}s; "
           f"LeRobot folder {bc['lerobot_folder']}", t0)

    overrides = preset_overrides(cfg.preset)
    overrides.update({k: v for k in ("parallel_envs", "rollout_steps") if (v := getattr(cfg, k)) is not None})
    tcfg = TrainConfig(env=env_id, env_kwargs=kw_text, out=str(out / "train"), policy="smolvla",
                       policy_path=str(out / "bc"), trainable=cfg.trainable, seed=cfg.seed,
                       initial_noise=cfg.initial_noise, initial_noise_seed=cfg.seed,
                       eval_episodes=cfg.train_eval_episodes, progress=cfg.progress, checkpoint_every=1_000_000,
                       **{**overrides, "lr_schedule": "constant"}).resolved()  # constant: iterations come later
    _stage(f"4/7 evaluating the BC policy on {cfg.eval_episodes} held-out episodes", t0)
    before = _evaluate(build_agent(tcfg, *env_spaces(env_id, env_kw)), env_id, env_kw, cfg.eval_episodes, eval_seed)
    _stage(f"    success {before['success_rate']:.3f} ({before['episodes']} episodes, {before['seconds']:.0f}s)", t0)

    _stage(f"5/7 fine-tuning ({tcfg.algorithm}, preset {cfg.preset}, noise basis {tcfg.noise_basis}: "
           f"D = {(min(tcfg.noise_basis, 50) or 50) * 6}): {tcfg.parallel_envs} envs x "
           f"{tcfg.rollout_steps} decisions/iteration", t0)
    reserve = before["seconds"] * 1.3 + 15.0
    probe = min(tcfg.critic_warmup_iters + 1, cfg.max_iterations or 10**9)
    res = train(replace(tcfg, iterations=probe, eval_every=10**6))
    probe_rows = read_metrics(out / "train" / "metrics.jsonl")[-2:]  # the last one updates the actor too
    per_it = 1.1 * sum(r["time/rollout_s"] + r["time/update_s"] for r in probe_rows) / len(probe_rows) \
        + cfg.train_eval_episodes * 0.05
    left = budget_s - (time.time() - t0) - reserve
    target = min(probe + max(int(left / per_it), 0), cfg.max_iterations or 10**9)
    if target > probe:
        _stage(f"    {per_it:.1f}s/iteration measured: {target - probe} more iterations fit", t0)
        res = train(replace(tcfg, iterations=target, resume=True, eval_every=max(1, target // 8)))
    rows = read_metrics(out / "train" / "metrics.jsonl")
    _stage(f"    {res.iterations} iterations, {res.env_steps} env steps", t0)

    kept = kept_policy(out / "train", res)
    _stage(f"6/7 evaluating the fine-tuned policy ({kept['what']}) on the same {cfg.eval_episodes} episodes", t0)
    after = _evaluate(load_agent(resolve_checkpoint(kept["path"]))[0], env_id, env_kw, cfg.eval_episodes, eval_seed)
    _stage(f"    success {after['success_rate']:.3f} ({after['episodes']} episodes)", t0)

    _stage("7/7 writing the report", t0)
    summary = _summary(cfg, tcfg, env_id, before, after, rows, res, demos, bc, time.time() - t0, budget_s,
                       plot_run(out / "train", out / "plots"))
    summary["policy_evaluated"], summary["kept_iteration"] = kept["what"], kept["iteration"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    md = _markdown(summary, replace(tcfg, iterations=res.iterations)).replace(
        "# reinflow quickstart:", "# reinflow quickstart --policy smolvla:", 1)
    (out / "summary.md").write_text(md + _smolvla_notes(summary))
    _stage(f"done in {summary['wall_time_s'] / 60:.1f} min: success {summary['success_before']:.2f} -> "
           f"{summary['success_after']:.2f} ({summary['success_gain_pp']:+.0f} pp), max clip fraction "
           f"{summary['clip_fraction_max']:.2f}", t0)
    print(f"report: {out}/summary.md  (summary.json, plots/*.png; run folder {out}/train)")
    held.close()
    return summary


def _summary(cfg, tcfg, env_id, before, after, rows, res, demos, bc, wall, budget_s, plots) -> dict:
    def col(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]
    clip = col("ppo/clip_fraction")
    b, a = before["success_rate"] or 0.0, after["success_rate"] or 0.0
    return {
        "policy": "smolvla (LeRobot SmolVLAPolicy, tiny offline backbone)", "task": cfg.task, "env": env_id,
        "success_before": b, "success_after": a, "success_gain_pp": 100.0 * (a - b),
        "eval_episodes_before": before["episodes"], "eval_episodes_after": after["episodes"],
        "eval_seed": heldout_seed(cfg.seed), "eval_mode": "deterministic (ODE, no injected noise)",
        "eval_before": before, "eval_after": after, "env_steps": res.env_steps, "iterations": res.iterations,
        "iterations_planned": res.iterations,
        "wall_time_s": wall, "budget_s": budget_s,
        "clip_fraction_max": max(clip) if clip else float("nan"),
        "clip_fraction_median": sorted(clip)[len(clip) // 2] if clip else float("nan"),
        "ratio_min": min(col("ppo/ratio_min"), default=float("nan")),
        "ratio_max": max(col("ppo/ratio_max"), default=float("nan")),
        "pre_update_ratio_max_dev": max(col("ppo/pre_update_ratio_max_dev"), default=float("nan")),
        "context_reused": min(col("ppo/context_reused"), default=0.0),
        "rollout_s_mean": sum(col("time/rollout_s")) / max(len(rows), 1),
        "update_s_mean": sum(col("time/update_s")) / max(len(rows), 1),
        "chain_dims": col("logprob/num_dims")[-1] if col("logprob/num_dims") else None,
        "noise_basis": tcfg.noise_basis, "chunk_size": 50, "act_steps": tcfg.act_steps or 50, "denoise_steps": 1,
        "dataset": demos, "bc": bc, "plots": [str(p) for p in plots], "run_folder": str(Path(cfg.out) / "train"),
        "config": {"quickstart": asdict(cfg), "train": asdict(replace(tcfg, iterations=res.iterations))},
    }


def _smolvla_notes(s: dict) -> str:
    return "\n".join([
        "", "## SmolVLA pipeline", "",
        f"* dataset: LeRobotDataset (v3.0) at `{s['dataset']['path']}`, {s['dataset']['episodes']} episodes, "
        f"{s['dataset']['steps']} frames (`LeRobotDataset(repo_id, root=...)` loads it offline)",
        f"* BC: LeRobot's `SmolVLAPolicy.forward`, loss {s['bc']['loss_first']:.3f} -> {s['bc']['loss_last']:.3f}; "
        f"LeRobot folder `{s['bc']['lerobot_folder']}`",
        f"* prefix reused from the rollout in every update: {bool(s['context_reused'])}; pre-update max "
        f"abs(ratio - 1): {s['pre_update_ratio_max_dev']:.3g}",
        f"* mean seconds per iteration: rollout {s['rollout_s_mean']:.1f}, update {s['update_s_mean']:.1f}", ""])
