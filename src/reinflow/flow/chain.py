"""The one chain sampler and the one chain log-prob (docs/design.md §2).

x_0 ~ N(0, I);  mu_k = x_k + dt_k * v(x_k, t_k, o);  x_{k+1} = mu_k + sigma_k * eps_k.
log pi(chain | o) = sum_k sum_{(h,a) in mask} log N(x_{k+1}; mu_k, sigma_k^2).

Both functions go through ``transition`` (the policy's own time grid, the same noise head) and
``gaussian_log_density`` (float64, so a 300-dim sum is reproducible to ~1e-12), which is what
makes the PPO ratio exactly 1 before an update. Shapes: B batch, K denoise steps, H chunk,
P padded action dim, S ratio terms per sample (1 for sum/mean, executed steps for per_step).

Noise basis (``basis`` [H, M], optional): instead of white noise on every chunk step, each step's
noise is ``B @ (sigma_m * eps_m)`` with M low-frequency coefficients per action dim (a DCT basis
over the executed steps, orthonormal columns, zero rows for unexecuted steps). The likelihood is
then the density of the coefficients ``z = B^T (x_{k+1} - mu_k)``: M x A dims per transition
instead of H x A. Why: a position-controlled arm low-passes white per-step noise to almost
nothing, while a smooth offset of the whole executed trajectory is the exploration that changes
where a grasp lands; and D drops from 300 to ~24 (the ReinFlow paper's regime).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from reinflow import ConfigError, InvariantError
from reinflow.constants import LOG_SQRT_2PI, REDUCTIONS
from reinflow.flow.noise import NoiseHead
from reinflow.policies.base import FlowPolicy

Reduction = Literal["sum", "mean", "per_step"]


@dataclass
class LogProb:
    """Likelihood of stored chains.

    logp [B, S]: what enters the PPO ratio (reduction applied). total [B]: exact sum over the
    mask and the K transitions. per_dim [B]: total / num_dims. entropy [B]: mean Gaussian
    entropy per dim. init_logp [B]: log N(x_0; 0, I) over the mask (cancels in every ratio;
    reported apart, never added). sigma_mean: mean sigma over the mask. bound: the per-dim
    ceiling -0.5 log(2 pi) - log(sigma_lo) that ``per_dim`` can never exceed. clamped [B]: True
    where the 'mean' clamp cut the sample (its ratio is then exactly 1: no gradient).
    """

    logp: torch.Tensor
    total: torch.Tensor
    per_dim: torch.Tensor
    entropy: torch.Tensor
    init_logp: torch.Tensor
    sigma_mean: torch.Tensor
    num_dims: int
    bound: float
    clamped: torch.Tensor


@dataclass
class ChainSample:
    """chain [B, K+1, H, P] (x_0 .. x_K, unclipped); action [B, H, A] = real dims of x_K;
    logprob: the chain's LogProb (None in deterministic mode)."""

    chain: torch.Tensor
    action: torch.Tensor
    logprob: LogProb | None


def build_mask(policy: FlowPolicy, act_steps: int | None, mask_executed: bool = True) -> torch.Tensor:
    """Bool [H, P]: real action dims, and (by default) only the first ``act_steps`` chunk steps.

    For K = 1 restricting to executed steps is exact (each step's density factorises); for
    K > 1 unexecuted steps still influence executed ones through the network, so the masked
    likelihood is then an approximation of the executed-action marginal.
    """
    mask = policy.action_mask().clone()
    if act_steps is not None and mask_executed:  # 1 <= act_steps <= H: the Agent (its one caller) checked it
        mask[act_steps:] = False
    return mask


def dct_basis(chunk_size: int, act_steps: int, components: int) -> torch.Tensor:
    """[H, M] orthonormal DCT-II basis over the first ``act_steps`` chunk steps (rows past them are
    zero: unexecuted steps get no noise). Column 0 is a constant offset, column m a half-cosine
    with m half-periods over the executed steps."""
    if not 1 <= components <= act_steps:
        raise ConfigError(f"noise_basis={components}: allowed range [1, act_steps={act_steps}] (0 = white noise)")
    n = torch.arange(act_steps, dtype=torch.float64)
    cols = [torch.cos(math.pi * m * (n + 0.5) / act_steps) for m in range(components)]
    b = torch.stack(cols, dim=1)
    b = b / b.norm(dim=0, keepdim=True)
    out = torch.zeros(chunk_size, components, dtype=torch.float64)
    out[:act_steps] = b
    return out


def seeded_x0(chunk_size: int, padded_action_dim: int, seed: int) -> torch.Tensor:
    """One N(0, I) draw x_0 [H, P] from ``seed``: ``--initial-noise fixed``'s x_0 for every chain, and
    the x_0 a dsrl actor steers around (``dsrl_init``): one function so both are the same draw."""
    return torch.randn((chunk_size, padded_action_dim), generator=torch.Generator().manual_seed(int(seed)))


def gaussian_log_density(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, sigma^2) in float64."""
    x64, mu64, s64 = x.double(), mu.double(), sigma.double()
    return -0.5 * ((x64 - mu64) / s64) ** 2 - torch.log(s64) - LOG_SQRT_2PI


def transition(policy: FlowPolicy, head: NoiseHead | None, x: torch.Tensor, k: int, ctx: Any,
               basis: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mu_k [B, H, P], sigma_k) on the policy's own time grid; sigma_k is [B, H, P], or with a
    noise basis [B, M, P] (the head's first M rows: one sigma per coefficient); None without a head
    (an agent that only ever runs the ODE: dsrl)."""
    ts, dts = policy.time_grid()
    t = torch.full((x.shape[0],), ts[k], dtype=x.dtype, device=x.device)
    out = policy.velocity(x, t, ctx)
    if head is None:
        return x + dts[k] * out.velocity, None
    # Reduced precision (--precision bf16) stops at the policy's networks: the noise head and sigma are
    # float32, and so is the step's mean (x is float32: type promotion). A trainable part whose output is
    # small next to v must be float32 itself (policies/residual.py): in bf16 it rounds away (1/256 of |v|)
    # and PPO's ratio reads exactly 1 through every epoch (measured: docs/smolvla.md).
    with torch.autocast(x.device.type, enabled=False):
        sigma = head(out.noise_features.float())
    if basis is not None:
        sigma = sigma[:, : basis.shape[1]]
    return x + dts[k] * out.velocity, sigma


def _noise(sigma: torch.Tensor, eps: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """Per-step noise [B, H, P] from standard normals eps (shaped like sigma)."""
    if basis is None:
        return sigma * eps
    return torch.einsum("hm,bmp->bhp", basis.to(sigma.dtype), sigma * eps)


def randn(shape: tuple[int, ...], generator: Any, device: torch.device) -> torch.Tensor:
    """Standard normal noise [shape] on ``device``; ``generator`` may be None, one generator or one
    per batch row (then each env's noise stream is independent of how envs are split over processes).
    Drawn on each generator's own device, then moved: a CPU generator (the trainer's per-env streams)
    gives the same numbers whatever device the agent is on."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        return torch.stack([torch.randn(shape[1:], generator=g, device=g.device) for g in generator]).to(device)
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def sample_chain(policy: FlowPolicy, head: NoiseHead | None, ctx: Any, batch: int, mask: torch.Tensor,
                 reduction: Reduction = "sum", deterministic: bool = False,
                 generator: Any = None, x0: torch.Tensor | None = None,
                 logprob_clamp: float | None = None, basis: torch.Tensor | None = None) -> ChainSample:
    """Run the K-step chain. Deterministic mode injects no noise (the ODE) and returns no log-prob.
    ``generator``: None, a torch.Generator, or a list of one generator per batch row. ``head``: None
    only in deterministic mode (an agent without a noise head)."""
    if head is None and not deterministic:
        raise ValueError("sample_chain: a stochastic chain needs a noise head")
    dev = mask.device
    shape = (batch, policy.chunk_size, policy.padded_action_dim)
    x = randn(shape, generator, dev) if x0 is None else x0
    xs, mus, sigmas = [x], [], []
    for k in range(policy.denoise_steps):
        mu, sigma = transition(policy, head, x, k, ctx, basis)
        if deterministic:
            x = mu
        else:
            x = mu + _noise(sigma, randn(tuple(sigma.shape), generator, dev), basis)
        xs.append(x)
        mus.append(mu)
        sigmas.append(sigma)
    chain = torch.stack(xs, dim=1)
    lp = None if deterministic else _reduce(chain, mus, sigmas, mask, reduction, logprob_clamp,
                                            head.bounds[0], basis)
    return ChainSample(chain=chain, action=x[..., : policy.action_dim], logprob=lp)


def chain_log_prob(policy: FlowPolicy, head: NoiseHead, ctx: Any, chain: torch.Tensor,
                   mask: torch.Tensor, reduction: Reduction = "sum",
                   logprob_clamp: float | None = None, basis: torch.Tensor | None = None) -> LogProb:
    """Log-likelihood of stored chains [B, K+1, H, P] under the current parameters."""
    if chain.shape[1] != policy.denoise_steps + 1:
        raise ValueError(f"chain has {chain.shape[1] - 1} transitions, policy has K={policy.denoise_steps}")
    mus, sigmas = [], []
    for k in range(policy.denoise_steps):
        mu, sigma = transition(policy, head, chain[:, k], k, ctx, basis)
        mus.append(mu)
        sigmas.append(sigma)
    return _reduce(chain, mus, sigmas, mask, reduction, logprob_clamp, head.bounds[0], basis)


def _reduce(chain: torch.Tensor, mus: list[torch.Tensor], sigmas: list[torch.Tensor],
            mask: torch.Tensor, reduction: Reduction, clamp: float | None,
            sigma_lo: float, basis: torch.Tensor | None = None) -> LogProb:
    if reduction not in REDUCTIONS:
        raise ConfigError(f"logprob_reduction={reduction!r}: allowed {', '.join(REDUCTIONS)}")
    if basis is not None and reduction == "per_step":
        raise ConfigError("logprob_reduction='per_step' needs white noise (noise_basis=0): "
                          "basis coefficients are not chunk steps")
    k_steps = len(mus)
    m0 = mask.to(torch.float64)                      # [H, P]: x_0's entries
    if basis is not None:                            # coefficients: M rows, the real action dims
        mask = mask.any(0, keepdim=True).expand(basis.shape[1], -1)
    m = mask.to(torch.float64)                       # [H, P] (or [M, P] with a basis)
    n_mask = int(mask.sum())
    num_dims = n_mask * k_steps
    per_step = 0.0                                   # [B, H] summed over k and masked dims
    ent = 0.0
    sig_sum = 0.0
    for k in range(k_steps):
        if basis is None:
            lp = gaussian_log_density(chain[:, k + 1], mus[k], sigmas[k])
        else:   # the step's noise coefficients; the sampled noise lies in span(basis), so z holds all of it
            # (the part of a changed mu outside the span moves no sample: it is deterministic, and at
            # K > 1 it shifts later transitions' inputs, an approximation like the executed-steps mask)
            z = torch.einsum("hm,bhp->bmp", basis.double(), chain[:, k + 1].double() - mus[k].double())
            lp = gaussian_log_density(z, torch.zeros_like(z), sigmas[k])
        per_step = per_step + (lp * m).sum(-1)
        log_s = torch.log(sigmas[k].double())
        ent = ent + ((log_s + 0.5 + LOG_SQRT_2PI) * m).sum((-1, -2))
        sig_sum = sig_sum + (sigmas[k].double() * m).sum()
    total = per_step.sum(-1)                         # [B]
    per_dim = total / num_dims
    clamped = torch.zeros_like(per_dim, dtype=torch.bool)
    if reduction == "sum":
        logp = total[:, None]
    elif reduction == "mean":
        logp = per_dim[:, None]
        if clamp is not None:
            clamped = per_dim.abs() >= clamp
            logp = logp.clamp(-clamp, clamp)
    else:                                            # each executed step its own ratio term
        rows = mask.any(-1)
        logp = per_step[:, rows]
    x0 = chain[:, 0].double()
    init = ((-0.5 * x0**2 - LOG_SQRT_2PI) * m0).sum((-1, -2))
    return LogProb(logp=logp, total=total, per_dim=per_dim, entropy=ent / num_dims,
                   init_logp=init, sigma_mean=sig_sum / (num_dims * chain.shape[0]),
                   num_dims=num_dims, bound=per_dim_bound(sigma_lo), clamped=clamped)


def per_dim_bound(sigma_lo: float) -> float:
    """Ceiling of any per-dimension Gaussian log-density with sigma >= sigma_lo."""
    return -LOG_SQRT_2PI - math.log(sigma_lo)


def check_per_dim_bound(per_dim_max: float, bound: float, sigma_lo: float, where: str) -> None:
    """Invariant 2 (docs/design.md section 5): no Gaussian with sigma >= sigma_lo has a per-dim
    log-density above ``bound``; a value above it means sigma was not bounded where the log-prob was
    computed, or the sum counted more entries than it was divided by (the seed run's 3.58)."""
    if per_dim_max > bound + 1e-9:
        raise InvariantError(f"logprob/per_dimension = {per_dim_max:.4f} ({where}) exceeds its bound {bound:.4f} = "
                             f"-0.5 log(2 pi) - log(sigma_lo={sigma_lo}): sigma is not bounded where the log-prob "
                             "is computed, or the sum counts more entries than it is divided by")
