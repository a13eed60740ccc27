"""The health check of invariant 1 at the update's own shape and precision (``FIRST_MINIBATCH_RATIO``),
apart from ``health_checks`` to keep that file small. Torch-free, like every check."""

from __future__ import annotations

from reinflow.rl.health_types import (
    FIRST_MINIBATCH_WARN,
    PRE_UPDATE_TOL,
    Finding,
    RunContext,
    _Hist,
)


def _first_minibatch_ratio(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    pts = h.pts("ppo/first_minibatch_ratio_max_dev", finite=False)
    if not pts:
        return "ppo/first_minibatch_ratio_max_dev not logged (runs before reinflow checked the update's shape)"
    bad = [(i, v) for i, v in pts if not v <= FIRST_MINIBATCH_WARN]
    if not bad:
        return None
    worst = max(v for _, v in bad)
    error = not worst <= PRE_UPDATE_TOL
    return Finding("FIRST_MINIBATCH_RATIO", "error" if error else "warning",
                   {"max_abs_ratio_minus_1": worst, "tolerance": PRE_UPDATE_TOL, "warn_above": FIRST_MINIBATCH_WARN,
                    "first_iteration": bad[0][0], "iterations_over": float(len(bad))},
                   f"Before any optimizer step the first minibatch's ratio, at the update's own batch shape and "
                   f"precision, was {worst:.3g} away from 1 ({'beyond' if error else 'within'} the {PRE_UPDATE_TOL:g} "
                   "tolerance): kernel/precision nondeterminism. The old log-probs were computed at the rollout's batch "
                   "shape; BLAS/cuBLAS pick kernels by shape and bf16/TF32 round differently, so the same weights give "
                   "other log-probs (a public SmolVLA PPO attempt saw ~1 nat and ratios up to e^52 this way).",
                   "Recompute the old log-probs in the update's own minibatches before the first step: "
                   "reinflow train --old-logprob update (the default on a GPU or below fp32), or --precision fp32.")
