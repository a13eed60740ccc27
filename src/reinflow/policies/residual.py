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

from reinflow.policies.base import FlowPolicy, VelocityOut
from reinflow.policies.mlp import mlp

RESIDUAL_HIDDEN = [256, 256]


class ResidualFlowPolicy(FlowPolicy):
    """``base`` (frozen) + zero-initialised offset net; the FlowPolicy contract is the base's."""

    def __init__(self, base: FlowPolicy, hidden: list[int] | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.hidden = list(hidden or RESIDUAL_HIDDEN)
        for name in ("chunk_size", "action_dim", "padded_action_dim", "denoise_steps", "time_direction",
                     "noise_feature_dim", "noise_features_per_step", "value_feature_dim", "frozen_encoder"):
            setattr(self, name, getattr(base, name))
        self.residual = mlp([base.value_feature_dim, *self.hidden, base.chunk_size * base.padded_action_dim])
        nn.init.zeros_(self.residual[-1].weight)  # start exactly at the base policy
        nn.init.zeros_(self.residual[-1].bias)

    def offset(self, ctx: Any) -> torch.Tensor:
        """r(o) [B, H, P] from the base's observation features (frozen, so nothing flows into them)."""
        feats = self.base.value_features(ctx)
        return self.residual(feats).reshape(feats.shape[0], self.chunk_size, self.padded_action_dim)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: Any) -> VelocityOut:
        out = self.base.velocity(x, t, ctx)
        # Only the last Euler step (mu = x + dt * v) carries the offset, as r / dt: the chain's final
        # mean moves by exactly r and every earlier step is the base policy's, whatever K and the
        # time direction. The chain calls each step with one t for the whole batch.
        ts, dts = self.time_grid()
        if abs(float(t[0]) - ts[-1]) > 1e-6:
            return out
        return VelocityOut(velocity=out.velocity + self.offset(ctx) / dts[-1], noise_features=out.noise_features)

    # --- the rest of the contract is the base policy's --------------------------------------
    def prepare_obs(self, raw_obs: Any) -> Any:
        return self.base.prepare_obs(raw_obs)

    def encode(self, obs: Any) -> Any:
        return self.base.encode(obs)

    def value_features(self, ctx: Any) -> torch.Tensor:
        return self.base.value_features(ctx)

    def action_mask(self) -> torch.Tensor:
        return self.base.action_mask()

    def time_grid(self) -> tuple[list[float], list[float]]:
        return self.base.time_grid()

    def initial_noise(self, ctx: Any, batch: int, deterministic: bool, generator: Any = None) -> torch.Tensor | None:
        return self.base.initial_noise(ctx, batch, deterministic, generator)

    def postprocess_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.base.postprocess_action(action)

    def check_obs_frame(self, raw_obs: Any) -> list[str]:
        return self.base.check_obs_frame(raw_obs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.residual.parameters())

    def set_train_mode(self) -> None:
        self.base.set_train_mode()
        self.residual.eval()

    def policy_config(self) -> dict:
        return {"type": "residual", "hidden": self.hidden, "base": self.base.policy_config()}
