"""How much the injected noise costs a policy: deterministic vs stochastic success on the same seeds.

    python benchmarks/stochastic_success.py BC_CHECKPOINT reinflow/ArmPickLift-v0 \\
        0,0.08,0.16 0,0.02,0.04 1,0.08,0.16 4,0.08,0.16 4,0.2,0.4 4,0.4,0.8

Each spec is ``noise_basis,sigma_lo,sigma_hi`` (noise_basis 0 = white noise per chunk step). The
noise head of a BC checkpoint is untrained, so sigma sits mid-way between the bounds.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("env")
    p.add_argument("specs", nargs="+", help="noise_basis,sigma_lo,sigma_hi")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=10_000)
    args = p.parse_args()
    import torch

    from reinflow.envs.factory import make_vector_env, set_headless_gl
    from reinflow.rl.checkpoint import load_agent
    from reinflow.rl.evaluate import run_episodes
    torch.set_num_threads(1)
    set_headless_gl()
    print("| noise basis (0 = white) | sigma | success |\n| --- | --- | --- |")
    for spec in ["det", *args.specs]:
        over = {}
        if spec != "det":
            m, lo, hi = spec.split(",")
            over = {"noise_basis": int(m), "sigma_lo": float(lo), "sigma_hi": float(hi), "reduction": "sum"}
        agent, _, _ = load_agent(args.checkpoint, sampler_overrides=over)
        envs = make_vector_env(args.env, 10, agent.sampler.act_steps, "sync", {})
        try:
            res = run_episodes(agent, envs, args.episodes, seed=args.seed, deterministic=spec == "det")
        finally:
            envs.close()
        label = "deterministic | - " if spec == "det" else f"{over['noise_basis']} | [{over['sigma_lo']}, {over['sigma_hi']}]"
        print(f"| {label} | {100 * res['success_rate']:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
