"""Frame rate of MetaWorld with and without camera observations (headless EGL, shadows off).

One env, one process, random actions, after a warm-up; steps per second of ``env.step`` including
the rendering of every camera (frames per second = steps/s x cameras).

    MUJOCO_GL=egl python benchmarks/metaworld_fps.py --task pick-place-v3 --steps 500
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def measure(task: str, steps: int, **kwargs) -> float:
    from reinflow.envs.factory import build_env
    env = build_env("metaworld:Meta-World/MT1", {"env_name": task, **kwargs})
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(20):  # warm-up: GL context, first frames
        env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    t = time.perf_counter()
    for i in range(steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        if term or trunc:
            env.reset(seed=i)
    rate = steps / (time.perf_counter() - t)
    env.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pick-place-v3")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="square image sizes to measure")
    a = p.parse_args()
    rows = [{"obs_mode": "state", "steps_per_s": measure(a.task, a.steps)}]
    for size in a.sizes:
        for cams in (["corner"], ["corner", "gripperPOV"]):
            rate = measure(a.task, a.steps, obs_mode="pixels_state", image_size=[size, size], cameras=cams)
            rows.append({"obs_mode": "pixels_state", "image": f"{size}x{size}", "cameras": cams,
                         "steps_per_s": rate, "frames_per_s": rate * len(cams)})
    print(json.dumps({"task": a.task, "MUJOCO_GL": os.environ.get("MUJOCO_GL"), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
