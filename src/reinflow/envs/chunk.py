"""Chunk execution: one agent decision = ``act_steps`` env steps of a chunk.

The wrapper maps the policy's normalised actions in [-1, 1] to the env's Box bounds (clipping
first: the stored chain stays unclipped, DESIGN section 2 "Clamping"), sums the rewards of the
executed steps, stops the chunk early when the episode ends, and checks every observation and
reward for NaN/inf at the boundary, naming the env index and step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from reinflow import ReinflowError


class NonFiniteError(ReinflowError):
    """NaN or inf crossed the env boundary."""


class ChunkWrapper(gym.Wrapper):
    """Action space: Box[-1, 1] of shape [act_steps, A]. Info keys added: ``chunk_len`` (env
    steps executed), ``success`` (any step succeeded), ``reward_components`` (summed), and at
    episode end ``episode_return``, ``episode_length``, ``episode_success``."""

    def __init__(self, env: gym.Env, act_steps: int, env_index: int = 0):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ReinflowError(f"env action space is {type(space).__name__}: reinflow needs a Box action space")
        self.act_steps, self.env_index = act_steps, env_index
        self.low = space.low.astype(np.float64).ravel()
        self.high = space.high.astype(np.float64).ravel()
        finite = np.isfinite(self.low) & np.isfinite(self.high)
        # Unbounded dims pass through unscaled; bounded ones map [-1, 1] -> [low, high].
        self.scale = np.where(finite, (self.high - self.low) / 2.0, 1.0)
        self.offset = np.where(finite, (self.high + self.low) / 2.0, 0.0)
        self.finite = finite
        self.action_dim = self.low.size
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_steps, self.action_dim), np.float32)
        self._ret, self._len, self._succ = 0.0, 0, False
        self._has_success = False  # envs without a success signal report NaN, not 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._ret, self._len, self._succ = 0.0, 0, False
        self._check(obs, 0.0, "reset")
        return obs, info

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64).reshape(-1, self.action_dim)
        if not np.all(np.isfinite(action)):
            raise NonFiniteError(f"env {self.env_index}: the policy produced a NaN/inf action at episode step {self._len}")
        total, comps, success = 0.0, {}, False
        term = trunc = False
        info: dict = {}
        executed = 0
        for a in action[: self.act_steps]:
            a = np.clip(a, -1.0, 1.0) * self.scale + self.offset
            obs, r, term, trunc, info = self.env.step(a.astype(self.env.action_space.dtype).reshape(self.env.action_space.shape))
            executed += 1
            self._len += 1
            self._check(obs, r, f"step {self._len}")
            total += float(r)
            if "success" in info:
                self._has_success = True
                success = success or bool(info["success"])
            for key, val in (info.get("reward_components") or {}).items():
                comps[key] = comps.get(key, 0.0) + float(val)
            if term or trunc:
                break
        self._ret += total
        self._succ = self._succ or success
        out = dict(info)
        out.update(chunk_len=executed, success=success, reward_components=comps)
        if term or trunc:
            out.update(episode_return=self._ret, episode_length=self._len,
                       episode_success=float(self._succ) if self._has_success else float("nan"))
        return obs, total, term, trunc, out

    def _check(self, obs: Any, reward: float, where: str) -> None:
        if not np.isfinite(reward):
            raise NonFiniteError(f"env {self.env_index}: reward is {reward} at {where}")
        for name, arr in _leaves(obs):
            a = np.asarray(arr)
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise NonFiniteError(f"env {self.env_index}: observation{name} has NaN/inf at {where}")


def _leaves(obs: Any, prefix: str = ""):
    if isinstance(obs, dict):
        for k, v in obs.items():
            yield from _leaves(v, f"{prefix}[{k!r}]")
    else:
        yield prefix, obs
