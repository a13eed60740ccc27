"""Findings engine shared by the online ``HealthMonitor`` and the offline ``reinflow doctor``.

``diagnose(history, ctx)`` reads one metrics dict per iteration (W&B-style ``group/name`` keys;
``.``/``_`` variants are normalised) and returns findings in causal order: a finding early in
``CODES`` can cause the ones after it (the seed run: an impossible log-prob, then D not scaled,
then clipping saturates, ratios spread, every gradient is clipped, the critic diverges, reward
falls). Every finding carries the numbers it was computed from and a computed suggestion.
Torch-free on purpose, so ``reinflow doctor`` starts instantly.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from reinflow import InvariantError
from reinflow.rl import health_checks as ppo, health_numerics, health_sac
from reinflow.rl.health_checks import CHECK_SETS
from reinflow.rl.health_sac import SAC_CODES
from reinflow.rl.health_types import (CODES, KNOWN_KEYS, LOG_SQRT_2PI, Diagnosis, Finding, RunContext,  # noqa: F401
                                      _Hist, format_finding, normalize_keys)


Check = Callable[[_Hist, RunContext, list[str]], Finding | None | str]
# Every check, by the code it reports, named here so each one's caller is found by search; PPO's in causal order.
CHECKS: dict[str, Check] = {
    "PRE_UPDATE_RATIO": ppo.pre_update_ratio,
    "FIRST_MINIBATCH_RATIO": health_numerics.first_minibatch_ratio,
    "MASK_MISMATCH": ppo.mask_mismatch,
    "LOGPROB_ABOVE_BOUND": ppo.logprob_above_bound,
    "DIMENSION_NOT_SCALED": ppo.dimension_not_scaled,
    "NOISE_COLLAPSE": ppo.noise_collapse,
    "LOGPROB_CLAMPED": ppo.logprob_clamped,
    "CLIP_SATURATED": ppo.clip_saturated,
    "RATIO_SPREAD": ppo.ratio_spread,
    "GRAD_CLIP_SATURATED": ppo.grad_clip_saturated,
    "CRITIC_DIVERGING": ppo.critic_diverging,
    "NON_FINITE": ppo.non_finite,
    "RATIO_FROZEN": health_numerics.ratio_frozen,
    "REWARD_DECLINING": ppo.reward_declining,
    "BUFFER_TOO_SMALL": health_sac.buffer_too_small,
    "Q_DIVERGING": health_sac.q_diverging,
    "ENTROPY_COLLAPSE": health_sac.entropy_collapse,
}
if tuple(CHECKS) != (*CODES[:-1], *SAC_CODES):  # a code without its check (or one twice) fails at import, not mid-run
    raise RuntimeError(f"health CHECKS {tuple(CHECKS)} do not match the codes {(*CODES[:-1], *SAC_CODES)}")


def diagnose(history: list[dict[str, Any]], ctx: RunContext, kind: str = "ppo") -> Diagnosis:
    """Run the checks of ``kind`` (``CHECK_SETS``: an algorithm's ``health``) over ``history`` (one
    metrics dict per iteration, oldest first)."""
    return _diagnose(_Hist(history), ctx, kind)


def _diagnose(h: _Hist, ctx: RunContext, kind: str = "ppo") -> Diagnosis:
    findings: list[Finding] = []
    not_judged: list[str] = []
    judged = 0
    for code in CHECK_SETS[kind]:
        out = CHECKS[code](h, ctx, [f.code for f in findings])
        if isinstance(out, str):
            not_judged.append(f"{code}: {out}")
            continue
        judged += 1
        if out is not None:
            findings.append(out)
    if judged and not any(f.severity in ("error", "warning") for f in findings):
        ev = {"iterations": float(len(h.rows))}
        for key in ("ppo/clip_fraction", "logprob/per_dimension", "rollout/reward_mean"):
            if h.last(key) is not None:
                ev[key] = h.last(key)
        findings.append(Finding("HEALTHY", "info", ev, f"{judged} checks judged, none found a problem.",
                                "Nothing to change."))
    return Diagnosis(findings, not_judged)


class HealthMonitor:
    """Online use of ``diagnose``: call ``update`` once per iteration.

    Prints each finding once, when it starts (with its numbers); returns ``health/<CODE>`` flags
    for the metrics log; on_unhealthy="stop" raises ``InvariantError`` when an error appears.
    Keeps the last ``window`` iterations, enough for every trend this module computes.
    """

    def __init__(self, ctx: RunContext, on_unhealthy: str = "warn", print_fn: Callable[[str], Any] = print,
                 window: int = 256, kind: str = "ppo"):
        if on_unhealthy not in ("warn", "stop"):
            from reinflow import ConfigError
            raise ConfigError(f"on_unhealthy={on_unhealthy!r}: allowed warn, stop")
        self.ctx, self.on_unhealthy, self.print_fn, self.kind = ctx, on_unhealthy, print_fn, kind
        self.history: deque[dict[str, float]] = deque(maxlen=window)
        self.first: dict[str, float] = {}       # code -> first iteration it fired
        self.active: dict[str, str] = {}        # code -> severity, as of the last update
        self.last: Diagnosis | None = None

    def update(self, metrics: dict[str, Any], iteration: int) -> dict[str, float]:
        row = normalize_keys(metrics)
        row["iteration"] = float(iteration)
        self.history.append(row)
        diag = _diagnose(_Hist(self.history, normalized=True), self.ctx, self.kind)
        self.last = diag
        now = {f.code: f for f in diag.findings}
        stop_on: Finding | None = None
        for f in diag.findings:
            was = self.active.get(f.code)
            if f.severity == "info" or was == f.severity or (was == "error" and f.severity == "warning"):
                continue
            if was == "warning":                # escalated (e.g. clip fraction rising -> saturated)
                self.print_fn(f"[reinflow health] iteration {iteration}: now an error: {format_finding(f)}")
            elif f.code not in self.first:
                self.first[f.code] = float(iteration)
                self.print_fn(f"[reinflow health] iteration {iteration}: {format_finding(f)}")
            else:
                self.print_fn(f"[reinflow health] iteration {iteration}: {f.code} again "
                              f"(first at iteration {self.first[f.code]:g})")
            if f.severity == "error" and stop_on is None:
                stop_on = f
        self.active = {c: f.severity for c, f in now.items() if f.severity != "info"}
        # info findings (e.g. DIMENSION_NOT_SCALED on a run that is fine anyway) are not problems: flag 0
        flags = {f"health/{c}": float(c in now and (now[c].severity != "info" or c == "HEALTHY"))
                 for c in (*CHECK_SETS[self.kind], "HEALTHY")}
        if stop_on is not None and self.on_unhealthy == "stop":
            exc = InvariantError(f"stopped at iteration {iteration} (--on-unhealthy stop): {format_finding(stop_on)}")
            exc.health_flags = flags            # so the caller can still log the iteration that stopped the run
            raise exc
        return flags

    def summary(self) -> str:
        """Which codes fired and where each started; the earliest in causal order is the lead."""
        if not self.first:
            return "reinflow health: no problems found."
        order = sorted(self.first, key=CHECK_SETS[self.kind].index)
        lines = [f"  {c}: first at iteration {self.first[c]:g}" + (" (still active)" if c in self.active else "")
                 for c in order]
        return (f"reinflow health: {len(order)} finding(s); start with {order[0]} "
                "(causal order, `reinflow doctor RUN_DIR` explains each):\n" + "\n".join(lines))


def run_context(cfg: Any, agent: Any, scale_rule: str | None = None) -> RunContext:
    """What the checks know about a run, from its config and agent."""
    pol = agent.policy
    return RunContext(chunk_size=pol.chunk_size, action_dim=pol.action_dim, padded_action_dim=pol.padded_action_dim,
                      denoise_steps=pol.denoise_steps, act_steps=agent.sampler.act_steps,
                      sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, clip_epsilon=cfg.clip_epsilon,
                      logprob_reduction=cfg.logprob_reduction, num_dims=agent.num_dims,
                      lr=cfg.lr_actor, max_grad_norm=cfg.max_grad_norm_actor,
                      max_grad_norm_critic=cfg.max_grad_norm_critic, target_kl=cfg.target_kl,
                      scale_rule=scale_rule)
