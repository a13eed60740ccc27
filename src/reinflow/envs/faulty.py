"""``reinflow/Faulty-v0``: a fault-injection wrapper around any registered env, for testing how a
training setup survives simulator faults (used by reinflow's own fault tests).

``gymnasium.make("reinflow/Faulty-v0", base="Pendulum-v1", raise_at=5, nan_at=None,
sleep_s=0.0, faults=1)``: in the first ``faults`` episodes the env raises RuntimeError at episode
step ``raise_at`` and/or returns a NaN observation and reward at step ``nan_at``; every step
sleeps ``sleep_s`` (a slow simulator). Counters are per process, so a rebuilt env starts clean
only if ``faults`` allows it.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

_EPISODES_WITH_FAULTS = {"count": 0}


def reset_fault_counter() -> None:
    """Re-arm the faults of this process (e.g. between two runs in one test process)."""
    _EPISODES_WITH_FAULTS["count"] = 0


class FaultyEnv(gym.Wrapper):
    def __init__(self, base: str = "Pendulum-v1", raise_at: int | None = None, nan_at: int | None = None,
                 sleep_s: float = 0.0, faults: int = 1):
        from reinflow.envs.factory import check_env_id
        check_env_id(base, allow_import=False, source="reinflow/Faulty-v0's base")  # env kwargs may come from a file
        super().__init__(gym.make(base))
        self.raise_at, self.nan_at, self.sleep_s, self.faults = raise_at, nan_at, sleep_s, faults
        self._t = 0

    def reset(self, **kwargs):
        self._t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self._t += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        armed = _EPISODES_WITH_FAULTS["count"] < self.faults
        if armed and self.raise_at is not None and self._t == self.raise_at:
            _EPISODES_WITH_FAULTS["count"] += 1
            raise RuntimeError(f"simulated simulator crash at step {self._t}")
        obs, r, term, trunc, info = self.env.step(action)
        if armed and self.nan_at is not None and self._t == self.nan_at:
            _EPISODES_WITH_FAULTS["count"] += 1
            obs = np.full_like(obs, np.nan)
            r = float("nan")
        return obs, r, term, trunc, info
