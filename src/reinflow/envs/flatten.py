"""Dict observations of numeric Boxes as one float32 vector, for the MLP policy.

Many third-party envs (LeRobot's ``agent_pos`` + ``environment_state``, gymnasium-robotics'
``observation`` + ``desired_goal``) return a Dict of vectors. ``flatten_dict_obs`` wraps such an
env so every consumer (demos, BC, PPO, evaluation, experts that read observations) sees one
vector: the leaves concatenated in the Dict space's key order (gymnasium sorts a Dict's keys,
nested Dicts depth-first), each leaf flattened C-order. The order depends only on the
observation space, so eval and resume, which rebuild the env from the recorded id and kwargs,
get the same layout. The new space is a ``KeyedBox`` that names its parts (``obs_keys``,
``obs_layout``); demos and the MLP policy's config record them, and a checkpoint whose recorded
keys differ from the env's is refused (``rl/build.py``).

A Dict holding an image (a 3-D uint8 Box) is left as it is: camera policies (SmolVLA) read the
Dict. ``unflattenable`` says why a Dict cannot be flattened, for one-line errors.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def _leaves(space: gym.Space, prefix: str = "") -> list[tuple[str, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return [leaf for k, sub in space.spaces.items() for leaf in _leaves(sub, f"{prefix}{k}/")]
    return [(prefix.rstrip("/"), space)]


def is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def unflattenable(space: gym.Space) -> str | None:
    """Why ``space`` (a Dict) cannot become one vector, or None when it can."""
    for key, leaf in _leaves(space):
        if is_image(leaf):
            return f"{key!r} is an image {leaf.dtype}{list(leaf.shape)}"
        if not isinstance(leaf, gym.spaces.Box):
            return f"{key!r} is a {type(leaf).__name__} space (only Box leaves can be concatenated)"
    return None


def not_a_vector(space: gym.Space) -> str:
    """For a space that stays non-vector: why, and the fix (for one-line errors)."""
    why = unflattenable(space) if isinstance(space, gym.spaces.Dict) else f"a {type(space).__name__} space"
    if isinstance(space, gym.spaces.Dict) and "image" in (why or ""):
        return f"{why}: switch the env's camera observation off in --env-kwargs, or use --policy smolvla"
    return f"{why}: wrap the env so it returns a Box (a Dict of Box vectors is flattened automatically)"


class KeyedBox(gym.spaces.Box):
    """A float32 vector Box made of named parts: ``obs_keys`` [names], ``obs_layout`` [[name, size]]."""

    def __init__(self, low: np.ndarray, high: np.ndarray, layout: list[list]):
        super().__init__(low, high, low.shape, np.float32)
        self.obs_layout = layout
        self.obs_keys = [k for k, _ in layout]


class FlattenDict(gym.ObservationWrapper):
    """Dict of Boxes -> float32 [sum of leaf sizes] in a ``KeyedBox``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        leaves = _leaves(env.observation_space)
        low = np.concatenate([np.asarray(s.low, np.float32).ravel() for _, s in leaves])
        high = np.concatenate([np.asarray(s.high, np.float32).ravel() for _, s in leaves])
        self.observation_space = KeyedBox(low, high, [[k, int(np.prod(s.shape))] for k, s in leaves])
        self._paths = [k.split("/") for k, _ in leaves]

    def observation(self, observation: Any) -> np.ndarray:
        parts = []
        for path in self._paths:
            v = observation
            for p in path:
                v = v[p]
            parts.append(np.asarray(v, dtype=np.float32).ravel())
        return np.concatenate(parts)


def flatten_dict_obs(env: gym.Env) -> gym.Env:
    """``env`` wrapped in ``FlattenDict`` when its observations are a flattenable Dict, else ``env``."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict) and unflattenable(space) is None:
        return FlattenDict(env)
    return env
