"""Camera frames rendered only for the observations a policy reads.

A chunk executes up to 50 env steps and the policy reads the observation after the last one, so
rendering cameras on every step wastes ~98 % of the frames (issue 21: 343 vs 3,363 arm env
steps/s with and without cameras). The layer that renders (the arm env, MetaWorld's
``CameraObservation``) is a :class:`FrameSource`: while ``defer_frames`` is true its ``step``
returns the observation without its images, and ``add_frames(obs)`` renders them for the current
simulator state, which gives exactly the observation ``step`` would have returned (bit for bit:
rendering reads only the simulator state, and nothing moves it between the step and the call).
``reset`` always returns full observations.

``ChunkWrapper`` defers only when :func:`frame_source` finds such a layer below it with nothing in
between that could read or change an observation (an allow-list of gymnasium's pass-through
wrappers); any other wrapper means every step renders, as before. Envs stepped one step at a time
without a ``ChunkWrapper`` (demo recording) never defer.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

# Wrappers that pass observations through untouched (exact types: a subclass may override step).
PASS_THROUGH = (TimeLimit, OrderEnforcing)


class FrameSource:
    """Mixin for the env or wrapper that renders camera images into its Dict observations."""

    defer_frames: bool = False  # set by ChunkWrapper around the steps of a chunk

    def add_frames(self, obs: dict[str, Any]) -> dict[str, Any]:
        """The full observation for the current simulator state, from a deferred one."""
        raise NotImplementedError


def frame_source(env: gym.Env) -> FrameSource | None:
    """The :class:`FrameSource` at or below ``env`` if every wrapper on the way passes observations
    through unchanged, else None (then nothing may be deferred)."""
    while not isinstance(env, FrameSource):
        kind = type(env)
        # The env checker reads the first step's observation; after that it only forwards.
        passes = kind in PASS_THROUGH or (kind is PassiveEnvChecker and env.checked_step)
        if not passes:
            return None
        env = env.env
    return env
