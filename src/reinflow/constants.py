"""Numbers more than one module must agree on, in one torch-free place (the doctor imports them
without torch): the per-dimension log-density ceiling and the ratio-equals-one tolerance of the
invariants in docs/design.md section 5, and the log-prob reductions."""

import math

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
"""per-dimension Gaussian log-density at the mean is -LOG_SQRT_2PI - log(sigma): the ceiling of invariant 2"""
PRE_UPDATE_TOL = 1e-5
"""invariant 1: max |ratio - 1| allowed before the first optimizer step"""
FIRST_MINIBATCH_WARN = 5e-6
"""invariant 1 at the update's shape: above this (half the tolerance) the first minibatch's ratio shows
kernel/precision noise worth a warning. Measured on the CPU: 1.3e-6 for the arm's MLP (D = 24), up to
2.6e-5 for a re-encoded SmolVLA (D = 300) at minibatch 1 (docs/smolvla.md, 'Ratio = 1 at the update's shape')"""
REDUCTIONS = ("sum", "mean", "per_step")
"""how a chain's log-prob enters the PPO ratio: exact sum, per-dimension mean, one ratio per executed step"""
