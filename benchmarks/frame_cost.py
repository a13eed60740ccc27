"""What one camera observation costs, with and without the scene's multisampling (issue 27, item 3).

  python benchmarks/frame_cost.py [--calls 30] [--repeats 5] [--size 64]

For each env reinflow renders (the built-in arm's two cameras, the SO-101's front camera, a gymnasium
MuJoCo env's camera through ``{"cameras": [...]}``; MetaWorld when installed), the milliseconds of one
``add_frames`` (all of the env's cameras, as a policy reads them) with ``REINFLOW_MULTISAMPLE=1`` (the
scene's own ``offsamples``, what reinflow's renderers did before) and without (``offsamples = 0``, the
default now). The two are measured alternately, best of ``--repeats`` (load on a shared machine only
ever slows a call down). Prints markdown; the machine line first.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

from reinflow.envs.factory import build_env  # noqa: E402
from reinflow.envs.families import env_kwargs as with_defaults  # noqa: E402
from reinflow.envs.frames import FrameSource  # noqa: E402

from throughput import machine  # noqa: E402  (benchmarks/throughput.py)


def envs(size: int) -> list[tuple[str, str, dict]]:
    rows = [("built-in arm, top + wrist", "reinflow/ArmPickLift-v0", {"obs_mode": "pixels_state", "image_size": [size, size]}),
            ("gymnasium Hopper-v5, track", "Hopper-v5", {"cameras": ["track"], "image_size": size})]
    if importlib.util.find_spec("lerobot_env_so101"):
        rows.insert(1, ("SO-101, front", "lerobot_env_so101/SO101PickPlace-v0", {"obs_mode": "pixels_state", "image_size": size}))
    if importlib.util.find_spec("metaworld"):
        rows.insert(2, ("MetaWorld pick-place-v3, corner + gripperPOV", "Meta-World/MT1",
                        {"env_name": "pick-place-v3", "obs_mode": "pixels_state", "image_size": [size, size]}))
    return rows


def ms_per_observation(env_id: str, kw: dict, multisample: bool, calls: int) -> float:
    os.environ["REINFLOW_MULTISAMPLE"] = "1" if multisample else "0"
    env = build_env(env_id, with_defaults(env_id, kw))
    try:
        obs, _ = env.reset(seed=0)
        state, source = {"state": obs["state"]}, env
        while not isinstance(source, FrameSource):  # the layer that renders, under gymnasium's wrappers
            source = source.env
        source.add_frames(state)  # the GL context and first-frame caches
        t0 = time.perf_counter()
        for _ in range(calls):
            source.add_frames(state)
        return 1e3 * (time.perf_counter() - t0) / calls
    finally:
        env.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    print(machine() + "\n")
    print(f"| env, cameras ({args.size}x{args.size}) | ms per observation, multisampling on (before) "
          "| off (now) | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for label, env_id, kw in envs(args.size):
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.repeats):
            for ms in (True, False):
                best[ms] = min(best[ms], ms_per_observation(env_id, kw, ms, args.calls))
        print(f"| {label} | {best[True]:.2f} | {best[False]:.2f} | x{best[True] / best[False]:.1f} |", flush=True)
    if not importlib.util.find_spec("metaworld"):
        print("\nMetaWorld is not installed here: its row is missing (pip install -e \".[metaworld]\").")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
