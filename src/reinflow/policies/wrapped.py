"""A frozen base policy with small trainable parts on top (residual offset, DSRL noise actor).

The FlowPolicy contract (observations, encoding, velocity, time grid, mask, post-processing) is the
base's; a subclass adds its trainable module and overrides only what it changes.
"""

from __future__ import annotations

from typing import Any

import torch

from reinflow.policies.base import FlowPolicy, VelocityOut

CONTRACT_ATTRS = ("chunk_size", "action_dim", "padded_action_dim", "denoise_steps", "time_direction",
                  "noise_feature_dim", "noise_features_per_step", "value_feature_dim", "frozen_encoder")


class FrozenBasePolicy(FlowPolicy):
    """``base`` with every weight frozen; the contract's attributes and methods are the base's."""

    def __init__(self, base: FlowPolicy):
        super().__init__()
        self.base = base.requires_grad_(False)
        for name in CONTRACT_ATTRS:
            setattr(self, name, getattr(base, name))

    def prepare_obs(self, raw_obs: Any) -> Any:
        return self.base.prepare_obs(raw_obs)

    def encode(self, obs: Any) -> Any:
        return self.base.encode(obs)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: Any) -> VelocityOut:
        return self.base.velocity(x, t, ctx)

    def value_features(self, ctx: Any) -> torch.Tensor:
        return self.base.value_features(ctx)

    def action_mask(self) -> torch.Tensor:
        return self.base.action_mask()

    def time_grid(self) -> tuple[list[float], list[float]]:
        return self.base.time_grid()

    def postprocess_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.base.postprocess_action(action)

    def check_obs_frame(self, raw_obs: Any) -> list[str]:
        return self.base.check_obs_frame(raw_obs)

    def set_train_mode(self) -> None:
        self.eval()  # the trainable parts stay in eval mode too (ratio = 1); the base keeps its own rule
        self.base.set_train_mode()
