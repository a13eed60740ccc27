"""Generalised advantage estimation as a pure function over [T, N_envs] arrays.

Time runs along dim 0, environments along dim 1: nothing ever mixes columns, so advantages
and returns cannot cross environments (docs/design.md §5, invariant 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GAEResult:
    """advantages, returns: [T, N]."""

    advantages: torch.Tensor
    returns: torch.Tensor


def gae(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
        final_values: torch.Tensor, last_values: torch.Tensor, gamma: float, lam: float) -> GAEResult:
    """GAE(gamma, lambda).

    rewards, values, terminated, truncated, final_values: [T, N]; last_values: [N] = V(obs after
    the last step). At a termination the next value is 0; at a truncation it is
    ``final_values[t]`` = V(final observation of the episode that was cut), the episode is
    bootstrapped but lambda-propagation stops (the next row belongs to a new episode).
    """
    steps = rewards.shape[0]
    term = terminated.to(values.dtype)
    done = (terminated | truncated).to(values.dtype)
    adv = torch.zeros_like(values)
    running = torch.zeros_like(last_values)
    for t in reversed(range(steps)):
        next_v = last_values if t == steps - 1 else values[t + 1]
        # An episode that ended here bootstraps from its own final value, never the next row.
        next_v = torch.where(truncated[t] & ~terminated[t], final_values[t], next_v)
        next_v = next_v * (1.0 - term[t])
        delta = rewards[t] + gamma * next_v - values[t]
        running = delta + gamma * lam * (1.0 - done[t]) * running
        adv[t] = running
    return GAEResult(advantages=adv, returns=adv + values)


TRUNCATION_MODES = ("bootstrap", "terminal")


def time_limit_as(terminated: torch.Tensor, truncated: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(terminated, truncated) [T, N] as GAE should see them. ``bootstrap``: a time limit is a cut
    (the episode would go on; V(final obs) stands in for the rest). ``terminal``: the limit is part of
    the task, so nothing follows it (value 0), like a termination."""
    if mode == "bootstrap":
        return terminated, truncated
    if mode == "terminal":
        return terminated | truncated, torch.zeros_like(truncated)
    raise ValueError(f"truncation mode {mode!r}: allowed {', '.join(TRUNCATION_MODES)}")
