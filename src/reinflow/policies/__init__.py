"""Policies: the FlowPolicy contract and its implementations (MLP; SmolVLA via LeRobot)."""

from __future__ import annotations

from typing import Any

from reinflow import ConfigError
from reinflow.policies.base import FlowPolicy

POLICY_TYPES = ("mlp", "smolvla")


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
    raise ConfigError(f"policy type={kind!r}: allowed {', '.join(POLICY_TYPES)}")
