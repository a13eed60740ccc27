"""What one dsrl SAC gradient step costs on this machine, against an iteration's env stepping.

The pick-lift recipe's shapes (features 160, latent 8 x 6 = 48, twin critics and actor [256, 256],
batch 256, UTD 2: 160 gradient steps per 80-decision iteration), random replay rows (the cost does
not depend on their values). Prints milliseconds per gradient step and per part (critic step, actor
and temperature step), and a checksum of the parameters after the steps so that a faster version can
be checked to give the same numbers (same seed: identical checksum). Times are CPU time of this
process (time.process_time), so other processes sharing the cores inflate them less than wall time.

python benchmarks/sac_step_cost.py --steps 200 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from reinflow.policies.dsrl import NoiseActor
from reinflow.rl.replay import ReplayBuffer
from reinflow.rl.config import TrainConfig
from reinflow.rl.sac import SAC


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--feat", type=int, default=160)
    ap.add_argument("--latent", type=int, default=48)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    actor = NoiseActor(a.feat, a.latent, [256, 256], 2.5)
    sac = SAC(actor, a.feat, TrainConfig(algorithm="dsrl", lr_actor=3e-4))  # the dsrl defaults: tau 0.005, target -1/dim
    buf = ReplayBuffer(10_000, {"feat": (a.feat,), "latent": (a.latent,), "reward": (), "next_feat": (a.feat,),
                                "done": ()}, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    buf.add(feat=torch.randn(5000, a.feat, generator=g), latent=torch.rand(5000, a.latent, generator=g) * 5 - 2.5,
            reward=torch.randn(5000, generator=g), next_feat=torch.randn(5000, a.feat, generator=g),
            done=(torch.rand(5000, generator=g) < 0.05).float())
    idx_gen, noise_gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    best = {}
    for _ in range(a.repeats):
        t_sample = t_critic = t_all = 0.0
        for _ in range(a.steps):
            t0 = time.process_time()
            b = buf.sample(a.batch, idx_gen)
            t1 = time.process_time()
            sac.update(b, noise_gen, actor_step=False)    # critics + Polyak only
            t2 = time.process_time()
            t_sample, t_critic = t_sample + t1 - t0, t_critic + t2 - t1
        for _ in range(a.steps):
            t0 = time.process_time()
            sac.update(buf.sample(a.batch, idx_gen), noise_gen)
            t_all += time.process_time() - t0
        row = {"sample_ms": 1e3 * t_sample / a.steps, "critic_step_ms": 1e3 * t_critic / a.steps,
               "full_step_ms": 1e3 * t_all / a.steps}
        best = {k: min(v, best.get(k, v)) for k, v in row.items()}
    checksum = sum(float(p.detach().double().sum()) for p in [*actor.parameters(), *sac.q.parameters()])
    print(json.dumps({**{k: round(v, 2) for k, v in best.items()},
                      "actor_and_alpha_ms": round(best["full_step_ms"] - best["critic_step_ms"], 2),
                      "steps": a.steps, "repeats": a.repeats, "checksum": repr(checksum),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
