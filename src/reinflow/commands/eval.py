"""``reinflow eval``: evaluate a checkpoint with the sampler it was trained with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from reinflow import ConfigError
from reinflow.cli_args import tyro_cli
from reinflow.rl.keep_best import HELDOUT_SEED
from reinflow.validate import check_fields


@dataclass
class EvalConfig:
    """Evaluate a checkpoint with the sampler it was trained with."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder, a run folder (its latest checkpoint), or a SmolVLA BC folder (pretrain's <out>/lerobot; needs --env)"""
    env: str | None = None
    """env id (default: the one the checkpoint was trained on)"""
    env_kwargs: str | None = None
    """env kwargs as a JSON object (default: the checkpoint's; files they name are read only from here)"""
    episodes: int = 20
    """evaluation episodes"""
    parallel_envs: int = 10
    """environments stepped in parallel"""
    stochastic: bool = False
    """sample with the learned noise instead of the deterministic ODE"""
    seed: int = HELDOUT_SEED
    """first env seed (default: the held-out episodes of a seed-0 run, never used to pick its best/)"""
    json_out: str | None = None
    """also write the result as JSON here"""

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("episodes", "parallel_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")


def run(argv: list[str]) -> int:
    from reinflow.envs.factory import make_vector_env, set_headless_gl
    from reinflow.rl.evaluate import check_json_out, run_episodes, write_json_out
    from reinflow.rl.precision import autocast
    cfg = tyro_cli(EvalConfig, argv, "reinflow eval")
    if cfg.json_out:
        check_json_out(cfg.json_out)  # before minutes of evaluation, and again when writing
    set_headless_gl()
    agent, env_id, kw, precision, where = (_bc_folder_agent if is_smolvla_bc_folder(cfg.checkpoint) else
                                           _checkpoint_agent)(cfg)
    envs = make_vector_env(env_id, min(cfg.parallel_envs, cfg.episodes), agent.sampler.act_steps, "sync", kw)
    try:
        with autocast(precision, "cpu"):
            res = run_episodes(agent, envs, cfg.episodes, cfg.seed, deterministic=not cfg.stochastic)
    finally:
        envs.close()
    res.update(where, env=env_id, mode="stochastic" if cfg.stochastic else "deterministic", precision=precision)
    print(json.dumps(res, indent=2))
    if cfg.json_out:
        write_json_out(cfg.json_out, res)
    return 0


def _checkpoint_agent(cfg: EvalConfig) -> tuple:
    """(agent, env id, env kwargs, precision, what the result records) of a reinflow checkpoint or run folder."""
    from reinflow.envs.factory import check_env_id
    from reinflow.policies import base_policy_config
    from reinflow.rl.build import resolve_env_kwargs
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.precision import PRECISIONS
    agent, ck_cfg, ck = load_agent(cfg.checkpoint)
    train_cfg = ck_cfg.get("train") if isinstance(ck_cfg.get("train"), dict) else {}
    env_id = cfg.env or train_cfg.get("env")
    if not env_id or not isinstance(env_id, str):
        raise ConfigError(f"checkpoint {ck} does not name its env: pass --env")
    if not cfg.env:  # an id read from the checkpoint is data: nothing is imported for it
        check_env_id(env_id, allow_import=False, source=str(ck / "config.json"))
    given = cfg.env_kwargs is not None  # typed now; else the checkpoint's, which may name no file
    kw = resolve_env_kwargs(cfg.env_kwargs if given else train_cfg.get("env_kwargs"), env_id,
                            base_policy_config(ck_cfg["policy"]).get("type", "mlp"), None if given else str(ck / "config.json"))
    precision = train_cfg.get("precision", "fp32")  # the numerics it was trained (and kept best) with: invariant 4
    if precision not in PRECISIONS:
        raise ConfigError(f"checkpoint {ck}: precision={precision!r}: allowed {', '.join(PRECISIONS)}")
    return agent, env_id, kw, precision, {"checkpoint": str(ck)}


def is_smolvla_bc_folder(path: str) -> bool:
    """A LeRobot SmolVLA folder written by ``reinflow pretrain --policy smolvla`` (``<out>/lerobot``): LeRobot's
    config.json (no reinflow sampler) beside reinflow's ``reinflow_smolvla.json``."""
    from reinflow.rl.checkpoint import read_checkpoint_config
    folder = bc_folder(Path(path))
    return (folder / "reinflow_smolvla.json").is_file() and (folder / "config.json").is_file() and \
        "sampler" not in read_checkpoint_config(folder, require=False)


def bc_folder(path: Path) -> Path:
    """``path``, or its ``lerobot`` folder when ``path`` is pretrain's ``--out`` (as ``train --policy-path`` takes)."""
    return path / "lerobot" if (path / "lerobot" / "reinflow_smolvla.json").is_file() else path


def _bc_folder_agent(cfg: EvalConfig) -> tuple:
    """A SmolVLA BC policy before any fine-tuning, with the sampler the quickstart evaluates and starts RL
    from: the whole chunk executed, the deterministic ODE from the fixed x_0 of seed 0 (stochastic: the
    initial sigma bounds). LeRobot's folder does not name its env: --env is required."""
    from reinflow.envs.factory import env_spaces
    from reinflow.rl.build import build_agent, resolve_env_kwargs
    from reinflow.rl.config import TrainConfig
    if not cfg.env:
        raise ConfigError(f"checkpoint {cfg.checkpoint}: a LeRobot SmolVLA folder does not name its env: pass --env "
                          "(and --env-kwargs as recorded in the dataset's meta/reinflow.json)")
    from reinflow.untrusted import parse_json, read_text
    folder = bc_folder(Path(cfg.checkpoint))
    side_file = folder / "reinflow_smolvla.json"
    side = parse_json(read_text(side_file), str(side_file))
    chunk = side.get("chunk_size") if isinstance(side, dict) else None
    if not isinstance(chunk, int) or isinstance(chunk, bool):
        raise ConfigError(f"checkpoint {side_file}: chunk_size={chunk!r}: must be an integer")
    kw = resolve_env_kwargs(cfg.env_kwargs, cfg.env, "smolvla")
    tcfg = TrainConfig(env=cfg.env, env_kwargs=json.dumps(kw), policy="smolvla", policy_path=str(folder),
                       chunk_size=chunk, trainable="expert", initial_noise="fixed", initial_noise_seed=0).resolved()
    agent = build_agent(tcfg, *env_spaces(cfg.env, kw))
    return agent, cfg.env, kw, "fp32", {"checkpoint": str(folder), "env_kwargs": kw, "x0": "fixed, seed 0"}
