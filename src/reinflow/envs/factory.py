"""Build vectorised, chunk-executing gymnasium envs from an env id."""

from __future__ import annotations

import os
from typing import Any, Callable

import gymnasium as gym
from gymnasium.vector import AutoresetMode

import reinflow.envs  # noqa: F401  (registers the built-in tasks)
from reinflow import ConfigError
from reinflow.envs.chunk import ChunkWrapper
from reinflow.envs.families import env_kwargs as with_defaults
from reinflow.envs.families import family_of, strip_module
from reinflow.envs.flatten import flatten_dict_obs


def set_headless_gl() -> None:
    """Headless MuJoCo rendering through EGL (GPU driver or Mesa's software llvmpipe) unless the
    user chose a backend; must run before mujoco is first imported (spawned workers inherit it)."""
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def check_env_id(env_id: str, allow_import: bool = True, source: str | None = None) -> None:
    """Clear error for an unknown id (gymnasium's own message is a traceback deep inside). The env's
    family imports what registers it (``envs/families.py``).

    ``allow_import=True`` (an id typed on the command line): ``module:EnvId`` imports ``module``, an
    unregistered ``namespace/EnvId`` imports ``namespace`` when that is a module. ``allow_import=False``
    (an id read from a file: a run's config.json, a checkpoint, a ``--config`` file; ``source`` names
    it): the id is data, so nothing it names is imported (a stored ``"evilmod:Env-v0"`` would run
    ``evilmod``); a ``module:`` part is refused, naming the flag that allows it. Built-in families
    (reinflow/, MetaWorld, SO-101) import only their own package and work either way."""
    family_of(env_id).require(env_id, allow_import, source)
    name = strip_module(env_id)
    if name not in gym.registry:
        namespace = name.split("/")[0] + "/" if "/" in name else None
        close = [k for k in gym.registry if namespace and k.startswith(namespace)][:5] or \
            [k for k in gym.registry if name.lower().split("-")[0].split("/")[-1] in k.lower()][:5]
        hint = f"did you mean: {', '.join(close)}" if close else "e.g. Pendulum-v1, Hopper-v5, reinflow/ArmReach-v0"
        raise ConfigError(f"env={env_id!r}: not a registered gymnasium id ({hint}); an env that registers "
                          "itself on import: give its module too, as module:EnvId (e.g. my_pkg:MyEnv-v0)")


def build_env(env_id: str, env_kwargs: dict | None) -> gym.Env:
    """One env of ``env_id``'s family (``gymnasium.make``, MetaWorld's extras, ...) with the family's
    recommended kwargs under ``env_kwargs``; a Dict of Box observations arrives as one vector
    (``envs/flatten.py``)."""
    return flatten_dict_obs(family_of(env_id).make(env_id, with_defaults(env_id, env_kwargs)))


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
