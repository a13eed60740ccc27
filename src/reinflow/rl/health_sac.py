"""Health checks of an off-policy SAC run (``--algorithm dsrl``), in causal order: a replay buffer too
small to hold a representative sample, then Q values beyond what the rewards allow, then an actor
whose entropy has collapsed far below its target. Same contract as ``reinflow.rl.health_checks``:
``<code>(h, ctx, found)`` returns a Finding, None (judged: fine) or a str (why not judged).
The PPO checks (clip fraction, ratios, log-prob bound ...) read metrics SAC does not have and are
not run on it (``CHECK_SETS["sac"]``).
"""

from __future__ import annotations

from reinflow.rl.health_types import MIN_TREND_POINTS, Finding, RunContext, _Hist, _slope

SAC_CODES = ("BUFFER_TOO_SMALL", "Q_DIVERGING", "ENTROPY_COLLAPSE")
BUFFER_MIN_BATCHES = 20      # a full buffer of fewer batches: every step sees nearly the same rows
Q_BOUND_FACTOR = 2.0         # |Q| beyond this many x the largest soft return the rewards allow
Q_LOSS_GROWTH = 10.0         # critic loss this many x its minimum and still rising
ENTROPY_GAP = 1.0            # nats per latent dim below the target ...
ENTROPY_STREAK = 5           # ... for this many consecutive updated iterations


def _updated(h: _Hist, key: str) -> list[tuple[float, float]]:
    """Points of ``key`` from iterations that ran SAC updates (warm-up iterations log none)."""
    ran = {it for it, v in h.pts("sac/updates") if v > 0}
    return [(it, v) for it, v in h.pts(key) if it in ran] if ran else []


def buffer_too_small(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    size, cap, batch = h.last("sac/buffer_size"), h.last("sac/buffer_capacity"), h.last("sac/batch_size")
    if size is None or cap is None or not batch:
        return "needs sac/buffer_size, sac/buffer_capacity and sac/batch_size"
    ran = [it for it, v in h.pts("sac/updates") if v > 0]
    sizes = dict(h.pts("sac/buffer_size"))
    short = [it for it in ran if sizes.get(it, batch) < batch]
    ev = {"sac/buffer_size": size, "sac/buffer_capacity": cap, "sac/batch_size": batch}
    if short:
        ev["first_short_iteration"] = short[0]
        return Finding("BUFFER_TOO_SMALL", "warning", ev,
                       f"updates ran while the buffer held fewer decisions ({sizes[short[0]]:g}) than one batch "
                       f"({batch:g}): every batch repeats rows, and the critic fits a handful of transitions.",
                       f"Raise --dsrl-warmup to at least {batch:g} decisions (or lower --dsrl-batch-size).")
    if size >= cap and cap < BUFFER_MIN_BATCHES * batch:
        return Finding("BUFFER_TOO_SMALL", "warning", ev,
                       f"the buffer is full at {cap:g} decisions, {cap / batch:.3g} batches (< {BUFFER_MIN_BATCHES}): "
                       "each gradient step draws nearly the same recent rows, and older experience is overwritten, "
                       "so the critic forgets what the actor no longer does and over-fits what it does now.",
                       f"Raise --dsrl-buffer-size to >= {BUFFER_MIN_BATCHES * batch:g} (the whole run fits in "
                       "memory: one decision is a few hundred floats).")
    return None


def q_diverging(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    q = _updated(h, "sac/q_mean")
    r, gamma = h.last("sac/reward_abs_max"), h.last("sac/gamma")
    if not q or r is None or gamma is None:
        return "needs sac/q_mean, sac/reward_abs_max and sac/gamma from iterations with SAC updates"
    alpha, ent = h.last("sac/alpha") or 0.0, abs(h.last("sac/entropy") or 0.0)
    # soft returns: |r + alpha H| per decision, summed with discount gamma (at most 1 / (1 - gamma) decisions)
    bound = (r + alpha * ent) / max(1.0 - gamma, 1e-6)
    q_now = q[-1][1]
    ev = {"sac/q_mean": q_now, "soft_return_bound": bound, "sac/reward_abs_max": r, "sac/alpha": alpha}
    if abs(q_now) > Q_BOUND_FACTOR * bound:
        return Finding("Q_DIVERGING", "error", ev,
                       f"|Q| = {abs(q_now):.4g} exceeds {Q_BOUND_FACTOR:g} x the largest soft return the rewards allow "
                       f"({bound:.4g} = (|r|max + alpha |H|) / (1 - gamma)): the critics bootstrap on their own "
                       "over-estimates.",
                       "Lower --dsrl-utd (fewer gradient steps per decision) or --lr-actor x0.3, raise the target "
                       "smoothing (--dsrl-tau 0.002), or scale rewards down (--dsrl-reward-scale).")
    loss = _updated(h, "sac/q_loss")
    if len(loss) >= 2 * MIN_TREND_POINTS:
        low = min(v for _, v in loss[:-3])
        recent = min(v for _, v in loss[-3:])
        slope, t = _slope(loss[-2 * MIN_TREND_POINTS:])
        if low > 0 and recent > Q_LOSS_GROWTH * low and t > 2.5:
            ev.update({"sac/q_loss": loss[-1][1], "q_loss_growth": recent / low, "t_stat": t})
            return Finding("Q_DIVERGING", "warning", ev,
                           f"the critic loss grew x{recent / low:.3g} from its minimum and still rises (t = {t:.3g}): "
                           "the TD targets move faster than the critics fit them.",
                           "Lower --dsrl-utd or --lr-actor, or raise --dsrl-batch-size.")
    return None


def entropy_collapse(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    ent, target = _updated(h, "sac/entropy_per_dim"), h.last("sac/entropy_target_per_dim")
    if len(ent) < ENTROPY_STREAK or target is None:
        return f"needs >= {ENTROPY_STREAK} updated iterations of sac/entropy_per_dim and sac/entropy_target_per_dim"
    recent = ent[-ENTROPY_STREAK:]
    if not all(v < target - ENTROPY_GAP for _, v in recent):
        return None
    ev = {"sac/entropy_per_dim": recent[-1][1], "target_per_dim": target, "sac/alpha": h.last("sac/alpha") or 0.0,
          "iterations_below": float(len(recent))}
    return Finding("ENTROPY_COLLAPSE", "warning", ev,
                   f"the actor's entropy is {recent[-1][1]:.3g} nats per latent dim, more than {ENTROPY_GAP:g} below "
                   f"its target {target:.3g} for {len(recent)} iterations: the actor plays almost one x_0 per "
                   "observation, stops exploring, and the critics only see what it already does.",
                   ("Fix Q_DIVERGING (above) first: an over-estimating critic pulls the actor to one corner. "
                    if "Q_DIVERGING" in found else "") +
                   "Raise the temperature's learning (--lr-actor) or --dsrl-init-alpha, or a higher "
                   "--dsrl-target-entropy; check that --dsrl-bound is not so large that tanh saturates.")
