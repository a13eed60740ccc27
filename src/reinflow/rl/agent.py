"""The agents: a flow policy and its sampler behind one ``act`` (and, for PPO, one ``evaluate``).

Rollouts, updates and evaluation all go through these methods, so the sampler used for evaluation
is the one the algorithm trained (docs/design.md §5, invariant 4). ``Agent`` is PPO's (noise head +
critic); an algorithm that trains something else subclasses ``BaseAgent`` in its own file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from reinflow import ConfigError
from reinflow.constants import REDUCTIONS
from reinflow.flow.chain import (ChainSample, LogProb, build_mask, chain_log_prob, dct_basis,
                                 sample_chain, seeded_x0)
from reinflow.flow.noise import NoiseHead
from reinflow.policies.base import FlowPolicy
from reinflow.policies.mlp import check_net_size, mlp
from reinflow.validate import check_fields


INITIAL_NOISE = ("sample", "fixed", "zero")


@dataclass
class SamplerConfig:
    """Everything the chain sampler needs besides weights; saved in every checkpoint. No field has a
    default: a checkpoint that lacks one is refused (a silent default once sampled a policy trained
    with sigma_lo 0.16 at 0.08), and code that builds one says every choice."""

    act_steps: int
    """chunk steps executed per decision (<= chunk_size)"""
    reduction: str
    """log-prob reduction: sum (exact), mean (per-element average), per_step (one ratio per step)"""
    mask_executed: bool
    """count only executed chunk steps in the log-prob (exact for K=1, approximate for K>1)"""
    logprob_clamp: float | None
    """clamp the 'mean' log-prob to [-c, c] (ReinFlow reference code uses 1.0); None: no clamp"""
    sigma_lo: float
    """lower noise bound in force"""
    sigma_hi: float
    """upper noise bound in force"""
    constant_sigma: bool
    """sigma fixed at sigma_hi (noise head unused)"""
    noise_basis: int
    """0: white noise on every chunk step (ReinFlow); M > 0: M smooth (DCT) noise coefficients per
    action dim over the executed steps, the likelihood over those M x A coefficients"""
    initial_noise: str
    """x_0 of the chain: sample (a fresh N(0, I) draw per chain, ReinFlow); fixed (one N(0, I) draw,
    seeded by initial_noise_seed, for every chain in rollout and evaluation); zero (x_0 = 0). With
    fixed or zero the action varies only with the learned injected noise, not with an x_0 the
    policy never learned to cancel (docs/smolvla.md)"""
    initial_noise_seed: int
    """seed of the fixed x_0 draw (initial_noise = fixed)"""

    def __post_init__(self) -> None:
        check_fields(self)  # a checkpoint's config.json may come from anywhere
        if self.reduction not in REDUCTIONS:
            raise ConfigError(f"logprob_reduction={self.reduction!r}: allowed {', '.join(REDUCTIONS)}")
        if self.act_steps < 1:
            raise ConfigError(f"act_steps={self.act_steps}: must be >= 1")
        if not 0 <= self.noise_basis <= self.act_steps:
            raise ConfigError(f"noise_basis={self.noise_basis}: allowed range [0, act_steps={self.act_steps}]")
        if self.initial_noise not in INITIAL_NOISE:
            raise ConfigError(f"initial_noise={self.initial_noise!r}: allowed {', '.join(INITIAL_NOISE)}")
        if not 0 < self.sigma_lo <= self.sigma_hi:
            raise ConfigError(f"sigma_lo={self.sigma_lo}, sigma_hi={self.sigma_hi}: need 0 < sigma_lo <= sigma_hi")
        if self.logprob_clamp is not None and not self.logprob_clamp > 0:
            raise ConfigError(f"logprob_clamp={self.logprob_clamp}: must be > 0 (or null: no clamp)")
        if self.noise_basis and self.reduction == "per_step":
            raise ConfigError("noise_basis > 0 needs logprob_reduction sum or mean (per_step needs white noise)")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "SamplerConfig":
        """The ``sampler`` section of a checkpoint's config.json; every field required."""
        names = [f.name for f in fields(cls)]
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: 'sampler' is not an object")
        missing = [n for n in names if n not in data]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise ConfigError(f"{where}: sampler section " + "; ".join(
                ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"has unknown {', '.join(unknown)}"] if unknown else []))
                + " (every field the sampler needs is stored; none is guessed)")
        return cls(**data)


@dataclass
class ActResult:
    """action [B, H, A] (unclipped real dims of x_K); chain [B, K+1, H, P]; logp [B, S]; value [B];
    logprob: full LogProb (logp, logprob None when deterministic or for an agent whose chain has no
    likelihood); value None for an agent without a critic; context: what ``encode`` returned;
    latent [B, L]: what chose x_0 when the agent steers it (dsrl's actor), else None."""

    action: torch.Tensor
    chain: torch.Tensor
    logp: torch.Tensor | None
    value: torch.Tensor | None
    logprob: LogProb | None
    context: Any = None
    latent: torch.Tensor | None = None


class BaseAgent(nn.Module):
    """What acting, evaluation, keep-best and checkpoints need from any algorithm's agent: a flow
    policy, its sampler config, the executed-steps mask, and ``act``. Subclasses add what their
    algorithm trains (``Agent``: PPO's noise head and critic; ``rl.algorithms.dsrl.DSRLAgent``: an x_0
    actor) and nothing else, so a checkpoint holds exactly what the run used."""

    critic_shares_features: bool = False
    legacy_keys: tuple[str, ...] = ()
    """weight-name prefixes that checkpoints written by an earlier reinflow hold for this agent and that it
    no longer has; ``rl.checkpoint.load_agent`` drops them (nothing else may be missing or extra)"""

    def __init__(self, policy: FlowPolicy, sampler: SamplerConfig):
        super().__init__()
        if sampler.act_steps > policy.chunk_size:
            raise ConfigError(f"act_steps={sampler.act_steps}: must be <= chunk_size={policy.chunk_size}")
        self.policy, self.sampler = policy, sampler
        self.register_buffer("mask", build_mask(policy, sampler.act_steps, sampler.mask_executed))

    @property
    def num_dims(self) -> int:
        """Gaussian dims one chain's log-prob sums over (masked entries, or coefficients, x K)."""
        per_transition = int(self.mask.any(0).sum()) * self.sampler.noise_basis if self.sampler.noise_basis \
            else int(self.mask.sum())
        return per_transition * self.policy.denoise_steps

    def set_sigma_bounds(self, lo: float, hi: float) -> None:
        self.sampler.sigma_lo, self.sampler.sigma_hi = lo, hi

    def train(self, mode: bool = True) -> "BaseAgent":
        # The base policy never leaves eval mode (dropout would break ratio = 1); only the
        # trained heads follow ``mode``.
        super().train(mode)
        self.policy.set_train_mode()
        return self

    def act(self, obs: Any, deterministic: bool = False, generator: Any = None,
            x0: torch.Tensor | None = None, context: Any = None) -> ActResult:
        """``obs``: output of ``policy.prepare_obs`` [B, ...]; ``generator``: None, one, or one per row;
        ``x0`` [B, H, P]: start the chain there (else the agent's rule); ``context``: ``encode(obs)`` when
        the caller already has it (the env loop encodes each observation once)."""
        raise NotImplementedError

    def sampler_dict(self) -> dict:
        return asdict(self.sampler)


class Agent(BaseAgent):
    """PPO's agent (chain-ppo, residual-ppo, BC checkpoints): flow policy + bounded noise head + critic,
    behind ``act`` and ``evaluate``."""

    def __init__(self, policy: FlowPolicy, sampler: SamplerConfig, critic_hidden: int = 256,
                 critic_shares_features: bool = False, noise_head: NoiseHead | None = None,
                 critic: nn.Module | None = None):
        """``noise_head``, ``critic``: parts to take over (``around``), else new ones for ``policy``'s sizes."""
        super().__init__(policy, sampler)
        self.critic_shares_features = critic_shares_features
        if noise_head is None:
            noise_head = NoiseHead(policy.noise_feature_dim, policy.chunk_size, policy.padded_action_dim,
                                   per_step=policy.noise_features_per_step, sigma_lo=sampler.sigma_lo,
                                   sigma_hi=sampler.sigma_hi, constant=sampler.constant_sigma)
        if critic is None:
            check_net_size([policy.value_feature_dim, critic_hidden, critic_hidden, 1], "the critic", "critic")
            critic = mlp([policy.value_feature_dim, critic_hidden, critic_hidden, 1])
        self.noise_head, self.critic = noise_head, critic
        # Derived from the sampler config (not saved): the basis must follow an act_steps override.
        basis = dct_basis(policy.chunk_size, sampler.act_steps, sampler.noise_basis) if sampler.noise_basis else None
        self.register_buffer("basis", None if basis is None else basis.float(), persistent=False)
        # Derived from the sampler config (not saved), like the basis: one x_0 for every chain.
        fixed = seeded_x0(policy.chunk_size, policy.padded_action_dim, sampler.initial_noise_seed) \
            if sampler.initial_noise == "fixed" else None
        self.register_buffer("fixed_x0", fixed, persistent=False)

    def around(self, policy: FlowPolicy) -> "Agent":
        """A new agent built around ``policy``, a wrapper of this agent's policy with its sizes (a residual
        offset over it), taking over this agent's sampler, noise head and critic (as built or loaded): the
        mask and basis are the wrapper's own, and no part is drawn again (the run's random stream stays)."""
        sizes = ("chunk_size", "padded_action_dim", "noise_feature_dim", "noise_features_per_step", "value_feature_dim")
        if any(getattr(policy, k) != getattr(self.policy, k) for k in sizes):
            raise ConfigError(f"{type(policy).__name__}: not the sizes of the policy it wraps ({', '.join(sizes)})")
        return Agent(policy, self.sampler, critic_shares_features=self.critic_shares_features,
                     noise_head=self.noise_head, critic=self.critic)

    # --- parameters -------------------------------------------------------------------------
    def actor_parameters(self) -> list[nn.Parameter]:
        return self.policy.trainable_parameters() + [p for p in self.noise_head.parameters() if p.requires_grad]

    def critic_parameters(self) -> list[nn.Parameter]:
        return list(self.critic.parameters())

    def set_sigma_bounds(self, lo: float, hi: float) -> None:
        self.noise_head.set_bounds(lo, hi)
        super().set_sigma_bounds(lo, hi)

    # --- the two entry points -----------------------------------------------------------------
    def value(self, ctx: Any) -> torch.Tensor:
        feats = self.policy.value_features(ctx)
        if not self.critic_shares_features:
            feats = feats.detach()  # critic gradients must not move the actor's features
        return self.critic(feats).squeeze(-1)

    def initial_noise(self, batch: int) -> torch.Tensor | None:
        """x_0 [B, H, P] by the sampler's ``initial_noise`` rule; None: ``sample_chain`` draws N(0, I)."""
        if self.sampler.initial_noise == "zero":
            return torch.zeros((batch, self.policy.chunk_size, self.policy.padded_action_dim), device=self.mask.device)
        if self.sampler.initial_noise == "fixed":
            return self.fixed_x0.expand(batch, -1, -1).clone()
        return None

    def act(self, obs: Any, deterministic: bool = False, generator: Any = None,
            x0: torch.Tensor | None = None, context: Any = None) -> ActResult:
        ctx = self.policy.encode(obs) if context is None else context
        batch = batch_size(obs)
        s: ChainSample = sample_chain(self.policy, self.noise_head, ctx, batch, self.mask, self.sampler.reduction,
                                      deterministic, generator, self.initial_noise(batch) if x0 is None else x0,
                                      self.sampler.logprob_clamp, self.basis)
        return ActResult(action=s.action, chain=s.chain, logp=None if s.logprob is None else s.logprob.logp,
                         value=self.value(ctx), logprob=s.logprob, context=ctx)

    def evaluate(self, obs: Any, chain: torch.Tensor, context: Any = None) -> tuple[LogProb, torch.Tensor]:
        """(LogProb of the stored chains under current parameters, value [B]). ``context``: the
        rollout's ``encode`` output for these rows, reused when the encoder is frozen."""
        ctx = self.policy.encode(obs) if context is None else context
        lp = chain_log_prob(self.policy, self.noise_head, ctx, chain, self.mask,
                            self.sampler.reduction, self.sampler.logprob_clamp, self.basis)
        return lp, self.value(ctx)


def batch_size(obs: Any) -> int:
    """B of a prepared observation (a tensor [B, ...], a dict of them, or a list of B items)."""
    if isinstance(obs, torch.Tensor):
        return obs.shape[0]
    if isinstance(obs, dict):
        return batch_size(next(iter(obs.values())))
    return len(obs)
