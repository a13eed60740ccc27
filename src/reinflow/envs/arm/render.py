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
    """One mujoco.Renderer of a fixed size, shadows/reflections off, reused across frames."""

    def __init__(self, model, height: int, width: int):
        ensure_gl_backend()
        import mujoco

        vis = model.vis.global_
        vis.offwidth = max(int(vis.offwidth), int(width))
        vis.offheight = max(int(vis.offheight), int(height))
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
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        self._option = mujoco.MjvOption()
        self._option.sitegroup[:] = 0
        self._option.sitegroup[0] = 1  # target marker only

    def render(self, data, camera: str):
        self._renderer.update_scene(data, camera=camera, scene_option=self._option)
        return self._renderer.render()  # fresh uint8 array [H, W, 3]

    def close(self) -> None:
        r, self._renderer = getattr(self, "_renderer", None), None
        if r is not None:
            r.close()
