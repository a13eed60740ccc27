"""Held-out success of a frozen BC policy at different chain starts x_0: sampled (a fresh N(0, I) per
chain, the MLP BC's usual evaluation), zero, and fixed seeded draws (``--initial-noise fixed``).
A good score at a start is not enough to centre dsrl's latent there (``--dsrl-init fixed``): on tiny SmolVLA the
best start had the poorer neighbourhood; ``dsrl_headroom.py --centre-seed`` measures that (docs/benchmarks.md §5).

python benchmarks/bc_at_x0.py --policy-path BC --env reinflow/ArmPickLift-v0 --fixed-seeds 0 1 2 3 \
    --episodes 100 --seed 20000   (deterministic ODE after x_0; 10 envs)
"""

from __future__ import annotations

import argparse
import json

import torch

from reinflow.quickstart import evaluate_agent
from reinflow.rl.checkpoint import load_agent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy-path", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--env-kwargs", default="{}")
    ap.add_argument("--fixed-seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=20000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    starts = [("sample", {}), ("zero", {})] + [(f"fixed:{s}", {"initial_noise_seed": s}) for s in a.fixed_seeds]
    for name, extra in starts:
        agent, _, _ = load_agent(a.policy_path, {"initial_noise": name.split(":")[0], **extra})
        res = evaluate_agent(agent.eval(), a.env, json.loads(a.env_kwargs), a.episodes, a.seed)
        print(json.dumps({"x0": name, "success": res["success_rate"], "return": res["return_mean"],
                          "episodes": res["episodes"]}), flush=True)


if __name__ == "__main__":
    main()
