"""Task definitions for :class:`reinflow.envs.arm.env.ArmEnv` (reach, push, pick-lift).

A task only decides three things: where the cube and the target start (``sample``), the
dense reward components and the success condition (``evaluate``), and its language
instruction. Everything else (physics, observations, action mapping) is shared.

Reward = sum of ``info["reward_components"]``. The dense (staged) terms of each task sum to
at most 1; every task also has ``time`` = -1 every step and ``success`` = +1 on success steps:

* ``reach``     ``reach`` = 1 - tanh(10 · |tcp - target|)
* ``push``      ``approach`` = 0.25 · (1 - tanh(10 · |tcp - cube|)),
                ``push`` = 0.75 · (1 - tanh(10 · |cube_xy - target_xy|))
* ``pick_lift`` ``approach`` = 0.25 · (1 - tanh(10 · |tcp - cube|)),
                ``grasp`` = 0.25 if both finger pads touch the cube,
                ``lift`` = 0.5 · clip(height / lift_height, 0, 1) while grasped

So a step that is not a success earns a reward in [-1, 0] and a success step about +1. This
matters because success terminates the episode by default: with purely positive dense
rewards an agent could earn more by hovering just short of success forever than by
succeeding; with the time term, succeeding (sooner) always pays more.
"""

from __future__ import annotations

import math

import numpy as np

from .model import CUBE_HALF


def _polar(rng: np.random.Generator, r: tuple, phi: tuple) -> np.ndarray:
    rad = rng.uniform(*r)
    ang = rng.uniform(*phi)
    return np.array([rad * math.cos(ang), rad * math.sin(ang)])


class Task:
    """Base class; subclasses set the class attributes and implement ``sample``/``evaluate``."""

    name: str = ""
    instruction: str = ""
    max_episode_steps: int = 120
    hold_steps: int = 1  # success condition must hold this many consecutive control steps
    show_target: bool = True
    success_bonus: float = 1.0
    time_penalty: float = 1.0  # = max of the dense terms' sum
    cube_r = (0.16, 0.26)
    cube_phi = (-0.6, 0.6)

    def sample_cube(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        xy = _polar(rng, self.cube_r, self.cube_phi)
        yaw = rng.uniform(-math.pi / 4, math.pi / 4)
        return np.array([xy[0], xy[1], CUBE_HALF]), yaw

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
        """Return (cube position, cube yaw, target position)."""
        raise NotImplementedError

    def evaluate(self, env) -> tuple[dict[str, float], bool]:
        """Return (dense reward components, success condition this step); the env adds
        ``time`` and ``success``."""
        raise NotImplementedError


class ReachTask(Task):
    name = "reach"
    instruction = "move the gripper to the green target"
    max_episode_steps = 100
    hold_steps = 2
    threshold = 0.025

    def sample(self, rng):
        cube, yaw = self.sample_cube(rng)
        for _ in range(100):
            xy = _polar(rng, (0.14, 0.26), (-0.7, 0.7))
            target = np.array([xy[0], xy[1], rng.uniform(0.05, 0.18)])
            if np.linalg.norm(target[:2] - cube[:2]) > 0.06:  # never inside the cube
                break
        return cube, yaw, target

    def evaluate(self, env):
        d = math.dist(env.tcp_pos.tolist(), env.target_pos.tolist())
        return {"reach": 1.0 - math.tanh(10.0 * d)}, d < self.threshold


class PushTask(Task):
    name = "push"
    instruction = "push the red cube to the green target"
    max_episode_steps = 120
    hold_steps = 2
    threshold = 0.035
    cube_r = (0.17, 0.23)
    cube_phi = (-0.5, 0.5)

    def sample(self, rng):
        cube, yaw = self.sample_cube(rng)
        for _ in range(1000):
            ang = rng.uniform(-math.pi, math.pi)
            dist = rng.uniform(0.08, 0.12)
            txy = cube[:2] + dist * np.array([math.cos(ang), math.sin(ang)])
            r, phi = float(np.hypot(*txy)), math.atan2(txy[1], txy[0])
            if 0.13 <= r <= 0.26 and abs(phi) <= 0.75:
                break
        return cube, yaw, np.array([txy[0], txy[1], CUBE_HALF])

    def evaluate(self, env):
        cube = env.cube_pos.tolist()
        d_tcp = math.dist(env.tcp_pos.tolist(), cube)
        d_goal = math.dist(cube[:2], env.target_pos[:2].tolist())
        comps = {
            "approach": 0.25 * (1.0 - math.tanh(10.0 * d_tcp)),
            "push": 0.75 * (1.0 - math.tanh(10.0 * d_goal)),
        }
        return comps, d_goal < self.threshold


class PickLiftTask(Task):
    name = "pick_lift"
    instruction = "pick up the red cube and lift it"
    max_episode_steps = 100
    hold_steps = 5
    lift_height = 0.05
    show_target = False

    def sample(self, rng):
        cube, yaw = self.sample_cube(rng)
        target = cube + np.array([0.0, 0.0, self.lift_height + 0.02])
        return cube, yaw, target

    def evaluate(self, env):
        cube = env.cube_pos.tolist()
        d_tcp = math.dist(env.tcp_pos.tolist(), cube)
        grasped = env.grasped()
        height = cube[2] - CUBE_HALF
        comps = {
            "approach": 0.25 * (1.0 - math.tanh(10.0 * d_tcp)),
            "grasp": 0.25 if grasped else 0.0,
            "lift": 0.5 * min(max(height / self.lift_height, 0.0), 1.0) if grasped else 0.0,
        }
        return comps, grasped and height >= self.lift_height


TASKS: dict[str, type[Task]] = {t.name: t for t in (ReachTask, PushTask, PickLiftTask)}


def make_task(task: str | Task) -> Task:
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown arm task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]()
