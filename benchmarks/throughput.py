"""Throughput against the physical limit (benchmarks issue, section 3).

  python benchmarks/throughput.py [--seconds 3] [--envs 1 4 10] [--tasks ...] [--skip-async]
      [--obs-modes state pixels_state] [--multisample]

Table 1: raw env steps/s (random actions, plain gymnasium vector env) vs reinflow rollout
env steps/s (collect_rollout: MLP flow policy, chunk 50, the whole chunk executed, the policy
running once per chunk), sync and async, and their ratio. ``--obs-modes`` adds the arm's camera
mode (``pixels_state``: two 64x64 cameras; the MLP policy reads the ``state`` entry, so the extra
cost is the env's rendering) and the ratio of each rollout to the state-mode rollout; the SO-101
(``lerobot_env_so101/SO101PickPlace-v0``) has the same camera mode (one 64x64 ``front`` camera).
``--multisample`` renders with the scene's own multisampling (``REINFLOW_MULTISAMPLE=1``: what
reinflow's renderers did before issue 27) for before/after rows.
Table 2: PPO update throughput (samples/s) of the MLP policy at D = 50 x 6 = 300 for several K.
Prints markdown; the machine line comes first.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gymnasium.vector import AutoresetMode  # noqa: E402

import reinflow.envs  # noqa: E402,F401
from reinflow.envs.factory import build_env, make_vector_env  # noqa: E402
from reinflow.envs.families import env_kwargs as with_defaults  # noqa: E402
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig  # noqa: E402
from reinflow.rl.agent import Agent, SamplerConfig  # noqa: E402
from reinflow.rl.algorithms.ppo import Batch, cat_obs, ppo_update  # noqa: E402
from reinflow.rl.rollout import RewardScaler, collect_rollout  # noqa: E402
from reinflow.rl.config import TrainConfig  # noqa: E402


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    load = os.getloadavg()[0]
    return (f"machine: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average at start {load:.2f}")


def _make(env_id: str, kw: dict) -> gym.Env:
    return build_env(env_id, with_defaults(env_id, kw))  # as reinflow builds it (SO-101: its own kwargs)


class StatePolicy(MLPFlowPolicy):
    """The MLP policy on the ``state`` entry of a camera observation."""

    def prepare_obs(self, raw_obs):
        return super().prepare_obs(raw_obs["state"] if isinstance(raw_obs, dict) else raw_obs)


def bare_speed(env_id: str, kw: dict, n: int, seconds: float) -> float:
    """The simulator's own speed: N envs stepped in a plain loop, no vector-env bookkeeping."""
    envs = [_make(env_id, kw) for _ in range(n)]
    for i, e in enumerate(envs):
        e.reset(seed=i)
        e.action_space.seed(i)
    acts = [envs[0].action_space.sample() for _ in range(64)]
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for e in envs:
            _, _, term, trunc, _ = e.step(acts[steps % 64])
            steps += 1
            if term or trunc:
                e.reset()
    rate = steps / (time.perf_counter() - t0)
    for e in envs:
        e.close()
    return rate


def raw_speed(env_id: str, kw: dict, n: int, vector: str, seconds: float) -> float:
    fns = [lambda: _make(env_id, kw) for _ in range(n)]
    envs = (gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP) if vector == "sync" else
            gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=AutoresetMode.SAME_STEP))
    envs.reset(seed=0)
    envs.action_space.seed(0)
    acts = [envs.action_space.sample() for _ in range(64)]
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        envs.step(acts[steps // n % 64])
        steps += n
    rate = steps / (time.perf_counter() - t0)
    envs.close()
    return rate


def agent_for(obs_dim: int, action_dim: int, chunk: int = 50, k: int = 1) -> Agent:
    torch.manual_seed(0)
    pol = StatePolicy(MLPPolicyConfig(obs_dim=obs_dim, action_dim=action_dim, chunk_size=chunk, denoise_steps=k))
    return Agent(pol, SamplerConfig(act_steps=chunk,
                                    reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                                    constant_sigma=False, noise_basis=0, initial_noise="sample", initial_noise_seed=0))


def reinflow_speed(env_id: str, kw: dict, n: int, vector: str, seconds: float, chunk: int = 50) -> float:
    probe = _make(env_id, kw)
    space = probe.observation_space
    space = space["state"] if isinstance(space, gym.spaces.Dict) else space
    obs_dim, act_dim = int(np.prod(space.shape)), int(np.prod(probe.action_space.shape))
    probe.close()
    agent = agent_for(obs_dim, act_dim, chunk)
    return time_rollout(make_vector_env(env_id, n, chunk, vector, kw), agent, n, seconds)


def time_rollout(envs, agent, n: int, seconds: float) -> float:
    """env steps/s of ``collect_rollout`` on ``envs`` (closed afterwards), after one warm-up rollout."""
    raw, _ = envs.reset(seed=list(range(n)))
    gens = [torch.Generator().manual_seed(i) for i in range(n)]
    scaler = RewardScaler(n, 0.99)
    collect_rollout(envs, agent, raw, 1, scaler, gens)  # warm-up (async workers, first kernels)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        roll, raw = collect_rollout(envs, agent, raw, 2, scaler, gens)
        steps += roll.env_steps
    rate = steps / (time.perf_counter() - t0)
    envs.close()
    return rate


def update_speed(k: int, samples: int = 400, minibatch: int = 40, epochs: int = 2) -> float:
    agent = agent_for(32, 6, 50, k)
    obs = agent.policy.prepare_obs(np.random.default_rng(0).normal(size=(samples, 32)))
    with torch.no_grad():
        res = agent.act(obs, generator=torch.Generator().manual_seed(0))
    batch = Batch(obs=cat_obs([obs]), chains=res.chain, logp=res.logp, advantages=torch.randn(samples),
                  returns=torch.randn(samples), values=res.value, weights=torch.ones(samples))
    cfg = TrainConfig(update_epochs=epochs, minibatch_size=minibatch, target_kl=None)
    actor = torch.optim.AdamW(agent.actor_parameters(), lr=1e-5)
    critic = torch.optim.AdamW(agent.critic_parameters(), lr=1e-4)
    t0 = time.perf_counter()
    ppo_update(agent, actor, critic, batch, cfg, True, torch.Generator().manual_seed(0))
    return samples * epochs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--envs", type=int, nargs="+", default=[1, 4, 10])
    ap.add_argument("--tasks", nargs="+", default=["reinflow/ArmReach-v0", "reinflow/ArmPickLift-v0", "Hopper-v5"])
    ap.add_argument("--skip-async", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ks", type=int, nargs="*", default=[1, 2, 4, 8], help="none: skip table 2")
    ap.add_argument("--obs-modes", nargs="+", default=["state"], choices=["state", "pixels_state"],
                    help="pixels_state: the built-in arm's and the SO-101's camera mode (other tasks run in state only)")
    ap.add_argument("--chunk", type=int, default=50, help="actions per chunk, all executed")
    ap.add_argument("--multisample", action="store_true", help="keep the scenes' multisampling (before rows)")
    args = ap.parse_args()
    if args.multisample:
        os.environ["REINFLOW_MULTISAMPLE"] = "1"  # read by CameraRenderer, in async workers too
    torch.set_num_threads(1)
    print(machine() + "\n")
    print("| env | obs | envs | vector | bare loop env steps/s | raw vector env steps/s | reinflow rollout env steps/s "
          "| ratio to bare loop | ratio to raw vector | rollout ratio to state mode |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for task in args.tasks:
        modes = [m for m in args.obs_modes if m == "state" or task.startswith(("reinflow/Arm", "lerobot_env_so101/"))]
        for n in args.envs:
            for vector in ["sync"] + ([] if args.skip_async else ["async"]):
                # Alternate the measurements (and the obs modes) and keep each one's best of --repeats:
                # on a shared machine load drifts, and the best run is the closest to the unloaded speed.
                best = {m: [0.0, 0.0, 0.0] for m in modes}
                for _ in range(args.repeats):
                    for mode in modes:
                        kw = {} if mode == "state" else {"obs_mode": mode}
                        rates = (bare_speed(task, kw, n, args.seconds), raw_speed(task, kw, n, vector, args.seconds),
                                 reinflow_speed(task, kw, n, vector, args.seconds, args.chunk))
                        best[mode] = [max(a, b) for a, b in zip(best[mode], rates)]
                for mode, (bare, raw, ours) in best.items():
                    vs = f"{ours / best['state'][2]:.2f}" if "state" in best else ""
                    print(f"| {task} | {mode} | {n} | {vector} | {bare:,.0f} | {raw:,.0f} | {ours:,.0f} "
                          f"| {ours / bare:.2f} | {ours / raw:.2f} | {vs} |", flush=True)
    if args.ks:
        update_table(args.ks)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


def update_table(ks: list[int]) -> None:
    print("\n| PPO update, MLP policy, D = 50 x 6 = 300 | K | samples/s | time per sample vs K=1 |")
    print("| --- | ---: | ---: | ---: |")
    base = None
    for k in ks:
        rate = update_speed(k)
        base = base or rate
        print(f"| minibatch 40, 2 epochs of 400 samples | {k} | {rate:,.0f} | x{base / rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
