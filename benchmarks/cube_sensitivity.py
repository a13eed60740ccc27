"""Does a SmolVLA BC on the SO-101 aim at the cube? Its first chunk at reset, then again with the cube
moved 3 cm along x and along y (the scene redrawn; with ``block_in_state`` the state's block entries
moved too), on N held-out scenes.

    python benchmarks/cube_sensitivity.py BC --env-kwargs '{"max_episode_steps": 100, "obs_mode": "pixels_state"}'

Prints, per direction, the change of the chunk's summed [dx, dy, dz] actions (normalised units; the env
moves 0.025 m per unit, so a policy that follows a 3 cm move changes the summed action along that axis by
about 1.2 while the gripper approaches). docs/so101.md "Why the camera-only BC fails here" has the numbers.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ENV = "lerobot_env_so101/SO101PickPlace-v0"
SHIFT_M = 0.03


def first_chunk(agent, obs: dict) -> np.ndarray:
    """The deterministic first chunk [H, A] (normalised actions) for one observation."""
    with torch.no_grad():
        res = agent.act(agent.policy.prepare_obs({k: v[None] for k, v in obs.items()}), deterministic=True)
    return np.asarray(res.action)[0]


def moved_cube(env, obs: dict, axis: int, in_state: bool) -> dict:
    """``obs`` redrawn with the cube SHIFT_M further along ``axis`` (the sim restored after)."""
    import mujoco
    sim = env.unwrapped
    adr = sim.model.jnt_qposadr[sim.model.body("block").jntadr[0]]
    saved = sim.data.qpos.copy()
    try:
        sim.data.qpos[adr + axis] += SHIFT_M
        mujoco.mj_forward(sim.model, sim.data)
        out = env.add_frames({"state": obs["state"].copy()})
    finally:
        sim.data.qpos[:] = saved
        mujoco.mj_forward(sim.model, sim.data)
    if in_state:   # the block's position is the state's last 3 entries (envs/so101.py)
        out["state"][len(out["state"]) - 3 + axis] += SHIFT_M
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="a SmolVLA BC folder (reinflow pretrain --policy smolvla --out)")
    p.add_argument("--env-kwargs", required=True, help="as the BC's dataset was recorded")
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--seed", type=int, default=20_000, help="first scene (default: the held-out ones)")
    a = p.parse_args()
    torch.set_num_threads(1)
    from reinflow.commands.eval import EvalConfig, _bc_folder_agent
    from reinflow.envs.factory import build_env, set_headless_gl
    set_headless_gl()
    agent, env_id, kw = _bc_folder_agent(EvalConfig(checkpoint=a.checkpoint, env=ENV, env_kwargs=a.env_kwargs))[:3]
    agent.eval()
    env = build_env(env_id, kw)
    deltas = []
    try:
        for seed in range(a.seed, a.seed + a.scenes):
            obs, _ = env.reset(seed=seed)
            base = first_chunk(agent, obs)
            deltas.append([(first_chunk(agent, moved_cube(env, obs, axis, bool(kw.get("block_in_state")))) - base)
                           [:, :3].sum(0) for axis in (0, 1)])
    finally:
        env.close()
    d = np.asarray(deltas, dtype=np.float64).mean(0)   # [axis, dx/dy/dz]
    print(json.dumps({"checkpoint": a.checkpoint, "scenes": a.scenes, "seed": a.seed, "shift_m": SHIFT_M,
                      "cube_x_moved": dict(zip(("dx", "dy", "dz"), d[0].round(3).tolist())),
                      "cube_y_moved": dict(zip(("dx", "dy", "dz"), d[1].round(3).tolist()))}))


if __name__ == "__main__":
    main()
