"""Chunk execution: one agent decision = ``act_steps`` env steps of a chunk, with faults caught
at the env boundary.

The wrapper maps the policy's normalised actions in [-1, 1] to the env's Box bounds (clipping
first: the stored chain stays unclipped, docs/design.md §2 "Clamping"), sums the rewards of the
executed steps, and stops the chunk early when the episode ends. Camera frames are rendered only
for the observation it returns (``envs/frames.py``).

Faults, each reported with the env index and episode step:
  * NaN/inf in an observation or reward: with ``nonfinite="drop"`` (default) the episode ends
    there (truncated, reward 0, the chunk's first observation returned again: the last finite
    one the caller saw) and ``episode_dropped`` tells the rollout to drop the whole episode from
    the batch; ``"stop"`` raises.
  * an exception from the env's ``step``/``reset``: the env is rebuilt (up to ``max_restarts``
    times over the run) and the episode is dropped the same way; past that, EnvFaultError.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from reinflow import NonFiniteError, ReinflowError
from reinflow.envs.frames import FrameSource, frame_source


class EnvFaultError(ReinflowError):
    """An environment kept failing after its restarts were used up."""


def action_affine(space: gym.spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) with env action = clip(a, -1, 1) * scale + offset, flattened. Unbounded dims
    pass through unscaled; bounded ones map [-1, 1] -> [low, high]."""
    low, high = space.low.astype(np.float64).ravel(), space.high.astype(np.float64).ravel()
    finite = np.isfinite(low) & np.isfinite(high)
    return np.where(finite, (high - low) / 2.0, 1.0), np.where(finite, (high + low) / 2.0, 0.0)


def to_env_action(action: np.ndarray, scale: np.ndarray, offset: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Normalised actions ``[..., A]`` in [-1, 1] -> the env's own units (``action_affine``), in its dtype:
    the one mapping training, evaluation and ``reinflow demos`` step every env through."""
    return (np.clip(action, -1.0, 1.0) * scale + offset).astype(space.dtype)


# Where envs report success: "success" (the arm, MetaWorld), "succeed" (lerobot-env-so101, gym-hil),
# "is_success" (gymnasium-robotics, Stable-Baselines3's convention). The first one present counts.
SUCCESS_KEYS = ("success", "succeed", "is_success")


def info_success(info: dict) -> bool | None:
    """The step's success flag from ``info`` (``SUCCESS_KEYS``), or None when the env reports none."""
    for key in SUCCESS_KEYS:
        if key in info:
            return _truth(info[key])
    return None


def _truth(value: object) -> bool:
    """A success flag: a bool or a finite number (a one-element array of one) is true when non-zero;
    anything else (``"yes"``, ``"no"``, None, a list) is not a success: ``bool("no")`` would be True."""
    arr = np.asarray(value) if isinstance(value, np.ndarray) else None
    if arr is not None and arr.size == 1 and arr.dtype.kind in "biuf":
        value = arr.reshape(()).item()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return bool(np.isfinite(value) and value != 0)
    return False


class ChunkWrapper(gym.Wrapper):
    """Action space: Box[-1, 1] of shape [act_steps, A]. Info keys added: ``chunk_len`` (env
    steps executed), ``success`` (any step succeeded; read from ``SUCCESS_KEYS``), ``reward_components`` (summed), at an
    episode's end ``episode_return``, ``episode_length``, ``episode_success`` (NaN when the env
    reports no success), and on a fault ``episode_dropped`` / ``env_fault``."""

    def __init__(self, env: gym.Env, act_steps: int, env_index: int = 0,
                 make_env: Callable[[], gym.Env] | None = None, max_restarts: int = 3,
                 nonfinite: str = "drop"):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ReinflowError(f"env action space is {type(space).__name__}: reinflow needs a Box action space")
        self.act_steps, self.env_index = act_steps, env_index
        self.make_env, self.max_restarts, self.nonfinite = make_env, max_restarts, nonfinite
        self.restarts = 0
        self.scale, self.offset = action_affine(space)
        self.action_dim = self.scale.size
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_steps, self.action_dim), np.float32)
        self._ret, self._len, self._succ = 0.0, 0, False
        self._has_success = False  # envs without a success signal report NaN, not 0
        self._last_obs: Any = None

    # --- faults ---------------------------------------------------------------------------
    def _restart(self, exc: BaseException, where: str) -> None:
        self.restarts += 1
        msg = f"env {self.env_index}: {type(exc).__name__}: {exc} at {where}"
        if self.make_env is None or self.restarts > self.max_restarts:
            raise EnvFaultError(f"{msg} (restarts used: {self.restarts - 1} of {self.max_restarts})") from exc
        print(f"[reinflow] {msg}; rebuilding the env (restart {self.restarts} of {self.max_restarts}), "
              "episode dropped", file=sys.stderr)
        try:
            self.env.close()
        except Exception:  # noqa: BLE001 - the env is already broken
            pass
        self.env = self.make_env()

    def _dropped(self, info: dict, reason: str) -> tuple:
        out = dict(info)
        out.update(chunk_len=0, success=False, reward_components={}, episode_dropped=True, env_fault=reason)
        self._ret, self._len, self._succ = 0.0, 0, False
        return self._last_obs, 0.0, False, True, out

    def _crashed(self, exc: BaseException) -> tuple:
        self._restart(exc, f"episode step {self._len}")
        return self._dropped({}, f"{type(exc).__name__}: {exc}")

    def _bad(self, obs: Any, reward: float) -> str | None:
        """What is non-finite, or None. Hot path (every env step): one reduction per array, the
        sum being non-finite whenever an entry is (an all-finite overflow is reported too)."""
        if not math.isfinite(reward):
            return f"reward is {reward}"
        if isinstance(obs, np.ndarray):
            if obs.dtype.kind == "f" and not math.isfinite(obs.sum()):
                return "observation has NaN/inf"
            return None
        for name, arr in _leaves(obs):
            a = np.asarray(arr)
            if a.dtype.kind == "f" and not math.isfinite(a.sum()):
                return f"observation{name} has NaN/inf"
        return None

    # --- gymnasium API --------------------------------------------------------------------
    def reset(self, **kwargs: Any):
        for _ in range(self.max_restarts + 2):
            try:
                obs, info = self.env.reset(**kwargs)
            except Exception as exc:  # noqa: BLE001 - any env error is reported with its index
                self._restart(exc, "reset")
                continue
            bad = self._bad(obs, 0.0)
            if bad is None:
                break
            if self.nonfinite == "stop":
                raise NonFiniteError(f"env {self.env_index}: {bad} at reset")
            self._restart(NonFiniteError(bad), "reset")
        else:
            raise EnvFaultError(f"env {self.env_index}: reset kept failing")
        self._ret, self._len, self._succ = 0.0, 0, False
        self._last_obs = obs
        return obs, info

    def step(self, action: np.ndarray):
        # The frame-rendering layer (if nothing in between touches observations) renders only the
        # observation this returns: after the chunk's last step or the episode's end.
        src = frame_source(self.env)
        if src is None:
            return self._step(action, None)
        src.defer_frames = True
        try:
            return self._step(action, src)
        finally:
            src.defer_frames = False

    def _step(self, action: np.ndarray, src: FrameSource | None):
        action = np.asarray(action, dtype=np.float64).reshape(-1, self.action_dim)
        if not np.all(np.isfinite(action)):
            raise NonFiniteError(f"env {self.env_index}: the policy produced a NaN/inf action at episode step {self._len}")
        total, comps, success = 0.0, {}, False
        term = trunc = False
        info: dict = {}
        executed = 0
        inner = self.env.action_space
        # Map the whole executed part of the chunk at once (one numpy call instead of one per step).
        actions = to_env_action(action[: self.act_steps], self.scale, self.offset, inner)
        for a in actions:
            try:
                obs, r, term, trunc, info = self.env.step(a.reshape(inner.shape))
            except Exception as exc:  # noqa: BLE001
                return self._crashed(exc)
            executed += 1
            self._len += 1
            bad = self._bad(obs, r)
            if bad is not None:
                if self.nonfinite == "stop":
                    raise NonFiniteError(f"env {self.env_index}: {bad} at episode step {self._len}")
                print(f"[reinflow] env {self.env_index}: {bad} at episode step {self._len}; episode dropped",
                      file=sys.stderr)
                return self._dropped(info, bad)
            total += float(r)
            step_ok = info_success(info)
            if step_ok is not None:
                self._has_success = True
                success = success or step_ok
            for key, val in (info.get("reward_components") or {}).items():
                comps[key] = comps.get(key, 0.0) + float(val)
            if term or trunc:
                break
        if src is not None:
            try:
                obs = src.add_frames(obs)
            except Exception as exc:  # noqa: BLE001 - a renderer error is the env's, as in step
                return self._crashed(exc)
        self._last_obs = obs
        self._ret += total
        self._succ = self._succ or success
        out = dict(info)
        out.update(chunk_len=executed, success=success, reward_components=comps)
        if term or trunc:
            out.update(episode_return=self._ret, episode_length=self._len,
                       episode_success=float(self._succ) if self._has_success else float("nan"))
        return obs, total, term, trunc, out


def _leaves(obs: Any, prefix: str = ""):
    if isinstance(obs, dict):
        for k, v in obs.items():
            yield from _leaves(v, f"{prefix}[{k!r}]")
    else:
        yield prefix, obs
