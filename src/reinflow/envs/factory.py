"""Build vectorised, chunk-executing gymnasium envs from an env id."""

from __future__ import annotations

import os
from typing import Any, Callable

import gymnasium as gym
from gymnasium.vector import AutoresetMode

import reinflow.envs  # noqa: F401  (registers the built-in tasks)
from reinflow import ConfigError
from reinflow.envs.chunk import ChunkWrapper


def set_headless_gl() -> None:
    """Headless MuJoCo rendering through EGL (GPU driver or Mesa's software llvmpipe) unless the
    user chose a backend; must run before mujoco is first imported (spawned workers inherit it)."""
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def check_env_id(env_id: str) -> None:
    """Clear error for an unknown id (gymnasium's own message is a traceback deep inside)."""
    if env_id not in gym.registry:
        close = [k for k in gym.registry if env_id.lower().split("-")[0].split("/")[-1] in k.lower()][:5]
        hint = f" (did you mean: {', '.join(close)})" if close else " (e.g. Pendulum-v1, Hopper-v5, reinflow/ArmReach-v0)"
        raise ConfigError(f"env={env_id!r}: not a registered gymnasium id{hint}")


def make_env(env_id: str, act_steps: int, env_index: int = 0, env_kwargs: dict | None = None) -> gym.Env:
    check_env_id(env_id)
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except gym.error.Error as exc:
        raise ConfigError(f"env={env_id!r}: gymnasium could not build it: {exc}") from None
    return ChunkWrapper(env, act_steps, env_index)


def _thunk(env_id: str, act_steps: int, i: int, env_kwargs: dict | None) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        # Env workers share 2 cores with the learner: one BLAS thread each avoids oversubscription.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        return make_env(env_id, act_steps, i, env_kwargs)
    return make


def make_vector_env(env_id: str, num_envs: int, act_steps: int, vector: str = "sync",
                    env_kwargs: dict | None = None) -> gym.vector.VectorEnv:
    """``num_envs`` copies with same-step autoreset (``final_obs``/``final_info`` in infos).

    vector: "sync" (default; fastest on few cores for cheap envs) or "async" (worker processes,
    started with ``spawn`` so a GL context held by the parent cannot hang them).
    """
    check_env_id(env_id)
    fns = [_thunk(env_id, act_steps, i, env_kwargs) for i in range(num_envs)]
    if vector == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    if vector == "async":
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=AutoresetMode.SAME_STEP)
    raise ConfigError(f"vector={vector!r}: allowed sync, async")


def env_spaces(env_id: str, env_kwargs: dict | None = None) -> tuple[Any, Any]:
    """(observation_space, action_space) of one unwrapped-by-chunk env."""
    check_env_id(env_id)
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
