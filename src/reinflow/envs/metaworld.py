"""MetaWorld as a first-class env: ``metaworld:Meta-World/MT1`` (or any ``Meta-World/...`` id)
with ``env_kwargs`` ``{"env_name": "pick-place-v3"}``.

``make_metaworld`` builds it through ``gymnasium.make`` (MetaWorld's own registration) and adds:

* seeded task selection: MetaWorld's ``RandomTaskSelectWrapper`` draws the task variation (object
  and goal placement, one of 50) from the env's RNG *before* ``reset(seed=...)`` reseeds it, so the
  first episode of an env is random; here ``reset(seed=s)`` picks it from ``s``, and evaluation on
  fixed seeds compares like for like before and after fine-tuning;
* ``obs_mode="pixels_state"``: a Dict observation ``{"state": 39 floats, <camera>: uint8 [H, W, 3]}``
  (the layout the SmolVLA adapter reads), rendered headless with shadows off;
* an ``instruction`` (the task name in words) for language-conditioned policies;
* ``terminate_on_success`` (default true, ``SuccessEnds``): the episode ends at the first success
  step and the reward becomes ``r / 10 - 1``, the built-in arm's convention. ``false`` gives
  MetaWorld's own episodes: 500 steps, never ended on success, reward in [0, 10].

Either way an episode counts as a success when any step succeeded (``info["success"]``, see
``ChunkWrapper``), and the 500-step limit is a truncation, bootstrapped by default (the task has
no clock in its observation).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np

from reinflow import ConfigError
from reinflow.envs.frames import FrameSource

INSTALL = ('pip install -e ".[metaworld]" (on an install that has mujoco 4: '
           'pip uninstall -y mujoco-core mujoco-studio first; see docs/metaworld.md)')
OBS_MODES = ("state", "pixels_state")
DEFAULT_CAMERAS = ("corner", "gripperPOV")
# Keys reinflow consumes itself; everything else in env_kwargs goes to gymnasium.make.
OWN_KWARGS = ("obs_mode", "image_size", "cameras", "terminate_on_success")


def base_id(env_id: str) -> str:
    """``metaworld:Meta-World/MT1`` -> ``Meta-World/MT1``: any ``module:Name`` -> the id gymnasium knows
    (also ``families.strip_module``)."""
    return env_id.split(":", 1)[1] if ":" in env_id else env_id


def require_metaworld() -> Any:
    """Import metaworld (which registers the ``Meta-World/...`` ids) or end with how to install it."""
    try:
        import metaworld
    except (ImportError, OSError) as exc:
        if importlib.util.find_spec("metaworld") is not None and "mujoco" in str(exc).lower():
            # pip downgraded mujoco 4 to MetaWorld's 3.3.0 and left mujoco-core 4's files behind
            raise ConfigError(f"MuJoCo does not load ({exc}); reinstall it: pip uninstall -y mujoco "
                              'mujoco-core mujoco-studio && pip install -e ".[metaworld]"') from None
        raise ConfigError(f"MetaWorld is not installed ({exc}): {INSTALL}") from None
    return metaworld


def policy_map() -> dict[str, type]:
    """MetaWorld's scripted expert class per task name (``ENV_POLICY_MAP``)."""
    require_metaworld()
    from metaworld.policies import ENV_POLICY_MAP
    return ENV_POLICY_MAP


def task_names() -> list[str]:
    return sorted(policy_map())


def make_metaworld(env_id: str, env_kwargs: dict | None) -> gym.Env:
    """The env for ``env_id`` (see module docs); errors name the field and the allowed values."""
    require_metaworld()
    kw = dict(env_kwargs or {})
    obs_mode = kw.pop("obs_mode", "state")
    image_size = kw.pop("image_size", (128, 128))
    cameras = kw.pop("cameras", list(DEFAULT_CAMERAS))
    terminate_on_success = kw.pop("terminate_on_success", True)
    if not isinstance(terminate_on_success, bool):
        raise ConfigError(f"env_kwargs terminate_on_success={terminate_on_success!r}: allowed true, false")
    if obs_mode not in OBS_MODES:
        raise ConfigError(f"env_kwargs obs_mode={obs_mode!r}: allowed {', '.join(OBS_MODES)}")
    name = kw.get("env_name")
    if name is None or name not in task_names():
        raise ConfigError(f"env_kwargs env_name={name!r}: {base_id(env_id)} needs one of MetaWorld's tasks, "
                          f"e.g. {', '.join(task_names()[:6])} ... ({len(task_names())} in all)")
    # A fixed default: MetaWorld's `seed` fixes its 50 task variations; None would draw new ones per env.
    kw.setdefault("seed", 0)
    try:
        # The checker warns on every env that MetaWorld's observations leave its declared space.
        env = gym.make(base_id(env_id), disable_env_checker=True, **kw)
    except (gym.error.Error, TypeError) as exc:
        raise ConfigError(f"env={env_id!r}: gymnasium could not build it with env_kwargs={env_kwargs}: {exc}") from None
    if _has_attr(env, "tasks"):
        env = SeededTasks(env, kw["seed"])
    env.unwrapped.instruction = name.rsplit("-v", 1)[0].replace("-", " ")
    if terminate_on_success:
        env = SuccessEnds(env)
    if obs_mode == "pixels_state":
        env = CameraObservation(env, list(cameras), tuple(image_size))
    return env


def _has_attr(env: gym.Env, name: str) -> bool:
    try:
        env.get_wrapper_attr(name)
        return True
    except AttributeError:
        return False


class SeededTasks(gym.Wrapper):
    """``reset(seed=s)`` picks the task variation from ``s``; unseeded resets continue that stream."""

    def __init__(self, env: gym.Env, seed: int):
        super().__init__(env)
        self._tasks = env.get_wrapper_attr("tasks")
        env.get_wrapper_attr("toggle_sample_tasks_on_reset")(False)
        self._rng = np.random.default_rng(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.env.unwrapped.set_task(self._tasks[int(self._rng.integers(len(self._tasks)))])
        return self.env.reset(seed=seed, options=options)


class SuccessEnds(gym.Wrapper):
    """The arm's episode convention on MetaWorld: the episode ends (``terminated``) at the first
    success step, and the reward becomes ``r / 10 - 1`` (MetaWorld's shaped reward is in [0, 10]).

    Why: MetaWorld never ends an episode, so its scripted expert succeeds by step ~55 and then
    holds the pose for 445 more steps at up to 10 a step; a return then mostly measures hovering
    near the goal, not reaching it. Every step before success now costs 1 minus the shaping, and
    success stops the cost, so a sooner success is always worth more. Success itself (any step of
    the episode) is unchanged.
    """

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        success = bool(info.get("success", False))
        return obs, float(reward) / 10.0 - 1.0, bool(terminated or success), truncated, info


class CameraObservation(gym.ObservationWrapper, FrameSource):
    """Adds rendered camera images: ``{"state": float32 [39], <camera>: uint8 [H, W, 3], ...}``.

    The renderer is made on first use, so it lives in the process that steps the env (async
    vector workers included). MetaWorld cameras: corner, corner2, corner3, corner4, topview,
    behindGripper, gripperPOV. A ``FrameSource`` (``envs/frames.py``): under a ``ChunkWrapper``
    the cameras render only after a chunk's last step.
    """

    def __init__(self, env: gym.Env, cameras: list[str], image_size: tuple[int, int]):
        super().__init__(env)
        if len(image_size) != 2 or min(image_size) < 1:
            raise ConfigError(f"env_kwargs image_size={list(image_size)}: expected [H, W], both >= 1")
        model = env.unwrapped.model
        import mujoco
        known = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
        bad = [c for c in cameras if c not in known]
        if bad or not cameras:
            raise ConfigError(f"env_kwargs cameras={cameras}: allowed (one or more) {', '.join(known)}")
        self.cameras, self.image_size = cameras, (int(image_size[0]), int(image_size[1]))
        image = gym.spaces.Box(0, 255, (*self.image_size, 3), np.uint8)
        state = env.observation_space
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(state.low.astype(np.float32), state.high.astype(np.float32), state.shape, np.float32),
             **{c: image for c in cameras}})
        self._renderer = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self.add_frames(self._state(obs)), info  # reset never defers

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        out = self._state(observation)
        return out if self.defer_frames else self.add_frames(out)

    @staticmethod
    def _state(observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"state": np.asarray(observation, dtype=np.float32)}

    def add_frames(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._renderer is None:
            from reinflow.envs.arm.render import CameraRenderer  # shadows/reflections off, headless GL
            self._renderer = CameraRenderer(self.unwrapped.model, *self.image_size)
        data = self.unwrapped.data
        return {"state": obs["state"], **{cam: self._renderer.render(data, cam) for cam in self.cameras}}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()
