"""``collect_rollout`` on a real vector env: the shapes it promises, the value of a time-limited episode's
final observation where (and only where) it was cut, the chunk's env steps, and nothing crossing envs."""

from __future__ import annotations

import gymnasium as gym
import pytest
import numpy as np
import torch
from gymnasium.spaces import Box

from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.rl.build import build_agent
from reinflow.rl.config import TrainConfig
from reinflow.rl.rollout import collect_rollout
from reinflow.rl.seeding import env_generators, seeded_reset

ENV_ID = "reinflow_tests/Tagged-v0"
LIMIT = 4                 # env steps per episode (a time limit: truncated, never terminated)
ACT, CHUNK, K, T, N = 2, 3, 2, 5, 3


class Tagged(gym.Env):
    """obs [tag, step]: the tag is drawn at reset, so each env's episode carries its own; reward = tag."""

    observation_space = Box(-10.0, 10.0, (2,), np.float32)
    action_space = Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.tag, self.t = float(self.np_random.uniform(-5, 5)), 0
        return np.array([self.tag, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.tag, self.t], np.float32), self.tag, False, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=Tagged, max_episode_steps=LIMIT)


def test_collect_rollout_shapes_bootstrap_and_envs_kept_apart():
    cfg = TrainConfig(env=ENV_ID, chunk_size=CHUNK, act_steps=ACT, denoise_steps=K, hidden=[16], out="unused",
                      noise_basis=0).resolved()
    torch.manual_seed(0)
    agent = build_agent(cfg, *env_spaces(ENV_ID))
    envs = make_vector_env(ENV_ID, N, ACT)
    raw = seeded_reset(envs, 0, 0, 0)
    roll, last_raw = collect_rollout(envs, agent, raw, T, None, env_generators(0, 0, 0, N))
    envs.close()
    assert roll.chains.shape == (T, N, K + 1, CHUNK, 2) and roll.logp.shape == (T, N, 1)
    for name in ("values", "rewards", "raw_rewards", "terminated", "truncated", "final_values", "valid", "per_dim"):
        assert getattr(roll, name).shape == (T, N), name
    assert roll.last_values.shape == (N,) and len(roll.obs) == T
    assert roll.env_steps == T * N * ACT and roll.num_dims == K * ACT * 2

    tags = torch.stack(roll.obs)[..., 0].numpy()                        # [T, N]: whose episode each row is
    # a decision every 2 env steps, a limit of 4: each episode is 2 decisions, cut at rows 1 and 3
    cut = torch.zeros(T, N, dtype=torch.bool)
    cut[1] = cut[3] = True
    assert torch.equal(roll.truncated, cut) and not roll.terminated.any()
    with torch.no_grad():
        for t in range(T):
            for i in range(N):
                # each row is env i's own: the reward is its episode's tag, summed over the chunk's 2 steps
                assert roll.raw_rewards[t, i] == torch.tensor(2 * tags[t, i], dtype=torch.float32)
                if cut[t, i]:   # V(final obs [tag, 4]) of that env's episode, not the next episode's first obs
                    final = agent.policy.prepare_obs(np.array([[tags[t, i], LIMIT]], np.float32))
                    expected = agent.value(agent.policy.encode(final))[0]
                    assert torch.allclose(roll.final_values[t, i], expected), (t, i)
                    assert tags[t + 1, i] != tags[t, i]                  # a new episode follows
                else:
                    assert roll.final_values[t, i] == 0.0
                    if t + 1 < T:
                        assert tags[t + 1, i] == tags[t, i]
        # stored values and log-probs are the agent's on that row's own observation and chain
        for t in range(T):
            lp, v = agent.evaluate(roll.obs[t], roll.chains[t])
            assert torch.allclose(v, roll.values[t]) and torch.equal(lp.logp, roll.logp[t])
        last = agent.value(agent.policy.encode(agent.policy.prepare_obs(last_raw)))
        assert torch.allclose(roll.last_values, last)
    assert len({round(x, 4) for x in tags[0]}) == N                    # the envs' episodes differ
    assert len(roll.episodes) == 2 * N and {e["length"] for e in roll.episodes} == {float(LIMIT)}


def test_reward_scaler_divides_by_the_std_of_the_discounted_returns_by_hand():
    """Per env: ret <- gamma * ret + r, reset to 0 where done; the std is over every return seen so far
    with a pseudo-count of 1e-4 at 0 (Welford from count 1e-4), each step's reward divided by it."""
    from reinflow.rl.rollout import RewardScaler
    gamma, rewards = 0.9, np.array([[1.0, -2.0], [0.5, 3.0], [2.0, -1.0]])
    dones = np.array([[False, True], [False, False], [True, False]])
    scaler, ret, seen = RewardScaler(2, gamma), np.zeros(2), []
    for r, d in zip(rewards, dones):
        ret = gamma * ret + r
        seen += list(ret)
        ret = np.where(d, 0.0, ret)
        x = np.array(seen)
        mean = x.sum() / (1e-4 + len(x))
        var = (((x - mean) ** 2).sum() + 1e-4 * mean**2) / (1e-4 + len(x))
        assert np.allclose(scaler(r.copy(), d), r / np.sqrt(var), rtol=1e-12, atol=0)


def _tagged_rollout(steps, scaler=None, keep_context_bytes=0):
    cfg = TrainConfig(env=ENV_ID, chunk_size=CHUNK, act_steps=ACT, denoise_steps=K, hidden=[16], out="unused",
                      noise_basis=0).resolved()
    torch.manual_seed(0)
    agent = build_agent(cfg, *env_spaces(ENV_ID))
    envs = make_vector_env(ENV_ID, N, ACT)
    try:
        roll, _ = collect_rollout(envs, agent, seeded_reset(envs, 0, 0, 0), steps, scaler,
                                  env_generators(0, 0, 0, N), keep_context_bytes=keep_context_bytes)
    finally:
        envs.close()
    return roll, agent


def test_rollout_rewards_are_the_raw_rewards_through_the_scaler_reset_where_episodes_end():
    """With a RewardScaler the stored rewards are the raw ones scaled step by step, each env's return
    restarting where its episode ended (terminated or truncated); raw_rewards stay unscaled."""
    from reinflow.rl.rollout import RewardScaler
    roll, _ = _tagged_rollout(T, RewardScaler(N, 0.9))
    ref = RewardScaler(N, 0.9)
    done = (roll.terminated | roll.truncated).numpy()
    assert done.any()                                   # the episodes end inside the rollout: the reset is tested
    for t in range(T):
        expected = ref(roll.raw_rewards[t].double().numpy(), done[t])
        assert np.allclose(roll.rewards[t].numpy(), expected, rtol=1e-6, atol=0), t
    assert not torch.allclose(roll.rewards, roll.raw_rewards)


def test_reward_scaler_floors_the_std_at_1e_8():
    """A return whose running std is below 1e-8 is divided by 1e-8 (a bounded reward, not a blow-up), and
    all-zero returns give 0, not NaN. One env, one step of r: count 1 + 1e-4, std = |r| 1e-2 / (1 + 1e-4)."""
    from reinflow.rl.rollout import RewardScaler
    zero = RewardScaler(1, 0.9)
    assert zero(np.zeros(1), np.zeros(1, bool)).tolist() == [0.0]
    tiny = RewardScaler(1, 0.9)
    r = 1e-6                                            # std = 1e-8 / (1 + 1e-4) < 1e-8: the floor applies
    assert tiny(np.array([r]), np.zeros(1, bool))[0] == pytest.approx(r / 1e-8, rel=1e-12)
    above = RewardScaler(1, 0.9)                        # r = 1e-4: std = 1e-6 / (1 + 1e-4), no floor
    assert above(np.array([1e-4]), np.zeros(1, bool))[0] == pytest.approx(1e-4 / (1e-6 / (1 + 1e-4)), rel=1e-9)


def test_a_faulted_episode_is_invalid_from_its_first_decision_to_the_one_that_faulted():
    """reinflow/Faulty-v0 returns NaN at env step 5 of the first episode (env 0; the fault counter is per
    process): with 2 env steps per decision the fault falls in decision 2, so env 0's rows 0, 1 and 2 are
    dropped from the update and every other row stays valid."""
    from reinflow.envs.faulty import reset_fault_counter
    env_id, kw = "reinflow/Faulty-v0", {"base": "Pendulum-v1", "nan_at": 5, "faults": 1}
    cfg = TrainConfig(env=env_id, chunk_size=CHUNK, act_steps=ACT, denoise_steps=K, hidden=[16], out="unused",
                      noise_basis=0).resolved()
    torch.manual_seed(0)
    agent = build_agent(cfg, *env_spaces(env_id, kw))
    reset_fault_counter()
    envs = make_vector_env(env_id, 2, ACT, "sync", kw)
    try:
        roll, _ = collect_rollout(envs, agent, seeded_reset(envs, 0, 0, 0), 4, None, env_generators(0, 0, 0, 2))
    finally:
        envs.close()
        reset_fault_counter()
    expected = torch.ones(4, 2, dtype=torch.bool)
    expected[:3, 0] = False
    assert torch.equal(roll.valid, expected) and roll.dropped_episodes == 1
    assert roll.truncated[2, 0] and roll.episodes == []  # the faulted episode is no finished-episode stat


def test_rollout_keeps_each_steps_context_only_within_the_byte_budget():
    from reinflow.rl.context import context_nbytes
    roll, agent = _tagged_rollout(2)
    per_step = context_nbytes(agent.policy.encode(roll.obs[0]))
    kept, _ = _tagged_rollout(2, keep_context_bytes=2 * per_step)     # exactly the budget: kept
    assert len(kept.contexts) == 2
    for t in range(2):
        assert torch.equal(kept.contexts[t]["emb"], agent.policy.encode(kept.obs[t])["emb"])
    over, _ = _tagged_rollout(2, keep_context_bytes=2 * per_step - 1)  # one byte short: none kept
    assert over.contexts is None and roll.contexts is None


RANK_WORKER = """
import sys, numpy as np, torch, torch.distributed as dist
from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.rl.build import build_agent
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import DistInfo
from reinflow.rl.rollout import RewardScaler, collect_rollout
from reinflow.rl.seeding import env_generators, seeded_reset
rank, folder = int(sys.argv[1]), sys.argv[2]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
kw = {"max_episode_steps": 4}
cfg = TrainConfig(env="Pendulum-v1", chunk_size=3, act_steps=2, denoise_steps=2, hidden=[16], out="unused",
                  noise_basis=0).resolved()
torch.manual_seed(0)
agent = build_agent(cfg, *env_spaces("Pendulum-v1", kw))
envs = make_vector_env("Pendulum-v1", 1, 2, "sync", kw, first_index=rank)
roll, _ = collect_rollout(envs, agent, seeded_reset(envs, 0, 0, rank), 5, RewardScaler(2, 0.9),
                          env_generators(0, 0, rank, 1), DistInfo(rank=rank, world_size=2, backend="gloo"))
np.savez(f"{folder}/rank{rank}.npz", rewards=roll.rewards.numpy(), raw=roll.raw_rewards.numpy(),
         done=(roll.terminated | roll.truncated).numpy())
dist.destroy_process_group()
"""


def test_two_gloo_ranks_scale_rewards_as_one_scaler_over_all_their_envs(tmp_path):
    """Two ranks of one env each (Pendulum cut every 2 decisions) share one RewardScaler over both envs:
    each rank's stored rewards are its column of that scaler's output, episode ends included."""
    import os
    import subprocess
    import sys

    from reinflow.rl.rollout import RewardScaler
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RANK_WORKER, str(r), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in (0, 1)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert all(z["rewards"].shape == z["raw"].shape == (5, 1) for z in ranks)   # each rank keeps its own env's
    raw = np.concatenate([z["raw"] for z in ranks], axis=1).astype(np.float64)     # [T, 2]: env r is rank r
    done = np.concatenate([z["done"] for z in ranks], axis=1)
    assert done.any()
    ref = RewardScaler(2, 0.9)
    for t in range(raw.shape[0]):
        expected = ref(raw[t], done[t])
        for r in (0, 1):
            assert np.isclose(ranks[r]["rewards"][t, 0], expected[r], rtol=1e-5, atol=0), (t, r)


PARTS_ID = "reinflow_tests/Parts-v0"


class Parts(gym.Env):
    """Reports reward components per env step: ``one`` = 1 and ``t`` = the episode's step count."""

    observation_space = Box(-10.0, 10.0, (2,), np.float32)
    action_space = Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, False, False, {"reward_components": {"one": 1.0, "t": float(self.t)}}


def _parts_components(limit: int) -> dict:
    if PARTS_ID not in gym.registry:
        gym.register(PARTS_ID, entry_point=Parts)
    cfg = TrainConfig(env=PARTS_ID, chunk_size=CHUNK, act_steps=ACT, denoise_steps=K, hidden=[16], out="unused",
                      noise_basis=0).resolved()
    torch.manual_seed(0)
    agent = build_agent(cfg, *env_spaces(PARTS_ID))
    envs = make_vector_env(PARTS_ID, N, ACT, "sync", {"max_episode_steps": limit})
    try:
        roll, _ = collect_rollout(envs, agent, seeded_reset(envs, 0, 0, 0), T, None, env_generators(0, 0, 0, N))
    finally:
        envs.close()
    return roll.reward_components


def test_reward_components_are_summed_over_the_chunk_and_averaged_over_decisions_and_envs():
    """No episode ends in the 5 decisions: each decision's chunk sums 2 env steps, so ``one`` is 2 and
    ``t`` averages 1+2, 3+4, ..., 9+10 = 3, 7, 11, 15, 19: 11."""
    assert _parts_components(100) == pytest.approx({"one": 2.0, "t": 11.0})


def test_reward_components_keep_the_last_chunk_of_an_episode():
    """Episodes of 4 env steps end at decisions 1 and 3: ``t`` is 3, 7, 3, 7, 3 (mean 4.6), ``one`` 2."""
    assert _parts_components(4) == pytest.approx({"one": 2.0, "t": 4.6})


LATE_ID = "reinflow_tests/LateFault-v0"


class LateFault(gym.Env):
    """A reward of NaN at the first step of every second episode (ChunkWrapper drops that episode)."""

    observation_space = Box(-10.0, 10.0, (2,), np.float32)
    action_space = Box(-1.0, 1.0, (2,), np.float32)
    resets = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        return np.zeros(2, np.float32), {}

    def step(self, action):
        reward = float("nan") if self.resets % 2 == 0 else 1.0
        return np.zeros(2, np.float32), reward, False, False, {}


def test_a_fault_invalidates_only_its_own_episode_not_the_one_before():
    """Episodes of 4 env steps (2 decisions): the first ends normally at decision 1, the second faults at
    its first decision (2): only row 2 is invalid, rows 0 and 1 (the finished episode) stay valid."""
    if LATE_ID not in gym.registry:
        gym.register(LATE_ID, entry_point=LateFault, max_episode_steps=LIMIT)
    cfg = TrainConfig(env=LATE_ID, chunk_size=CHUNK, act_steps=ACT, denoise_steps=K, hidden=[16], out="unused",
                      noise_basis=0).resolved()
    torch.manual_seed(0)
    agent = build_agent(cfg, *env_spaces(LATE_ID))
    envs = make_vector_env(LATE_ID, 1, ACT)
    try:
        roll, _ = collect_rollout(envs, agent, seeded_reset(envs, 0, 0, 0), 3, None, env_generators(0, 0, 0, 1))
    finally:
        envs.close()
    assert roll.valid[:, 0].tolist() == [True, True, False] and roll.dropped_episodes == 1
    assert len(roll.episodes) == 1


def test_stack_obs_batches_arrays_and_dicts_of_any_count():
    """One final observation of a dict-observation env (one env cut by its time limit) is a batch of one."""
    from reinflow.rl.rollout import stack_obs
    one = stack_obs([{"state": np.array([1.0, 2.0]), "pixels": np.zeros((2, 2))}])
    assert one["state"].shape == (1, 2) and one["pixels"].shape == (1, 2, 2)
    two = stack_obs([{"state": np.array([1.0])}, {"state": np.array([3.0])}])
    assert two["state"].tolist() == [[1.0], [3.0]] and stack_obs([np.ones(3)]).shape == (1, 3)
