"""Seeds and noise streams as functions of (seed, iteration, global env index, tag): a run split
over ranks samples what one process with all the envs would, and a resumed run is seeded as the
uninterrupted one was. Tags: 0 env resets, 1 per-env chain noise, 2 minibatch order."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def stream_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (seed, iteration, global env index, tag)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seeded_reset(envs: Any, seed: int, iteration: int, first: int) -> Any:
    """Reset every env from the seed of its global index at this iteration; returns the raw observation."""
    seeds = [stream_seed(seed, iteration, first + i, 0) % 2**31 for i in range(envs.num_envs)]
    return envs.reset(seed=seeds)[0]


def env_generators(seed: int, iteration: int, first: int, n: int) -> list[torch.Generator]:
    """One chain-noise generator per env of this rank for this iteration."""
    return [torch.Generator().manual_seed(stream_seed(seed, iteration, first + i, 1)) for i in range(n)]
