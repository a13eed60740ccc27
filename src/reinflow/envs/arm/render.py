"""Headless offscreen rendering for the arm scene.

``MUJOCO_GL`` must be chosen before mujoco creates a GL context. ``ensure_gl_backend``
sets it to ``egl`` (tested: Mesa's EGL works headless, no display needed) unless the user
already set it; ``osmesa`` is the fallback when EGL is not installed. System packages:
``apt-get install -y libegl1 libegl-mesa0 libgl1 libgles2`` (EGL) or ``libosmesa6`` (OSMesa).
"""

from __future__ import annotations

import ctypes.util
import importlib
import os
import sys

import numpy as np


def ensure_gl_backend() -> str:
    """Pick a headless GL backend for mujoco.Renderer (idempotent); return its name.

    mujoco reads ``MUJOCO_GL`` when it is first imported, so ``reinflow.envs.arm`` calls
    this before importing mujoco. If mujoco was imported before ``MUJOCO_GL`` was set (it
    then defaults to GLFW, which needs a display) and the variable now asks for egl/osmesa,
    that headless context class is swapped into mujoco's renderer module. A ``MUJOCO_GL``
    set by the user is never changed.
    """
    user_set = "MUJOCO_GL" in os.environ
    if not user_set:
        if ctypes.util.find_library("EGL"):
            os.environ["MUJOCO_GL"] = "egl"
        elif ctypes.util.find_library("OSMesa"):
            os.environ["MUJOCO_GL"] = "osmesa"
    backend = os.environ.get("MUJOCO_GL", "glfw").lower()
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    if backend in ("egl", "osmesa") and "mujoco" in sys.modules:
        try:  # mujoco was imported before MUJOCO_GL was set and picked GLFW: swap in headless
            from mujoco.rendering.classic import gl_context

            current = getattr(gl_context, "GLContext", None)
            if current is None or "glfw" in getattr(current, "__module__", ""):
                module = importlib.import_module(f"mujoco.{backend}")
                gl_context.GLContext = module.GLContext
        except Exception:  # pragma: no cover - best effort; Renderer reports the failure
            pass
    return backend


class CameraRenderer:
    """One mujoco.Renderer of a fixed size, reused across frames: no shadows, reflections, skybox
    or haze, and no multisampling unless ``multisample`` (a scene's ``offsamples`` of 8 made an
    SO-101 frame 116 ms against 44 ms without, issue 27; at 64 px the edges it smooths are a pixel).

    ``offsamples`` and the offscreen size are read from ``model`` when the GL context is made, so
    they are set on ``model`` here: pass a render-only copy (``envs/camera.py``) to keep a user's
    model as it was. ``REINFLOW_MULTISAMPLE=1`` keeps the model's multisampling (the "before" rows of
    ``benchmarks/throughput.py --multisample``). ``sites``: the site groups drawn (the arm's target marker is group 0)."""

    def __init__(self, model, height: int, width: int, multisample: bool | None = None,
                 sites: tuple[int, ...] = (0,)):
        ensure_gl_backend()
        import mujoco

        if multisample is None:  # asked for by the environment (it reaches spawned env workers too)
            multisample = os.environ.get("REINFLOW_MULTISAMPLE", "") == "1"
        vis = model.vis.global_
        vis.offwidth = max(int(vis.offwidth), int(width))
        vis.offheight = max(int(vis.offheight), int(height))
        if not multisample:
            model.vis.quality.offsamples = 0
        try:
            self._renderer = mujoco.Renderer(model, height=int(height), width=int(width))
        except Exception as exc:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                f"cannot create a headless MuJoCo renderer with MUJOCO_GL="
                f"{os.environ.get('MUJOCO_GL')!r}: {exc}. Install EGL "
                "(apt-get install -y libegl1 libegl-mesa0 libgl1) or OSMesa (libosmesa6) "
                "and set MUJOCO_GL=egl or MUJOCO_GL=osmesa."
            ) from exc
        flags = self._renderer.scene.flags
        for flag in ("mjRND_SHADOW", "mjRND_REFLECTION", "mjRND_SKYBOX", "mjRND_HAZE"):
            flags[getattr(mujoco.mjtRndFlag, flag)] = 0
        self._option = mujoco.MjvOption()
        self._option.sitegroup[:] = 0
        for group in sites:
            self._option.sitegroup[group] = 1

    def render(self, data, camera: str, extra: tuple = ()):
        """uint8 [H, W, 3] from ``camera``; ``extra``: (mjtGeom type, size [3], pos [3], rgba [4]) geoms
        drawn into the scene (markers the model has no geom for, e.g. a goal)."""
        import mujoco
        self._renderer.update_scene(data, camera=camera, scene_option=self._option)
        scene = self._renderer.scene
        for kind, size, pos, rgba in extra:
            if scene.ngeom >= scene.maxgeom:
                break
            mujoco.mjv_initGeom(scene.geoms[scene.ngeom], kind, np.asarray(size, np.float64),
                                np.asarray(pos, np.float64), np.eye(3).ravel(), np.asarray(rgba, np.float32))
            scene.ngeom += 1
        return self._renderer.render()  # fresh uint8 array [H, W, 3]

    def close(self) -> None:
        r, self._renderer = getattr(self, "_renderer", None), None
        if r is not None:
            r.close()
