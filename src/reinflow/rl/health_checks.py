"""The checks behind ``reinflow.rl.health.diagnose``, one per code, in causal order.

Each check ``<code>(h, ctx, found)`` (registered by its code in ``reinflow.rl.health.CHECKS``) returns
a Finding, None (judged: fine) or a str (why it could not be judged). ``found`` holds the codes already
found upstream, so a downstream suggestion can point at its likely cause instead of treating the symptom.
"""

from __future__ import annotations

import math
from dataclasses import replace

from reinflow.flow.scaling import predicted_clip_fraction, scale_for_dimension
from reinflow.rl.health_sac import SAC_CODES
from reinflow.rl.health_types import (CLIP_FINE_BELOW, CLIP_SATURATED_AT, CODES, CRITIC_NORM_ABS, CRITIC_NORM_FACTOR,
                                GRAD_CLIPPED_AT, KNOWN_KEYS, LOG_SQRT_2PI, MIN_TREND_POINTS, PRE_UPDATE_TOL,
                                SMOLVLA_MAX_ACTION_DIM, Z_EXTREME, Finding, RunContext, _Hist, _slope, _streak_start)


def _upstream(found: list[str], *codes: str) -> str:
    hit = [c for c in codes if c in found]
    return f"Fix {' and '.join(hit)} (above) first: this is most likely its consequence. " if hit else ""


def pre_update_ratio(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    pts = h.pts("ppo/pre_update_ratio_max_dev", finite=False)
    if not pts:
        return "ppo/pre_update_ratio_max_dev not logged"
    bad = [(i, v) for i, v in pts if not v <= PRE_UPDATE_TOL]
    if not bad:
        return None
    worst = max(v for _, v in bad)
    return Finding("PRE_UPDATE_RATIO", "error",
                   {"max_abs_ratio_minus_1": worst, "tolerance": PRE_UPDATE_TOL, "first_iteration": bad[0][0],
                    "iterations_violated": float(len(bad))},
                   "Before any optimizer step the new and old log-probs must agree, "
                   f"max|ratio-1| <= {PRE_UPDATE_TOL:g}; "
                   f"it was {worst:.3g}, so the ratio measures evaluation noise, not the policy update.",
                   "Recompute log-probs deterministically: base model in eval() mode (dropout off), the same time grid "
                   "and dt as the sampler (SmolVLA integrates t 1->0 with dt=-1/K), float64 log-density, same inputs.")


def mask_mismatch(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    logged = h.last("logprob/num_dims")
    k, a, pad = ctx.denoise_steps, ctx.action_dim, ctx.padded_action_dim or SMOLVLA_MAX_ACTION_DIM
    steps = {s for s in (ctx.act_steps, ctx.chunk_size) if s}       # executed-only or whole-chunk mask
    if logged is None:
        return "logprob/num_dims not logged"
    if not (k and a and steps):
        return "needs chunk/act steps, action_dim and denoise_steps"
    ok = {k * s * a for s in steps} | ({int(ctx.num_dims)} if ctx.num_dims else set())
    if int(logged) in ok:
        return None
    padded = [s for s in steps if int(logged) == k * s * pad]
    why = (f" {int(logged)} = {k} x {padded[0]} x {pad} padded dims: the padding is being summed." if padded else "")
    want = min(ok)
    return Finding("MASK_MISMATCH", "error", {"logged_num_dims": logged, "expected_num_dims": float(want)},
                   f"The log-prob sums {int(logged)} entries but K x executed steps x real action dims = {want}.{why}",
                   f"Mask the log-prob to the {a} real action dims and executed steps ({want} entries).")


def _summed_logprob_key(h: _Hist) -> str:
    return "logprob/new_mean" if h.pts("logprob/new_mean") else "logprob/old_mean"


def _per_dim_points(h: _Hist, ctx: RunContext) -> tuple[list[tuple[float, float]], str]:
    """Per-dimension log-probs as logged, else derived: a run that logs only the summed log-prob
    (reduction sum or unknown) is divided by the D its config implies (K x executed steps x real dims)."""
    pts = h.pts("logprob/per_dimension") + h.pts("logprob/per_dimension_max")
    if pts:
        return pts, ""
    key = _summed_logprob_key(h)
    d = ctx.total_dims() or h.last("logprob/num_dims")
    if ctx.logprob_reduction not in (None, "sum") or not d or not h.pts(key):
        return [], ""
    return [(i, v / d) for i, v in h.pts(key)], f" (derived: {key} / D = {d:g}, no per-dimension log-prob logged)"


def logprob_above_bound(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    pts, derived = _per_dim_points(h, ctx)
    lo = ctx.sigma_min or h.last("noise/sigma_lo")
    bound = -LOG_SQRT_2PI - math.log(lo) if lo else h.last("logprob/per_dimension_bound")
    if not pts or bound is None:
        return ("needs logprob/per_dimension (or a summed logprob/new_mean and the sizes giving D) and sigma_min "
                "(or logprob/per_dimension_bound)")
    it, pd = max(pts, key=lambda p: p[1])
    if pd <= bound + 1e-6:
        return None
    ev = {"logprob/per_dimension": pd, "bound": bound, "sigma_min": lo or math.exp(-bound - LOG_SQRT_2PI),
          "implied_sigma_max": math.exp(-pd - LOG_SQRT_2PI), **h.at(it)}
    why = (f"logprob/per_dimension{derived} = {pd:.3g} > {bound:.3g} = -0.5 log(2 pi) - log(sigma_min = {ev['sigma_min']:.3g}): "
           f"no Gaussian with sigma >= sigma_min has a density that high, so the value is impossible with these "
           f"bounds (it needs sigma <= {ev['implied_sigma_max']:.3g}). Causes: sigma not bounded where the log-prob "
           "is computed, or the sum runs over more entries than it is divided by.")
    total, d = h.last(_summed_logprob_key(h)), ctx.total_dims()
    fix = "Compute the log-prob with the bounded sigma of the noise head"
    if total is not None:
        d = d or (int(round(total / pd)) if pd else 0)
        pad, guessed = ctx.padded_action_dim, ctx.padded_action_dim is None
        pad = pad or SMOLVLA_MAX_ACTION_DIM
        padded = (ctx.denoise_steps or 1) * (ctx.chunk_size or ctx.act_steps or 0) * pad
        ev.update({"logprob/new_mean": total, "divisor": float(d)})
        if padded:
            ev.update({"padded_entries": float(padded), "per_dim_if_padded": total / padded})
            fits = total / padded <= bound
            why += (f" {total:.4g} / {padded} (chunk {ctx.chunk_size or ctx.act_steps} x {pad} padded dims"
                    f"{', padded dim assumed 32 = SmolVLA max_action_dim' if guessed else ''}) = {total / padded:.2f} "
                    f"{'fits' if fits else 'exceeds'} the bound, while {total:.4g} / {d} = "
                    f"{total / max(d, 1):.2f} does not"
                    + (": the sum most likely ran over the padded dims." if fits else "."))
        fix += (f", and sum over exactly the entries you divide by: the {ctx.action_dim or '?'} real action dims "
                f"x executed steps x K = {d} entries" + (f", not {padded} padded ones" if padded else ""))
    return Finding("LOGPROB_ABOVE_BOUND", "error", ev, why, fix + " (invariant 2 of docs/design.md §5).")


def _reduction(h: _Hist, ctx: RunContext) -> tuple[str | None, str]:
    if ctx.logprob_reduction:
        return ctx.logprob_reduction, "configured"
    total, pd = h.last("logprob/new_mean"), h.last("logprob/per_dimension")
    if total is not None and pd and abs(total) > 1.5 * abs(pd):
        return "sum", f"inferred: logprob/new_mean / per_dimension = {total / pd:.4g}"
    return None, ""


def dimension_not_scaled(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    red, how = _reduction(h, ctx)
    if red is None:
        return "log-prob reduction unknown (pass --reduction)"
    if red != "sum":
        return None                             # mean / per_step do not grow with D (flow.scaling)
    total, pd = h.last("logprob/new_mean"), h.last("logprob/per_dimension")
    d = ctx.total_dims() or h.last("logprob/num_dims") or (round(total / pd) if total and pd else None)
    lo = ctx.sigma_min or h.last("noise/sigma_lo")
    if not d or not lo:
        return "needs D (chunk/action/denoise sizes) and sigma_min"
    ref = ctx.ref
    growth = math.sqrt(d / ref.dim)
    res = scale_for_dimension(ref, int(d), "sum", "sigma")
    lr_res = scale_for_dimension(ref, int(d), "sum", "lr")
    if growth < 2 or ctx.scale_rule in ("sigma", "lr") or lo >= 0.7 * res.values["sigma_min"]:
        return None
    if ctx.lr is not None and ctx.lr <= 1.5 * lr_res.values["lr"]:
        return None
    eps = ctx.clip_epsilon or ref.clip_epsilon
    spread = res.ratio_spread_ref * growth * ref.sigma_min / lo    # sqrt(D) d / sigma at the reference step
    # the suggestion rescales the run's own values, read as settings valid at D_ref (like --auto-scale)
    hi = ctx.sigma_max or h.last("noise/sigma_hi") or 2 * lo
    res = scale_for_dimension(replace(ref, sigma_min=lo, sigma_max=hi, lr=ctx.lr or ref.lr), int(d), "sum", "sigma")
    ev = {"D": float(d), "D_ref": float(ref.dim), "sqrt_D_over_D_ref": growth, "sigma_min": lo,
          "sigma_min_scaled": res.values["sigma_min"], "sigma_max_scaled": res.values["sigma_max"],
          "predicted_logratio_std": spread, "predicted_clip_fraction": predicted_clip_fraction(spread, eps)}
    kl = h.last("ppo/approx_kl")
    rmin, rmax = h.last("ppo/ratio_min"), h.last("ppo/ratio_max")
    if kl is not None and 0 < kl <= 0.5:
        ev["observed_logratio_std"] = math.sqrt(2 * kl)  # sqrt(D) d / sigma = sqrt(2 KL), small steps only
    elif rmin and rmax:
        # past KL ~ 0.5 the (r - 1 - log r) estimate is dominated by a few huge ratios (a real D = 280
        # run logged approx_kl = 7.5e10): read the spread off the ratio extremes instead
        ev["observed_logratio_std"] = max(-math.log(max(rmin, 1e-12)), math.log(max(rmax, 1e-12))) / Z_EXTREME
    clip = h.last("ppo/clip_fraction")
    sev = "info" if clip is not None and clip < 0.5 else "warning"
    return Finding("DIMENSION_NOT_SCALED", sev, ev,
                   f"Log-probs are summed ({how}) over D = {d:g} entries, {d / ref.dim:.3g}x the D_ref = {ref.dim} "
                   "the sigma bounds come from; the log-ratio std sqrt(D)*d/sigma grows x sqrt(D/D_ref) = "
                   f"{growth:.3g}, "
                   f"predicting std {spread:.3g} vs eps = {eps:g} (clip fraction {ev['predicted_clip_fraction']:.2f}).",
                   f"Either sigma in [{res.values['sigma_min']:.3g}, {res.values['sigma_max']:.3g}] (x{growth:.3g}, "
                   f"lr/target KL/eps unchanged) or lr x{1 / growth:.3g}" +
                   (f" = {ctx.lr / growth:.3g}" if ctx.lr else "") +
                   " (sigma unchanged) - alternatives, never both; "
                   "or logprob_reduction=per_step. `reinflow scale` / --auto-scale compute these. Large sigma is "
                   "exploration noise: check the task still succeeds.")


def noise_collapse(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    sig = h.last("noise/sigma_mean")
    lo, hi = h.last("noise/sigma_lo") or ctx.sigma_min, h.last("noise/sigma_hi") or ctx.sigma_max
    if sig is None or not lo or not hi:
        return "needs noise/sigma_mean and the sigma bounds"
    if hi - lo <= 1e-9 * hi or sig > lo + 0.05 * (hi - lo):
        return None                             # constant-sigma schedule, or not at the floor
    ent = h.pts("ppo/entropy")[-20:]
    change = ent[-1][1] - max(v for _, v in ent) if len(ent) >= 3 else None
    if change is not None and change >= -1e-3:
        return None
    ev = {"noise/sigma_mean": sig, "sigma_lo": lo, "sigma_hi": hi, "position_in_bounds": (sig - lo) / (hi - lo)}
    if change is not None:
        ev["entropy_change"] = change
    return Finding("NOISE_COLLAPSE", "warning", ev,
                   f"sigma_mean = {sig:.3g} sits at its floor {lo:.3g}" +
                   (f" and ppo/entropy fell by {-change:.3g}" if change is not None else " (entropy not logged)") +
                   ": exploration has stopped shrinking only because the bound holds it.",
                   f"Raise sigma_min (e.g. to {min(2 * lo, hi):.3g}) or hold sigma_max before decaying it; "
                   "an entropy bonus (ent_coef) also keeps the head off the floor.")


def logprob_clamped(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    pts = h.pts("logprob/clamped_fraction")
    if not pts:
        return "logprob/clamped_fraction not logged (only the 'mean' reduction with a clamp has one)"
    frac = sorted(v for _, v in pts[-5:])[len(pts[-5:]) // 2]
    if frac < 0.5:
        return None
    lo = ctx.sigma_min or h.last("noise/sigma_lo")
    ev = {"logprob/clamped_fraction": frac, "logprob/per_dimension": h.last("logprob/per_dimension")}
    at_floor = f" (at sigma_min = {lo:.3g} it is {-LOG_SQRT_2PI - math.log(lo) - 0.5:.3g})" if lo else ""
    return Finding("LOGPROB_CLAMPED", "warning", ev,
                   f"{frac:.0%} of samples have their 'mean' log-prob at the clamp: their ratio is exactly 1, so "
                   "they add no policy gradient. The expected per-dimension log-prob is "
                   f"-0.5 log(2 pi) - log(sigma) - 0.5{at_floor}.",
                   _upstream(found, "NOISE_COLLAPSE") + "Keep it below the clamp: raise sigma_min (above 0.089 for "
                   "a clamp of 1), raise logprob_clamp, or drop the clamp.")


def clip_saturated(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    pts = h.pts("ppo/clip_fraction")
    if not pts:
        return "ppo/clip_fraction not logged"
    last = pts[-1][1]
    win = pts[-MIN_TREND_POINTS * 2:]
    slope = _slope(win)[0] if len(win) >= MIN_TREND_POINTS else 0.0
    rising = CLIP_SATURATED_AT > last >= 0.5 and slope > 0 and last + slope * len(win) >= CLIP_SATURATED_AT
    if last < CLIP_SATURATED_AT and not rising:
        return None
    eps = ctx.clip_epsilon
    ev = {"ppo/clip_fraction": last, "threshold": CLIP_SATURATED_AT,
          **h.at(_streak_start(pts, lambda v: v >= (CLIP_SATURATED_AT if not rising else 0.5)), "since_iteration")}
    if rising:
        ev["slope_per_iteration"] = slope
    step, fix = "", ""
    if eps:
        ev["clip_epsilon"] = eps
        step = f" For log r ~ N(0, s^2) the clip fraction is erfc(eps/(s sqrt 2)); {last:.2f} means s >> eps = {eps:g}."
        rmin, rmax = h.last("ppo/ratio_min"), h.last("ppo/ratio_max")
        if rmin and rmax:
            s_est = max(-math.log(rmin), math.log(rmax)) / Z_EXTREME
            fix = f" (from the ratio extremes: lr x{eps / 1.645 / s_est:.3g} for a ~10% clip fraction)"
    return Finding("CLIP_SATURATED", "error" if not rising else "warning", ev,
                   f"ppo/clip_fraction = {last:.3g}" + (" and rising" if rising else "") +
                   ": (almost) every sample's ratio is outside [1-eps, 1+eps], so the clipped objective passes no "
                   "gradient through them and PPO's trust region is gone." + step,
                   _upstream(found, "LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED", "PRE_UPDATE_RATIO") +
                   "Shrink the per-update step (scaled sigma or lr, fewer epochs / a target KL) until the clip "
                   "fraction "
                   f"is ~0.1-0.3{fix}; raising eps only hides it.")


def ratio_spread(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    rmin, rmax, eps = h.last("ppo/ratio_min"), h.last("ppo/ratio_max"), ctx.clip_epsilon
    if rmin is None or rmax is None or not eps:
        return "needs ppo/ratio_min, ppo/ratio_max and clip_epsilon"
    lmin, lmax = math.log(max(rmin, 1e-12)), math.log(max(rmax, 1e-12))
    dev = max(-lmin, lmax)
    if dev <= max(5 * eps, 0.25):
        return None
    clip = h.last("ppo/clip_fraction")
    # The extremes are a few samples; the clip fraction measures the bulk. When it is low the step is
    # fine (a healthy quickstart: median 0.11, max 0.23), unless a likelihood moved e^2 = 7x or more.
    if clip is not None and clip < CLIP_FINE_BELOW and dev <= max(20 * eps, 2.0):
        return None
    s_est, s_ok = dev / Z_EXTREME, eps / 1.645           # s giving a ~10 % clip fraction
    ev = {"ppo/ratio_min": rmin, "ppo/ratio_max": rmax, "log_ratio_min": lmin, "log_ratio_max": lmax,
          "clip_range_lo": 1 - eps, "clip_range_hi": 1 + eps, "max_abs_log_ratio_over_eps": dev / eps,
          "estimated_logratio_std": s_est}
    # a few extreme samples are normal; error when extreme (ratio e^2) or the bulk is clipped too
    clip = clip or 0.0
    severe = dev > max(20 * eps, 2.0) or (dev > max(10 * eps, 0.7) and clip >= 0.5)
    return Finding("RATIO_SPREAD", "error" if severe else "warning", ev,
                   f"Ratios span {rmin:.3g}..{rmax:.3g} against the clip range [{1 - eps:g}, {1 + eps:g}]: "
                   f"max|log r| = {dev:.3g} = {dev / eps:.3g} eps, a log-ratio std of about {s_est:.3g} "
                   f"(max|log r| / {Z_EXTREME:g}); some samples' likelihood changed {math.exp(dev):.3g}x in one "
                   "update.",
                   _upstream(found, "LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED", "PRE_UPDATE_RATIO") +
                   f"If it persists: for a ~10% clip fraction the std must be ~{s_ok:.3g} (eps/1.645), so the step "
                   "must shrink "
                   f"x{s_ok / s_est:.3g} (lr x{s_ok / s_est:.3g}, or sigma x{s_est / s_ok:.3g}).")


def grad_clip_saturated(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    pc, cc = h.last("gradients/policy_clipped"), h.last("gradients/critic_clipped")
    if pc is None and cc is None:
        return "gradients/policy_clipped and gradients/critic_clipped not logged"
    # A fresh critic's first update fits the returns from scratch: clipping then is expected, not a symptom.
    first_update = bool(h.rows) and h.rows[-1].get("iteration") == 0
    hit = [n for n, v in (("policy", pc), ("critic", cc))
           if v is not None and v >= GRAD_CLIPPED_AT and not (n == "critic" and first_update)]
    if not hit:
        return None
    causes = [c for c in ("LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED", "CLIP_SATURATED", "RATIO_SPREAD")
              if c in found]
    # Policy-only clipping with no upstream cause is info: with Adam a steady clip factor cancels, and
    # real healthy runs (Pendulum / Reacher, sigma ~0.1, max_grad_norm 1) clip every step at norms 3-9.
    sev = "warning" if "critic" in hit or causes else "info"
    ev = {}
    for name, mgn in (("policy", ctx.max_grad_norm), ("critic", ctx.max_grad_norm_critic or ctx.max_grad_norm)):
        norm, frac = h.last(f"gradients/{name}_norm"), h.last(f"gradients/{name}_clipped")
        if frac is not None:
            ev[f"gradients/{name}_clipped"] = frac
        if norm is not None:
            ev[f"gradients/{name}_norm"] = norm
            if mgn:
                ev[f"{name}_norm_over_max"] = norm / mgn
    mgn = {"policy": ctx.max_grad_norm, "critic": ctx.max_grad_norm_critic or ctx.max_grad_norm}
    mg = ", ".join(f"{n} max_grad_norm = {mgn[n]:g}" if mgn[n] else f"{n} max_grad_norm unknown (pass --max-grad-norm)"
                   for n in hit)
    fix = []
    if "policy" in hit:
        over = ev.get("policy_norm_over_max")
        fix.append("policy: the norm is " + (f"{over:.3g}x its clip" if over else "above its clip") +
                   "; a steady factor mostly cancels in Adam, so treat it as a sign of a steep loss (upstream "
                   "findings), not as the cause" +
                   (f"; if none fired, max_grad_norm ~{ev['gradients/policy_norm']:.3g} stops the constant clipping"
                    if "gradients/policy_norm" in ev else ""))
    if "critic" in hit:
        fix.append("critic: normalise returns (reward_scaling) and lower the critic lr x0.1 (see CRITIC_DIVERGING)")
    return Finding("GRAD_CLIP_SATURATED", sev, ev,
                   f"The {' and '.join(hit)} gradient{'s were' if len(hit) > 1 else ' was'} clipped on >= "
                   f"{GRAD_CLIPPED_AT:.0%} of steps ({mg}): each step is max_grad_norm x direction, so the logged "
                   "norm no longer measures the update and large-gradient batches are down-weighted.",
                   _upstream(found, "CLIP_SATURATED", "RATIO_SPREAD", "DIMENSION_NOT_SCALED") + "; ".join(fix) + ".")


def critic_diverging(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    norm, vl, ev_pts = h.pts("gradients/critic_norm"), h.pts("ppo/value_loss"), h.pts("ppo/explained_variance")
    if not (norm or vl or ev_pts):
        return "no critic metrics (gradients/critic_norm, ppo/value_loss, ppo/explained_variance)"
    mgn = ctx.max_grad_norm_critic or ctx.max_grad_norm
    limit = CRITIC_NORM_FACTOR * mgn if mgn else CRITIC_NORM_ABS
    ev: dict[str, float] = {}
    why = []
    if norm and norm[-1][1] > limit:
        ev.update({"gradients/critic_norm": norm[-1][1], "norm_limit": limit})
        pn = h.last("gradients/policy_norm")
        if pn:
            ev["critic_over_policy_norm"] = norm[-1][1] / pn
        why.append(f"critic gradient norm {norm[-1][1]:.4g} > {limit:g} ("
                   + (f"{CRITIC_NORM_FACTOR:g} x max_grad_norm {mgn:g}" if mgn else "max_grad_norm unknown") + ")")
    if len(norm) >= MIN_TREND_POINTS:
        early = sorted(v for _, v in norm[: len(norm) // 3])[len(norm) // 6]        # median of the first third
        if early > 0 and norm[-1][1] > 10 * early and (not mgn or norm[-1][1] > mgn):
            ev["critic_norm_growth"] = norm[-1][1] / early
            why.append(f"critic norm grew x{ev['critic_norm_growth']:.3g} (median of the first third -> last)")
    severe = bool(why)
    if len(vl) >= MIN_TREND_POINTS and min(v for _, v in vl[-3:]) > 10 * min(v for _, v in vl[:-3]) > 0 \
            and _slope(vl[-2 * MIN_TREND_POINTS:])[1] > 2.5:
        ev.update({"ppo/value_loss": vl[-1][1], "value_loss_growth": vl[-1][1] / min(v for _, v in vl[:-3])})
        why.append(f"value loss grew x{ev['value_loss_growth']:.3g} from its minimum")
    if ev_pts and h.settled() and max(v for _, v in ev_pts[-3:]) <= 0:
        ev["ppo/explained_variance"] = ev_pts[-1][1]
        why.append(f"explained variance {ev_pts[-1][1]:.3g} <= 0 (the critic predicts returns no better than "
                   "a constant)")
    if not why:
        return None
    return Finding("CRITIC_DIVERGING", "error" if severe else "warning", ev,
                   "; ".join(why) + ". Advantages then carry the critic's error into every policy step. It can be its "
                   "own cause (unnormalised returns) or follow a policy changing faster than the critic can track.",
                   (f"The critic gradient is {ev['gradients/critic_norm'] / limit:.3g}x the divergence limit. "
                    if "gradients/critic_norm" in ev else "") +
                   "Normalise returns (reward_scaling), lower the critic lr x0.1, keep the critic's gradient clip, "
                   "and keep the critic on detached features (invariant 6).")


def non_finite(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    if not h.rows:
        return "no metrics"
    bad = {k: v for k, v in h.rows[-1].items() if k in KNOWN_KEYS and not math.isfinite(v)}
    if not bad:
        return None
    ev = {f"{k}:{'nan' if math.isnan(v) else 'inf'}": 1.0 for k, v in bad.items()}   # JSON has no NaN/inf
    return Finding("NON_FINITE", "error", ev,
                   f"{', '.join(bad)} became NaN/inf: the update has diverged numerically.",
                   _upstream(found, "CRITIC_DIVERGING", "RATIO_SPREAD") + "Resume from the last finite checkpoint.")


def reward_declining(h: _Hist, ctx: RunContext, found: list[str]) -> Finding | None | str:
    key = "rollout/reward_mean" if h.pts("rollout/reward_mean") else "rollout/episode_return"
    every = h.pts(key)
    pts = every[-30:]                          # the recent trend: a run may rise, then fall
    if len(pts) < MIN_TREND_POINTS:
        return f"needs >= {MIN_TREND_POINTS} points of rollout/reward_mean or rollout/episode_return, have {len(pts)}"
    slope, t = _slope(pts)
    third = max(len(pts) // 3, 1)
    first, last = (sum(v for _, v in p) / len(p) for p in (pts[:third], pts[-third:]))
    if not (t < -2.5 and last < first):
        return None
    best_it, best = max(every, key=lambda p: p[1])
    return Finding("REWARD_DECLINING", "warning",
                   {"slope_per_iteration": slope, "t_stat": t, "points": float(len(pts)), "first_third_mean": first,
                    "last_third_mean": last, "best": best, "best_iteration": best_it},
                   f"{key} falls by {-slope:.3g} per iteration (t = {t:.3g}): {first:.4g} in the first third, "
                   f"{last:.4g} in the last.",
                   _upstream(found, *CODES[:9]) + f"Resume from the checkpoint near iteration {best_it:g} "
                   f"(reward {best:.4g}) once the cause is fixed.")


# which checks judge which algorithm's metrics (``Algorithm.health``), in causal order; SAC has no
# ratio, clip fraction or chain log-prob, so none of the PPO checks is run on it
CHECK_SETS = {"ppo": CODES[:-1], "sac": (*SAC_CODES, "NON_FINITE", "REWARD_DECLINING")}
