"""MLP flow policy for vector observations: the built-in policy.

obs [B, O] -> normalised -> obs encoder -> ctx [B, E]; the velocity net reads the flattened
chunk x [B, H*P], a sinusoidal time embedding and ctx, and its last hidden layer [B, W] feeds
the noise head (so sigma may depend on the observation and the denoising step).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from reinflow import ConfigError
from reinflow.policies.base import FlowPolicy, TimeDirection, VelocityOut
from reinflow.validate import check_fields


OBS_STD_FLOOR = 1e-2
OBS_CLIP = 10.0
MAX_PARAMS = 2**28          # 1 GiB of float32 weights; the default recipe's policy has ~0.3 M


def check_net_size(widths: list[int], what: str, given: str) -> int:
    """The weights of MLP(s) with these layer ``widths`` (a list of lists: several nets counted together),
    refused above MAX_PARAMS before anything is allocated; ``given``: the flags or fields that set them."""
    nets = widths if widths and isinstance(widths[0], (list, tuple)) else [widths]
    params = sum(int(a) * int(b) + int(b) for net in nets for a, b in zip(net, net[1:]))
    if params > MAX_PARAMS:
        raise ConfigError(f"{given}: {what} of {params:.3g} weights; at most {MAX_PARAMS:.3g} (narrower or fewer layers)")
    return params


@dataclass
class MLPPolicyConfig:
    """Architecture of the MLP flow policy."""

    obs_dim: int
    """length of the (flattened) observation vector"""
    action_dim: int
    """real action dims A"""
    chunk_size: int = 8
    """actions per chunk H"""
    denoise_steps: int = 1
    """Euler steps K"""
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """velocity-net hidden widths"""
    obs_embed_dim: int = 128
    """observation embedding width"""
    time_embed_dim: int = 32
    """sinusoidal time embedding width"""
    pad_action_dim: int = 0
    """extra padded action dims (P = A + pad), to mirror VLA padding; they never count"""
    time_direction: TimeDirection = "forward"
    """'forward' (t 0->1, ReinFlow) or 'reverse' (t 1->0, LeRobot)"""
    parametrization: Literal["action", "velocity"] = "action"
    """network output: the clean chunk a_hat (v derived from it) or the velocity itself"""
    obs_keys: list[str] | None = None
    """a Dict observation's keys in the order they were concatenated (envs/flatten.py); None: a vector"""

    def __post_init__(self) -> None:
        check_fields(self)  # a checkpoint's config.json may come from anywhere
        if self.parametrization not in ("action", "velocity"):
            raise ConfigError(f"parametrization={self.parametrization!r}: allowed action, velocity")
        for name in ("obs_dim", "action_dim", "chunk_size", "denoise_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.pad_action_dim < 0:
            raise ConfigError(f"pad_action_dim={self.pad_action_dim}: must be >= 0")
        # Each size is bounded on its own (validate.RANGES); their product is what gets allocated.
        flat = self.chunk_size * (self.action_dim + self.pad_action_dim)
        widths = [flat + self.time_embed_dim + self.obs_embed_dim, *self.hidden, flat]
        params = self.obs_dim * self.obs_embed_dim + self.obs_embed_dim ** 2 + sum(
            a * b for a, b in zip(widths, widths[1:]))
        if params > MAX_PARAMS:
            raise ConfigError(f"hidden={self.hidden}, chunk_size={self.chunk_size}, obs_dim={self.obs_dim}: "
                              f"an MLP policy of {params:.3g} weights; at most {MAX_PARAMS:.3g}")


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t [B] -> [B, dim] (sin/cos at geometric frequencies)."""
    half = dim // 2
    freqs = _freqs(half, t.device, t.dtype)
    arg = t[:, None] * freqs[None] * 100.0
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


@functools.lru_cache(maxsize=16)
def _freqs(half: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.exp(-math.log(1000.0) * torch.arange(half, device=device, dtype=dtype) / half)


def mlp(sizes: list[int], act: type[nn.Module] = nn.Mish, last_act: bool = False,
        layer_norm: bool = False) -> nn.Sequential:
    """Linear layers with ``act`` between them; ``layer_norm``: a LayerNorm before each hidden
    activation (what keeps off-policy critics stable at high update-to-data ratios)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_act:
            if layer_norm:
                layers.append(nn.LayerNorm(sizes[i + 1]))
            layers.append(act())
    return nn.Sequential(*layers)


class MLPFlowPolicy(FlowPolicy):
    def __init__(self, cfg: MLPPolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.chunk_size, self.action_dim = cfg.chunk_size, cfg.action_dim
        self.padded_action_dim = cfg.action_dim + cfg.pad_action_dim
        self.denoise_steps, self.time_direction = cfg.denoise_steps, cfg.time_direction
        flat = self.chunk_size * self.padded_action_dim
        self.obs_encoder = mlp([cfg.obs_dim, cfg.obs_embed_dim, cfg.obs_embed_dim], last_act=True)
        self.trunk = mlp([flat + cfg.time_embed_dim + cfg.obs_embed_dim, *cfg.hidden], last_act=True)
        self.out = nn.Linear(cfg.hidden[-1], flat)
        self.noise_feature_dim = cfg.hidden[-1]
        self.value_feature_dim = cfg.obs_dim + cfg.obs_embed_dim
        # Normalisation stats (set by BC pretraining from demonstrations; identity otherwise).
        self.register_buffer("obs_mean", torch.zeros(cfg.obs_dim))
        self.register_buffer("obs_std", torch.ones(cfg.obs_dim))

    def set_obs_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        # A feature that was (nearly) constant in the demos (e.g. the cube in a reach task) must
        # not turn a 1 mm change into a z-score of 1e3: floor the std, and clip z in prepare_obs.
        self.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.maximum(std, OBS_STD_FLOOR), dtype=torch.float32))

    def check_obs_frame(self, raw_obs: Any, threshold: float = 6.0) -> list[str]:
        z = self.obs_zscores(raw_obs).abs().max(0).values
        bad = [(i, float(z[i])) for i in torch.nonzero(z > threshold).flatten().tolist()]
        if not bad or bool((self.obs_std == 1).all() and (self.obs_mean == 0).all()):
            return []  # no stats (policy trained from scratch): nothing to compare with
        worst = ", ".join(f"obs[{i}] |z|={v:.1f}" for i, v in sorted(bad, key=lambda b: -b[1])[:5])
        return [f"first observations are far outside the policy's normalisation stats ({worst}; "
                f"threshold {threshold}): is the simulator in the frame/units of the demonstrations?"]

    def obs_zscores(self, raw_obs: Any) -> torch.Tensor:
        """Unclipped z-scores [B, O] of raw observations under the policy's stats (docs/design.md §5, invariant 5)."""
        obs = torch.as_tensor(np.asarray(raw_obs), dtype=torch.float32).reshape(len(raw_obs), -1)
        return (obs - self.obs_mean.cpu()) / self.obs_std.cpu()

    def prepare_obs(self, raw_obs: Any) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(raw_obs), dtype=torch.float32, device=self.obs_mean.device)
        obs = obs.reshape(obs.shape[0], -1)
        if obs.shape[1] != self.cfg.obs_dim:
            raise ConfigError(f"observation has {obs.shape[1]} values, the policy expects obs_dim={self.cfg.obs_dim}")
        return ((obs - self.obs_mean) / self.obs_std).clamp(-OBS_CLIP, OBS_CLIP)

    def encode(self, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"obs": obs, "emb": self.obs_encoder(obs)}

    def _net(self, x: torch.Tensor, t: torch.Tensor, ctx: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        temb = sinusoidal_embedding(t, self.cfg.time_embed_dim)
        h = self.trunk(torch.cat([x.reshape(batch, -1), temb, ctx["emb"]], dim=-1))
        return self.out(h).reshape(batch, self.chunk_size, self.padded_action_dim), h

    def predict_action(self, x: torch.Tensor, t: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        """The clean chunk a_hat(x_t, t, o) [B, H, P] ('action' parametrization only)."""
        return self._net(x, t, ctx)[0]

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: dict[str, torch.Tensor]) -> VelocityOut:
        out, h = self._net(x, t, ctx)
        if self.cfg.parametrization == "velocity":
            return VelocityOut(velocity=out, noise_features=h)
        # Action parametrization: the straight path through x_t that ends at a_hat. With K = 1 the
        # Euler step then lands exactly on a_hat, so x_0 reaches the action only as far as the
        # network lets it; a velocity net would have to cancel a 300-dim x_0 through a narrower
        # trunk, and what it cannot cancel becomes uncredited noise (measured: std 0.78 per dim).
        # The time left is >= 1/K on the Euler grid, so the division is safe.
        tt = t[:, None, None]
        if self.time_direction == "forward":   # x_t = (1-t) x_0 + t a  ->  v = (a - x_t) / (1 - t)
            v = (out - x) / (1.0 - tt).clamp(min=1e-3)
        else:                                  # x_t = t x_0 + (1-t) a  ->  v = (x_t - a) / t
            v = (x - out) / tt.clamp(min=1e-3)
        return VelocityOut(velocity=v, noise_features=h)

    def value_features(self, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([ctx["obs"], ctx["emb"]], dim=-1)

    def policy_config(self) -> dict:
        return {"type": "mlp", **asdict(self.cfg)}
