"""Each shipped algorithm must solve a task built for it, on the real engine: the trainer's algorithm
objects (``rl.algorithms``) collect through the real envs, sampler and noise head, and update through
GAE + ``ppo_update`` or SAC. In the shape of SB3's identity tests: the task is trivial, so a wrong sign
in a loss, a wrong advantage or a wrong SAC target shows up as a policy that does not learn it.

The task (``Delayed``): two decisions per episode; the context o in {-1, +1} is observed, the first
action a_1 is remembered in the observation, and the only reward, -(a_1 - 0.6 o)^2, comes after the
*second* decision. So a_1 is credited only through the value of the next state: PPO through GAE's
bootstrap and lambda-propagation, SAC through its soft target min(Q') (a bandit would hide both)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.spaces import Box

from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.agent import Agent
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.build import build_agent, sampler_config
from reinflow.rl.checkpoint import save_agent
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import DistInfo
from reinflow.rl.seeding import env_generators, seeded_reset

ENV_ID = "reinflow_tests/Delayed-v0"
TARGET = 0.6
UNTRAINED_REGRET = 0.3   # an untrained policy plays ~0 in both contexts: regret 0.36


class Delayed(gym.Env):
    """obs [o, decision index, a_1]; action [1] in [-1, 1]; reward -(a_1 - 0.6 o)^2 after decision 2."""

    observation_space = Box(-2.0, 2.0, (3,), np.float32)
    action_space = Box(-1.0, 1.0, (1,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.array([self.o, self.t, self.a1], np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.o, self.t, self.a1 = float(self.np_random.choice([-1.0, 1.0])), 0, 0.0
        return self._obs(), {}

    def step(self, action):
        if self.t == 0:
            self.a1 = float(np.clip(action[0], -1.0, 1.0))
        self.t += 1
        done = self.t == 2
        reward = -(self.a1 - TARGET * self.o) ** 2 if done else 0.0
        return self._obs(), reward, done, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=Delayed)


def regret(agent: Agent) -> float:
    """Worst squared distance of the deterministic first action from its target over both contexts."""
    obs = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    with torch.no_grad():
        a = agent.act(agent.policy.prepare_obs(obs), deterministic=True).action[:, 0, 0].clamp(-1, 1)
    return float(((a - TARGET * torch.tensor(obs[:, 0])) ** 2).max())


def base_checkpoint(folder: Path) -> Path:
    """A 'pretrained' policy for residual-ppo and dsrl: an untrained velocity-parametrised MLP flow, whose
    action (x_0 + v) moves with x_0 as a BC policy's does, and plays ~0 from x_0 = 0."""
    torch.manual_seed(0)
    cfg = TrainConfig(env=ENV_ID, chunk_size=1, act_steps=1, initial_noise="zero")
    policy = MLPFlowPolicy(MLPPolicyConfig(obs_dim=3, action_dim=1, chunk_size=1, hidden=[32, 32],
                                           parametrization="velocity"))
    return save_agent(folder / "base", Agent(policy, sampler_config(cfg, 1, 0.16, 0.32)))


def train(iterations: int, **kw) -> tuple[Agent, list[dict]]:
    """The trainer's loop, without its run folder: begin_iteration, collect, update; returns the agent
    and each iteration's update metrics."""
    # x_0 = 0 for the PPO chain (dsrl's actor chooses x_0 itself and refuses --initial-noise zero)
    noise = {} if kw.get("algorithm") == "dsrl" else {"initial_noise": "zero"}
    cfg = TrainConfig(**{**dict(env=ENV_ID, chunk_size=1, act_steps=1, denoise_steps=1, hidden=[32, 32],
                                **noise, parallel_envs=16, rollout_steps=4, minibatch_size=32,
                                iterations=iterations, truncation="bootstrap", out="unused"), **kw}).resolved()
    torch.manual_seed(cfg.seed)
    cls = algorithm_class(cfg.algorithm)
    agent = cls.prepare_agent(cfg, build_agent(cfg, *env_spaces(ENV_ID)))
    alg = cls(cfg, agent, DistInfo(), torch.device("cpu"), cfg.truncation)
    envs = make_vector_env(ENV_ID, cfg.parallel_envs, cfg.act_steps)
    raw, rows = seeded_reset(envs, cfg.seed, 0, 0), []
    assert regret(agent) > UNTRAINED_REGRET
    try:
        for it in range(iterations):
            alg.begin_iteration(it)
            exp, raw = alg.collect(envs, raw, it, env_generators(cfg.seed, it, 0, cfg.parallel_envs))
            rows.append(alg.update(exp, it))
    finally:
        envs.close()
    return agent, rows


def test_chain_ppo_solves_the_delayed_target():
    agent, rows = train(30, algorithm="chain-ppo", lr_actor=3e-3)
    assert regret(agent) < 0.02, regret(agent)
    # the critic fits the (scaled) returns: a value loss with the wrong sign drives it away
    assert max(r["ppo/value_loss"] for r in rows[-5:]) < 1.0, [r["ppo/value_loss"] for r in rows]


def test_residual_ppo_solves_the_delayed_target(tmp_path):
    agent, rows = train(40, algorithm="residual-ppo", policy_path=str(base_checkpoint(tmp_path)), lr_actor=1e-3)
    assert regret(agent) < 0.02, regret(agent)
    assert max(r["ppo/value_loss"] for r in rows[-5:]) < 1.0, [r["ppo/value_loss"] for r in rows]


def test_dsrl_solves_the_delayed_target(tmp_path):
    """SAC over x_0: the first action's reward is 0, so a_1 is learned only through the soft target."""
    agent, rows = train(30, algorithm="dsrl", policy_path=str(base_checkpoint(tmp_path)), dsrl_components=0,
                        dsrl_warmup=64, dsrl_batch_size=64, dsrl_hidden=[32, 32], dsrl_tau=0.05, dsrl_utd=0.5,
                        dsrl_init_alpha=0.05, gamma=0.9, lr_actor=3e-3)
    assert regret(agent) < 0.02, regret(agent)
    assert rows[-1]["sac/grad_steps"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["chain-ppo", "residual-ppo"])
def test_ppo_solves_it_with_the_shipped_learning_rates(algorithm, tmp_path):
    """The same task with each algorithm's default lr (the class's default_lr_actor, 10-30x smaller than above) and the
    default cosine schedule: slower, so a long run. ``python -m pytest -q -m slow tests/rl/test_learning.py``:
    141 s (chain-ppo) and 139 s (residual-ppo) on this project's 2-core machine at load ~7 (2026-12-07)."""
    path = {"policy_path": str(base_checkpoint(tmp_path))} if algorithm == "residual-ppo" else {}
    agent, _ = train(400, algorithm=algorithm, **path)
    assert regret(agent) < 0.02, regret(agent)
