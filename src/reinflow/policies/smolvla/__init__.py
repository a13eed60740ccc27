"""SmolVLA through LeRobot's own ``SmolVLAPolicy`` (optional extra: ``pip install 'reinflow[smolvla]'``).

Importing this package imports LeRobot (after ``tv_shim.ensure_torchvision``); reinflow's core
never imports it. See docs/smolvla.md.
"""

from reinflow.policies.smolvla.tv_shim import ensure_torchvision

ensure_torchvision()
try:
    import lerobot.policies.smolvla.modeling_smolvla  # noqa: F401
except ImportError as exc:  # the trainer turns this into "needs the extra: pip install 'reinflow[smolvla]'"
    raise ImportError(f"SmolVLA needs LeRobot with its SmolVLA dependencies ({exc})") from exc

from reinflow.policies.smolvla.build import build_smolvla_policy, load_smolvla_policy  # noqa: E402
from reinflow.policies.smolvla.policy import (  # noqa: E402
    TRAINABLE_SETS,
    SmolVLAFlowPolicy,
    SmolVLASettings,
    export_lerobot,
)

__all__ = ["TRAINABLE_SETS", "SmolVLAFlowPolicy", "SmolVLASettings", "build_smolvla_policy", "export_lerobot",
           "load_smolvla_policy", "ensure_torchvision"]
