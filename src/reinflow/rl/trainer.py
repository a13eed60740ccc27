"""The one trainer: the shell around an algorithm (``reinflow.rl.algorithms``).

It owns what every algorithm shares - the run folder, the agent's construction, envs and seeding,
the loop, stopping (iterations, ``--time-limit-min``, SIGINT/SIGTERM), evaluation and keep-best,
health, logging and checkpoints - and asks the algorithm only to ``collect`` and ``update``.
Variants are configuration (TrainConfig) or an algorithm file, never copies of this file.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reinflow import ConfigError, InvariantError, ReinflowError
from reinflow.envs.factory import env_spaces, make_vector_env, set_headless_gl
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.build import build_agent, env_kwargs
from reinflow.rl.checkpoint import load_agent, save_run_checkpoint
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import (DistInfo, all_reduce, broadcast_module, init_distributed, param_max_abs_diff,
                              reduce_metrics, resolve_device, shutdown)
from reinflow.rl.gae import TRUNCATION_MODES
from reinflow.rl.keep_best import Evaluator
from reinflow.rl.precision import autocast, numerics, use_numerics, weights_record
from reinflow.rl.runfolder import ResumePoint, RunFolder, check_out, resume_changes, resume_point, write_json_atomic
from reinflow.rl.seeding import env_generators, seeded_reset
from reinflow.rl.trainer_state import read_trainer_state
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
    stopped_by: str | None = None
    """why it stopped before its last iteration: 'signal' (SIGINT/SIGTERM) or 'time' (--time-limit-min)"""


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
        name = signal.Signals(signum).name
        if self.hit:  # a second signal stops now, whatever the loop is doing (the last checkpoint stays valid)
            raise KeyboardInterrupt(name)  # cli.main names it: a SIGTERM is not a Ctrl-C
        self.hit = True
        print(f"[reinflow] {name}: stopping after this iteration (checkpoint follows); signal again to stop now",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(cfg: TrainConfig, resume: ResumePoint | None = None) -> TrainResult:
    """Run (or resume) a training; under torchrun, one data-parallel rank of it. ``resume``: what
    ``runfolder.resume_point`` returned for ``--resume`` (read here when the caller has not)."""
    check_out(cfg.out, cfg.resume, cfg.overwrite, cfg.policy_path)  # every rank, before any rank can write
    point = (resume or resume_point(cfg.out)) if cfg.resume else None
    cfg = cfg.resolved(point[1]["train"] if point else None)  # the 'auto' choices, once
    info = init_distributed(cfg.device, cfg.dist_timeout_min)
    clean = False
    try:
        with RunFolder(cfg.out, lock=info.is_main) as folder, \
                use_numerics(cfg.precision, resolve_device(cfg.device, info.local_rank)):
            # one process per run folder, locked before it is written; TF32/determinism set, restored after
            result = _train(cfg, point, info, folder)
        clean = True
        return result
    finally:
        shutdown(info, clean)


def _train(cfg: TrainConfig, point: ResumePoint | None, info: DistInfo, folder: RunFolder) -> TrainResult:
    run = _Run(cfg, point, info, folder)
    cfg = run.cfg  # with the algorithm's own choices (--auto-scale)
    bar = _progress(run)
    metrics, it, stopped = {}, run.start_it - 1, False
    try:
        with _StopFlag() as stop:
            for it in range(run.start_it, cfg.iterations):
                metrics = run.iteration(it)
                out_of_time = cfg.time_limit_min is not None and time.time() - run.t_start > 60.0 * cfg.time_limit_min
                flags = all_reduce(torch.tensor([float(stop.hit), float(out_of_time)], device="cpu"), info, "max")  # host flags
                stop_now, out_of_time = bool(flags[0].item()), bool(flags[1].item())
                last = it == cfg.iterations - 1 or stop_now or out_of_time
                if run.main:
                    with run.autocast():
                        metrics.update(run.evaluator.step(run.agent, it, last, run.env_steps,
                                                          metrics.get("rollout/success_rate")))
                    run.record(it, metrics, last)
                bar.update(1)
                bar.set_postfix(steps=run.env_steps, reward=f"{metrics.get('rollout/reward_mean', float('nan')):.3g}")
                if (stop_now or out_of_time) and it < cfg.iterations - 1:
                    stopped = "signal" if stop_now else "time"
                    if run.main:
                        bar.write((f"stopped by signal after iteration {it}; resume with: reinflow train --out {run.out} "
                                   "--resume") if stop_now else
                                  (f"time limit of {cfg.time_limit_min:g} min reached after iteration {it} (checkpoint "
                                   f"and final evaluation written); continue with: reinflow train --out {run.out} "
                                   "--resume --time-limit-min MINUTES"))
                    break
    except ReinflowError as exc:
        raise type(exc)(run.where_to_resume(exc, it)) from exc
    finally:
        bar.close()
        run.close()
    if run.main and run.monitor.summary():
        print(run.monitor.summary())
    ev = run.evaluator
    return TrainResult(out=run.out, iterations=it + 1, env_steps=run.env_steps, wall_s=time.time() - run.t_start,
                       last_metrics=metrics, final_eval=ev.last if ev else None, stopped_early=bool(stopped),
                       best=ev.best if ev else None, stopped_by=stopped or None)


def _progress(run: "_Run") -> Any:
    from tqdm import tqdm
    return tqdm(total=run.cfg.iterations, initial=run.start_it, disable=not (run.cfg.progress and run.main),
                desc=f"reinflow train ({run.cfg.algorithm})", dynamic_ncols=True)


def _episode_metrics(episodes: list[dict]) -> dict:
    succ = [e["success"] for e in episodes if e["success"] == e["success"]]  # NaN: the env reports none
    return {"rollout/episodes": len(episodes),
            "rollout/success_rate": float(np.mean(succ)) if succ else None,
            "rollout/episode_return": float(np.mean([e["return"] for e in episodes])) if episodes else None}


class _Run:
    """One run between its iterations: built (and validated) before anything is written, so a refused
    or failed resume leaves the run folder exactly as it was."""

    def __init__(self, cfg: TrainConfig, point: ResumePoint | None, info: DistInfo, folder: RunFolder):
        from tqdm import tqdm

        from reinflow.rl.health import HealthMonitor, run_context
        self.t_start, self.info, self.main = time.time(), info, info.is_main
        torch.manual_seed(cfg.seed)
        if cfg.headless:
            set_headless_gl()
        self.out = out = Path(cfg.out)
        # the CLI already took the run's saved config as defaults under the flags; ck None: stopped before
        # its first checkpoint, so it starts over
        ck, saved = point or (None, {})
        state = read_trainer_state(ck) if ck is not None else None
        kw = env_kwargs(cfg)
        spaces = env_spaces(cfg.env, kw)
        algo_cls = algorithm_class(cfg.algorithm)
        cfg, scale_info = algo_cls.resolve(cfg, spaces[1], verbose=cfg.progress and self.main)  # before building
        if state is not None:
            agent = load_agent(ck)[0]
        else:
            agent = algo_cls.prepare_agent(cfg, build_agent(cfg, *spaces))
        changes = resume_changes(asdict(cfg), saved.get("train") or {}, saved.get("derived") or {}, str(out)) \
            if cfg.resume else {}
        self.cfg, self.agent = cfg, agent
        device = resolve_device(cfg.device, info.local_rank)
        agent.to(device).train()
        self.autocast = lambda: autocast(cfg.precision, device)  # the reduced-precision region (rl.precision)
        broadcast_module(agent, info)
        n = cfg.parallel_envs
        self.first = info.rank * n  # global index of this rank's first env
        self.envs = make_vector_env(cfg.env, n, agent.sampler.act_steps, cfg.vector, kw, first_index=self.first,
                                    max_restarts=cfg.env_max_restarts, nonfinite=cfg.nonfinite)
        self.eval_envs = self.logger = self.monitor = self.evaluator = None
        try:
            truncation = _truncation(cfg, self.envs)
            self.algo = algo_cls(cfg, agent, info, device, truncation)
            self.start_it, self.env_steps = 0, 0
            if state is not None:
                try:
                    self.algo.load_state_dict(state["algorithm"])
                except ConfigError as exc:  # name the file a crafted or damaged state came from
                    raise ConfigError(f"checkpoint {ck}: {exc}") from None
                torch.set_rng_state(state["torch_rng"])
                self.start_it, self.env_steps = state["iteration"] + 1, state["env_steps"]
            derived = {"truncation": truncation, "action_dim": agent.policy.action_dim,
                       "padded_action_dim": agent.policy.padded_action_dim, "chunk_size": agent.policy.chunk_size,
                       "denoise_steps": agent.policy.denoise_steps, "act_steps": agent.sampler.act_steps,
                       "num_dims": agent.num_dims, "world_size": info.world_size, "auto_scale": scale_info,
                       "numerics": {**numerics(cfg.precision, device), "weights": weights_record(agent)},
                       "device": str(device)}
            # each resume is recorded with what it changed (fields that may change: iterations, lr, logging ...)
            resumes = list(saved.get("resumes") or []) + ([{"at_iteration": self.start_it, "changed": changes}]
                                                          if cfg.resume else [])
            self.run_config = {"train": asdict(cfg), "derived": derived, **({"resumes": resumes} if resumes else {})}
            if self.main:
                if not cfg.resume:
                    folder.claim(cfg.overwrite)
                write_json_atomic(out / "config.json", self.run_config)
                self.logger = MetricsLogger(out, self.run_config, cfg.tensorboard, cfg.wandb, cfg.wandb_project,
                                            resume_from_iteration=self.start_it if cfg.resume else None)
                self.monitor = HealthMonitor(run_context(cfg, agent, scale_info and scale_info["rule"]),
                                             cfg.on_unhealthy, print_fn=tqdm.write, kind=self.algo.health)
                # A fixed eval-env count (not parallel_envs): runs with different batch shapes are then
                # scored on the same episodes.
                self.eval_envs = make_vector_env(cfg.env, min(EVAL_ENVS, cfg.eval_episodes), agent.sampler.act_steps,
                                                 "sync", kw, max_restarts=cfg.env_max_restarts, nonfinite=cfg.nonfinite)
                self.evaluator = Evaluator(out, cfg, self.eval_envs, self.run_config, device)
            self.raw_obs = seeded_reset(self.envs, cfg.seed, self.start_it, self.first)
            w = derived["numerics"]["weights"]
            if self.main and w["checkpoint_dtype"] != w["dtype"]:
                tqdm.write(f"[reinflow] weights: {'/'.join(w['checkpoint_dtype'])} in the checkpoint, converted to "
                           f"{'/'.join(w['dtype'])} (master weights); --precision {cfg.precision} computes in "
                           f"{'bfloat16' if cfg.precision == 'bf16' else 'float32'}")
            for warning in agent.policy.check_obs_frame(self.raw_obs) if self.main else []:
                tqdm.write(f"[reinflow] warning: {warning}")
        except BaseException:
            self.close()
            raise

    def iteration(self, it: int) -> dict:
        """Collect and update once; returns the iteration's metrics (reduced over ranks)."""
        cfg, algo = self.cfg, self.algo
        metrics = algo.begin_iteration(it)
        if cfg.reset_each_iteration and it > self.start_it:
            self.raw_obs = seeded_reset(self.envs, cfg.seed, it, self.first)
        t0 = time.time()
        with self.autocast():
            exp, self.raw_obs = algo.collect(self.envs, self.raw_obs, it,
                                             env_generators(cfg.seed, it, self.first, cfg.parallel_envs))
        t_collect = time.time() - t0
        self.env_steps += int(all_reduce(torch.tensor([float(exp.env_steps)], device="cpu"), self.info).item())
        t1 = time.time()
        with self.autocast():
            upd = algo.update(exp, it)
        metrics.update({**exp.metrics, **upd, **_episode_metrics(exp.episodes), "time/rollout_s": t_collect,
                        "time/update_s": time.time() - t1, "time/env_steps_per_s": exp.env_steps / max(t_collect, 1e-9)})
        metrics = reduce_metrics(metrics, self.info)
        if self.info.enabled or cfg.check_sync:
            metrics["dist/world_size"] = self.info.world_size
        if cfg.check_sync:
            metrics["dist/param_max_abs_diff"] = param_max_abs_diff(self.agent, self.info)
        return metrics

    def record(self, it: int, metrics: dict, last: bool) -> None:
        """Health, the metrics row and (every ``checkpoint_every`` and at the end) a checkpoint."""
        try:
            metrics.update(self.monitor.update(metrics, it))
        except InvariantError as exc:  # --on-unhealthy stop: the stopping iteration is logged too
            metrics.update(getattr(exc, "health_flags", {}))
            self.logger.log(metrics, it, self.env_steps)
            raise
        self.logger.log(metrics, it, self.env_steps)
        if last or (it + 1) % self.cfg.checkpoint_every == 0:
            state = {"iteration": it, "env_steps": self.env_steps, "torch_rng": torch.get_rng_state(),
                     "algorithm": self.algo.state_dict()}
            save_run_checkpoint(self.out, it, self.agent, self.run_config, state)

    def where_to_resume(self, exc: Exception, it: int) -> str:
        latest = self.out / "checkpoints" / "latest"
        where = (f"; last good checkpoint: {self.out / 'checkpoints' / latest.read_text().strip()} "
                 f"(resume with: reinflow train --out {self.out} --resume)") if self.main and latest.exists() else ""
        prefix = "" if f"iteration {it}" in str(exc) else f"iteration {it}: "
        return f"{prefix}{exc}{where}"

    def close(self) -> None:
        for thing in (self.envs, self.eval_envs, self.logger):
            if thing is not None:
                thing.close()
        self.envs = self.eval_envs = self.logger = None


def _truncation(cfg: TrainConfig, envs: Any) -> str:
    """How a time limit enters the returns: the flag, else what the env declares, else bootstrap."""
    truncation = cfg.truncation if cfg.truncation != "auto" else envs.metadata.get("reinflow_truncation", "bootstrap")
    if truncation not in TRUNCATION_MODES:
        raise ConfigError(f"env {cfg.env}: metadata['reinflow_truncation']={truncation!r}: "
                          f"allowed {', '.join(TRUNCATION_MODES)}")
    return truncation
