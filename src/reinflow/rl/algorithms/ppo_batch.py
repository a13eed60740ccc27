"""The PPO batch and invariant 1's checks on it (``reinflow.rl.algorithms.ppo`` runs them): the
log-prob of a stored chain, recomputed before any optimizer step, must give a ratio of exactly 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from reinflow import InvariantError
from reinflow.constants import PRE_UPDATE_TOL
from reinflow.rl.agent import Agent
from reinflow.rl.context import index_context

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


@torch.no_grad()
def relayout_old_logp(agent: Agent, batch: Batch, perm: torch.Tensor, minibatch: int) -> float:
    """Recompute ``batch.logp`` [B, S] in the update's own layout: the first epoch's minibatches
    (same rows, same shape, same precision, hence the same kernels) before any optimizer step.
    Returns max |new - rollout| log-prob (nats): how far the rollout's layout was from the update's."""
    new = batch.logp.clone()
    for start in range(0, perm.shape[0], minibatch):
        idx = perm[start:start + minibatch]
        ctx = None if batch.context is None else index_context(batch.context, idx)
        new[idx] = agent.evaluate(index_obs(batch.obs, idx), batch.chains[idx], ctx)[0].logp.to(new.dtype)
    shift = float((new - batch.logp).abs().max())
    batch.logp = new
    return shift


class LayoutShiftError(InvariantError):
    """The first minibatch's ratio was off before any optimizer step (nothing was changed yet)."""


def first_minibatch_check(ratio: torch.Tensor, rows: int, relayout: bool) -> float:
    """Invariant 1 at the update's own shape and precision: the ratio [M, S] of the first minibatch,
    exactly as PPO computed it, before any optimizer step. Returns max |ratio - 1|; raises past the bound."""
    dev = float((ratio.detach() - 1.0).abs().max())
    if not dev <= PRE_UPDATE_TOL:
        fix = ("the old log-probs were already recomputed in this layout (--old-logprob update), so the same "
               "computation gave two answers: nondeterministic kernels; try --precision fp32") if relayout else \
            ("recompute the old log-probs in the update's own minibatches before the first step: --old-logprob "
             "update (or --precision fp32 with --minibatch-size equal to --parallel-envs)")
        raise LayoutShiftError(
            f"ppo/first_minibatch_ratio_max_dev = {dev:.3g} > {PRE_UPDATE_TOL:g} on the first minibatch ({rows} rows) "
            "before any optimizer step: kernel/precision nondeterminism, the old log-probs were computed at another "
            "batch shape or precision (BLAS/cuBLAS kernels are chosen by shape; bf16/TF32 round differently); "
            f"fix: {fix}")
    return dev
