"""PPO's rollout: the env loop's decisions (``rl.envloop.decisions``) in, [T, N] tensors out.

Each decision samples one chain per env, executes ``act_steps`` actions of the chunk
(ChunkWrapper), and stores the *chain* (not the clipped action) with its log-prob, so the
likelihood in the update is the one of what was sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reinflow.rl.agent import Agent
from reinflow.rl.context import context_nbytes
from reinflow.rl.dist import DistInfo, all_gather_1d
from reinflow.rl.envloop import decisions, info_field, stack_obs


@dataclass
class Rollout:
    """obs: list (length T) of prepared observations [N, ...]; chains [T, N, K+1, H, P];
    logp [T, N, S]; values, rewards (scaled), raw_rewards, final_values: [T, N];
    terminated, truncated: bool [T, N]; last_values [N]; valid: bool [T, N], False for the
    decisions of episodes dropped after an env fault; episodes: finished-episode stats;
    contexts: per step, what ``encode`` returned (frozen encoder within the budget), else None."""

    obs: list[Any]
    chains: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    raw_rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_values: torch.Tensor
    last_values: torch.Tensor
    env_steps: int
    per_dim: torch.Tensor
    valid: torch.Tensor
    dropped_episodes: int
    sigma_mean: float
    num_dims: int
    bound: float
    success: float
    episodes: list[dict] = field(default_factory=list)
    reward_components: dict[str, float] = field(default_factory=dict)
    contexts: list[Any] | None = None


class RewardScaler:
    """Divides rewards by the running std of each env's discounted return (as ReinFlow does);
    state_dict() travels with checkpoints so a resumed run scales identically."""

    def __init__(self, num_envs: int, gamma: float):
        self.gamma = gamma
        self.ret = np.zeros(num_envs)
        self.count, self.mean, self.m2 = 1e-4, 0.0, 0.0

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        for x in self.ret:  # Welford over the per-env returns
            self.count += 1
            d = x - self.mean
            self.mean += d / self.count
            self.m2 += d * (x - self.mean)
        self.ret[done] = 0.0
        std = np.sqrt(self.m2 / self.count) if self.count > 1 else 1.0
        return reward / max(std, 1e-8)

    def state_dict(self) -> dict:
        return {"ret": self.ret.tolist(), "count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, s: dict) -> None:
        self.ret = np.asarray(s["ret"], dtype=np.float64)
        self.count, self.mean, self.m2 = s["count"], s["mean"], s["m2"]


def _scale(scaler: RewardScaler, reward: np.ndarray, done: np.ndarray, info: DistInfo) -> np.ndarray:
    """Every rank updates the same scaler with all ranks' rewards, then scales its own slice."""
    if not info.enabled:
        return scaler(reward, done)
    n = len(reward)  # host numbers (the scaler is numpy): deliberately on the CPU
    r_all = all_gather_1d(torch.as_tensor(reward, dtype=torch.float64, device="cpu"), info).numpy()
    d_all = all_gather_1d(torch.as_tensor(done, dtype=torch.float64, device="cpu"), info).numpy() > 0.5
    return scaler(r_all, d_all)[info.rank * n:(info.rank + 1) * n]


@torch.no_grad()
def collect_rollout(envs: Any, agent: Agent, raw_obs: Any, steps: int, scaler: RewardScaler | None,
                    generator: Any, dist_info: DistInfo | None = None,
                    keep_context_bytes: int = 0) -> tuple[Rollout, Any]:
    """Run ``steps`` decisions in every env. Returns (Rollout, raw observation to continue from).
    ``generator``: a torch.Generator or one per env (see ``reinflow.flow.chain.randn``).
    ``keep_context_bytes``: keep each step's ``encode`` output for the update while the total
    stays within this many bytes (0: keep none; see ``reinflow.rl.context``)."""
    dist_info = dist_info or DistInfo()
    n = envs.num_envs
    policy = agent.policy
    dev = agent.mask.device  # every tensor of the rollout lives where the agent does (GAE and PPO mix them)
    obs_l, chains, logps, values, rews, raws, terms, truncs, finals = [], [], [], [], [], [], [], [], []
    per_dims, sigmas, episodes, comps = [], [], [], {}
    env_steps, successes = 0, []
    valid = np.ones((steps, n), dtype=bool)
    ep_start = np.zeros(n, dtype=int)  # row where each env's current episode began in this rollout
    dropped = 0
    res, step = None, None
    contexts: list[Any] | None = [] if keep_context_bytes > 0 else None
    kept_bytes = 0
    for t, step in enumerate(decisions(envs, agent, raw_obs, steps, generator)):
        res, infos, reward, term, trunc, done = step.act, step.infos, step.reward, step.terminated, step.truncated, \
            step.done
        final_v = torch.zeros(n, device=dev)
        if trunc.any() and "final_obs" in infos:
            idx = np.nonzero(trunc & ~term)[0]
            if len(idx):
                fobs = policy.prepare_obs(stack_obs([infos["final_obs"][i] for i in idx]))
                final_v[torch.as_tensor(idx, device=dev)] = agent.value(policy.encode(fobs)).float()
        env_steps += step.env_steps
        successes.append(info_field(infos, "success", n))
        drop = info_field(infos, "episode_dropped", n) > 0
        for i in np.nonzero(done)[0]:
            if drop[i]:  # a fault ended it: none of its decisions may reach the update
                valid[ep_start[i]:t + 1, i] = False
                dropped += 1
            else:
                episodes.append(step.episode(i))
            ep_start[i] = t + 1
        for key, val in chunk_components(infos, n).items():
            comps[key] = comps.get(key, 0.0) + float(np.mean(val))
        scaled = _scale(scaler, reward, done, dist_info) if scaler is not None else reward
        if contexts is not None:
            kept_bytes += context_nbytes(res.context)
            # Over the budget the update re-encodes every observation (all steps or none: one path).
            contexts = contexts + [res.context] if kept_bytes <= keep_context_bytes else None
        obs_l.append(step.obs)
        chains.append(res.chain)
        logps.append(res.logp)
        values.append(res.value)
        per_dims.append(res.logprob.per_dim)
        sigmas.append(res.logprob.sigma_mean)  # a tensor: no host sync per decision
        # host arrays (the env's own), moved to the agent's device once after the loop
        rews.append(np.asarray(scaled, dtype=np.float32))
        raws.append(np.asarray(reward, dtype=np.float32))
        terms.append(np.asarray(term, dtype=bool))
        truncs.append(np.asarray(trunc, dtype=bool))
        finals.append(final_v)
    assert step is not None and res is not None and res.logprob is not None
    raw_obs = step.raw_obs
    last_v = agent.value(step.next_context).float()  # the next decision's context: encoded once, in the loop

    def on_dev(xs: list) -> torch.Tensor:
        return torch.as_tensor(np.stack(xs), device=dev)
    roll = Rollout(
        obs=obs_l, chains=torch.stack(chains), logp=torch.stack(logps), values=torch.stack(values).float(),
        rewards=on_dev(rews), raw_rewards=on_dev(raws), terminated=on_dev(terms),
        truncated=on_dev(truncs), final_values=torch.stack(finals), last_values=last_v,
        env_steps=env_steps, per_dim=torch.stack(per_dims), valid=torch.as_tensor(valid, device=dev),
        dropped_episodes=dropped, sigma_mean=float(torch.stack(sigmas).double().mean()),
        num_dims=res.logprob.num_dims, bound=res.logprob.bound, success=float(np.mean(successes)),
        episodes=episodes, reward_components={k: v / steps for k, v in comps.items()}, contexts=contexts)
    return roll, raw_obs


def chunk_components(infos: dict, n: int) -> dict[str, np.ndarray]:
    """Each reward component summed over this decision's chunk, per env [n]. An env whose episode ended
    has its last chunk's in ``final_info`` (same-step autoreset puts the new episode's reset info in its
    place): read like any other info field (``info_field``), never from ``infos`` alone."""
    comps = infos.get("reward_components") or {}
    final = (infos.get("final_info") or {}).get("reward_components") or {}
    keys = dict.fromkeys(k for k in (*comps, *final) if not k.startswith("_"))
    return {k: info_field({**comps, "final_info": final}, k, n) for k in keys}
