"""How far can steering x_0 take a frozen BC? A check to run before dsrl (docs/benchmarks.md §5).

For each of ``--states`` held-out initial states (env seeds 20000 + i), ``--draws`` envs replay that state, each
steering the BC's deterministic ODE with its own latent c in dsrl's space (``--components`` DCT coefficients per
joint, uniform in [-bound, bound], centred at x_0 = 0 as ``--dsrl-init zero``, or with ``--centre-seed S`` at the seeded
draw of ``--initial-noise fixed --initial-noise-seed S`` as ``--dsrl-init fixed``, SmolVLA's quickstart); env 0 plays
c = 0. ``--policy-path``: a BC checkpoint, or a dsrl run's (given x_0, it plays its frozen BC's ODE). Two searches:

* ``fresh``: a new c at every decision. ``best_of_k``: the fraction of states some draw solves, a lower bound on
  what a per-state, per-decision latent (what the dsrl actor learns) can reach with this BC.
* ``constant``: the same K latents at every decision and on every state. ``best_constant``: the best one's
  success, what a latent that ignores the state can reach.
* ``--perturb EPS``: per state, one latent (the same at every decision) and K - 1 copies moved by EPS N(0, I).
  ``agreement``: how often a copy's outcome is the latent's own (near 1: success is smooth in the latent,
  something a critic can learn; near the chance level: it is not).

    python benchmarks/dsrl_headroom.py --policy-path BC --env reinflow/ArmPush-v0 --states 30 --draws 32
    python benchmarks/dsrl_headroom.py --policy-path QS/train/best --env reinflow/ArmReach-v0 --centre-seed 0 \
        --env-kwargs '{"image_size": [32, 32], "obs_mode": "pixels_state"}'      # a SmolVLA quickstart's dsrl run
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reinflow.envs.factory import make_vector_env  # noqa: E402
from reinflow.policies.dsrl import DSRLFlowPolicy  # noqa: E402
from reinflow.rl.checkpoint import load_agent  # noqa: E402
from reinflow.rl.envloop import info_field  # noqa: E402


@torch.no_grad()
def episode(agent, steer: DSRLFlowPolicy, envs, seed: int, latents, zero_first: bool = True) -> np.ndarray:
    """Success [K] of the K envs replaying reset(seed); ``latents()`` gives each decision's c [K, L]
    (env 0's set to 0 with ``zero_first``)."""
    k, steps = envs.num_envs, agent.sampler.act_steps
    obs, _ = envs.reset(seed=[seed] * k)
    done, success = np.zeros(k, dtype=bool), np.zeros(k, dtype=bool)
    while not done.all():
        c = latents()
        if zero_first:
            c[0] = 0.0
        res = agent.act(agent.policy.prepare_obs(obs), deterministic=True, x0=steer.latent_to_x0(c))
        obs, _, term, trunc, infos = envs.step(agent.policy.postprocess_action(res.action[:, :steps]).numpy())
        ended = (term | trunc) & ~done
        success[ended] = info_field(infos, "success", k)[ended] > 0
        done |= term | trunc
    return success


def main(argv: list[str] | None = None) -> dict:
    """Print and return the row (the searches' success fractions and the settings)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy-path", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--env-kwargs", default="{}")
    ap.add_argument("--states", type=int, default=30)
    ap.add_argument("--draws", type=int, default=32, help="K envs per state (env 0 plays c = 0)")
    ap.add_argument("--components", type=int, default=8, help="dsrl's --dsrl-components (0: every x_0 entry)")
    ap.add_argument("--bound", type=float, default=2.5, help="dsrl's --dsrl-bound")
    ap.add_argument("--centre-seed", type=int, default=None, help="centre c = 0 at this fixed x_0 draw (default: at x_0 = 0)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the latent draws")
    ap.add_argument("--perturb", type=float, default=0.0, help="also measure agreement under moves of this size")
    a = ap.parse_args(argv)
    if a.draws < 2 or a.states < 1 or a.perturb < 0:
        ap.error(f"--draws {a.draws} (>= 2), --states {a.states} (>= 1), --perturb {a.perturb} (>= 0)")
    torch.set_num_threads(1)
    agent = load_agent(a.policy_path, {"initial_noise": "sample"})[0].eval()
    steer = DSRLFlowPolicy(agent.policy, agent.sampler.act_steps, a.components, a.bound, x0_seed=a.centre_seed)
    envs = make_vector_env(a.env, a.draws, agent.sampler.act_steps, "sync", json.loads(a.env_kwargs))
    gen = torch.Generator().manual_seed(a.seed)
    uniform = lambda: (torch.rand(a.draws, steer.latent_dim, generator=gen) * 2 - 1) * a.bound  # noqa: E731
    fixed = uniform()
    fresh = np.stack([episode(agent, steer, envs, 20000 + i, uniform) for i in range(a.states)])     # [S, K]
    const = np.stack([episode(agent, steer, envs, 20000 + i, fixed.clone) for i in range(a.states)])
    row = {}
    if a.perturb > 0:
        agree = []
        for i in range(a.states):
            base = uniform()[:1]
            moved = (base + a.perturb * torch.randn(a.draws, steer.latent_dim, generator=gen)).clamp(-a.bound, a.bound)
            moved[0] = base[0]
            outcome = episode(agent, steer, envs, 20000 + i, moved.clone, zero_first=False)
            agree.append(float((outcome[1:] == outcome[0]).mean()))
        row = {"perturb": a.perturb, "agreement": float(np.mean(agree))}
    envs.close()
    row.update({"zero": float(fresh[:, 0].mean()), "random_mean": float(fresh[:, 1:].mean()),
                "best_of_k": float(fresh.any(axis=1).mean()), "best_of_8": float(fresh[:, 1:9].any(axis=1).mean()),
                "best_constant": float(const[:, 1:].mean(axis=0).max()), "states": a.states, "draws": a.draws,
                "components": a.components, "bound": a.bound, "centre_seed": a.centre_seed,
                "policy_path": a.policy_path, "env": a.env})
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
