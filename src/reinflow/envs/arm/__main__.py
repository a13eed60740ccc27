"""Speed check of the arm envs: ``python -m reinflow.envs.arm [steps]``.

Prints raw (unwrapped, random-action) control steps per second on one core for every task in
state mode, and for pick-lift in ``pixels_state`` mode (64x64, two cameras). Best of 3 runs.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from . import ENV_IDS
from .env import ArmEnv


def steps_per_second(task: str, steps: int = 3000, repeats: int = 3, **kwargs) -> float:
    env = ArmEnv(task, **kwargs)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 6)).astype(np.float32)
    best = 0.0
    for _ in range(repeats):
        env.reset(seed=0)
        t0 = time.perf_counter()
        for t in range(steps):
            _, _, terminated, _, _ = env.step(actions[t])
            if terminated or t % 100 == 99:
                env.reset(seed=t)
        best = max(best, steps / (time.perf_counter() - t0))
    env.close()
    return best


def main(argv: list[str]) -> None:
    steps = int(argv[0]) if argv else 3000
    for env_id, task in ENV_IDS.items():
        print(f"{env_id:26s} state        {steps_per_second(task.name, steps):8.0f} steps/s")
    rate = steps_per_second("pick_lift", max(steps // 10, 50), obs_mode="pixels_state")
    print(f"{'reinflow/ArmPickLift-v0':26s} pixels_state {rate:8.0f} steps/s (64x64, 2 cameras)")


if __name__ == "__main__":
    main(sys.argv[1:])
