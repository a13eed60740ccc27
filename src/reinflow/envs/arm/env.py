"""Gymnasium environment of the built-in desk arm (see ``reinflow.envs.arm`` for the API)."""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from ..frames import FrameSource
from .model import (
    ARM_JOINTS,
    CTRL_RANGES,
    HOME_QPOS,
    TIMESTEP,
    load_model,
)
from .tasks import Task, make_task

# State observation layout: (name, size). Identical for every task.
OBS_LAYOUT: tuple[tuple[str, int], ...] = (
    ("joint_pos", 6),  # 5 arm joints (rad) + gripper finger travel (m, 0 closed .. 0.035 open)
    ("joint_vel", 6),
    ("tcp_pos", 3),  # point between the finger pads (m, world frame)
    ("cube_pos", 3),
    ("cube_yaw4", 2),  # cos(4·yaw), sin(4·yaw): yaw modulo the cube's 90° symmetry
    ("target_pos", 3),
    ("cube_minus_tcp", 3),
    ("target_minus_cube", 3),
    ("target_minus_tcp", 3),
)
OBS_SLICES: dict[str, slice] = {}
_i = 0
for _name, _n in OBS_LAYOUT:
    OBS_SLICES[_name] = slice(_i, _i + _n)
    _i += _n
STATE_DIM = _i
ACTION_DIM = 6
CAMERAS = ("top", "wrist")

_LO, _HI = CTRL_RANGES[:, 0].copy(), CTRL_RANGES[:, 1].copy()
_MID, _HALF = (_HI + _LO) / 2.0, (_HI - _LO) / 2.0


def action_to_ctrl(action: np.ndarray) -> np.ndarray:
    """Normalised action in [-1, 1]^6 -> absolute joint targets [5 arm (rad), gripper (m)]."""
    return _MID + _HALF * np.clip(action, -1.0, 1.0)


def ctrl_to_action(ctrl: np.ndarray) -> np.ndarray:
    """Absolute joint targets -> normalised action (clipped to [-1, 1]), float32."""
    return np.clip((np.asarray(ctrl, dtype=np.float64) - _MID) / _HALF, -1.0, 1.0).astype(
        np.float32
    )


class ArmEnv(gym.Env, FrameSource):
    """SO-100-layout desk arm with a cube; the task (reach / push / pick_lift) is an argument.

    Args:
        task: ``"reach"``, ``"push"``, ``"pick_lift"`` or a :class:`Task` instance.
        obs_mode: ``"state"`` (float32 vector, ``OBS_LAYOUT``) or ``"pixels_state"``
            (Dict with ``state``, ``top`` and ``wrist`` uint8 [H, W, 3] images).
        image_size: (H, W) of the camera images in ``pixels_state`` mode.
        render_mode: ``None`` or ``"rgb_array"`` (top camera, ``render_size``).
        control_hz: control rate; physics runs at ``TIMESTEP`` with ``n_substeps`` per step.
        terminate_on_success: end the episode (``terminated=True``) once ``info["success"]``.
        init_noise: uniform noise (rad) added to the home joint pose at reset.

    With cameras it is a ``FrameSource`` (``envs/frames.py``): a ``ChunkWrapper`` renders them
    only for the observation after a chunk's last step.
    """

    # The time limit is part of these tasks (every step costs -1 and time is not observed), so
    # reinflow's GAE treats it as an ending, not a cut to bootstrap through: bootstrapping valued a
    # 2-decision episode as an endless -1 per step, and the critic diverged (docs/history.md, 2026-11-25).
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20, "reinflow_truncation": "terminal"}

    def __init__(
        self,
        task: str | Task = "pick_lift",
        obs_mode: str = "state",
        image_size: tuple[int, int] = (64, 64),
        render_mode: str | None = None,
        render_size: tuple[int, int] = (240, 320),
        control_hz: float = 20.0,
        terminate_on_success: bool = True,
        init_noise: float = 0.05,
    ):
        if obs_mode not in ("state", "pixels_state"):
            raise ValueError(f"obs_mode must be 'state' or 'pixels_state', got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task = make_task(task)
        self.obs_mode = obs_mode
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.render_mode = render_mode
        self.render_size = (int(render_size[0]), int(render_size[1]))
        self.terminate_on_success = bool(terminate_on_success)
        self.init_noise = float(init_noise)
        self.instruction = self.task.instruction
        self.metadata = {**self.metadata, "render_fps": int(round(control_hz))}

        self.model = load_model(TIMESTEP)
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, int(round(1.0 / (control_hz * TIMESTEP))))
        self.dt = self.n_substeps * TIMESTEP
        m = self.model
        name2id = mujoco.mj_name2id
        self._tcp = name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self._target_site = name2id(m, mujoco.mjtObj.mjOBJ_SITE, "target")
        self._cube_geom = name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "cube")
        self._pads = (
            name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "pad_left"),
            name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "pad_right"),
        )
        self._mocap = int(m.body_mocapid[name2id(m, mujoco.mjtObj.mjOBJ_BODY, "target")])
        jadr = [m.jnt_qposadr[name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in ARM_JOINTS]
        if jadr != list(range(5)):
            raise RuntimeError("arm joints must be the first five qpos entries")
        cube_j = name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "cube")
        self._cube_q = int(m.jnt_qposadr[cube_j])
        if not self.task.show_target:
            m.site_rgba[self._target_site, 3] = 0.0
        # Zero-copy views into MjData.
        d = self.data
        self._qpos6 = d.qpos[:6]  # 5 arm joints + finger_left
        self._qvel6 = d.qvel[:6]
        self._cube_pos = d.qpos[self._cube_q : self._cube_q + 3]
        self._cube_quat = d.qpos[self._cube_q + 3 : self._cube_q + 7]
        self._tcp_pos = d.site_xpos[self._tcp]
        self.target_pos = np.zeros(3)

        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        state_space = spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        if obs_mode == "state":
            self.observation_space = state_space
        else:
            h, w = self.image_size
            img = spaces.Box(0, 255, (h, w, 3), np.uint8)
            self.observation_space = spaces.Dict({"state": state_space, "top": img, "wrist": img})
        self._renderers: dict = {}  # lazily created: state mode never pays for rendering
        self._hold = 0
        self.episode_index = 0  # incremented by every reset (lets experts detect new episodes)

    # ------------------------------------------------------------------ state accessors
    @property
    def tcp_pos(self) -> np.ndarray:
        return self._tcp_pos

    @property
    def cube_pos(self) -> np.ndarray:
        return self._cube_pos

    @property
    def cube_yaw(self) -> float:
        w, x, y, z = self._cube_quat
        return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))

    def grasped(self) -> bool:
        """True when both finger pads touch the cube."""
        d = self.data
        if d.ncon < 2:
            return False
        cube, (left, right) = self._cube_geom, self._pads
        touch_l = touch_r = False
        for g1, g2 in d.contact.geom.tolist():
            other = g2 if g1 == cube else g1 if g2 == cube else -1
            touch_l = touch_l or other == left
            touch_r = touch_r or other == right
        return touch_l and touch_r

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        cube, yaw, target = self.task.sample(rng)
        q_arm = HOME_QPOS + rng.uniform(-self.init_noise, self.init_noise, 5)
        d.qpos[:5] = q_arm
        d.qpos[5:7] = _HI[5]
        d.qpos[self._cube_q : self._cube_q + 3] = cube
        d.qpos[self._cube_q + 3 : self._cube_q + 7] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
        d.ctrl[:5] = q_arm
        d.ctrl[5] = _HI[5]
        self.target_pos = np.asarray(target, dtype=np.float64)
        d.mocap_pos[self._mocap] = self.target_pos
        mujoco.mj_forward(m, d)
        self._hold = 0
        self.episode_index += 1
        info = {"instruction": self.instruction, "success": False}
        return self._get_obs(), info  # reset never defers

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {a.shape}")
        if not math.isfinite(a.sum()) and not np.isfinite(a).all():
            raise ValueError(
                f"action contains NaN or inf: {a.tolist()} (refusing to send it to the simulator)"
            )
        d = self.data
        # Out-of-range actions are clipped: MuJoCo clamps ctrl to each actuator's ctrlrange,
        # which is exactly the image of [-1, 1] under this affine map.
        d.ctrl[:] = _MID + _HALF * a
        mujoco.mj_step(self.model, d, self.n_substeps)
        mujoco.mj_kinematics(self.model, d)  # site_xpos for the current qpos

        comps, cond = self.task.evaluate(self)
        self._hold = self._hold + 1 if cond else 0
        success = self._hold >= self.task.hold_steps
        comps["time"] = -self.task.time_penalty
        comps["success"] = self.task.success_bonus if success else 0.0
        reward = float(sum(comps.values()))
        terminated = bool(success and self.terminate_on_success)
        info = {"success": success, "reward_components": comps}
        return self._get_obs(self.defer_frames), reward, terminated, False, info

    def _state(self) -> np.ndarray:
        cube, tcp, tgt = self._cube_pos, self._tcp_pos, self.target_pos
        yaw4 = 4.0 * self.cube_yaw
        return np.concatenate(
            (self._qpos6, self._qvel6, tcp, cube, (math.cos(yaw4), math.sin(yaw4)), tgt,
             cube - tcp, tgt - cube, tgt - tcp)
        ).astype(np.float32)

    def _get_obs(self, defer: bool = False):
        state = self._state()
        if self.obs_mode == "state":
            return state
        obs = {"state": state}
        return obs if defer else self.add_frames(obs)

    def add_frames(self, obs):
        """``{"state"}`` -> ``{"state", "top", "wrist"}`` rendered now; a state vector as it is."""
        if self.obs_mode == "state":
            return obs
        cam = self._camera(self.image_size)
        return {"state": obs["state"], **{c: cam.render(self.data, c) for c in CAMERAS}}

    def _camera(self, size):
        renderer = self._renderers.get(size)
        if renderer is None:
            from .render import CameraRenderer

            renderer = self._renderers[size] = CameraRenderer(self.model, *size)
        return renderer

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._camera(self.render_size).render(self.data, "top")

    def render_camera(self, camera: str = "top", size: tuple[int, int] | None = None):
        """Render any camera (``top``/``wrist``) at ``size`` (default ``image_size``)."""
        return self._camera(tuple(size) if size else self.image_size).render(self.data, camera)

    def close(self):
        renderers, self._renderers = getattr(self, "_renderers", {}), {}
        for r in renderers.values():
            r.close()
