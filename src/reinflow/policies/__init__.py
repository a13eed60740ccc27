"""Policies: the FlowPolicy contract and its implementations (MLP; SmolVLA via LeRobot)."""

from __future__ import annotations

from typing import Any

from reinflow import ConfigError
from reinflow.policies.base import FlowPolicy

POLICY_TYPES = ("mlp", "smolvla", "residual")


def base_policy_config(policy_cfg: dict[str, Any]) -> dict[str, Any]:
    """The config of the policy that defines the sizes and the env: a residual policy's frozen base,
    any other policy itself (a residual's base is never itself a residual: build_policy_from_config)."""
    base = policy_cfg.get("base")
    if policy_cfg.get("type") == "residual" and isinstance(base, dict):
        return base
    return policy_cfg


def build_policy_from_config(policy_cfg: dict[str, Any]) -> FlowPolicy:
    """Rebuild a policy (random weights) from ``FlowPolicy.policy_config()``."""
    cfg = dict(policy_cfg)
    kind = cfg.pop("type", None)
    if kind == "mlp":
        from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
        cfg.setdefault("parametrization", "velocity")  # checkpoints written before the field existed
        try:
            return MLPFlowPolicy(MLPPolicyConfig(**cfg))
        except TypeError as exc:
            raise ConfigError(f"policy config: {exc}") from None
    if kind == "smolvla":
        try:
            from reinflow.policies.smolvla import load_smolvla_policy
        except ImportError as exc:
            raise ConfigError(f"policy type 'smolvla' needs the extra: pip install 'reinflow[smolvla]' ({exc})") from None
        return load_smolvla_policy(cfg)
    if kind == "residual":  # a frozen base + offset net; size overrides (denoise_steps ...) are the base's
        from reinflow.policies.residual import ResidualFlowPolicy
        base, hidden = cfg.pop("base", None), cfg.pop("hidden", None)
        if not isinstance(base, dict) or not (hidden is None or isinstance(hidden, list)):
            raise ConfigError("policy config: a residual policy needs a 'base' policy config and a 'hidden' list")
        if base.get("type") == "residual":  # reinflow never nests them; 900 nested bases would hang
            raise ConfigError("policy config: a residual policy's base is itself a residual; expected the base "
                              "policy (type mlp or smolvla) under 'base'")
        from reinflow.validate import check_value
        hidden = check_value("hidden", hidden, list[int] | None)
        return ResidualFlowPolicy(build_policy_from_config({**base, **cfg}), hidden)
    raise ConfigError(f"policy type={kind!r}: allowed {', '.join(POLICY_TYPES)}")
