"""How much the frozen BC policy's action moves with the chain's initial noise x_0: the lever
``--algorithm dsrl`` steers (docs/benchmarks.md §5.3).

    OMP_NUM_THREADS=1 python benchmarks/dsrl_sensitivity.py BC_pick-lift --k 1 2 4

On 10 held-out resets and the states one chunk later (20 observations), 64 x_0 draws each, the
deterministic ODE's chunk: the std of the action over x_0 (per joint, averaged over the chunk's steps)
against the std of the mean action over observations; the same with x_0 inside the span of 4 DCT
components per joint (x_0 = B c, c ~ N(0, I)) and scaled; the top singular values of d action / d x_0
at x_0 = 0 on 4 observations. One JSON line per K.
"""
import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from reinflow.envs.factory import make_vector_env, set_headless_gl
from reinflow.flow.chain import dct_basis
from reinflow.rl.checkpoint import load_agent

p = argparse.ArgumentParser()
p.add_argument("ckpt")
p.add_argument("--env", default="reinflow/ArmPickLift-v0")
p.add_argument("--k", type=int, nargs="+", default=[1])
p.add_argument("--draws", type=int, default=64)
args = p.parse_args()
set_headless_gl()
torch.manual_seed(0)
res = {}
for k in args.k:
    agent, cfg, _ = load_agent(args.ckpt, policy_overrides={"denoise_steps": k})
    pol = agent.policy
    H, P, A = pol.chunk_size, pol.padded_action_dim, pol.action_dim
    envs = make_vector_env(args.env, 10, H, "sync", {})
    raw, _ = envs.reset(seed=[20000 + i for i in range(10)])
    obs = pol.prepare_obs(raw)
    # also states one chunk in (the second decision of an episode)
    with torch.no_grad():
        a0 = agent.act(obs, deterministic=True, x0=torch.zeros(10, H, P)).action
    raw2, *_ = envs.step(a0.numpy())
    obs = torch.cat([obs, pol.prepare_obs(raw2)])
    n = obs.shape[0]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x0 = torch.randn(args.draws, n, H, P, generator=g)
        acts = torch.stack([agent.act(obs, deterministic=True, x0=x0[d]).action for d in range(args.draws)])  # [D, n, H, A]
        std_x0 = acts.std(0).mean((0, 1))           # per joint: spread over x0 at fixed obs
        std_obs = acts.mean(0).std(0).mean(0)       # per joint: spread of the mean action over obs
        # DCT subspace: x0 = B c per joint (B over the 50 executed steps, M=4), c ~ N(0, I)
        B = dct_basis(H, H, 4).float()
        c = torch.randn(args.draws, n, 4, P, generator=g)
        xd = torch.einsum("hm,dnmp->dnhp", B, c)
        acts_d = torch.stack([agent.act(obs, deterministic=True, x0=xd[d]).action for d in range(args.draws)])
        std_dct = acts_d.std(0).mean((0, 1))
        # large x0 inside the DCT span: c scaled x3 (what a bounded actor could ask for)
        acts_d3 = torch.stack([agent.act(obs, deterministic=True, x0=3 * xd[d]).action for d in range(args.draws)])
        std_dct3 = acts_d3.std(0).mean((0, 1))
        acts_3 = torch.stack([agent.act(obs, deterministic=True, x0=1.5 * x0[d]).action for d in range(args.draws)])
        std_15 = acts_3.std(0).mean((0, 1))
    # Jacobian at x0 = 0 for a few obs: singular values of d a[:, :A] / d x0 (300 x 300)
    svs = []
    for i in range(4):
        o = obs[i : i + 1]
        def f(x, o=o):
            return agent.act(o, deterministic=True, x0=x.reshape(1, H, P)).action.reshape(-1)
        J = torch.autograd.functional.jacobian(f, torch.zeros(H * P))
        svs.append(torch.linalg.svdvals(J))
    sv = torch.stack(svs).mean(0)
    out = {"K": k, "std_over_x0_per_joint": std_x0.tolist(), "std_over_obs_per_joint": std_obs.tolist(),
           "std_over_x0_mean": float(std_x0.mean()), "std_over_obs_mean": float(std_obs.mean()),
           "std_over_x0_x1.5_mean": float(std_15.mean()),
           "std_dct_subspace_mean": float(std_dct.mean()), "std_dct_subspace_x3_mean": float(std_dct3.mean()),
           "jacobian_sv_top10": sv[:10].tolist(), "jacobian_sv_sum": float(sv.sum()),
           "jacobian_fro": float(sv.square().sum().sqrt())}
    envs.close()
    res[k] = out
    print(json.dumps(out), flush=True)

