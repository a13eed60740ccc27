"""Camera observations for any MuJoCo env, rendered only when read.

``{"cameras": ["track"], "image_size": 64}`` in ``--env-kwargs`` of an env whose ``unwrapped`` has
MuJoCo ``model`` and ``data`` (gymnasium's MuJoCo envs, a user's own sim) gives the Dict observation
SmolVLA reads: ``{"state": float32 [O], <camera>: uint8 [S, S, 3], ...}``, the state being the env's
own observation (a Dict of vectors flattened, ``envs/flatten.py``). The env itself renders nothing.

How a frame is made (``MujocoCameras``): a render-only copy of the model with its own ``MjData``
(so the user's model and data are never touched); for each observation read, ``qpos`` and the mocap
poses are copied into it and only what a picture needs is computed (``mj_kinematics`` for the body
and geom poses, ``mj_comPos`` for cameras and lights that track a centre of mass, ``mj_camlight``
for their poses), then ``CameraRenderer`` draws it without shadows, reflections, skybox, haze or
multisampling. An env with costly meshes can pass a cheaper render model of the same joints
(``render_model``; the SO-101's simplified scene, ``envs/so101_scene.py``) and markers the model has
no geom for (``markers``: the SO-101's goal disc).

It is a ``FrameSource`` (``envs/frames.py``): under a ``ChunkWrapper`` only the observation after a
chunk's last step is rendered; a plain ``step`` (demo recording) renders every observation.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from reinflow import ConfigError
from reinflow.envs.frames import FrameSource

# env kwargs this wrapper consumes (the rest go to gymnasium.make)
CAMERA_KWARGS = ("cameras", "image_size")
DEFAULT_IMAGE_SIZE = 64


def image_hw(value: Any, field: str = "image_size") -> tuple[int, int]:
    """``64`` or ``[64, 64]`` -> (H, W), or ConfigError naming the allowed range."""
    hw = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(hw, (list, tuple)) and len(hw) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 1024 for v in hw)):
        raise ConfigError(f"env_kwargs {field}={value!r}: allowed an integer or [H, W], each in [8, 1024] (e.g. 64)")
    return int(hw[0]), int(hw[1])


def camera_names(model: Any) -> list[str]:
    import mujoco
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
    return [n for n in names if n]


def sim_of(env: gym.Env, env_id: str = "") -> Any:
    """``env.unwrapped`` when it has MuJoCo ``model`` and ``data``, else ConfigError."""
    sim = env.unwrapped
    model, data = getattr(sim, "model", None), getattr(sim, "data", None)
    if type(model).__name__ != "MjModel" or type(data).__name__ != "MjData":
        raise ConfigError(f"env_kwargs cameras: env={env_id or type(sim).__name__!r} has no MuJoCo model and data "
                          "(env.unwrapped.model / .data); camera observations need a MuJoCo env: drop 'cameras'")
    return sim


class MujocoCameras(gym.ObservationWrapper, FrameSource):
    """``{"state": the env's vector observation, <camera>: uint8 [H, W, 3]}`` (see module docs).

    ``render_model``: a model with the same ``nq`` and ``nmocap`` to draw (default: a copy of the
    env's); ``markers(sim)`` -> extra geoms ``(mjtGeom, size [3], pos [3], rgba [4])`` drawn per frame;
    ``instruction``: set on ``env.unwrapped`` when it has none (what SmolVLA reads as the task)."""

    def __init__(self, env: gym.Env, cameras: Sequence[str], image_size: tuple[int, int], env_id: str = "",
                 render_model: Any = None, markers: Callable[[Any], list] | None = None,
                 instruction: str | None = None):
        super().__init__(env)
        sim = sim_of(env, env_id)
        model = render_model if render_model is not None else copy.deepcopy(sim.model)
        if (model.nq, model.nmocap) != (sim.model.nq, sim.model.nmocap):
            raise ConfigError(f"render model: nq={model.nq}, nmocap={model.nmocap}; the env's has "
                              f"{sim.model.nq}, {sim.model.nmocap} (it must have the same joints)")
        known = camera_names(model)
        cams = list(cameras) if isinstance(cameras, (list, tuple)) else None
        if not cams or any(not isinstance(c, str) or c not in known for c in cams):
            raise ConfigError(f"env_kwargs cameras={cameras!r}: allowed a list of the model's cameras: "
                              f"{', '.join(known) or 'none (add a <camera name=...> to its XML)'}")
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(f"env_kwargs cameras: the env's observation space is {type(space).__name__}; "
                              "camera observations need a vector (or a Dict of vectors) to put under 'state'")
        self.cameras, self.image_size = cams, (int(image_size[0]), int(image_size[1]))
        self._model, self._data, self._renderer, self._markers = model, None, None, markers
        image = gym.spaces.Box(0, 255, (*self.image_size, 3), np.uint8)
        state = space if hasattr(space, "obs_layout") else gym.spaces.Box(  # a KeyedBox keeps its parts' names
            space.low.astype(np.float32), space.high.astype(np.float32), space.shape, np.float32)
        self.observation_space = gym.spaces.Dict({"state": state, **{c: image for c in cams}})
        if instruction is not None and not getattr(sim, "instruction", ""):
            sim.instruction = instruction

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self.add_frames(self._state(obs)), info  # reset never defers

    def observation(self, observation: Any) -> dict[str, np.ndarray]:
        out = self._state(observation)
        return out if self.defer_frames else self.add_frames(out)

    @staticmethod
    def _state(observation: Any) -> dict[str, np.ndarray]:
        return {"state": np.asarray(observation, dtype=np.float32)}

    def add_frames(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import mujoco
        if self._renderer is None:  # made on first use: in the process that steps the env
            from reinflow.envs.arm.render import CameraRenderer
            self._data = mujoco.MjData(self._model)
            self._renderer = CameraRenderer(self._model, *self.image_size, sites=())
        sim, m, d = self.unwrapped, self._model, self._data
        d.qpos[:] = sim.data.qpos
        if m.nmocap:
            d.mocap_pos[:], d.mocap_quat[:] = sim.data.mocap_pos, sim.data.mocap_quat
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_camlight(m, d)
        extra = tuple(self._markers(sim)) if self._markers is not None else ()
        return {"state": obs["state"], **{c: self._renderer.render(d, c, extra) for c in self.cameras}}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        super().close()


def with_cameras(env: gym.Env, env_id: str, cameras: Any, image_size: Any = DEFAULT_IMAGE_SIZE) -> gym.Env:
    """``env`` (any MuJoCo env) with ``MujocoCameras`` over its flattened observation."""
    from reinflow.envs.flatten import flatten_dict_obs
    return MujocoCameras(flatten_dict_obs(env), cameras, image_hw(image_size), env_id)
