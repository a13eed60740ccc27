"""The SO-101 arm of PyPI ``lerobot-env-so101`` (Apache-2.0; ``pip install -e ".[so101]"``):
``lerobot_env_so101/SO101PickPlace-v0`` (carry a cube to a goal, 300 steps) and
``SO101PickCube-v0`` (lift it, 100 steps).

What reinflow adds (through the env registry, ``envs/families.py``): the package's
``PickPlaceController`` as the built-in expert (stateful: reset per episode, reads the sim),
its recommended kwargs as defaults, and the import of the package. Its Dict observation
(``agent_pos`` [14] + ``environment_state`` [6]: block and goal position) is flattened by
``envs/flatten.py`` and its ``info["succeed"]`` is read as success (``envs/chunk.py``), both
generic.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from typing import Any

import numpy as np

from reinflow import ConfigError

MODULE = "lerobot_env_so101"
INSTALL = 'pip install -e ".[so101]" (PyPI lerobot-env-so101, needs mujoco < 4)'
PICK_PLACE = f"{MODULE}/SO101PickPlace-v0"
PICK_CUBE = f"{MODULE}/SO101PickCube-v0"
# The package's controllers assume 0.025 m per unit action (its DEFAULT_ACTION_SCALE; the env's own
# default, 1.0, moves the target up to 1 m a step). Fixed block and goal (the env's default) would
# make every episode the same scene, so held-out episodes would measure nothing new.
DEFAULT_KWARGS = {"action_scale": 0.025, "random_block_position": True}


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
        return self.controller.act(s.ik_point_pos, s.data.sensor("block_pos").data, s.goal_pos)
