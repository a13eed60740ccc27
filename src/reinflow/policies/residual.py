"""Residual RL on a frozen flow policy (``reinflow train --algorithm residual``).

A small MLP reads the base policy's observation features and adds an offset ``r(o)`` [H, P] to the
mean of the chain, zero-initialised so the run starts exactly at the BC policy. PPO then trains
only the offset and the noise head; the base policy's weights never move. This is the on-policy
form of the residual methods in docs/design.md §7 (Policy Decorator, ResiP): the BC behaviour cannot be
eroded by updates that do not touch it, at the price of correcting only what an observation-level
offset can express. Sampling, likelihood, noise basis, PPO and metrics are the shared ones: the
offset enters through ``velocity`` like any policy's output (``reinflow.flow.chain``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reinflow import ConfigError
from reinflow.policies.base import FlowPolicy, VelocityOut
from reinflow.policies.mlp import check_net_size, mlp
from reinflow.policies.wrapped import FrozenBasePolicy
from reinflow.validate import WIDTH_MAX

RESIDUAL_HIDDEN = [256, 256]


class ResidualFlowPolicy(FrozenBasePolicy):
    """``base`` (frozen) + zero-initialised offset net; the rest of the FlowPolicy contract is the base's."""

    def __init__(self, base: FlowPolicy, hidden: list[int] | None = None):
        super().__init__(base)
        self.hidden = list(hidden or RESIDUAL_HIDDEN)
        if not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= WIDTH_MAX for w in self.hidden):
            raise ConfigError(f"residual hidden={self.hidden}: each width in [1, {WIDTH_MAX}]")
        check_net_size([base.value_feature_dim, *self.hidden, base.chunk_size * base.padded_action_dim],
                       "the residual offset net", f"residual hidden={self.hidden}")
        self.residual = mlp([base.value_feature_dim, *self.hidden, base.chunk_size * base.padded_action_dim])
        nn.init.zeros_(self.residual[-1].weight)  # start exactly at the base policy
        nn.init.zeros_(self.residual[-1].bias)

    def offset(self, ctx: Any) -> torch.Tensor:
        """r(o) [B, H, P] from the base's observation features (frozen, so nothing flows into them)."""
        feats = self.base.value_features(ctx)
        # float32 even under --precision bf16 (the sum with a bf16 base velocity then promotes to float32):
        # the offset is small next to the velocity, and in bf16 it and its updates would round away
        with torch.autocast(feats.device.type, enabled=False):
            return self.residual(feats.float()).reshape(feats.shape[0], self.chunk_size, self.padded_action_dim)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: Any) -> VelocityOut:
        out = self.base.velocity(x, t, ctx)
        # Only the last Euler step (mu = x + dt * v) carries the offset, as r / dt: the chain's final
        # mean moves by exactly r and every earlier step is the base policy's, whatever K and the
        # time direction. The chain calls each step with one t for the whole batch.
        ts, dts = self.time_grid()
        if abs(float(t[0]) - ts[-1]) > 1e-6:
            return out
        return VelocityOut(velocity=out.velocity + self.offset(ctx) / dts[-1], noise_features=out.noise_features)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.residual.parameters())

    def policy_config(self) -> dict:
        return {"type": "residual", "hidden": self.hidden, "base": self.base.policy_config()}
