"""Evaluation with the sampler PPO trained (docs/design.md §5, invariant 4): ``Agent.act`` in deterministic
(ODE, no injected noise) or stochastic mode, on fixed seeds so before/after compare like for like."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reinflow.rl.agent import Agent
from reinflow.rl.rollout import info_field


@torch.no_grad()
def run_episodes(agent: Agent, envs: Any, episodes: int, seed: int, deterministic: bool = True,
                 progress: Any = None) -> dict[str, float]:
    """Each of the N envs plays ceil(episodes / N) episodes from ``reset(seed=seed + i)``; the
    first ``episodes`` (env-major order) are scored. Returns success_rate, return_mean,
    length_mean, episodes."""
    n = envs.num_envs
    per_env = -(-episodes // n)
    results: list[list[tuple[float, float, float]]] = [[] for _ in range(n)]
    raw_obs, _ = envs.reset(seed=[seed + i for i in range(n)])
    gen = torch.Generator().manual_seed(seed)
    was_training = agent.training
    agent.eval()
    while min(len(r) for r in results) < per_env:
        obs = agent.policy.prepare_obs(raw_obs)
        act = agent.act(obs, deterministic=deterministic, generator=gen).action
        act = agent.policy.postprocess_action(act[:, : agent.sampler.act_steps])
        raw_obs, _, term, trunc, infos = envs.step(act.cpu().numpy())
        for i in np.nonzero(term | trunc)[0]:
            if len(results[i]) < per_env:
                results[i].append(tuple(float(info_field(infos, f"episode_{k}", n, np.nan)[i])
                                        for k in ("return", "length", "success")))
                if progress is not None:
                    progress.update(1)
    agent.train(was_training)
    flat = [ep for r in results for ep in r][:episodes]
    arr = np.asarray(flat)
    succ = arr[:, 2][~np.isnan(arr[:, 2])]
    return {"success_rate": float(succ.mean()) if succ.size else None, "return_mean": float(arr[:, 0].mean()),
            "length_mean": float(arr[:, 1].mean()), "episodes": len(flat)}
