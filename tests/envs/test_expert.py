"""Scripted expert: success rates per task and a real friction grasp (no mocks)."""

import gymnasium as gym
import numpy as np
import pytest

from reinflow.envs.arm import ArmEnv
from reinflow.envs.arm.expert import Expert, IKSolver, rollout
from reinflow.envs.arm.model import CUBE_HALF


@pytest.mark.parametrize(
    "env_id", ["reinflow/ArmReach-v0", "reinflow/ArmPush-v0", "reinflow/ArmPickLift-v0"]
)
def test_expert_success_rate(env_id):
    env = gym.make(env_id)
    expert = Expert(env)
    n = 25
    results = [rollout(env, expert, seed=1000 + i) for i in range(n)]
    rate = np.mean([ok for ok, _ in results])
    lengths = [t for _, t in results]
    assert rate >= 0.9, f"{env_id}: expert success {rate:.2f} < 0.9"
    # comfortably inside the time limit
    assert np.mean(lengths) < 0.6 * env.spec.max_episode_steps


def test_expert_actions_are_normalised_and_detects_reset():
    env = ArmEnv("push")
    expert = Expert(env)  # built before reset: must notice the new episode on its own
    obs, _ = env.reset(seed=5)
    for _ in range(30):
        action = expert.act(obs)
        assert action.shape == (6,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
        obs, *_ = env.step(action)
    assert expert.phase > 0


def test_grasp_lifts_and_holds_by_friction():
    """The expert lifts the cube >= 5 cm, it stays up while held (also when the arm swings),
    and drops when the gripper opens: the cube is held by contact friction, not welded."""
    env = ArmEnv("pick_lift", terminate_on_success=False)
    expert = Expert(env)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        heights = []
        for _ in range(80):
            obs, _, _, _, info = env.step(expert.act(obs))
            heights.append(env.cube_pos[2] - CUBE_HALF)
        heights = np.array(heights)
        assert info["success"]
        assert (heights[-25:] >= 0.05).all(), heights[-25:]
        assert env.grasped()
        hold = expert.act(obs)
        for t in range(12):  # swing the base back and forth while holding
            swing = hold.copy()
            swing[0] = np.clip(hold[0] + (0.25 if t % 4 < 2 else -0.25), -1, 1)
            obs, *_ = env.step(swing)
        assert env.cube_pos[2] - CUBE_HALF >= 0.04 and env.grasped()
        release = hold.copy()
        release[5] = 1.0  # open the gripper
        for _ in range(10):
            env.step(release)
        assert env.cube_pos[2] - CUBE_HALF < 0.005  # fell back onto the table
        assert not env.grasped()


def test_closing_on_nothing_is_not_a_grasp():
    env = ArmEnv("pick_lift")
    env.reset(seed=0)
    action = np.zeros(6, dtype=np.float32)
    action[5] = -1.0
    for _ in range(10):
        _, _, _, _, info = env.step(action)
    assert not env.grasped() and info["reward_components"]["grasp"] == 0.0


def test_ik_reaches_top_down_pose():
    env = ArmEnv("reach")
    env.reset(seed=0)
    ik = IKSolver(env.model)
    target = np.array([0.22, 0.08, 0.06])
    q = ik.solve(env.data.qpos[:5], target, yaw=1.0)
    ik.d.qpos[:5] = q
    import mujoco

    mujoco.mj_kinematics(ik.m, ik.d)
    np.testing.assert_allclose(ik.d.site_xpos[ik.site], target, atol=2e-3)
    z_axis = ik.d.site_xmat[ik.site].reshape(3, 3)[:, 2]
    assert z_axis[2] < -0.99  # pointing down
