"""Environment API tests for the built-in arm tasks (real MuJoCo, no mocks)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from reinflow.envs.arm import (
    ACTION_DIM,
    ENV_IDS,
    OBS_LAYOUT,
    OBS_SLICES,
    STATE_DIM,
    ArmEnv,
    action_to_ctrl,
    ctrl_to_action,
    register_envs,
)
from reinflow.envs.arm.model import CTRL_RANGES

IDS = sorted(ENV_IDS)


def test_ids_registered_and_idempotent():
    register_envs()  # a second registration must be a no-op
    for env_id in IDS:
        spec = gym.spec(env_id)
        assert 100 <= spec.max_episode_steps <= 150
        env = gym.make(env_id)
        assert isinstance(env.unwrapped, ArmEnv)
        assert env.unwrapped.task.name == ENV_IDS[env_id].name
        env.close()


# Unbounded state boxes are intended (as in gymnasium's MuJoCo envs); silence that warning.
INF_WARNING = "ignore:.*infinity.*:UserWarning"


@pytest.mark.filterwarnings(INF_WARNING)
@pytest.mark.parametrize("env_id", IDS)
def test_env_checker_state(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.filterwarnings(INF_WARNING)
def test_env_checker_pixels_and_render():
    env = gym.make(IDS[0], obs_mode="pixels_state", image_size=(32, 40), render_mode="rgb_array")
    check_env(env.unwrapped)
    env.close()


def test_state_layout_matches_simulator():
    assert STATE_DIM == sum(n for _, n in OBS_LAYOUT)
    env = ArmEnv("push")
    obs, _ = env.reset(seed=3)
    assert obs.shape == (STATE_DIM,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[OBS_SLICES["tcp_pos"]], env.tcp_pos, atol=1e-6)
    np.testing.assert_allclose(obs[OBS_SLICES["cube_pos"]], env.cube_pos, atol=1e-6)
    np.testing.assert_allclose(obs[OBS_SLICES["target_pos"]], env.target_pos, atol=1e-6)
    np.testing.assert_allclose(
        obs[OBS_SLICES["target_minus_cube"]], env.target_pos - env.cube_pos, atol=1e-6
    )
    np.testing.assert_allclose(obs[OBS_SLICES["joint_pos"]], env.data.qpos[:6], atol=1e-6)


def test_reset_is_seeded_and_randomised():
    env = ArmEnv("pick_lift")
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[OBS_SLICES["cube_pos"]], c[OBS_SLICES["cube_pos"]])
    cubes = np.array([env.reset(seed=s)[0][OBS_SLICES["cube_pos"]] for s in range(20)])
    assert cubes[:, 0].std() > 0.01 and cubes[:, 1].std() > 0.01


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises_and_does_not_step(bad):
    env = ArmEnv("reach")
    env.reset(seed=0)
    action = np.zeros(ACTION_DIM, dtype=np.float32)
    action[2] = bad
    t0, q0 = env.data.time, env.data.qpos.copy()
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(action)
    assert env.data.time == t0
    np.testing.assert_array_equal(env.data.qpos, q0)


def test_wrong_action_shape_raises():
    env = ArmEnv("reach")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))


def test_out_of_range_actions_are_clipped():
    out = []
    for scale in (1.0, 7.0):
        env = ArmEnv("reach")
        env.reset(seed=1)
        action = scale * np.array([1, -1, 1, -1, 1, -1], dtype=np.float32)
        for _ in range(3):
            obs, *_ = env.step(action)
        out.append(obs)
    np.testing.assert_array_equal(out[0], out[1])


def test_action_mapping_roundtrip_and_bounds():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (100, ACTION_DIM))
    for row in a:
        np.testing.assert_allclose(ctrl_to_action(action_to_ctrl(row)), row, atol=1e-6)
    np.testing.assert_allclose(action_to_ctrl(-np.ones(6)), CTRL_RANGES[:, 0])
    np.testing.assert_allclose(action_to_ctrl(np.ones(6)), CTRL_RANGES[:, 1])


@pytest.mark.parametrize(
    "task,names",
    [
        ("reach", {"reach", "time", "success"}),
        ("push", {"approach", "push", "time", "success"}),
        ("pick_lift", {"approach", "grasp", "lift", "time", "success"}),
    ],
)
def test_reward_components_and_info(task, names):
    env = ArmEnv(task)
    _, info = env.reset(seed=0)
    assert info["instruction"] == env.instruction and len(env.instruction) > 10
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, ACTION_DIM))
        comps = info["reward_components"]
        assert set(comps) == names
        assert all(isinstance(v, float) for v in comps.values())
        assert reward == pytest.approx(sum(comps.values()))
        assert -1.0 <= reward <= 0.0  # not a success step: time cost minus dense progress
        assert isinstance(info["success"], bool) and isinstance(terminated, bool)
        assert truncated is False


@pytest.mark.parametrize("task", ["reach", "push", "pick_lift"])
def test_success_step_pays_more_than_any_other_step(task):
    """Success terminates, so it must beat hovering next to it (no reward for stalling)."""
    from reinflow.envs.arm.expert import Expert

    env = ArmEnv(task)
    expert = Expert(env)
    obs, _ = env.reset(seed=2)
    rewards, terminated = [], False
    while not terminated and len(rewards) < 100:
        obs, reward, terminated, _, info = env.step(expert.act(obs))
        rewards.append(reward)
    assert terminated and info["success"] and info["reward_components"]["success"] == 1.0
    assert max(rewards[:-1]) <= 0.0 < rewards[-1]


def test_instructions_differ_per_task():
    assert len({ArmEnv(t).instruction for t in ("reach", "push", "pick_lift")}) == 3


def test_pixels_observation_sizes_and_cameras_differ():
    env = ArmEnv("push", obs_mode="pixels_state", image_size=(48, 80))
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.zeros(ACTION_DIM))
    assert env.observation_space.contains(obs)
    for cam in ("top", "wrist"):
        img = obs[cam]
        assert img.shape == (48, 80, 3) and img.dtype == np.uint8
        assert img.std() > 5  # not a blank frame
    assert np.abs(obs["top"].astype(int) - obs["wrist"].astype(int)).mean() > 10
    np.testing.assert_array_equal(obs["state"], env._state())
    env.close()


def test_state_mode_never_creates_a_renderer():
    env = ArmEnv("pick_lift")
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(ACTION_DIM))
    assert env.render() is None and env._renderers == {}


def test_render_rgb_array_size():
    env = ArmEnv("reach", render_mode="rgb_array", render_size=(60, 90))
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (60, 90, 3) and frame.dtype == np.uint8
    env.close()


def test_random_policy_rarely_succeeds_at_pick_lift():
    env = gym.make("reinflow/ArmPickLift-v0")
    rng = np.random.default_rng(0)
    wins = 0
    for seed in range(3):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, term, trunc, info = env.step(rng.uniform(-1, 1, ACTION_DIM))
            wins += info["success"]
            done = term or trunc
    assert wins == 0
