"""Rollout contexts kept for the PPO update when a policy's encoder is frozen.

A policy whose ``encode`` has no trainable parameter (SmolVLA under the ``heads`` and ``expert``
presets: the vision encoder and VLM prefix are frozen) computes the same context at rollout and
update time. Re-encoding it in every minibatch, once more for the post-step KL and once for the
pre-update check is the bulk of an update's cost (docs/smolvla.md), so the rollout keeps what
``encode`` returned and the update indexes it instead.

Contexts are trees of dicts / lists / tuples whose tensor leaves have the batch on dim 0 (other
leaves, e.g. a cache-class tag, are shared). The pre-update check then reads the very tensors
the rollout sampled from, so its ratio is exactly 1 (bit for bit).
"""

from __future__ import annotations

from typing import Any

import torch


def index_context(ctx: Any, idx: torch.Tensor) -> Any:
    """Rows ``idx`` of every tensor leaf (batch dim 0)."""
    if isinstance(ctx, torch.Tensor):
        return ctx[idx.to(ctx.device)]
    if isinstance(ctx, dict):
        return {k: index_context(v, idx) for k, v in ctx.items()}
    if isinstance(ctx, (list, tuple)):
        return type(ctx)(index_context(v, idx) for v in ctx)
    return ctx


def cat_contexts(ctxs: list[Any]) -> Any:
    """Concatenate same-structured contexts along the batch dim."""
    first = ctxs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(ctxs)
    if isinstance(first, dict):
        return {k: cat_contexts([c[k] for c in ctxs]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(cat_contexts([c[i] for c in ctxs]) for i in range(len(first)))
    return first


def context_nbytes(ctx: Any) -> int:
    """Bytes held by the distinct tensor leaves (what keeping this context costs)."""
    seen: dict[int, int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            seen[id(node)] = node.numel() * node.element_size()
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(ctx)
    return sum(seen.values())


def context_budget_bytes(policy: Any, gib: float) -> int:
    """The rollout keeps contexts only for a frozen encoder, up to ``gib`` GiB (0: never)."""
    return int(gib * 2**30) if getattr(policy, "frozen_encoder", False) and gib > 0 else 0
