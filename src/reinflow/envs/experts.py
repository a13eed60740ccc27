"""Experts that record demonstrations: an env family's built-in one (the arm's, MetaWorld's and
SO-101's, chosen from the id by ``envs/families.py``), or any ``module:callable`` the user brings
(``reinflow demos --expert my_pkg.experts:policy``).

A user expert is one of:

* a function of the observation -> action (``def policy(obs)``), or of the env, when its first
  parameter is named ``env`` (``def policy(env)``: for experts that read the simulator state);
* a class, instantiated once per recording (with the env when ``__init__`` takes an argument),
  whose ``get_action(obs)``, ``act(obs)`` or ``__call__(obs)`` gives the action; its ``reset()``,
  if any, is called at every episode start.

Actions are in the env's own units (its Box bounds); they are stored normalised to [-1, 1], the
range the policy acts in (``ChunkWrapper`` maps them back). A Dict observation with a ``state``
key gives an observation expert just the state.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from reinflow import ConfigError
from reinflow.envs.chunk import action_affine


class CallableExpert:
    """``reset()`` + ``act(obs)`` -> normalised action in [-1, 1], around any callable."""

    def __init__(self, fn: Callable[[Any], Any], env: gym.Env, takes_env: bool = False,
                 reset: Callable[[], Any] | None = None, name: str = ""):
        self.fn, self.env, self.takes_env, self._reset, self.name = fn, env, takes_env, reset, name
        self.scale, self.offset = action_affine(env.action_space)

    def reset(self) -> None:
        if self._reset is not None:
            _guarded(self.name, "reset()", self._reset)

    def act(self, obs: Any) -> np.ndarray:
        arg = self.env if self.takes_env else obs["state"] if isinstance(obs, dict) and "state" in obs else obs
        raw = _guarded(self.name, "env" if self.takes_env else "obs", self.fn, arg)
        try:
            a = np.asarray(raw, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ConfigError(f"expert {self.name}: returned {type(raw).__name__}, not numbers; the env needs "
                              f"{self.scale.size} finite action values") from None
        if a.size != self.scale.size or not np.isfinite(a).all():
            raise ConfigError(f"expert {self.name}: returned {a.size} action values (finite: "
                              f"{bool(np.isfinite(a).all())}); the env needs {self.scale.size} finite values")
        return np.clip((a - self.offset) / self.scale, -1.0, 1.0).astype(np.float32)


def _guarded(name: str, what: str, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` of a user's expert; whatever it raises is its own error, one line naming it."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any error of the user's code, reported as theirs
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ConfigError(f"expert {name}: raised {type(exc).__name__} ({text}) when called with {what}; the error is in "
                          "the expert, not reinflow: fix it, or give --expert a callable obs -> action") from None


def _first_param(fn: Callable) -> str | None:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):  # builtins without a signature
        return None
    return params[0].name if params else None


def load_expert(spec: str, env: gym.Env) -> CallableExpert:
    """``module:attr`` (attr may be dotted) -> expert; see module docs for what attr may be."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ConfigError(f"expert={spec!r}: expected module:callable, e.g. my_pkg.experts:policy")
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"expert={spec!r}: cannot import module {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"expert={spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        try:
            init_params = [p for p in inspect.signature(obj).parameters.values() if p.default is p.empty
                           and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):
            init_params = []
        return wrap_instance(_guarded(spec, "the env" if init_params else "no arguments", obj,
                                      *([env] if init_params else [])), env, spec)
    if not callable(obj):
        raise ConfigError(f"expert={spec!r}: {attr!r} is a {type(obj).__name__}, not a callable")
    return CallableExpert(obj, env, _first_param(obj) == "env", None, spec)


def wrap_instance(obj: Any, env: gym.Env, name: str) -> CallableExpert:
    """An expert instance (``get_action(obs)``, ``act(obs)`` or ``__call__(obs)``, optional ``reset()``)
    as a ``CallableExpert``: its actions, in the env's units, come out normalised."""
    fn = next((getattr(obj, m) for m in ("get_action", "act") if callable(getattr(obj, m, None))), obj)
    if not callable(fn):
        raise ConfigError(f"expert={name!r}: instances need get_action(obs), act(obs) or __call__(obs)")
    return CallableExpert(fn, env, _first_param(fn) == "env", getattr(obj, "reset", None), name)
