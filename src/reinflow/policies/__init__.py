"""Policies: the FlowPolicy contract and its implementations (MLP; SmolVLA via LeRobot)."""

from __future__ import annotations

from typing import Any

from reinflow import ConfigError
from reinflow.policies.base import FlowPolicy

WRAPPER_TYPES = ("residual", "dsrl")  # a frozen base policy + trainable parts


def base_policy_config(policy_cfg: dict[str, Any]) -> dict[str, Any]:
    """The config of the policy that defines the sizes and the env: a residual's or a dsrl policy's frozen
    base, any other policy itself. Nesting is bounded (build_policy_from_config): a residual's base is
    mlp or smolvla, a dsrl policy's base one of those or a residual."""
    for _ in range(2):
        base = policy_cfg.get("base")
        if policy_cfg.get("type") not in WRAPPER_TYPES or not isinstance(base, dict):
            break
        policy_cfg = base
    return policy_cfg


def _mlp(cfg: dict[str, Any]) -> FlowPolicy:
    from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
    cfg.setdefault("parametrization", "velocity")  # checkpoints written before the field existed
    try:
        return MLPFlowPolicy(MLPPolicyConfig(**cfg))
    except TypeError as exc:
        raise ConfigError(f"policy config: {exc}") from None


def _smolvla(cfg: dict[str, Any]) -> FlowPolicy:
    try:
        from reinflow.policies.smolvla import load_smolvla_policy
    except ImportError as exc:
        raise ConfigError(f"policy type 'smolvla' needs the extra: pip install 'reinflow[smolvla]' ({exc})") from None
    return load_smolvla_policy(cfg)


def _residual(cfg: dict[str, Any]) -> FlowPolicy:
    """A frozen base + offset net; size overrides (denoise_steps ...) are the base's."""
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


def _dsrl(cfg: dict[str, Any]) -> FlowPolicy:
    """A frozen base + noise actor; size overrides are the base's."""
    from reinflow.policies.dsrl import DSRLFlowPolicy
    base = cfg.pop("base", None)
    own = {k: cfg.pop(k) for k in ("hidden", "components", "latent_steps", "bound", "x0_seed") if k in cfg}
    if not isinstance(base, dict) or "latent_steps" not in own:
        raise ConfigError("policy config: a dsrl policy needs a 'base' policy config and 'latent_steps'")
    if base.get("type") == "dsrl":  # steering a steered policy: never written by reinflow (and unbounded)
        raise ConfigError("policy config: a dsrl policy's base is itself a dsrl policy; expected the base "
                          "policy (type mlp, smolvla or residual) under 'base'")
    try:
        return DSRLFlowPolicy(build_policy_from_config({**base, **cfg}), **own)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"policy config (dsrl): {exc}") from None


# The one place policy kinds are registered: the ``type`` of ``FlowPolicy.policy_config()`` -> its builder.
BUILDERS = {"mlp": _mlp, "smolvla": _smolvla, "residual": _residual, "dsrl": _dsrl}
POLICY_TYPES = tuple(BUILDERS)


def build_policy_from_config(policy_cfg: dict[str, Any]) -> FlowPolicy:
    """Rebuild a policy (random weights) from ``FlowPolicy.policy_config()``."""
    cfg = dict(policy_cfg)
    kind = cfg.pop("type", None)
    if kind not in BUILDERS:
        raise ConfigError(f"policy type={kind!r}: allowed {', '.join(POLICY_TYPES)}")
    return BUILDERS[kind](cfg)
