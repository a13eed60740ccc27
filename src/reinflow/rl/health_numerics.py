"""The numerics checks: invariant 1 at the update's own shape and precision (``FIRST_MINIBATCH_RATIO``) and
an update that never reaches the log-prob (``RATIO_FROZEN``), apart from ``health_checks`` to keep that
file small. Torch-free, like every check."""

from __future__ import annotations

from reinflow.rl.health_types import (
    FIRST_MINIBATCH_WARN,
    PRE_UPDATE_TOL,
    Finding,
    RunContext,
    _Hist,
)


def first_minibatch_ratio(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
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


FROZEN_ITERS = 5  # actor updates in a row is chance; this many with the ratio exactly 1 is a cause


def ratio_frozen(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    lo, hi, grad = h.pts("ppo/ratio_min"), dict(h.pts("ppo/ratio_max")), dict(h.pts("gradients/policy_norm"))
    if not lo or not hi or not grad:
        return "ppo/ratio_min, ppo/ratio_max or gradients/policy_norm not logged"
    # exactly 1 through every epoch while the actor got a gradient (critic-only iterations log norm 0)
    frozen = [i for i, v in lo if v == 1.0 and hi.get(i) == 1.0 and grad.get(i, 0.0) > 0.0]
    if len(frozen) < FROZEN_ITERS:
        return None
    return Finding("RATIO_FROZEN", "warning",
                   {"iterations": float(len(frozen)), "of_iterations": float(len(lo)), "first_iteration": frozen[0]},
                   f"In {len(frozen)} of {len(lo)} iterations PPO's ratio was exactly 1 after every optimizer step "
                   "although the actor's gradient was not zero: the update never reached the chain's log-prob, so "
                   "clipping and the KL stop saw nothing. Likely: reduced precision rounding the step away (a bf16 "
                   "output moves in steps of 1/256 of its size), or trainable parameters that do not feed the chain.",
                   "Run with --precision fp32 (or tf32) to confirm; keep trainable heads and the chain's mean in "
                   "float32 under bf16 (reinflow does since 2026-12-07: a run made earlier with --precision bf16 is "
                   "affected); check that --trainable names parameters the velocity or noise head uses.")
