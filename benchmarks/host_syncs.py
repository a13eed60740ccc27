"""Host syncs per decision of a rollout (issue 30, item 4): calls that would make a CUDA device wait for
the host to read a value (``item``, ``float``/``int``/``bool`` of a tensor, ``tolist``, ``cpu``, ``numpy``),
counted on the CPU with a TorchFunctionMode over ``collect_rollout`` (the trainer's own rollout), per
decision. Counts calls, not their cost; the env's own numpy is not counted.

    python benchmarks/host_syncs.py                      # the arm's MLP, 10 envs x 8 decisions
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

SYNCS = {torch.Tensor.item, torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__, torch.Tensor.tolist,
         torch.Tensor.cpu, torch.Tensor.numpy}


class CountSyncs(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in SYNCS:
            self.calls[func.__name__] += 1
        return func(*args, **(kwargs or {}))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="reinflow/ArmPickLift-v0")
    ap.add_argument("--envs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args(argv)
    from reinflow.envs.factory import env_spaces, make_vector_env
    from reinflow.rl.build import build_agent, env_kwargs
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.rollout import collect_rollout
    from reinflow.rl.seeding import env_generators, seeded_reset
    cfg = TrainConfig(env=args.env, parallel_envs=args.envs, rollout_steps=args.steps).resolved()
    kw = env_kwargs(cfg)
    agent = build_agent(cfg, *env_spaces(cfg.env, kw)).train()
    envs = make_vector_env(cfg.env, args.envs, agent.sampler.act_steps, "sync", kw)
    try:
        raw = seeded_reset(envs, 0, 0, 0)
        with CountSyncs() as c:
            collect_rollout(envs, agent, raw, args.steps, None, env_generators(0, 0, 0, args.envs))
    finally:
        envs.close()
    per = {k: v / args.steps for k, v in sorted(c.calls.items())}
    print(f"{args.env}, {args.envs} envs x {args.steps} decisions: {sum(per.values()):.1f} host syncs per decision "
          f"({', '.join(f'{k} {v:.1f}' for k, v in per.items())})")
    return per


if __name__ == "__main__":
    main()
