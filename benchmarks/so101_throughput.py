"""Where the SO-101 env's time goes, and the reinflow rollout's env steps/s (docs/so101.md).

  python benchmarks/so101_throughput.py [--seconds 5] [--envs 1 10] [--repeats 2] [--control-envs 10]

Table 1: one env step of lerobot_env_so101/SO101PickPlace-v0 (the recommended kwargs, random
actions) split into its parts, each timed on its own: the physics (control_dt / physics_dt = 50
mj_step calls), the package's position IK (``solve_ik``, called as ``apply_action`` calls it), the
front-camera render that ``image_obs=True`` adds to every step, and the scripted expert's
``act`` (demos only). Table 2: the reinflow rollout (``collect_rollout``: MLP flow policy, chunk 16
executed open loop, ``make_vector_env``) against the bare loop, sync and async. Table 3 (issue 27):
per control mode (``ee``: the package's IK; ``joint``: six position targets, no IK), the bare physics
loop, one bare ``env.step``, and the rollout in state and in ``pixels_state`` (one 64² front frame per
chunk, rendered on read).
Prints markdown; the machine line (with its load) comes first.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from reinflow.envs.factory import build_env, make_vector_env  # noqa: E402
from reinflow.envs.families import make_expert  # noqa: E402
from reinflow.envs.so101 import DEFAULT_KWARGS, PICK_PLACE, require_so101  # noqa: E402

from throughput import agent_for, machine, time_rollout  # noqa: E402  (benchmarks/throughput.py)


def per_call_ms(fn, seconds: float) -> float:
    fn()  # warm-up: a renderer's GL context, first-call caches
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return 1e3 * (time.perf_counter() - t0) / n


def step_parts(seconds: float) -> list[tuple[str, float]]:
    require_so101()
    from lerobot_env_so101.ik_control import solve_ik
    env = build_env(PICK_PLACE, dict(DEFAULT_KWARGS))
    sim = env.unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def step() -> None:
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        if any(env.step(a)[2:4]):
            env.reset()

    full = per_call_ms(step, seconds)
    model, data = sim.model, mujoco.MjData(sim.model)
    data.qpos[:], data.qvel[:], data.ctrl[:] = sim.data.qpos, sim.data.qvel, sim.data.ctrl
    physics = per_call_ms(lambda: [mujoco.mj_step(model, data) for _ in range(sim._n_substeps)], seconds)
    ik_args = dict(model=sim.model, data=sim.data, site_id=sim._ee_site_id, dof_ids=sim._arm_dof_ids,
                   target_pos=sim.ik_point_pos + 0.01, ik_method="levenberg_marquardt", ik_damping=0.1,
                   ik_iterations=20, point_offset=sim._ik_point_offset, approach_axis=0)
    ik = per_call_ms(lambda: solve_ik(seed_q=sim._top_down_seed(), **ik_args), seconds)
    expert = make_expert(PICK_PLACE, env, dict(DEFAULT_KWARGS))
    act = per_call_ms(lambda: expert.act(None), seconds)
    env.close()
    import gymnasium as gym
    cam = gym.make(PICK_PLACE, **DEFAULT_KWARGS, image_obs=True)  # the package's own camera (reinflow refuses it)
    cam.reset(seed=0)
    render = per_call_ms(cam.unwrapped.render, min(seconds, 2.0))
    cam.close()
    ours = {}
    for size in (64, 128):  # reinflow's camera mode: one frame as a policy reads it (add_frames)
        env = build_env(PICK_PLACE, dict(DEFAULT_KWARGS, obs_mode="pixels_state", image_size=size))
        obs, _ = env.reset(seed=0)
        ours[size] = per_call_ms(lambda: env.add_frames(obs), seconds)
        env.close()
    return [("whole env.step (image_obs off)", full), (f"physics: {sim._n_substeps} x mj_step", physics),
            ("position IK (solve_ik, 20 LM iterations)", ik),
            ("front frame 128², the package's renderer (image_obs on: every step)", render),
            ("front frame 128², reinflow's render copy (pixels_state: on read)", ours[128]),
            ("front frame 64², reinflow's render copy (pixels_state: on read)", ours[64]),
            ("scripted expert act (demos only)", act)]


def rollout_speed(n: int, vector: str, seconds: float, chunk: int = 16, **kw) -> float:
    envs = make_vector_env(PICK_PLACE, n, chunk, vector, dict(DEFAULT_KWARGS, **kw))
    space = envs.single_observation_space
    space = space["state"] if hasattr(space, "spaces") else space  # the MLP reads a camera Dict's state
    agent = agent_for(int(space.shape[0]), int(envs.single_action_space.shape[-1]), chunk)
    return time_rollout(envs, agent, n, seconds)


def control_rows(n: int, vector: str, seconds: float) -> list[tuple[str, float, float, float, float]]:
    """Per control mode: bare physics loop, bare env.step, state rollout, pixels rollout (steps/s)."""
    rows = []
    for control in ("ee", "joint"):
        env = build_env(PICK_PLACE, dict(DEFAULT_KWARGS, control=control))
        sim = env.unwrapped
        env.reset(seed=0)
        model, data = sim.model, mujoco.MjData(sim.model)
        physics = 1e3 / per_call_ms(lambda: [mujoco.mj_step(model, data) for _ in range(sim._n_substeps)], seconds)
        rng = np.random.default_rng(0)

        def step() -> None:
            a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
            if any(env.step(a)[2:4]):
                env.reset()

        bare = 1e3 / per_call_ms(step, seconds)
        env.close()
        state = rollout_speed(n, vector, seconds, control=control)
        pixels = rollout_speed(n, vector, seconds, control=control, obs_mode="pixels_state")
        rows.append((control, physics, bare, state, pixels))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--control-envs", type=int, default=10, help="envs of the control-mode table (async)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(machine() + "\n")
    parts = step_parts(args.seconds)
    full = parts[0][1]
    print(f"| {PICK_PLACE}, one env step | ms | share of env.step | steps/s alone |")
    print("| --- | ---: | ---: | ---: |")
    for name, ms in parts:
        print(f"| {name} | {ms:.2f} | {ms / full:.0%} | {1e3 / ms:,.0f} |", flush=True)
    print(f"\n| reinflow rollout, chunk 16, {PICK_PLACE} | envs | vector | env steps/s | vs one bare env.step |")
    print("| --- | ---: | --- | ---: | ---: |")
    for n in args.envs:
        for vector in ("sync", "async"):
            rate = max(rollout_speed(n, vector, args.seconds) for _ in range(args.repeats))
            print(f"| MLP flow policy | {n} | {vector} | {rate:,.0f} | {rate * full / 1e3:.2f} |", flush=True)
    n, vector = args.control_envs, "async"
    print(f"\n| control ({n} envs, {vector}, chunk 16) | bare physics loop steps/s | bare env.step steps/s "
          "| state rollout env steps/s | pixels_state rollout env steps/s | state / physics | pixels / state |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for control, physics, bare, state, pixels in control_rows(n, vector, args.seconds):
        print(f"| {control} | {physics:,.0f} | {bare:,.0f} | {state:,.0f} | {pixels:,.0f} | {state / physics:.2f} "
              f"| {pixels / state:.2f} |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
