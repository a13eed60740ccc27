"""``reinflow eval``: evaluate a checkpoint with the sampler it was trained with."""

from __future__ import annotations

import json
from dataclasses import dataclass

import tyro

from reinflow import ConfigError
from reinflow.cli_args import tyro_cli
from reinflow.rl.keep_best import HELDOUT_SEED
from reinflow.validate import check_fields


@dataclass
class EvalConfig:
    """Evaluate a checkpoint with the sampler it was trained with."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder, or a run folder (its latest checkpoint)"""
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
    from reinflow.policies import base_policy_config
    from reinflow.rl.build import resolve_env_kwargs
    from reinflow.rl.checkpoint import load_agent
    from reinflow.envs.factory import check_env_id
    from reinflow.rl.evaluate import check_json_out, run_episodes, write_json_out
    cfg = tyro_cli(EvalConfig, argv, "reinflow eval")
    if cfg.json_out:
        check_json_out(cfg.json_out)  # before minutes of evaluation, and again when writing
    set_headless_gl()
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
    envs = make_vector_env(env_id, min(cfg.parallel_envs, cfg.episodes), agent.sampler.act_steps, "sync", kw)
    from reinflow.rl.precision import PRECISIONS, autocast
    precision = train_cfg.get("precision", "fp32")  # the numerics it was trained (and kept best) with: invariant 4
    if precision not in PRECISIONS:
        envs.close()
        raise ConfigError(f"checkpoint {ck}: precision={precision!r}: allowed {', '.join(PRECISIONS)}")
    try:
        with autocast(precision, "cpu"):
            res = run_episodes(agent, envs, cfg.episodes, cfg.seed, deterministic=not cfg.stochastic)
    finally:
        envs.close()
    res.update(checkpoint=str(ck), env=env_id, mode="stochastic" if cfg.stochastic else "deterministic",
               precision=precision)
    print(json.dumps(res, indent=2))
    if cfg.json_out:
        write_json_out(cfg.json_out, res)
    return 0
