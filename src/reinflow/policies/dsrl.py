"""Noise-space steering of a frozen flow policy (``reinflow train --algorithm dsrl``).

DSRL (Wagenmaker et al., "Steering Your Diffusion Policy with Latent Space Reinforcement Learning",
arXiv 2506.15799) keeps the BC policy frozen and learns what initial noise x_0 to start its
deterministic denoising chain from: a SAC actor pi(c | o) over a bounded latent c, x_0 = map(c). The
chain stays the one in ``reinflow.flow.chain`` (the ODE given x_0); only x_0 changes.

The latent (``components``): with M > 0 it is M smooth (DCT) coefficients per real action dim over the
executed steps, x_0[:, :A] = B @ c with the orthonormal basis B [H, M] of ``flow.chain.dct_basis``, and
every other entry of x_0 (padded dims, unexecuted steps) 0; with M = 0 it is x_0's H x A real entries.
Why a smooth latent (measured on pick-lift, docs/benchmarks.md "DSRL"): the frozen BC policy's action
moves with x_0 through a few smooth directions, so random x_0 inside the 24-dim span of 4 DCT
components move the action 80 % as much as random 300-dim x_0 do, and SAC's critic then learns over
M x A dims (the paper's own tasks: 4 x 7 = 28) instead of 300. M = 8 (48 dims) reached higher than
M = 4 there. The component of a standard x_0 ~ N(0, I) inside the span is c ~ N(0, I), so c = 0 is
the BC policy's typical in-span noise.

The bound: c = bound * tanh(u), u ~ N(mu(o), sigma(o)) (the paper's "action magnitude", 1.5 in its
released configs; 2.5 reached higher on pick-lift). The actor's last layer starts at zero, so an
untrained actor plays c = 0 in deterministic mode (the BC policy at x_0's in-span mean) and
c = bound tanh(N(0, 1)) when sampling.

Where the latent is centred (``x0_seed``, TrainConfig ``dsrl_init``): without it c = 0 is x_0 = 0; with
it x_0 = x_c + map(c), x_c the seeded draw of ``--initial-noise fixed`` (``flow.chain.seeded_x0``), so
the untrained actor plays exactly the x_0 a fixed-noise BC policy (SmolVLA's quickstart) was measured
at, and SAC explores smooth deviations from it. Why not fit the actor's mean to that x_c instead: x_c
lies mostly outside the latent's span (its H x P entries, padded dims and unexecuted steps included,
against M x A coefficients), and the measured tiny-SmolVLA BC scores 0-6 % at x_0 = 0 against 16 %
at x_c (docs/benchmarks.md §3.5), so a projection could lose what makes x_c good; the offset keeps it
exactly and costs no env steps. Measured since (docs/benchmarks.md §5): a good start need not have a good
neighbourhood (tiny SmolVLA reach steers better around 0, the SO-101 camera BC around its draw).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reinflow import ConfigError
from reinflow.flow.chain import dct_basis, randn, seeded_x0
from reinflow.policies.base import FlowPolicy
from reinflow.policies.mlp import check_net_size, mlp
from reinflow.policies.wrapped import FrozenBasePolicy
from reinflow.validate import SEED_MAX, WIDTH_MAX

DSRL_HIDDEN = [256, 256]
BOUND_RANGE = (1e-3, 10.0)      # --dsrl-bound's range (rl/config.py), for a checkpoint's bound too
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log density [B] of y = tanh(u), u ~ N(mean, exp(log_std)^2), summed over the last dim: the
    Gaussian's minus log|d tanh/du| = log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)) (stable form).
    The bound that scales y into c does not enter: entropy targets are read on [-1, 1]^L."""
    gauss = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - LOG_SQRT_2PI
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (gauss - log_det).sum(-1)


class NoiseActor(nn.Module):
    """feats [B, F] -> a squashed Gaussian over the latent [B, L] in [-bound, bound]."""

    def __init__(self, feat_dim: int, latent_dim: int, hidden: list[int], bound: float):
        super().__init__()
        self.latent_dim, self.bound = latent_dim, float(bound)
        self.net = mlp([feat_dim, *hidden, 2 * latent_dim], act=nn.ReLU, layer_norm=True)
        nn.init.zeros_(self.net[-1].weight)  # start at c = 0 (deterministic) and unit pre-tanh std
        nn.init.zeros_(self.net[-1].bias)

    def dist(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std), each [B, L]; log_std clamped to [LOG_STD_MIN, LOG_STD_MAX]."""
        mean, log_std = self.net(feats).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, feats: torch.Tensor, deterministic: bool = False,
               generator: Any = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(latent c [B, L], log-prob [B] of c / bound, None when deterministic). Reparametrised: the
        gradient flows from c and the log-prob into the actor. ``generator``: one, or one per row."""
        mean, log_std = self.dist(feats)
        if deterministic:
            return self.bound * torch.tanh(mean), None
        eps = randn(tuple(mean.shape), generator, mean.device).to(mean.dtype)
        u = mean + log_std.exp() * eps
        return self.bound * torch.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)


class DSRLFlowPolicy(FrozenBasePolicy):
    """``base`` (frozen) + a noise actor choosing its x_0. ``components``: M DCT coefficients per action
    dim over the first ``latent_steps`` chunk steps (0: the H x A real entries of x_0). ``x0_seed``: x_0 =
    seeded_x0(seed) + map(c) (None: x_0 = map(c))."""

    def __init__(self, base: FlowPolicy, latent_steps: int, components: int = 8, bound: float = 2.5,
                 hidden: list[int] | None = None, x0_seed: int | None = None):
        super().__init__(base)
        self.hidden, self.components, self.latent_steps, self.bound = list(hidden or DSRL_HIDDEN), int(components), \
            int(latent_steps), float(bound)
        if not BOUND_RANGE[0] <= self.bound <= BOUND_RANGE[1]:   # a checkpoint's config.json may come from anywhere
            raise ConfigError(f"dsrl_bound={bound}: allowed range [{BOUND_RANGE[0]:g}, {BOUND_RANGE[1]:g}]")
        if not all(isinstance(w, int) and 1 <= w <= WIDTH_MAX for w in self.hidden):
            raise ConfigError(f"dsrl_hidden={self.hidden}: each width in [1, {WIDTH_MAX}]")
        if not 1 <= self.latent_steps <= base.chunk_size:
            raise ConfigError(f"act_steps={latent_steps}: allowed range [1, chunk_size={base.chunk_size}]")
        if not 0 <= self.components <= self.latent_steps:
            raise ConfigError(f"dsrl_components={components}: allowed range [0, act_steps={self.latent_steps}] "
                              "(0: the whole x_0)")
        if x0_seed is not None and not (type(x0_seed) is int and 0 <= x0_seed <= SEED_MAX):
            raise ConfigError(f"dsrl x0_seed={x0_seed!r}: an int in [0, {SEED_MAX}] or null")
        self.x0_seed = x0_seed
        # derived from the config (not saved), like the basis: the x_0 that c = 0 plays
        centre = seeded_x0(base.chunk_size, base.padded_action_dim, x0_seed) if x0_seed is not None else None
        self.register_buffer("x0_centre", centre, persistent=False)
        basis = dct_basis(base.chunk_size, self.latent_steps, self.components).float() if self.components else None
        self.register_buffer("basis", basis, persistent=False)  # derived from the config, like the chain's
        rows = self.components or base.chunk_size
        self.latent_dim = rows * base.action_dim
        feat = base.value_feature_dim     # the actor and SAC's twin critics (rl/sac.py), before either is built
        check_net_size([[feat, *self.hidden, 2 * self.latent_dim]] + 2 * [[feat + self.latent_dim, *self.hidden, 1]],
                       "the DSRL actor and twin critics", f"dsrl_hidden={self.hidden}")
        self.actor = NoiseActor(base.value_feature_dim, self.latent_dim, self.hidden, self.bound)

    def latent_to_x0(self, c: torch.Tensor) -> torch.Tensor:
        """c [B, L] -> x_0 [B, H, P] (padded dims 0)."""
        b, a = c.shape[0], self.action_dim
        rows = c.reshape(b, -1, a)
        real = rows if self.basis is None else torch.einsum("hm,bma->bha", self.basis.to(c.dtype), rows)
        x0 = F.pad(real, (0, self.padded_action_dim - a))
        return x0 if self.x0_centre is None else x0 + self.x0_centre.to(x0.dtype)

    def sample_latent(self, ctx: Any, deterministic: bool = False,
                      generator: Any = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(c [B, L], its log-prob [B] or None, the features [B, F] the actor read)."""
        feats = self.base.value_features(ctx).detach()
        c, logp = self.actor.sample(feats, deterministic, generator)
        return c, logp, feats

    def prior_latent(self, batch: int, generator: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """c [B, L] ~ N(0, I) clipped to the bound: the BC policy's own in-span noise (SAC's warm-up)."""
        return randn((batch, self.latent_dim), generator, device).to(dtype).clamp(-self.bound, self.bound)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.actor.parameters())

    def policy_config(self) -> dict:
        return {"type": "dsrl", "hidden": self.hidden, "components": self.components,
                "latent_steps": self.latent_steps, "bound": self.bound, "x0_seed": self.x0_seed,
                "base": self.base.policy_config()}
