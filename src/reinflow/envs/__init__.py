"""Environments: the built-in arm tasks (registered on import), the gymnasium factory and the
chunk-execution wrapper."""

import importlib.util
import os

# MuJoCo picks its GL backend when it is first imported. Without a display, default to EGL
# (works with Mesa's software driver too); users can still set MUJOCO_GL=osmesa/glfw.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import gymnasium as _gym  # noqa: E402

if "reinflow/Faulty-v0" not in _gym.registry:
    _gym.register("reinflow/Faulty-v0", entry_point="reinflow.envs.faulty:FaultyEnv", max_episode_steps=200)

if importlib.util.find_spec("reinflow.envs.arm") is not None:  # registers reinflow/Arm*-v0
    from reinflow.envs import arm  # noqa: F401
