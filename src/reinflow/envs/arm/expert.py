"""Scripted experts for the arm tasks (privileged: they read the simulator state).

``Expert(env)`` picks the right script for ``env.unwrapped.task``; call ``expert.reset()``
after every ``env.reset`` (or let ``act`` detect a new episode) and ``expert.act(obs)`` each
step to get a normalised float32 action in ``[-1, 1]^6``. Each step the script chooses a
Cartesian waypoint for the tool centre point (tcp) with a top-down gripper at a chosen yaw,
moves a commanded point towards it at a bounded speed, and solves inverse kinematics for
that point with damped least squares (``mj_jacSite`` on a private ``MjData``, warm-started
from the previous solution). Phases:

* reach: go to the target.
* push: above the pre-push point behind the cube -> down -> push through towards the target
  (closed loop: the push direction is re-aimed at the cube every step; if the cube slips
  away from the pad the script backs off and re-approaches).
* pick_lift: above the cube (yaw aligned with a cube face) -> descend -> close -> lift 10 cm;
  if the cube drops, start again.

``rollout(env, expert, seed)`` runs one episode and returns ``(success, steps)``;
``success_rate(env_id, n, seed)`` measures an expert (``python -m reinflow.envs.arm.expert``).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from .env import ArmEnv, ctrl_to_action
from .model import ARM_RANGES, CUBE_HALF, GRIPPER_RANGE

OPEN, CLOSED = GRIPPER_RANGE[1], GRIPPER_RANGE[0]


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class IKSolver:
    """Damped-least-squares IK of the tcp site: position + top-down orientation at a yaw."""

    def __init__(self, model: mujoco.MjModel, site: str = "tcp", damping: float = 0.03):
        self.m = model
        self.d = mujoco.MjData(model)
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        self.jacp = np.zeros((3, model.nv))
        self.jacr = np.zeros((3, model.nv))
        self.lam2 = damping**2
        self.rot_weight = 0.5
        self.lo, self.hi = ARM_RANGES[:, 0], ARM_RANGES[:, 1]

    def solve(self, q0, pos, yaw: float, iters: int = 40, tol: float = 2e-4,
              rot_weight: float | None = None) -> np.ndarray:
        m, d = self.m, self.d
        q = np.clip(np.asarray(q0, dtype=np.float64), self.lo, self.hi)
        x_des = np.array([math.cos(yaw), math.sin(yaw), 0.0])
        y_des = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
        z_des = np.array([0.0, 0.0, -1.0])
        w = self.rot_weight if rot_weight is None else rot_weight
        for _ in range(iters):
            d.qpos[:5] = q
            mujoco.mj_kinematics(m, d)
            R = d.site_xmat[self.site].reshape(3, 3)
            e_p = pos - d.site_xpos[self.site]
            e_r = 0.5 * (np.cross(R[:, 0], x_des) + np.cross(R[:, 1], y_des)
                         + np.cross(R[:, 2], z_des))
            if e_p @ e_p < tol * tol and e_r @ e_r < (5 * tol) ** 2:
                break
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, self.jacp, self.jacr, self.site)
            J = np.vstack((self.jacp[:, :5], w * self.jacr[:, :5]))
            e = np.concatenate((e_p, w * e_r))
            dq = J.T @ np.linalg.solve(J @ J.T + self.lam2 * np.eye(6), e)
            q = np.clip(q + dq, self.lo, self.hi)
        return q


class Expert:
    """Scripted expert for an :class:`ArmEnv` (or a gymnasium wrapper around one)."""

    def __init__(self, env, speed: float = 0.2, push_speed: float = 0.1):
        self.env: ArmEnv = env.unwrapped
        self.task = self.env.task.name
        self.ik = IKSolver(self.env.model)
        self.max_step = speed * self.env.dt
        self.push_step = push_speed * self.env.dt
        self.reset()

    def reset(self) -> None:
        e = self.env
        self.phase = 0
        self.timer = 0
        self.q = e.data.qpos[:5].copy()
        self.cmd = e.tcp_pos.copy()
        self.yaw = None
        self._episode = e.episode_index

    # ---------------------------------------------------------------- helpers
    def _grasp_yaw(self, cube_xy: np.ndarray) -> float:
        """Cube-face yaw (mod pi/2) nearest the arm's natural top-down yaw at ``cube_xy``."""
        natural = math.atan2(cube_xy[1], cube_xy[0]) + math.pi
        base = self.env.cube_yaw
        k = round((natural - base) / (math.pi / 2))
        best = base + k * math.pi / 2
        if self.yaw is not None and abs(_wrap(self.yaw - best)) < 0.3:
            # keep the previous choice unless the cube really turned (avoids flip-flopping)
            k = round((self.yaw - base) / (math.pi / 2))
            best = base + k * math.pi / 2
        return best

    def _move(self, goal: np.ndarray, max_step: float) -> None:
        delta = goal - self.cmd
        n = float(np.linalg.norm(delta))
        self.cmd = goal.copy() if n <= max_step else self.cmd + delta * (max_step / n)

    def _action(self, yaw: float, grip: float, rot_weight: float | None = None) -> np.ndarray:
        self.q = self.ik.solve(self.q, self.cmd, yaw, rot_weight=rot_weight)
        return ctrl_to_action(np.append(self.q, grip))

    # ---------------------------------------------------------------- policy
    def act(self, obs=None) -> np.ndarray:
        if self.env.episode_index != self._episode:  # env reset without expert.reset()
            self.reset()
        return getattr(self, f"_act_{self.task}")()

    def _act_reach(self) -> np.ndarray:
        e = self.env
        tgt = e.target_pos
        self._move(tgt, self.max_step)
        yaw = math.atan2(tgt[1], tgt[0]) + math.pi
        return self._action(yaw, OPEN, rot_weight=0.1)  # position first; any pitch will do

    def _act_pick_lift(self) -> np.ndarray:
        e = self.env
        tcp, cube = e.tcp_pos, e.cube_pos.copy()
        above = cube + np.array([0.0, 0.0, 0.07])
        grip = OPEN
        if self.phase == 0:  # approach above the cube, gripper open and aligned
            self.yaw = self._grasp_yaw(cube[:2])
            goal = above
            if np.linalg.norm(tcp[:2] - goal[:2]) < 0.008 and abs(tcp[2] - goal[2]) < 0.02:
                self.phase = 1
        if self.phase == 1:  # descend around the cube
            self.yaw = self._grasp_yaw(cube[:2])
            goal = np.array([cube[0], cube[1], CUBE_HALF + 0.002])
            if np.linalg.norm(tcp - goal) < 0.008:
                self.phase, self.timer = 2, 0
        if self.phase == 2:  # close
            goal, grip = self.cmd.copy(), CLOSED
            self.timer += 1
            if self.timer >= 4:
                self.phase, self.lift_xy = 3, cube[:2].copy()
        if self.phase == 3:  # lift and hold
            goal, grip = np.array([*self.lift_xy, CUBE_HALF + 0.10]), CLOSED
            if not e.grasped() and cube[2] < CUBE_HALF + 0.01 and tcp[2] > CUBE_HALF + 0.03:
                self.phase = 0  # dropped: try again
                goal, grip = above, OPEN
        self._move(goal, self.max_step)
        return self._action(self.yaw, grip)

    def _act_push(self) -> np.ndarray:
        e = self.env
        tcp, cube, tgt = e.tcp_pos, e.cube_pos, e.target_pos
        to_goal = tgt[:2] - cube[:2]
        dist = float(np.linalg.norm(to_goal))
        d = to_goal / max(dist, 1e-6)
        standoff = CUBE_HALF + 0.012
        z = 0.018
        pre = np.array([*(cube[:2] - d * (standoff + 0.015)), z])
        yaw = math.atan2(d[1], d[0])
        if self.yaw is not None and abs(_wrap(yaw - self.yaw)) > math.pi / 2:
            yaw = _wrap(yaw + math.pi)  # the gripper is symmetric: keep the nearer heading
        self.yaw = yaw
        step = self.max_step
        if self.phase == 0:  # above the pre-push point
            goal = pre + np.array([0.0, 0.0, 0.06])
            if np.linalg.norm(tcp[:2] - goal[:2]) < 0.01:
                self.phase = 1
        if self.phase == 1:  # down behind the cube
            goal = pre
            if np.linalg.norm(tcp - goal) < 0.01:
                self.phase = 2
        if self.phase == 2:  # push through
            rel = cube[:2] - tcp[:2]
            along = float(rel @ d)
            lateral = abs(float(rel[0] * d[1] - rel[1] * d[0]))
            if along < 0.0 or lateral > 0.02 or np.linalg.norm(rel) > 0.07:
                self.phase = 0  # lost the cube: back off and re-approach
                goal = np.array([*tcp[:2], z + 0.06])
            else:
                # aim the pad at the cube's centre line, advance along the push direction
                goal = np.array([*(cube[:2] - d * standoff + d * min(dist, 0.02)), z])
                step = self.push_step
        self._move(goal, step)
        return self._action(self.yaw, CLOSED)


def rollout(env, expert: Expert | None = None, seed: int | None = None, max_steps=None):
    """Run one expert episode on a (wrapped) env; return (success, number of steps)."""
    expert = expert or Expert(env)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    limit = max_steps or env.unwrapped.task.max_episode_steps
    success, steps = False, 0
    while steps < limit:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        steps += 1
        success = success or bool(info["success"])
        if terminated or truncated:
            break
    return success, steps


def success_rate(env_id: str, n: int = 50, seed: int = 0, **kwargs) -> tuple[float, float]:
    """Expert success rate and mean episode length over seeds ``seed .. seed+n-1``."""
    import gymnasium as gym

    from . import register_envs

    register_envs()
    env = gym.make(env_id, **kwargs)
    expert = Expert(env)
    results = [rollout(env, expert, seed=seed + i) for i in range(n)]
    env.close()
    return float(np.mean([s for s, _ in results])), float(np.mean([t for _, t in results]))


if __name__ == "__main__":  # python -m reinflow.envs.arm.expert [n]
    import sys
    import time

    from . import ENV_IDS

    n_eps = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    for env_id in ENV_IDS:
        t0 = time.time()
        rate, length = success_rate(env_id, n_eps)
        print(f"{env_id}: success {rate:.2%} over {n_eps} seeds, mean length {length:.1f}, "
              f"{time.time() - t0:.1f}s")
