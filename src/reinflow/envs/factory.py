"""Build vectorised, chunk-executing gymnasium envs from an env id."""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

import gymnasium as gym
from gymnasium.vector import AutoresetMode

import reinflow.envs  # noqa: F401  (registers the built-in tasks)
from reinflow import ConfigError
from reinflow.envs.chunk import ChunkWrapper
from reinflow.envs.metaworld import base_id, is_metaworld, make_metaworld, require_metaworld


def set_headless_gl() -> None:
    """Headless MuJoCo rendering through EGL (GPU driver or Mesa's software llvmpipe) unless the
    user chose a backend; must run before mujoco is first imported (spawned workers inherit it)."""
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def check_env_id(env_id: str, allow_import: bool = True, source: str | None = None) -> None:
    """Clear error for an unknown id (gymnasium's own message is a traceback deep inside).

    ``allow_import=True`` (an id typed on the command line): ``module:EnvId`` imports ``module``
    first (how custom envs register themselves). ``allow_import=False`` (an id read from a file: a
    run's config.json, a checkpoint, a ``--config`` file; ``source`` names it): the id is data, so
    nothing is imported for it (a stored ``"evilmod:Env-v0"`` would run ``evilmod``); a ``module:``
    part is refused, naming the flag that allows it. Built-in families (reinflow/, MetaWorld) need
    no import of the user's and work either way."""
    if is_metaworld(env_id):
        require_metaworld()  # registers Meta-World/*, with or without the metaworld: prefix
        env_id = base_id(env_id)
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        if not allow_import:
            raise ConfigError(f"env={env_id!r}" + (f" (from {source})" if source else "") + f": names a module to "
                              f"import ({module!r}); reinflow never imports code named by a file: give "
                              f"--env {env_id} on the command line to import it")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"env={env_id!r}: cannot import module {module!r} ({exc})") from None
        env_id = name
    if env_id not in gym.registry:
        close = [k for k in gym.registry if env_id.lower().split("-")[0].split("/")[-1] in k.lower()][:5]
        hint = f" (did you mean: {', '.join(close)})" if close else " (e.g. Pendulum-v1, Hopper-v5, reinflow/ArmReach-v0)"
        raise ConfigError(f"env={env_id!r}: not a registered gymnasium id{hint}")


def build_env(env_id: str, env_kwargs: dict | None) -> gym.Env:
    """``gymnasium.make`` with a clear error, and MetaWorld's extras (``envs/metaworld.py``)."""
    if is_metaworld(env_id):
        return make_metaworld(env_id, env_kwargs)
    try:
        return gym.make(env_id, **(env_kwargs or {}))
    except (gym.error.Error, TypeError, ValueError) as exc:  # envs reject bad kwarg values with ValueError
        raise ConfigError(f"env={env_id!r}: gymnasium could not build it with env_kwargs={env_kwargs}: {exc}") from None


def make_env(env_id: str, act_steps: int, env_index: int = 0, env_kwargs: dict | None = None,
             max_restarts: int = 3, nonfinite: str = "drop") -> gym.Env:
    """One chunk-executing env; ``max_restarts``/``nonfinite``: see ``ChunkWrapper``."""
    check_env_id(env_id)
    return ChunkWrapper(build_env(env_id, env_kwargs), act_steps, env_index,
                        make_env=lambda: build_env(env_id, env_kwargs), max_restarts=max_restarts,
                        nonfinite=nonfinite)


def _thunk(env_id: str, act_steps: int, i: int, env_kwargs: dict | None, faults: dict) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        # Env workers share 2 cores with the learner: one BLAS thread each avoids oversubscription.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        return make_env(env_id, act_steps, i, env_kwargs, **faults)
    return make


def make_vector_env(env_id: str, num_envs: int, act_steps: int, vector: str = "sync",
                    env_kwargs: dict | None = None, first_index: int = 0, max_restarts: int = 3,
                    nonfinite: str = "drop") -> gym.vector.VectorEnv:
    """``num_envs`` copies with same-step autoreset (``final_obs``/``final_info`` in infos).

    vector: "sync" (default; fastest on few cores for cheap envs) or "async" (worker processes,
    started with ``spawn`` so a GL context held by the parent cannot hang them).
    """
    check_env_id(env_id)
    faults = {"max_restarts": max_restarts, "nonfinite": nonfinite}
    fns = [_thunk(env_id, act_steps, first_index + i, env_kwargs, faults) for i in range(num_envs)]
    if vector == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    if vector == "async":
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=AutoresetMode.SAME_STEP)
    raise ConfigError(f"vector={vector!r}: allowed sync, async")


def env_spaces(env_id: str, env_kwargs: dict | None = None) -> tuple[Any, Any]:
    """(observation_space, action_space) of one unwrapped-by-chunk env."""
    check_env_id(env_id)
    env = build_env(env_id, env_kwargs)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
