"""Build the agent a run trains: a new MLP policy, a loaded checkpoint (checked against the env),
or SmolVLA through LeRobot; plus --auto-scale and the health monitor's run context."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from reinflow import ConfigError
from reinflow.envs.factory import build_env
from reinflow.envs.families import env_kwargs as with_defaults
from reinflow.envs.families import family_of
from reinflow.envs.flatten import not_a_vector
from reinflow.policies import base_policy_config
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.policies.residual import ResidualFlowPolicy
from reinflow.rl.agent import Agent, SamplerConfig
from reinflow.rl.checkpoint import load_agent, read_checkpoint_config, resolve_checkpoint
from reinflow.rl.config import TrainConfig


def env_kwargs(cfg: TrainConfig) -> dict:
    return resolve_env_kwargs(cfg.env_kwargs, cfg.env, cfg.policy)


def resolve_env_kwargs(text: str | None, env_id: str, policy_type: str) -> dict:
    """The JSON ``env_kwargs`` string over the env family's recommended kwargs, plus what a camera
    policy needs from the family (``envs/families.py``)."""
    kw = {}
    if text:
        try:
            kw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"env_kwargs={text!r}: not valid JSON ({exc.msg})") from None
        if not isinstance(kw, dict):
            raise ConfigError(f"env_kwargs={text!r}: must be a JSON object")
    kw = with_defaults(env_id, kw)
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


def build_agent(cfg: TrainConfig, obs_space: gym.Space, act_space: gym.Space) -> Agent:
    """New or loaded agent whose chunk/action dims are checked against the env; with
    ``--algorithm residual`` its policy is wrapped in a frozen-base residual (policies/residual.py)."""
    cfg = cfg.resolved()
    if cfg.algorithm == "residual" and not (cfg.policy_path or cfg.vlm_path):
        raise ConfigError("algorithm=residual corrects a pretrained policy: give --policy-path (a BC checkpoint)")
    agent = _build_agent(cfg, obs_space, act_space)
    if cfg.algorithm == "residual" and not isinstance(agent.policy, ResidualFlowPolicy):
        agent.policy = ResidualFlowPolicy(agent.policy)  # same dims: mask, basis and heads stay valid
    return agent


def _build_agent(cfg: TrainConfig, obs_space: gym.Space, act_space: gym.Space) -> Agent:
    if not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(f"env={cfg.env!r}: action space {type(act_space).__name__} is not a Box")
    action_dim = int(np.prod(act_space.shape))
    lo, hi = cfg.schedule().bounds_at(0, cfg.iterations)
    is_checkpoint = bool(cfg.policy_path) and (Path(cfg.policy_path) / "config.json").is_file() and \
        "sampler" in read_checkpoint_config(Path(cfg.policy_path), require=False)
    if cfg.policy == "smolvla" and not is_checkpoint:
        return _new_smolvla_agent(cfg, obs_space, act_space, lo, hi)
    if cfg.policy_path:
        ck = resolve_checkpoint(cfg.policy_path)
        pcfg = base_policy_config(read_checkpoint_config(ck)["policy"])  # a residual's sizes are its base's
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
    chunk = cfg.chunk_size or 8
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
    chunk = cfg.chunk_size or 50
    sampler = sampler_config(cfg, chunk, lo, hi)
    policy = build_smolvla_policy(obs_space, act_space, vlm_path=cfg.vlm_path, policy_path=cfg.policy_path,
                                  chunk_size=chunk, denoise_steps=cfg.denoise_steps or 1, trainable=cfg.trainable,
                                  instruction=_env_instruction(cfg.env, env_kwargs(cfg)))
    return Agent(policy, sampler, critic_shares_features=cfg.critic_shares_features)


def sampler_config(cfg: TrainConfig, chunk: int, lo: float, hi: float) -> SamplerConfig:
    """The sampler a run uses, from its flags (act_steps defaults to the whole chunk)."""
    act_steps = cfg.act_steps or chunk
    _check_act_steps(act_steps, chunk)
    return SamplerConfig(act_steps=act_steps, reduction=cfg.logprob_reduction, mask_executed=cfg.mask_executed,
                         logprob_clamp=cfg.logprob_clamp, sigma_lo=lo, sigma_hi=hi,
                         constant_sigma=cfg.noise_schedule == "constant",
                         # M >= executed steps spans every step: a complete (rotated) white-noise basis
                         noise_basis=min(cfg.noise_basis, act_steps), initial_noise=cfg.initial_noise,
                         initial_noise_seed=cfg.initial_noise_seed)


def _check_act_steps(act_steps: int, chunk: int) -> None:
    if not 1 <= act_steps <= chunk:
        raise ConfigError(f"act_steps={act_steps}: allowed range [1, chunk_size={chunk}]")


def apply_auto_scale(cfg: TrainConfig, agent: Agent, verbose: bool = True) -> tuple[TrainConfig, dict | None]:
    """--auto-scale: read the given sigma/lr/KL/clip as settings valid at D_ref and rescale them
    to this run's D (reinflow.flow.scaling). The saved config holds the applied values with
    auto_scale off, so a resumed run does not scale twice."""
    if not cfg.auto_scale:
        return cfg, None
    from dataclasses import replace

    from reinflow.flow.scaling import ScaleReference, format_scale_table, ratio_term_dims, scale_for_dimension
    ref = ScaleReference(dim=cfg.scale_ref_dim, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, lr=cfg.lr_actor,
                         target_kl=cfg.target_kl or 0.01, clip_epsilon=cfg.clip_epsilon)
    pol = agent.policy
    dims = ratio_term_dims(agent.sampler.act_steps if agent.sampler.mask_executed else pol.chunk_size,
                           pol.action_dim, pol.denoise_steps, cfg.logprob_reduction)
    res = scale_for_dimension(ref, dims, cfg.logprob_reduction, cfg.scale_rule)
    v = res.values
    k = v["sigma_max"] / cfg.sigma_max
    new = replace(cfg, sigma_min=v["sigma_min"], sigma_max=v["sigma_max"], lr_actor=v["lr"],
                  clip_epsilon=v["clip_epsilon"], target_kl=v["target_kl"] if cfg.target_kl else None,
                  sigma_max_final=cfg.sigma_max_final * k if cfg.sigma_max_final else None, auto_scale=False)
    if verbose:
        print(f"--auto-scale ({cfg.scale_rule}) for D = {dims}:\n{format_scale_table(res)}")
    return new, {"rule": cfg.scale_rule, "num_dims": dims, "values": v, "reasons": res.reasons}


def resolve_device(name: str, local_rank: int = 0) -> Any:
    """The torch device of ``--device`` (auto: this rank's GPU if there is one), checked to exist here."""
    import torch
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r}: not a torch device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                          f"{'built with CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}); "
                          "use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def health_context(cfg: TrainConfig, agent: Agent, scale_rule: str | None = None) -> Any:
    from reinflow.rl.health import RunContext
    pol = agent.policy
    return RunContext(chunk_size=pol.chunk_size, action_dim=pol.action_dim, padded_action_dim=pol.padded_action_dim,
                      denoise_steps=pol.denoise_steps, act_steps=agent.sampler.act_steps,
                      sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, clip_epsilon=cfg.clip_epsilon,
                      logprob_reduction=cfg.logprob_reduction, num_dims=agent.num_dims,
                      lr=cfg.lr_actor, max_grad_norm=cfg.max_grad_norm_actor,
                      max_grad_norm_critic=cfg.max_grad_norm_critic, target_kl=cfg.target_kl,
                      scale_rule=scale_rule)
