"""Bounded learned noise (docs/design.md §3) and the schedules of its bounds.

sigma = exp(0.5 * (logvar_min + (logvar_max - logvar_min) * (tanh(z) + 1) / 2)),
so sigma stays inside [sigma_min, sigma_max] whatever the network outputs ``z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from reinflow import ConfigError

ScheduleKind = Literal["learned", "decay", "constant"]
SCHEDULE_ALIASES = {"fixed": "learned"}  # the name before 2026-12-03 (it meant fixed *bounds*)


@dataclass
class NoiseSchedule:
    """Noise bounds over training.

    learned: the noise head's sigma, inside [sigma_min, sigma_max] throughout. decay: sigma_max held for ``hold_frac`` of the
    iterations, then cosine-decayed to ``sigma_max_final``. constant: sigma = sigma_max
    everywhere (the head is ignored; the log-prob bound then uses sigma_max).
    """

    kind: ScheduleKind = "learned"
    sigma_min: float = 0.08
    sigma_max: float = 0.16
    sigma_max_final: float | None = None
    hold_frac: float = 0.3

    def __post_init__(self) -> None:
        self.kind = SCHEDULE_ALIASES.get(self.kind, self.kind)
        if self.kind not in ("learned", "decay", "constant"):
            raise ConfigError(f"noise_schedule={self.kind!r}: allowed learned, decay, constant")
        if not self.sigma_min > 0:
            raise ConfigError(f"sigma_min={self.sigma_min}: must be > 0")
        if self.kind != "constant" and not self.sigma_min < self.sigma_max:
            raise ConfigError(
                f"sigma_min={self.sigma_min} must be < sigma_max={self.sigma_max} "
                "(use the 'constant' schedule for a fixed sigma)")
        if self.kind == "constant" and not self.sigma_max > 0:
            raise ConfigError(f"sigma_max={self.sigma_max}: must be > 0")
        final = self.sigma_max_final
        if self.kind == "decay":
            if final is None or not self.sigma_min < final <= self.sigma_max:
                raise ConfigError(
                    f"sigma_max_final={final}: the decay schedule needs "
                    f"sigma_min={self.sigma_min} < sigma_max_final <= sigma_max={self.sigma_max}")
        if not 0.0 <= self.hold_frac <= 1.0:
            raise ConfigError(f"hold_frac={self.hold_frac}: allowed range [0, 1]")

    def bounds_at(self, iteration: int, total_iterations: int) -> tuple[float, float]:
        """(sigma_lo, sigma_hi) in force during ``iteration`` (0-based)."""
        if self.kind == "constant":
            return self.sigma_max, self.sigma_max
        if self.kind == "learned" or total_iterations <= 1:
            return self.sigma_min, self.sigma_max
        progress = iteration / max(total_iterations - 1, 1)
        if progress <= self.hold_frac:
            return self.sigma_min, self.sigma_max
        frac = (progress - self.hold_frac) / max(1.0 - self.hold_frac, 1e-9)
        final = float(self.sigma_max_final)  # validated in __post_init__
        hi = final + 0.5 * (self.sigma_max - final) * (1.0 + math.cos(math.pi * frac))
        return self.sigma_min, hi


class NoiseHead(nn.Module):
    """Features -> bounded sigma of shape [B, H, P].

    Accepts per-sample features [B, F] (one linear map to H*P outputs) or per-step features
    [B, H, F] (one linear map to P outputs, shared across steps). The current bounds are
    buffers so they travel with checkpoints and stay identical between rollout and update.
    """

    def __init__(self, feature_dim: int, chunk_size: int, action_dim: int, per_step: bool,
                 sigma_lo: float, sigma_hi: float, constant: bool = False, hidden: int = 0):
        super().__init__()
        self.chunk_size, self.action_dim, self.per_step = chunk_size, action_dim, per_step
        self.constant = constant
        out = action_dim if per_step else chunk_size * action_dim
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(feature_dim, hidden), nn.Mish()]
            feature_dim = hidden
        last = nn.Linear(feature_dim, out)
        # Start at the middle of the bounds with a small slope: sigma is not pinned at a bound.
        nn.init.zeros_(last.bias)
        nn.init.normal_(last.weight, std=1e-3)
        self.net = nn.Sequential(*layers, last)
        self.register_buffer("sigma_lo", torch.tensor(float(sigma_lo)))
        self.register_buffer("sigma_hi", torch.tensor(float(sigma_hi)))
        # host copies of the two buffers: reading a GPU buffer with float() would sync the device on
        # every denoising transition; refreshed by set_bounds and after load_state_dict
        self.bounds = (float(sigma_lo), float(sigma_hi))
        self.register_load_state_dict_post_hook(lambda m, _keys: m._refresh_bounds())

    def _refresh_bounds(self) -> None:
        self.bounds = (float(self.sigma_lo), float(self.sigma_hi))

    def set_bounds(self, lo: float, hi: float) -> None:
        self.sigma_lo.fill_(lo)
        self.sigma_hi.fill_(hi)
        self.bounds = (float(lo), float(hi))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch = features.shape[0]
        if self.constant:
            return self.sigma_hi.expand(batch, self.chunk_size, self.action_dim)
        z = self.net(features)
        z = z.reshape(batch, self.chunk_size, self.action_dim)
        return bounded_sigma(z, *self.bounds)


def bounded_sigma(z: torch.Tensor, sigma_lo: float, sigma_hi: float) -> torch.Tensor:
    """Map any real ``z`` into [sigma_lo, sigma_hi] through a tanh on the log-variance scale."""
    lv_lo, lv_hi = 2.0 * math.log(sigma_lo), 2.0 * math.log(sigma_hi)
    logvar = lv_lo + (lv_hi - lv_lo) * (torch.tanh(z) + 1.0) / 2.0
    # exp can round a hair outside the bounds in float32; clamp keeps the invariant exact.
    return torch.exp(0.5 * logvar).clamp(sigma_lo, sigma_hi)
