"""Built-in MuJoCo desk-arm tasks (SO-100/SO-101 joint layout) and their scripted experts.

Registered gymnasium ids (registration is idempotent, done on import)::

    reinflow/ArmReach-v0      move the gripper to a green target     (max 100 steps)
    reinflow/ArmPush-v0       push the red cube onto a target         (max 120 steps)
    reinflow/ArmPickLift-v0   pick up the red cube and lift it 5 cm   (max 100 steps)

``gymnasium.make(id, **kwargs)`` forwards kwargs to :class:`ArmEnv`: ``obs_mode``
(``"state"`` | ``"pixels_state"``), ``image_size=(H, W)`` (64x64), ``render_mode``
(``None`` | ``"rgb_array"``), ``render_size``, ``control_hz`` (20), ``terminate_on_success``
(True), ``init_noise`` (0.05 rad).

**Actions** ``Box(-1, 1, (6,), float32)``: *absolute* joint targets, normalised linearly to
each joint's range (``model.CTRL_RANGES``): ``[shoulder_pan, shoulder_lift, elbow_flex,
wrist_flex, wrist_roll, gripper]``; gripper -1 = closed (squeezes with a force limit),
+1 = fully open. Out-of-range values are clipped; NaN/inf raise ``ValueError``. Use
``action_to_ctrl`` / ``ctrl_to_action`` to convert. Physics: 5 ms steps, 10 per control step
(20 Hz), position actuators, gravity-compensated links (details in ``model.py``).

**Observations** ``obs_mode="state"``: float32 vector of ``STATE_DIM = 32`` laid out as
``OBS_LAYOUT`` (slices in ``OBS_SLICES``): joint_pos 6 (5 arm joints in rad + finger travel in
m), joint_vel 6, tcp_pos 3, cube_pos 3, cube_yaw4 2 (cos/sin of 4·yaw: the cube looks the
same every 90°), target_pos 3, cube_minus_tcp 3, target_minus_cube 3, target_minus_tcp 3 —
the same layout for every task (pick-lift's target is the point 7 cm above the cube's start,
so some entries are near-constant in a task: floor the std when z-scoring observations).
``obs_mode="pixels_state"``: ``Dict(state=<that vector>, top=uint8[H,W,3],
wrist=uint8[H,W,3])`` rendered headless (``MUJOCO_GL=egl`` by default, see ``render.py``);
state mode never creates a renderer.

**Info**: ``reset`` returns ``{"instruction": str, "success": False}``; every ``step`` returns
``info["success"]`` (bool) and ``info["reward_components"]`` (dict name -> float; the reward
is their sum; components per task are documented in ``tasks.py``: dense staged terms that
sum to at most 1, ``"time"`` = -1 every step and ``"success"`` = +1 on success steps, so
ordinary steps earn [-1, 0] and finishing sooner always pays). ``env.unwrapped.instruction``
holds the language instruction. Success means the task condition held for
``task.hold_steps`` consecutive control steps (reach: tcp within 2.5 cm of target; push: cube
within 3.5 cm of target in xy; pick-lift: cube grasped by both pads and ≥5 cm above its rest
height for 5 steps); with
``terminate_on_success=True`` (default) the episode then ends with ``terminated=True``.

**Expert**: ``Expert(env).act(obs) -> action`` (see ``expert.py``), damped-least-squares IK;
``python -m reinflow.envs.arm.expert 100`` prints its success rate per task.
``python -m reinflow.envs.arm`` prints raw env steps/s. Demos: ``reinflow.envs.demos``.
"""

from __future__ import annotations

import gymnasium

from .render import ensure_gl_backend

ensure_gl_backend()  # before mujoco is imported: MUJOCO_GL=egl (osmesa fallback)

from .env import (  # noqa: E402
    ACTION_DIM,
    CAMERAS,
    OBS_LAYOUT,
    OBS_SLICES,
    STATE_DIM,
    ArmEnv,
    action_to_ctrl,
    ctrl_to_action,
)
from .tasks import TASKS, PickLiftTask, PushTask, ReachTask, Task  # noqa: E402

ENV_IDS = {
    "reinflow/ArmReach-v0": ReachTask,
    "reinflow/ArmPush-v0": PushTask,
    "reinflow/ArmPickLift-v0": PickLiftTask,
}


def register_envs() -> None:
    """Register the arm env ids with gymnasium (skips ids that are already registered)."""
    for env_id, task in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="reinflow.envs.arm.env:ArmEnv",
            max_episode_steps=task.max_episode_steps,
            kwargs={"task": task.name},
        )


register_envs()

__all__ = [
    "ACTION_DIM",
    "CAMERAS",
    "ENV_IDS",
    "OBS_LAYOUT",
    "OBS_SLICES",
    "STATE_DIM",
    "TASKS",
    "ArmEnv",
    "PickLiftTask",
    "PushTask",
    "ReachTask",
    "Task",
    "action_to_ctrl",
    "ctrl_to_action",
    "register_envs",
]
