"""The one trainer: rollout -> GAE -> PPO update -> checks -> metrics -> checkpoint, for every
policy type and env. Variants are configuration (TrainConfig), never copies of this file."""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reinflow import ConfigError, InvariantError, ReinflowError
from reinflow.envs.factory import env_spaces, make_vector_env, set_headless_gl
from reinflow.rl.build import apply_auto_scale, build_agent, env_kwargs, health_context, resolve_device
from reinflow.rl.checkpoint import load_agent, save_run_checkpoint
from reinflow.rl.config import TrainConfig
from reinflow.rl.context import cat_contexts, context_budget_bytes
from reinflow.rl.dist import (DistInfo, all_reduce, broadcast_module, init_distributed, param_max_abs_diff,
                              reduce_metrics, shutdown)
from reinflow.rl.evaluate import run_episodes
from reinflow.rl.gae import TRUNCATION_MODES, gae, time_limit_as
from reinflow.rl.keep_best import BestKeeper, heldout_seed, selection_seed
from reinflow.rl.ppo import Batch, cat_obs, ppo_update, pre_update_check
from reinflow.rl.rollout import RewardScaler, collect_rollout
from reinflow.rl.runfolder import RunFolder, check_out, resume_changes, resume_point, write_json_atomic
from reinflow.rl.trainer_state import read_trainer_state, restore_trainer_state
from reinflow.report.logger import MetricsLogger


EVAL_ENVS = 10


@dataclass
class TrainResult:
    out: Path
    iterations: int
    env_steps: int
    wall_s: float
    last_metrics: dict
    final_eval: dict | None
    stopped_early: bool
    best: dict | None = None
    """the kept policy (``<out>/best``): iteration, selection success_rate, heldout evaluation"""


def _nanmean(xs: list[float]) -> float | None:
    vals = [x for x in xs if x == x]
    return float(np.mean(vals)) if vals else None


def lr_factor(cfg: TrainConfig, it: int) -> float:
    """Linear warm-up, then cosine decay to lr_min_frac (or constant)."""
    if it < cfg.lr_warmup_iters:
        return (it + 1) / (cfg.lr_warmup_iters + 1)
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.iterations - cfg.lr_warmup_iters - 1, 1)
    frac = min((it - cfg.lr_warmup_iters) / span, 1.0)
    return cfg.lr_min_frac + (1 - cfg.lr_min_frac) * 0.5 * (1 + math.cos(math.pi * frac))


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = float(target.var())
    return float("nan") if var == 0 else 1.0 - float((target - pred).var()) / var


class _StopFlag:
    """SIGINT/SIGTERM finish the current iteration, checkpoint, and exit cleanly."""

    def __init__(self) -> None:
        self.hit = False
        self._old = {}

    def __enter__(self) -> "_StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.hit:  # a second signal stops now, whatever the loop is doing (the last checkpoint stays valid)
            raise KeyboardInterrupt
        self.hit = True
        print("[reinflow] stopping after this iteration (checkpoint follows); signal again to stop now",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def stream_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (seed, iteration, global env index, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _seeded_reset(envs: Any, seed: int, iteration: int, first: int) -> Any:
    """Reset every env from the seed of its global index at this iteration."""
    seeds = [stream_seed(seed, iteration, first + i, 0) % 2**31 for i in range(envs.num_envs)]
    return envs.reset(seed=seeds)[0]


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a ReinFlow + PPO training; under torchrun, one data-parallel rank of it."""
    check_out(cfg.out, cfg.resume, cfg.overwrite, cfg.policy_path)  # every rank, before any rank can write
    cfg = _resolved(cfg)
    info = init_distributed()
    clean = False
    try:
        with RunFolder(cfg.out, lock=info.is_main) as run:  # one process per run folder, locked before it is read
            result = _train(cfg, info, run)
        clean = True
        return result
    finally:
        shutdown(info, clean)


def _resolved(cfg: TrainConfig) -> TrainConfig:
    """The 'auto' choices made; a resumed run keeps the algorithm it was trained with (runs written
    before the choice existed were reinflow)."""
    if cfg.resume and cfg.algorithm == "auto":
        try:
            saved = resume_point(cfg.out)[1]["train"]
        except ReinflowError:
            saved = {}  # _train reports what is wrong with the run folder
        cfg = replace(cfg, algorithm=saved.get("algorithm", "reinflow"))
    return cfg.resolved()


def _train(cfg: TrainConfig, info: DistInfo, run: RunFolder) -> TrainResult:
    from tqdm import tqdm

    from reinflow.rl.health import HealthMonitor
    t_start = time.time()
    main = info.is_main
    torch.manual_seed(cfg.seed)
    if cfg.headless:
        set_headless_gl()
    out = Path(cfg.out)
    # Everything is read and validated before anything is written: a refused or failed resume
    # leaves the run folder exactly as it was, so it stays resumable.
    state: dict | None = None
    saved: dict = {}
    if cfg.resume:  # the CLI already took the run's saved config as defaults under the flags
        ck, saved = resume_point(out)  # ck None: killed before its first checkpoint, so it starts over
        state = read_trainer_state(ck) if ck is not None else None
    kw = env_kwargs(cfg)
    obs_space, act_space = env_spaces(cfg.env, kw)
    agent = load_agent(ck)[0] if state is not None else build_agent(cfg, obs_space, act_space)
    cfg, scale_info = apply_auto_scale(cfg, agent, verbose=cfg.progress and main)
    changes = resume_changes(asdict(cfg), saved.get("train") or {}, saved.get("derived") or {}, str(out)) \
        if cfg.resume else {}
    device = resolve_device(cfg.device, info.local_rank)
    agent.to(device).train()
    broadcast_module(agent, info)
    ref = copy.deepcopy(agent).eval().requires_grad_(False) if cfg.bc_coef > 0 else None
    actor_opt = torch.optim.AdamW(agent.actor_parameters(), lr=cfg.lr_actor, weight_decay=0.0)
    critic_opt = torch.optim.AdamW(agent.critic_parameters(), lr=cfg.lr_critic, weight_decay=0.0)
    n_envs = cfg.parallel_envs
    scaler = RewardScaler(n_envs * info.world_size, cfg.gamma) if cfg.reward_scaling else None
    start_it, env_steps = 0, 0
    if state is not None:
        start_it, env_steps = restore_trainer_state(ck, state, actor_opt, critic_opt, scaler, n_envs * info.world_size)
    envs = make_vector_env(cfg.env, n_envs, agent.sampler.act_steps, cfg.vector, kw, first_index=info.rank * n_envs,
                           max_restarts=cfg.env_max_restarts, nonfinite=cfg.nonfinite)
    truncation = cfg.truncation if cfg.truncation != "auto" else envs.metadata.get("reinflow_truncation", "bootstrap")
    if truncation not in TRUNCATION_MODES:
        envs.close()
        raise ConfigError(f"env {cfg.env}: metadata['reinflow_truncation']={truncation!r}: "
                          f"allowed {', '.join(TRUNCATION_MODES)}")
    derived = {"truncation": truncation, "action_dim": agent.policy.action_dim,
               "padded_action_dim": agent.policy.padded_action_dim,
               "chunk_size": agent.policy.chunk_size, "denoise_steps": agent.policy.denoise_steps,
               "act_steps": agent.sampler.act_steps, "num_dims": agent.num_dims,
               "world_size": info.world_size, "auto_scale": scale_info}
    # each resume is recorded with what it changed (fields that may change: iterations, lr, logging ...)
    resumes = list(saved.get("resumes") or []) + ([{"at_iteration": start_it, "changed": changes}] if cfg.resume else [])
    run_config = {"train": asdict(cfg), "derived": derived, **({"resumes": resumes} if resumes else {})}
    logger = monitor = eval_envs = keeper = None
    if main:
        if not cfg.resume:
            run.claim(cfg.overwrite)
        keeper = BestKeeper(out, cfg.keep_best)
        write_json_atomic(out / "config.json", run_config)
        logger = MetricsLogger(out, run_config, cfg.tensorboard, cfg.wandb, cfg.wandb_project,
                               resume_from_iteration=start_it if cfg.resume else None)
        monitor = HealthMonitor(health_context(cfg, agent, scale_info and scale_info["rule"]), cfg.on_unhealthy,
                                print_fn=tqdm.write)
        # A fixed eval-env count (not parallel_envs): runs with different batch shapes are then
        # scored on the same episodes.
        eval_envs = make_vector_env(cfg.env, min(EVAL_ENVS, cfg.eval_episodes), agent.sampler.act_steps, "sync", kw,
                                    max_restarts=cfg.env_max_restarts, nonfinite=cfg.nonfinite)
    # Seeds and noise streams are functions of (seed, iteration, global env index): a run split
    # over ranks samples what one process with all the envs would, and a resumed run is seeded.
    first = info.rank * n_envs
    raw_obs = _seeded_reset(envs, cfg.seed, start_it, first)
    for warning in agent.policy.check_obs_frame(raw_obs) if main else []:
        tqdm.write(f"[reinflow] warning: {warning}")
    bar = tqdm(total=cfg.iterations, initial=start_it, disable=not (cfg.progress and main), desc="reinflow train",
               dynamic_ncols=True)
    metrics: dict = {}
    final_eval = best = None
    it = start_it - 1
    stopped = False
    try:
        with _StopFlag() as stop:
            for it in range(start_it, cfg.iterations):
                lo, hi = cfg.schedule().bounds_at(it, cfg.iterations)
                agent.set_sigma_bounds(lo, hi)
                for opt, base in ((actor_opt, cfg.lr_actor), (critic_opt, cfg.lr_critic)):
                    for group in opt.param_groups:
                        group["lr"] = base * lr_factor(cfg, it)
                if cfg.reset_each_iteration and it > start_it:
                    raw_obs = _seeded_reset(envs, cfg.seed, it, first)
                gens = [torch.Generator().manual_seed(stream_seed(cfg.seed, it, first + i, 1)) for i in range(n_envs)]
                t0 = time.time()
                roll, raw_obs = collect_rollout(envs, agent, raw_obs, cfg.rollout_steps, scaler, gens, info,
                                                context_budget_bytes(agent.policy, cfg.context_cache_gib))
                t_roll = time.time() - t0
                env_steps += int(all_reduce(torch.tensor([float(roll.env_steps)]), info).item())
                _check_bound(float(roll.per_dim.max()), roll.bound, lo, "rollout")
                term, trunc = time_limit_as(roll.terminated, roll.truncated, truncation)
                adv = gae(roll.rewards, roll.values, term, trunc, roll.final_values, roll.last_values,
                          cfg.gamma, cfg.gae_lambda)
                t1 = time.time()
                ctxs = roll.contexts  # frozen encoder: the update reuses the rollout's contexts
                pre_dev = pre_update_check(agent, roll.obs[0], roll.chains[0], roll.logp[0], ctxs[0] if ctxs else None)
                batch = Batch(obs=cat_obs(roll.obs), chains=roll.chains.flatten(0, 1), logp=roll.logp.flatten(0, 1),
                              advantages=adv.advantages.flatten(), returns=adv.returns.flatten(),
                              values=roll.values.flatten(), weights=roll.valid.flatten().float(),
                              context=cat_contexts(ctxs) if ctxs else None)
                roll.contexts = ctxs = None  # the batch holds the concatenated copy
                upd_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, it, info.rank, 2))
                upd = ppo_update(agent, actor_opt, critic_opt, batch, cfg, it >= cfg.critic_warmup_iters, upd_gen,
                                 ref, info)
                t_upd = time.time() - t1
                _check_bound(upd["logprob/per_dimension_max"], roll.bound, lo, "update")
                metrics = reduce_metrics(_iteration_metrics(cfg, it, roll, upd, batch, pre_dev, lo, hi, actor_opt,
                                                            critic_opt, t_roll, t_upd), info)
                if info.enabled or cfg.check_sync:
                    metrics["dist/world_size"] = info.world_size
                if cfg.check_sync:
                    metrics["dist/param_max_abs_diff"] = param_max_abs_diff(agent, info)
                out_of_time = cfg.time_limit_min is not None and time.time() - t_start > 60.0 * cfg.time_limit_min
                flags = all_reduce(torch.tensor([float(stop.hit), float(out_of_time)]), info, "max")
                stop_now, out_of_time = bool(flags[0].item()), bool(flags[1].item())
                last = it == cfg.iterations - 1 or stop_now or out_of_time
                if main:
                    if last or (cfg.eval_every and it % cfg.eval_every == 0):
                        final_eval = run_episodes(agent, eval_envs, cfg.eval_episodes, seed=selection_seed(cfg.seed))
                        final_eval["iteration"] = it
                        keeper.offer(agent, final_eval, selection_seed(cfg.seed), it, env_steps, run_config)
                        if last and keeper.info is not None:  # the number to report: unbiased by selection
                            best = keeper.measure_heldout(eval_envs, cfg.eval_episodes, heldout_seed(cfg.seed), device)
                            metrics.update({"eval/best_iteration": best["iteration"],
                                            "eval/best_success_rate": best["success_rate"],
                                            "eval/heldout_success_rate": best["heldout"]["success_rate"]})
                    if final_eval is not None:  # carried forward between evaluations; eval/iteration says when
                        metrics.update({"eval/success_rate": final_eval["success_rate"],
                                        "eval/return_mean": final_eval["return_mean"],
                                        "eval/iteration": final_eval["iteration"]})
                        if final_eval["success_rate"] is not None and metrics["train/success_rate"] is not None:
                            # How much the injected noise costs: few successes in the batch means
                            # little advantage signal (DESIGN section 7).
                            metrics["train/success_gap"] = final_eval["success_rate"] - metrics["train/success_rate"]
                    try:
                        metrics.update(monitor.update(metrics, it))
                    except InvariantError as exc:  # --on-unhealthy stop: the stopping iteration is logged too
                        metrics.update(getattr(exc, "health_flags", {}))
                        logger.log(metrics, it, env_steps)
                        raise
                    logger.log(metrics, it, env_steps)
                    if last or (it + 1) % cfg.checkpoint_every == 0:
                        trainer_state = {"iteration": it, "env_steps": env_steps, "actor_opt": actor_opt.state_dict(),
                                         "critic_opt": critic_opt.state_dict(),
                                         "scaler": scaler.state_dict() if scaler else None,
                                         "torch_rng": torch.get_rng_state()}
                        save_run_checkpoint(out, it, agent, run_config, trainer_state)
                bar.update(1)
                bar.set_postfix(steps=env_steps, reward=f"{metrics['reward/batch_avg']:.3g}",
                                clip=f"{metrics['training/clip_fraction']:.2f}")
                if out_of_time and not stop_now and it < cfg.iterations - 1:
                    stopped = True
                    if main:
                        bar.write(f"time limit of {cfg.time_limit_min:g} min reached after iteration {it} "
                                  f"(checkpoint and final evaluation written); continue with: "
                                  f"reinflow train --out {out} --resume --time-limit-min MINUTES")
                    break
                if stop_now:
                    stopped = True
                    if main:
                        bar.write(f"stopped by signal after iteration {it}; resume with: "
                                  f"reinflow train --out {out} --resume")
                    break
    except ReinflowError as exc:
        latest = out / "checkpoints" / "latest"
        where = (f"; last good checkpoint: {out / 'checkpoints' / latest.read_text().strip()} "
                 f"(resume with: reinflow train --out {out} --resume)") if main and latest.exists() else ""
        prefix = "" if f"iteration {it}" in str(exc) else f"iteration {it}: "
        raise type(exc)(f"{prefix}{exc}{where}") from exc
    finally:
        bar.close()
        envs.close()
        if main:
            logger.close()
            eval_envs.close()
    if main and monitor.summary():
        print(monitor.summary())
    return TrainResult(out=out, iterations=it + 1, env_steps=env_steps, wall_s=time.time() - t_start,
                       last_metrics=metrics, final_eval=final_eval, stopped_early=stopped, best=best)


def _check_bound(per_dim_max: float, bound: float, sigma_lo: float, where: str) -> None:
    """DESIGN invariant 2: no Gaussian with sigma >= sigma_lo has a per-dim log-density above the bound."""
    if per_dim_max > bound + 1e-9:
        raise InvariantError(f"logprob/per_dimension = {per_dim_max:.4f} ({where}) exceeds its bound {bound:.4f} = "
                             f"-0.5 log(2 pi) - log(sigma_lo={sigma_lo}): sigma is not bounded where the log-prob "
                             "is computed, or the sum counts more entries than it is divided by")


def _iteration_metrics(cfg: TrainConfig, it: int, roll: Any, upd: dict, batch: Batch, pre_dev: float, lo: float,
                       hi: float, actor_opt: Any, critic_opt: Any, t_roll: float, t_upd: float) -> dict:
    eps = roll.episodes
    return {
        **upd,
        "logprob/per_dimension": float(roll.per_dim.mean()), "logprob/per_dimension_bound": roll.bound,
        "logprob/num_dims": roll.num_dims, "logprob/old_mean": float(roll.logp.sum(-1).mean()),
        "ppo/pre_update_ratio_max_dev": pre_dev, "ppo/context_reused": float(batch.context is not None),
        "training/explained_variance": explained_variance(batch.values, batch.returns),
        "training/actor_updated": float(it >= cfg.critic_warmup_iters),
        "noise/sigma_mean": roll.sigma_mean, "noise/sigma_lo": lo, "noise/sigma_hi": hi,
        "reward/batch_avg": float(roll.raw_rewards.mean()),
        "reward/episode_return": float(np.mean([e["return"] for e in eps])) if eps else None,
        "train/success_rate": _nanmean([e["success"] for e in eps]),
        "train/episodes": len(eps),
        "faults/episodes_dropped": roll.dropped_episodes,
        "lr/actor": actor_opt.param_groups[0]["lr"], "lr/critic": critic_opt.param_groups[0]["lr"],
        "time/rollout_s": t_roll, "time/update_s": t_upd,
        "time/env_steps_per_s": roll.env_steps / max(t_roll, 1e-9),
        **{f"reward/{k}": v for k, v in roll.reward_components.items()},
    }
