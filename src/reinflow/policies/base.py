"""The contract every flow policy implements.

A policy supplies only what is specific to it: how to embed an observation (once per chunk),
the velocity field ``v_theta(x_k, t_k, ctx)``, its own time convention, features for the
noise head and the critic, and which action entries are real. Sampling and likelihood live in
``reinflow.flow.chain`` and are shared by every policy (docs/design.md §2, "One function").

Shapes: ``B`` batch, ``H`` chunk_size, ``P`` padded action dim (>= ``A`` real dims),
``F`` feature dim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

TimeDirection = Literal["forward", "reverse"]


@dataclass
class VelocityOut:
    """One evaluation of the velocity field.

    ``velocity``: [B, H, P].  ``noise_features``: [B, F] (one feature vector per sample) or
    [B, H, F] (one per chunk step, e.g. SmolVLA's action-token hidden states).
    """

    velocity: torch.Tensor
    noise_features: torch.Tensor


class FlowPolicy(nn.Module):
    """Base class. Subclasses set the attributes below in ``__init__`` and implement the methods.

    Attributes:
      chunk_size (H), action_dim (A, real dims), padded_action_dim (P >= A),
      denoise_steps (K), time_direction ("forward": t 0->1, dt=+1/K as in ReinFlow;
      "reverse": t 1->0, dt=-1/K as in LeRobot's SmolVLA), noise_feature_dim, value_feature_dim.
    """

    chunk_size: int
    action_dim: int
    padded_action_dim: int
    denoise_steps: int
    time_direction: TimeDirection = "forward"
    noise_feature_dim: int
    noise_features_per_step: bool = False  # True when VelocityOut.noise_features is [B, H, F]
    value_feature_dim: int
    # True when ``encode`` has no trainable parameter and is deterministic (e.g. SmolVLA's frozen
    # prefix): the trainer may then reuse the rollout's contexts in the update (reinflow.rl.context).
    frozen_encoder: bool = False

    def prepare_obs(self, raw_obs: Any) -> Any:
        """Batched raw observation from a vector env (numpy / dict of numpy) -> model input.

        Returns a tensor [B, ...] or a dict of tensors with leading batch dim (what the rollout
        buffer stores and ``encode`` reads). Normalisation with the policy's stats happens here.
        """
        raise NotImplementedError

    def encode(self, obs: Any) -> Any:
        """Observation -> context used by every denoising step (computed once per chunk)."""
        raise NotImplementedError

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: Any) -> VelocityOut:
        """``x``: [B, H, P], ``t``: [B] in the policy's own convention -> VelocityOut."""
        raise NotImplementedError

    def value_features(self, ctx: Any) -> torch.Tensor:
        """Features the critic reads, [B, value_feature_dim] (detached by the caller by default)."""
        raise NotImplementedError

    def action_mask(self) -> torch.Tensor:
        """Bool [H, P]: True for real action dims (padding excluded). Executed-step masking is
        added by the sampler config, not here."""
        mask = torch.zeros(self.chunk_size, self.padded_action_dim, dtype=torch.bool)
        mask[:, : self.action_dim] = True
        return mask

    def time_grid(self) -> tuple[list[float], list[float]]:
        """(t_k, dt_k) for k = 0..K-1, used identically by sampling and likelihood."""
        return time_grid(self.denoise_steps, self.time_direction)

    def policy_config(self) -> dict:
        """JSON-serialisable config from which ``reinflow.policies.load_policy`` rebuilds it."""
        raise NotImplementedError

    def postprocess_action(self, action: torch.Tensor) -> torch.Tensor:
        """Chain action [B, H', A] -> the env's normalised [-1, 1] frame (e.g. undo a VLA's own
        action normalisation). The chain itself is stored unchanged. Default: identity."""
        return action

    def check_obs_frame(self, raw_obs: Any) -> list[str]:
        """Warnings when the first observations are far outside the policy's normalisation
        stats (docs/design.md §5, invariant 5: a simulator/dataset frame mismatch). Default: none."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters PPO updates (a policy may freeze a subset, e.g. SmolVLA's VLM)."""
        return [p for p in self.parameters() if p.requires_grad]

    def save_extra(self, directory: str) -> None:
        """Hook for policy-specific export beside reinflow's checkpoint (e.g. a LeRobot
        ``from_pretrained`` folder). Default: nothing."""

    def set_train_mode(self) -> None:
        """Modules whose forward changes with .train() (dropout, batch norm) stay in eval mode:
        PPO needs the same log-prob at rollout and update time (docs/design.md §5, invariant 1)."""
        self.eval()


def time_grid(denoise_steps: int, direction: TimeDirection) -> tuple[list[float], list[float]]:
    """Euler grid: forward t_k = k/K, dt = 1/K; reverse t_k = 1 - k/K, dt = -1/K."""
    k_total = int(denoise_steps)
    if k_total < 1:
        raise ValueError(f"denoise_steps must be >= 1, got {denoise_steps}")
    if direction == "forward":
        return [k / k_total for k in range(k_total)], [1.0 / k_total] * k_total
    if direction == "reverse":
        return [1.0 - k / k_total for k in range(k_total)], [-1.0 / k_total] * k_total
    raise ValueError(f"time_direction must be 'forward' or 'reverse', got {direction!r}")
