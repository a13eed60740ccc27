"""The PPO update on stored chains, in the shape of CleanRL's ppo_continuous_action.py.

Ratios come from ``Agent.evaluate`` on the stored chain; with the per_step reduction logp has
S > 1 columns and every executed step is its own clipped term (advantage shared per chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reinflow import InvariantError
from reinflow.envs.chunk import NonFiniteError
from reinflow.rl.agent import Agent
from reinflow.rl.context import index_context
from reinflow.rl.dist import DistInfo, all_reduce, average_gradients

PRE_UPDATE_TOL = 1e-5


@dataclass
class Batch:
    """Flattened rollout, B = T * N: obs [B, ...], chains [B, K+1, H, P], logp [B, S],
    advantages, returns, values [B]; weights [B]: 1, or 0 for decisions of dropped episodes
    (kept in the batch so every rank runs the same number of minibatches); context: the rollout's
    ``encode`` outputs [B, ...] when the encoder is frozen (reinflow.rl.context), else None."""

    obs: Any
    chains: torch.Tensor
    logp: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor
    weights: torch.Tensor
    context: Any = None


def cat_obs(items: list[Any]) -> Any:
    if isinstance(items[0], dict):
        return {k: cat_obs([it[k] for it in items]) for k in items[0]}
    if isinstance(items[0], torch.Tensor):
        return torch.cat(items)
    return [x for it in items for x in it]


def index_obs(obs: Any, idx: torch.Tensor) -> Any:
    if isinstance(obs, dict):
        return {k: index_obs(v, idx) for k, v in obs.items()}
    if isinstance(obs, torch.Tensor):
        return obs[idx.to(obs.device)]
    return [obs[i] for i in idx.tolist()]


@torch.no_grad()
def pre_update_check(agent: Agent, obs: Any, chains: torch.Tensor, logp: torch.Tensor,
                     context: Any = None) -> float:
    """Recompute the log-prob of one rollout step's batch (same inputs, same batch size, so the
    same kernels) before any optimizer step. Returns max |ratio - 1|; raises past 1e-5.
    ``context``: that step's kept rollout context (frozen encoder), else it is re-encoded."""
    lp, _ = agent.evaluate(obs, chains, context)
    dev = float((torch.exp(lp.logp - logp) - 1.0).abs().max())
    if not dev <= PRE_UPDATE_TOL:
        raise InvariantError(
            f"ppo/pre_update_ratio_max_dev = {dev:.3g} > {PRE_UPDATE_TOL:g} before any optimizer step: "
            "the log-prob of the stored chain changed without a parameter update. Likely causes: "
            "dropout or a train-mode base model, a different time grid or K in sampling and "
            "likelihood, sigma bounds changed between rollout and update, nondeterministic kernels.")
    return dev


def advantage_stats(adv: torch.Tensor, w: torch.Tensor, info: DistInfo) -> tuple[float, float]:
    """(mean, std) of the weighted advantages over every rank's batch."""
    a, w = adv.double(), w.double()
    s = all_reduce(torch.tensor([w.sum().item(), (w * a).sum().item(), (w * a**2).sum().item()],
                                dtype=torch.float64), info)
    n = max(s[0].item(), 1.0)
    mean = s[1].item() / n
    var = max(s[2].item() / n - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, var**0.5


def ppo_update(agent: Agent, actor_opt: torch.optim.Optimizer, critic_opt: torch.optim.Optimizer,
               batch: Batch, cfg: Any, update_actor: bool, generator: torch.Generator,
               ref_policy: torch.nn.Module | None = None, dist_info: DistInfo | None = None) -> dict[str, float]:
    """Minibatch epochs with post-step KL early stop. Returns the iteration's update metrics.
    Under torchrun every rank runs the same number of minibatches (equal batch sizes) and the
    same number of epochs (the KL decision uses the all-reduced value)."""
    info = dist_info or DistInfo()
    n = batch.chains.shape[0]
    adv_mean, adv_std = advantage_stats(batch.advantages, batch.weights, info)
    actor_params, critic_params = agent.actor_parameters(), agent.critic_parameters()
    stats: dict[str, list[float]] = {}
    ratio_min, ratio_max, epochs_run, post_kl = float("inf"), float("-inf"), 0, 0.0
    stop = False
    for epoch in range(cfg.update_epochs):
        epochs_run = epoch + 1
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, cfg.minibatch_size):
            idx = perm[start:start + cfg.minibatch_size]
            mb_obs, mb_chain = index_obs(batch.obs, idx), batch.chains[idx]
            mb_ctx = None if batch.context is None else index_context(batch.context, idx)
            lp, value = agent.evaluate(mb_obs, mb_chain, mb_ctx)
            logratio = lp.logp - batch.logp[idx]                       # [M, S], float64
            ratio = logratio.exp()
            mb_adv = batch.advantages[idx]
            if cfg.norm_adv:
                mb_adv = (mb_adv - adv_mean) / (adv_std + 1e-8)
            adv = mb_adv.double()[:, None]                             # one advantage per chunk
            w = batch.weights[idx].double()
            wsum = w.sum().clamp(min=1.0)
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_epsilon, 1 + cfg.clip_epsilon)).mean(-1)
            pg_loss = (w * pg).sum() / wsum
            entropy = (w * lp.entropy).sum() / wsum
            v_loss = 0.5 * (w.float() * (value - batch.returns[idx]) ** 2).sum() / wsum.float()
            actor_loss = (pg_loss - cfg.ent_coef * entropy).float()
            if ref_policy is not None and cfg.bc_coef > 0:
                actor_loss = actor_loss + cfg.bc_coef * _w2_to_reference(agent, ref_policy, mb_obs, mb_chain)
            loss = (actor_loss if update_actor else 0.0) + v_loss
            if not torch.isfinite(loss):
                raise NonFiniteError(f"loss is {loss.item()} at epoch {epoch} (policy {pg_loss.item():.4g}, "
                                     f"value {v_loss.item():.4g})")
            actor_opt.zero_grad(set_to_none=True)
            critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(actor_params + critic_params, info)
            a_norm = float(torch.nn.utils.clip_grad_norm_(actor_params, cfg.max_grad_norm_actor)) if update_actor else 0.0
            c_norm = float(torch.nn.utils.clip_grad_norm_(critic_params, cfg.max_grad_norm_critic))
            if not (np.isfinite(a_norm) and np.isfinite(c_norm)):
                raise NonFiniteError(f"gradient norm is not finite (actor {a_norm}, critic {c_norm}) at epoch {epoch}")
            if update_actor:
                actor_opt.step()
            critic_opt.step()
            with torch.no_grad():
                approx_kl = float((w * ((ratio - 1) - logratio).mean(-1)).sum() / wsum)
                clipfrac = float((w * ((ratio - 1).abs() > cfg.clip_epsilon).double().mean(-1)).sum() / wsum)
                # approx_kl explodes once ratios are far from 1; the log-ratio spread stays readable.
                lr_std = float(logratio.std()) if logratio.numel() > 1 else 0.0
                ratio_min, ratio_max = min(ratio_min, float(ratio.min())), max(ratio_max, float(ratio.max()))
                if update_actor and cfg.target_kl is not None:
                    # KL measured *after* the step: the pre-step estimate is 0 on the first minibatch.
                    lp2, _ = agent.evaluate(mb_obs, mb_chain, mb_ctx)
                    lr2 = lp2.logp - batch.logp[idx]
                    r2 = lr2.exp()
                    # Also the ratio after the step: the pre-step clip fraction of the minibatch that
                    # triggers the early stop would hide a blow-up (it reads 0 on the first one).
                    ratio_min, ratio_max = min(ratio_min, float(r2.min())), max(ratio_max, float(r2.max()))
                    stats.setdefault("training/post_update_clip_fraction", []).append(
                        float(((r2 - 1).abs() > cfg.clip_epsilon).double().mean()))
                    kl = ((r2 - 1) - lr2).mean().reshape(1)
                    post_kl = float(all_reduce(kl, info)) / info.world_size
                    stop = post_kl > cfg.target_kl
            for key, val in (("losses/policy_loss", pg_loss.item()), ("losses/value_loss", v_loss.item()),
                             ("training/entropy", entropy.item()), ("training/approx_kl", approx_kl),
                             ("training/clip_fraction", clipfrac), ("ppo/logratio_std", lr_std), ("logprob/new_mean", lp.total.mean().item()),
                             ("logprob/per_dimension_new", lp.per_dim.mean().item()),
                             ("logprob/per_dimension_max", lp.per_dim.max().item()),
                             ("logprob/clamped_fraction", float(lp.clamped.double().mean())),
                             ("gradients/policy_norm", a_norm), ("gradients/critic_norm", c_norm),
                             ("gradients/policy_clipped", float(a_norm > cfg.max_grad_norm_actor)),
                             ("gradients/critic_clipped", float(c_norm > cfg.max_grad_norm_critic))):
                stats.setdefault(key, []).append(val)
            if stop:
                break
        if stop:
            break
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["logprob/per_dimension_max"] = float(np.max(stats["logprob/per_dimension_max"]))
    out.update({"training/advantage_mean": adv_mean, "training/advantage_std": adv_std,
                "ppo/ratio_min": ratio_min, "ppo/ratio_max": ratio_max, "training/epochs_run": float(epochs_run),
                "training/post_update_kl": post_kl, "training/kl_early_stop": float(stop)})
    return out


def _w2_to_reference(agent: Agent, ref_policy: torch.nn.Module, obs: Any, chain: torch.Tensor) -> torch.Tensor:
    """Squared distance between the ODE actions of the current and the starting policy from the
    same x_0: a coupling, hence an upper bound on W2^2 between their action distributions."""
    x0 = chain[:, 0]
    cur = agent.act(obs, deterministic=True, x0=x0).chain[:, -1]
    with torch.no_grad():
        ref = ref_policy.act(obs, deterministic=True, x0=x0).chain[:, -1]
    m = agent.mask.float()
    return (((cur - ref) ** 2) * m).sum((-1, -2)).mean() / m.sum()
