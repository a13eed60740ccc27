"""Build the agent a run trains: a new MLP policy, a loaded checkpoint (checked against the env),
or SmolVLA through LeRobot, with the sampler its flags ask for."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np

from reinflow import ConfigError
from reinflow.envs.factory import build_env
from reinflow.envs.families import env_kwargs as with_defaults
from reinflow.envs.families import family_of
from reinflow.envs.flatten import not_a_vector
from reinflow.policies import base_policy_config
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.agent import Agent, BaseAgent, SamplerConfig
from reinflow.rl.checkpoint import load_agent, read_checkpoint_config, resolve_checkpoint
from reinflow.rl.config import TrainConfig, check_act_steps
from reinflow.untrusted import check_env_kwargs_files


def env_kwargs(cfg: TrainConfig) -> dict:
    return resolve_env_kwargs(cfg.env_kwargs, cfg.env, cfg.policy)


def resolve_env_kwargs(text: str | None, env_id: str, policy_type: str, source: str | None = None,
                       defaults: dict | None = None) -> dict:
    """The JSON ``env_kwargs`` string over ``defaults`` (the caller's, e.g. a quickstart's) over the env
    family's recommended kwargs, plus what a camera policy needs from the family (``envs/families.py``).
    ``source``: the file the text was read from (then no kwarg may name a file); None: typed on the
    command line (files it names are checked)."""
    kw = {}
    if text:
        from reinflow.untrusted import parse_json  # bounded depth and numbers: the text may come from a file
        try:
            kw = parse_json(text, "env_kwargs")
        except ConfigError as exc:
            raise ConfigError(f"env_kwargs={text[:60]!r}: not valid JSON ({str(exc).partition(': ')[2]})") from None
        if not isinstance(kw, dict):
            raise ConfigError(f"env_kwargs={text!r}: must be a JSON object")
    check_env_kwargs_files(kw, source)
    kw = with_defaults(env_id, {**(defaults or {}), **kw})
    if policy_type == "smolvla":
        for key, val in family_of(env_id).camera_kwargs(env_id).items():
            kw.setdefault(key, val)  # the VLA needs the cameras
    return kw


def _env_instruction(env_id: str, kw: dict) -> str:
    env = build_env(env_id, kw)
    try:
        return str(getattr(env.unwrapped, "instruction", ""))
    finally:
        env.close()


DEFAULT_CHUNK = {"mlp": 8, "smolvla": 50}
"""--chunk-size of a new policy (and of a LeRobot SmolVLA checkpoint) when not given"""


def _checkpoint_policy(cfg: TrainConfig) -> tuple[Path, dict] | None:
    """(folder, base policy config) of a reinflow checkpoint at --policy-path, else None (a new policy,
    or a LeRobot SmolVLA folder). A residual's or dsrl policy's sizes are its base's."""
    if cfg.policy_path is None:
        return None
    if cfg.policy == "smolvla" and not ((Path(cfg.policy_path) / "config.json").is_file() and
                                        "sampler" in read_checkpoint_config(Path(cfg.policy_path), require=False)):
        return None
    ck = resolve_checkpoint(cfg.policy_path)
    return ck, base_policy_config(read_checkpoint_config(ck)["policy"])


def policy_dims(cfg: TrainConfig, act_space: gym.Space) -> tuple[int, int, int]:
    """(chunk H, action dims A, Euler steps K) of the policy ``build_agent`` makes, from the flags and the
    checkpoint's config, without building it: what the chain dimension D of ``--auto-scale`` needs before
    the agent exists (``ChainPPO.resolve``)."""
    if not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(f"env={cfg.env!r}: action space {type(act_space).__name__} is not a Box")
    held = _checkpoint_policy(cfg)
    if held is None:
        return cfg.chunk_size or DEFAULT_CHUNK[cfg.policy], int(np.prod(act_space.shape)), cfg.denoise_steps or 1
    pcfg = held[1]
    return pcfg.get("chunk_size"), pcfg.get("action_dim"), cfg.denoise_steps or pcfg.get("denoise_steps") or 1


def build_agent(cfg: TrainConfig, obs_space: gym.Space, act_space: gym.Space) -> BaseAgent:
    """A new or loaded agent whose chunk/action dims are checked against the env (the algorithm
    then builds its own agent around a wrapper of its policy: ``Algorithm.prepare_agent``). ``cfg``
    is resolved (``TrainConfig.resolved``, once, by the caller)."""
    if not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(f"env={cfg.env!r}: action space {type(act_space).__name__} is not a Box")
    action_dim = int(np.prod(act_space.shape))
    lo, hi = cfg.schedule().bounds_at(0, cfg.iterations)
    held = _checkpoint_policy(cfg)
    if cfg.policy == "smolvla" and held is None:
        return _new_smolvla_agent(cfg, obs_space, act_space, lo, hi)
    if held is not None:
        ck, pcfg = held
        chunk = pcfg.get("chunk_size")
        if cfg.chunk_size is not None and chunk != cfg.chunk_size:
            raise ConfigError(f"chunk_size={cfg.chunk_size}: the checkpoint {ck} was built with chunk_size={chunk}")
        if pcfg.get("action_dim") != action_dim:
            raise ConfigError(f"policy_path={cfg.policy_path}: checkpoint action_dim={pcfg.get('action_dim')} "
                              f"but env {cfg.env} has {action_dim} action dims")
        obs_dim = pcfg.get("obs_dim")
        if obs_dim is not None and isinstance(obs_space, gym.spaces.Box) and obs_dim != int(np.prod(obs_space.shape)):
            raise ConfigError(f"policy_path={cfg.policy_path}: checkpoint obs_dim={obs_dim} but env {cfg.env} "
                              f"observations have {int(np.prod(obs_space.shape))} values")
        keys, env_keys = pcfg.get("obs_keys"), getattr(obs_space, "obs_keys", None)
        if keys and keys != env_keys:
            raise ConfigError(f"policy_path={cfg.policy_path}: checkpoint observation keys {keys} but env {cfg.env} "
                              f"gives {env_keys}; use the env (and env_kwargs) it was trained on")
        sampler = asdict(sampler_config(cfg, chunk, lo, hi))
        overrides = {"denoise_steps": cfg.denoise_steps} if cfg.denoise_steps else {}
        agent, _, _ = load_agent(ck, sampler_overrides=sampler, policy_overrides=overrides)
        agent.critic_shares_features = cfg.critic_shares_features
        return agent
    chunk = cfg.chunk_size or DEFAULT_CHUNK["mlp"]
    sampler = sampler_config(cfg, chunk, lo, hi)  # validates act_steps before any model is built
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"env={cfg.env!r}: the MLP policy needs a vector observation, the env's is not one "
                          f"({not_a_vector(obs_space)})")
    policy = MLPFlowPolicy(MLPPolicyConfig(obs_dim=int(np.prod(obs_space.shape)), action_dim=action_dim,
                                           chunk_size=chunk, denoise_steps=cfg.denoise_steps or 1,
                                           hidden=list(cfg.hidden), obs_keys=getattr(obs_space, "obs_keys", None)))
    return Agent(policy, sampler, critic_shares_features=cfg.critic_shares_features)


def _new_smolvla_agent(cfg: TrainConfig, obs_space: gym.Space, act_space: gym.Space, lo: float, hi: float) -> Agent:
    """SmolVLA through LeRobot: a fresh one around --vlm-path, or a LeRobot checkpoint at --policy-path."""
    if bool(cfg.vlm_path) == bool(cfg.policy_path):
        raise ConfigError("policy=smolvla needs exactly one of --vlm-path (a SmolVLM backbone) or --policy-path "
                          "(a LeRobot SmolVLA folder such as lerobot/smolvla_base, or a reinflow checkpoint)")
    try:
        from reinflow.policies.smolvla import build_smolvla_policy
    except ImportError as exc:
        raise ConfigError(f"policy=smolvla needs the extra (see docs/smolvla.md): {exc}") from None
    chunk = cfg.chunk_size or DEFAULT_CHUNK["smolvla"]
    sampler = sampler_config(cfg, chunk, lo, hi)
    policy = build_smolvla_policy(obs_space, act_space, vlm_path=cfg.vlm_path, policy_path=cfg.policy_path,
                                  chunk_size=chunk, denoise_steps=cfg.denoise_steps or 1, trainable=cfg.trainable,
                                  instruction=_env_instruction(cfg.env, env_kwargs(cfg)))
    return Agent(policy, sampler, critic_shares_features=cfg.critic_shares_features)


def sampler_config(cfg: TrainConfig, chunk: int, lo: float, hi: float) -> SamplerConfig:
    """The sampler a run uses, from its flags (act_steps defaults to the whole chunk)."""
    act_steps = cfg.act_steps or chunk
    if cfg.chunk_size is None:  # the checkpoint's or the default chunk (a chunk from the flags: TrainConfig checked)
        check_act_steps(act_steps, chunk)
    return SamplerConfig(act_steps=act_steps, reduction=cfg.logprob_reduction, mask_executed=cfg.mask_executed,
                         logprob_clamp=cfg.logprob_clamp, sigma_lo=lo, sigma_hi=hi,
                         constant_sigma=cfg.noise_schedule == "constant",
                         # M >= executed steps spans every step: a complete (rotated) white-noise basis
                         noise_basis=min(cfg.noise_basis, act_steps), initial_noise=cfg.initial_noise,
                         initial_noise_seed=cfg.initial_noise_seed)

