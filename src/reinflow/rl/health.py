"""Findings engine shared by the online ``HealthMonitor`` and the offline ``reinflow doctor``.

``diagnose(history, ctx)`` reads one metrics dict per iteration (W&B-style ``group/name`` keys;
``.``/``_`` variants are normalised) and returns findings in causal order: a finding early in
``CODES`` can cause the ones after it (the seed run: an impossible log-prob, then D not scaled,
then clipping saturates, ratios spread, every gradient is clipped, the critic diverges, reward
falls). Every finding carries the numbers it was computed from and a computed suggestion.
Torch-free on purpose, so ``reinflow doctor`` starts instantly.
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from reinflow import InvariantError
from reinflow.flow.scaling import ScaleReference

CODES = ("PRE_UPDATE_RATIO", "MASK_MISMATCH", "LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED", "NOISE_COLLAPSE",
         "LOGPROB_CLAMPED", "CLIP_SATURATED", "RATIO_SPREAD", "GRAD_CLIP_SATURATED", "CRITIC_DIVERGING", "NON_FINITE",
         "REWARD_DECLINING", "HEALTHY")
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)   # same ceiling as flow.chain.per_dim_bound (tested equal)
SMOLVLA_MAX_ACTION_DIM = 32                    # padded-dim guess when a run does not say
PRE_UPDATE_TOL = 1e-5                          # invariant 1: max |ratio - 1| before the first step
CLIP_SATURATED_AT = 0.9
CLIP_FINE_BELOW = 0.3                          # a measured clip fraction under this: the step size is fine
GRAD_CLIPPED_AT = 0.9                          # fraction of optimizer steps whose gradient was clipped
CRITIC_NORM_FACTOR = 100.0                     # critic norm this many x its max-grad-norm = exploding
CRITIC_NORM_ABS = 1000.0                       # ... when the max-grad-norm is unknown (100 x a typical 10)
WARMUP_ITERS = 10                              # explained variance <= 0 is normal before this
MIN_TREND_POINTS = 6
Z_EXTREME = 3.0                                # |log r| extreme ~ 3 std for a batch of ~10^2..10^3 samples

KNOWN_KEYS = (
    "logprob/new_mean", "logprob/old_mean", "logprob/per_dimension", "logprob/per_dimension_new",
    "logprob/per_dimension_max", "logprob/per_dimension_bound", "logprob/num_dims", "logprob/clamped_fraction",
    "training/clip_fraction",
    "ppo/ratio_min", "ppo/ratio_max", "ppo/pre_update_ratio_max_dev", "gradients/policy_norm",
    "gradients/critic_norm", "gradients/policy_clipped", "gradients/critic_clipped", "training/approx_kl",
    "training/post_update_kl", "training/explained_variance", "training/epochs_run", "training/entropy",
    "losses/policy_loss", "losses/value_loss", "noise/sigma_mean", "noise/sigma_lo", "noise/sigma_hi",
    "reward/batch_avg", "reward/episode_return", "train/success_rate", "eval/success_rate",
    "time/env_steps_per_s", "iteration", "env_steps")


def _canon(key: str) -> str:
    return re.sub(r"[/._\-\s]+", "_", key.strip().lower()).strip("_")


_EXACT = {_canon(k): k for k in KNOWN_KEYS}
_LEAVES: dict[str, list[str]] = {}
for _k in KNOWN_KEYS:
    _LEAVES.setdefault(_canon(_k.split("/")[-1]), []).append(_k)


def normalize_keys(metrics: dict[str, Any]) -> dict[str, float]:
    """Map key variants (``logprob.new_mean``, ``logprob_new_mean``, ``clip_fraction``) onto the
    engine's names; keep unknown numeric keys as they are; drop non-numeric values. ``_step``
    becomes ``iteration`` when there is none."""
    out: dict[str, float] = {}
    fuzzy: dict[str, float] = {}
    for key, val in metrics.items():
        if isinstance(val, bool):
            val = float(val)
        if not isinstance(val, (int, float)):
            continue
        if isinstance(val, int) and abs(val) >= 2**1024:  # beyond float (JSON allows any integer): reads as inf
            val = math.inf if val > 0 else -math.inf
        c = _canon(str(key))
        if c in _EXACT:
            out[_EXACT[c]] = float(val)
            continue
        # longest known leaf the key ends with, if it names exactly one metric
        leaves = [lf for lf in _LEAVES if c == lf or c.endswith("_" + lf)]
        best = max(leaves, key=len) if leaves else None
        if best is not None and len(_LEAVES[best]) == 1:
            fuzzy[_LEAVES[best][0]] = float(val)
        else:
            out[str(key)] = float(val)
    for k, v in fuzzy.items():
        out.setdefault(k, v)                    # an exact key always wins over a guessed one
    if "iteration" not in out and "_step" in out:
        out["iteration"] = out["_step"]
    return out


@dataclass
class Finding:
    """One diagnosis: ``evidence`` holds the computed numbers it rests on."""

    code: str
    severity: str                               # "error" | "warning" | "info"
    evidence: dict[str, float]
    explanation: str
    suggestion: str

    def as_dict(self) -> dict[str, Any]:
        ev = {k: (v if math.isfinite(v) else None) for k, v in self.evidence.items()}   # strict JSON
        return {"code": self.code, "severity": self.severity, "evidence": ev,
                "explanation": self.explanation, "suggestion": self.suggestion}


@dataclass
class RunContext:
    """What is known about the run; every field may be None (unknown)."""

    chunk_size: int | None = None               # H
    action_dim: int | None = None               # A, real action dims
    padded_action_dim: int | None = None        # P >= A the policy pads to (SmolVLA: 32)
    denoise_steps: int | None = None            # K
    act_steps: int | None = None                # executed steps per chunk (None: chunk_size)
    sigma_min: float | None = None
    sigma_max: float | None = None
    clip_epsilon: float | None = None
    logprob_reduction: str | None = None        # sum | mean | per_step
    num_dims: int | None = None                 # D: Gaussian entries summed in the log-prob
    lr: float | None = None                     # actor lr
    max_grad_norm: float | None = None          # actor clip (also critic's when that is unknown)
    max_grad_norm_critic: float | None = None
    target_kl: float | None = None
    scale_rule: str | None = None               # "sigma"/"lr" when the run was auto-scaled
    ref: ScaleReference = field(default_factory=ScaleReference)

    def total_dims(self) -> int | None:
        """D = K * executed steps * A, or the given ``num_dims``."""
        if self.num_dims:
            return int(self.num_dims)
        steps = self.act_steps or self.chunk_size
        if self.action_dim and steps and self.denoise_steps:
            return int(self.denoise_steps * steps * self.action_dim)
        return None


@dataclass
class Diagnosis:
    findings: list[Finding]                     # causal order (CODES)
    not_judged: list[str]                       # "CODE: why it could not be judged"

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]


def _fmt(x: float) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def format_finding(f: Finding) -> str:
    """Plain block: what was seen (numbers), why (formula), what to change (computed)."""
    seen = ", ".join(f"{k} = {_fmt(v)}" for k, v in f.evidence.items())
    return f"{f.code} ({f.severity})\n  seen:   {seen}\n  why:    {f.explanation}\n  change: {f.suggestion}"


class _Hist:
    """Numeric series of one run: ``pts(key)`` -> [(iteration, value)] in order."""

    def __init__(self, history: list[dict[str, Any]], normalized: bool = False):
        self.rows = list(history) if normalized else [normalize_keys(h) for h in history]
        self._cache: dict[tuple[str, bool], list[tuple[float, float]]] = {}

    def pts(self, key: str, finite: bool = True) -> list[tuple[float, float]]:
        if (key, finite) not in self._cache:
            self._cache[key, finite] = [
                (r.get("iteration", float(i)), v) for i, r in enumerate(self.rows)
                if (v := r.get(key)) is not None and not math.isnan(v) and (not finite or math.isfinite(v))]
        return self._cache[key, finite]

    def at(self, it: float, name: str = "iteration") -> dict[str, float]:
        """``{name: it}`` when the run logs iterations (a bare summary has none to name)."""
        return {name: it} if any("iteration" in r for r in self.rows) else {}

    def last(self, key: str) -> float | None:
        p = self.pts(key)
        return p[-1][1] if p else None

    def settled(self) -> bool:
        """Past warm-up: a summary (no iteration) or iteration >= WARMUP_ITERS."""
        it = self.rows[-1].get("iteration") if self.rows else None
        return it is None or it >= WARMUP_ITERS or len(self.rows) >= WARMUP_ITERS


def _streak_start(pts: list[tuple[float, float]], cond: Callable[[float], bool]) -> float:
    """Iteration at which the trailing run of points satisfying ``cond`` began."""
    start = pts[-1][0]
    for it, v in reversed(pts):
        if not cond(v):
            break
        start = it
    return start


def _slope(pts: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope per iteration and its t statistic."""
    n = len(pts)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, 0.0
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    res = sum((y - my - b * (x - mx)) ** 2 for x, y in zip(xs, ys))
    se = math.sqrt(res / max(n - 2, 1) / sxx)
    return b, (b / se if se > 0 else math.copysign(1e9, b) if b else 0.0)   # exact line: "very significant"


def diagnose(history: list[dict[str, Any]], ctx: RunContext) -> Diagnosis:
    """Run every check over ``history`` (one metrics dict per iteration, oldest first)."""
    return _diagnose(_Hist(history), ctx)


def _diagnose(h: _Hist, ctx: RunContext) -> Diagnosis:
    from reinflow.rl.health_checks import CHECKS as checks   # the checks import this module's types
    findings: list[Finding] = []
    not_judged: list[str] = []
    judged = 0
    for code in CODES[:-1]:
        out = checks[code](h, ctx, [f.code for f in findings])
        if isinstance(out, str):
            not_judged.append(f"{code}: {out}")
            continue
        judged += 1
        if out is not None:
            findings.append(out)
    if judged and not any(f.severity in ("error", "warning") for f in findings):
        ev = {"iterations": float(len(h.rows))}
        for key in ("training/clip_fraction", "logprob/per_dimension", "reward/batch_avg"):
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
                 window: int = 256):
        if on_unhealthy not in ("warn", "stop"):
            from reinflow import ConfigError
            raise ConfigError(f"on_unhealthy={on_unhealthy!r}: allowed warn, stop")
        self.ctx, self.on_unhealthy, self.print_fn = ctx, on_unhealthy, print_fn
        self.history: deque[dict[str, float]] = deque(maxlen=window)
        self.first: dict[str, float] = {}       # code -> first iteration it fired
        self.active: dict[str, str] = {}        # code -> severity, as of the last update
        self.last: Diagnosis | None = None

    def update(self, metrics: dict[str, Any], iteration: int) -> dict[str, float]:
        row = normalize_keys(metrics)
        row["iteration"] = float(iteration)
        self.history.append(row)
        diag = _diagnose(_Hist(self.history, normalized=True), self.ctx)
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
        flags = {f"health/{c}": float(c in now and (now[c].severity != "info" or c == "HEALTHY")) for c in CODES}
        if stop_on is not None and self.on_unhealthy == "stop":
            exc = InvariantError(f"stopped at iteration {iteration} (--on-unhealthy stop): {format_finding(stop_on)}")
            exc.health_flags = flags            # so the caller can still log the iteration that stopped the run
            raise exc
        return flags

    def summary(self) -> str:
        """Which codes fired and where each started; the earliest in causal order is the lead."""
        if not self.first:
            return "reinflow health: no problems found."
        order = sorted(self.first, key=CODES.index)
        lines = [f"  {c}: first at iteration {self.first[c]:g}" + (" (still active)" if c in self.active else "")
                 for c in order]
        return (f"reinflow health: {len(order)} finding(s); start with {order[0]} "
                "(causal order, `reinflow doctor RUN_DIR` explains each):\n" + "\n".join(lines))
