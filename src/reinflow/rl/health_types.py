"""The vocabulary of the health engine: metric names (today's and the legacy ones the doctor still
reads), thresholds, ``Finding``/``RunContext``/``Diagnosis`` and the metric history ``_Hist``.

Shared by the checks (``reinflow.rl.health_checks``) and the engine (``reinflow.rl.health``); kept
apart so the two need not import each other. Torch-free, so ``reinflow doctor`` starts instantly.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from reinflow.constants import FIRST_MINIBATCH_WARN, LOG_SQRT_2PI, PRE_UPDATE_TOL  # noqa: F401 (the checks read them here)
from reinflow.flow.scaling import ScaleReference

CODES = ("PRE_UPDATE_RATIO", "FIRST_MINIBATCH_RATIO", "MASK_MISMATCH", "LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED",
         "NOISE_COLLAPSE",
         "LOGPROB_CLAMPED", "CLIP_SATURATED", "RATIO_SPREAD", "GRAD_CLIP_SATURATED", "CRITIC_DIVERGING", "NON_FINITE",
         "RATIO_FROZEN", "REWARD_DECLINING", "HEALTHY")
SMOLVLA_MAX_ACTION_DIM = 32                    # padded-dim guess when a run does not say
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
    "ppo/clip_fraction",
    "ppo/ratio_min", "ppo/ratio_max", "ppo/pre_update_ratio_max_dev", "ppo/first_minibatch_ratio_max_dev",
    "gradients/policy_norm",
    "gradients/critic_norm", "gradients/policy_clipped", "gradients/critic_clipped", "ppo/approx_kl",
    "ppo/post_update_kl", "ppo/explained_variance", "ppo/epochs_run", "ppo/entropy",
    "ppo/policy_loss", "ppo/value_loss", "noise/sigma_mean", "noise/sigma_lo", "noise/sigma_hi",
    "rollout/reward_mean", "rollout/episode_return", "rollout/success_rate", "eval/success_rate",
    "time/env_steps_per_s", "iteration", "env_steps")
# what an off-policy run (--algorithm dsrl) logs for its checks (``reinflow.rl.health_sac``); matched
# exactly, never by their leaf (``entropy`` stays ppo/entropy for foreign runs' key variants)
SAC_KEYS = ("sac/q_loss", "sac/q_mean", "sac/q_target_mean", "sac/actor_loss", "sac/alpha", "sac/entropy",
            "sac/entropy_per_dim", "sac/entropy_target_per_dim", "sac/buffer_size", "sac/buffer_capacity",
            "sac/batch_size", "sac/updates", "sac/reward_abs_max", "sac/gamma")
KNOWN_KEYS = KNOWN_KEYS + SAC_KEYS

# The names of reinflow <= 0.1 (``training/*``, ``train/*``, ``losses/*``, ``reward/*``, ``faults/*``):
# the doctor reads old run folders and W&B exports (the seed run's) under today's names.
LEGACY_KEYS = {
    "training/clip_fraction": "ppo/clip_fraction", "training/approx_kl": "ppo/approx_kl",
    "training/post_update_kl": "ppo/post_update_kl", "training/post_update_clip_fraction": "ppo/post_update_clip_fraction",
    "training/entropy": "ppo/entropy", "training/epochs_run": "ppo/epochs_run", "training/kl_early_stop": "ppo/kl_early_stop",
    "training/advantage_mean": "ppo/advantage_mean", "training/advantage_std": "ppo/advantage_std",
    "training/explained_variance": "ppo/explained_variance", "training/actor_updated": "ppo/actor_updated",
    "losses/policy_loss": "ppo/policy_loss", "losses/value_loss": "ppo/value_loss",
    "train/success_rate": "rollout/success_rate", "train/episodes": "rollout/episodes",
    "train/success_gap": "rollout/success_gap", "reward/batch_avg": "rollout/reward_mean",
    "reward/episode_return": "rollout/episode_return", "faults/episodes_dropped": "rollout/episodes_dropped",
}


def _canon(key: str) -> str:
    return re.sub(r"[/._\-\s]+", "_", key.strip().lower()).strip("_")


_EXACT = {_canon(k): k for k in KNOWN_KEYS}
_EXACT.update({_canon(old): new for old, new in LEGACY_KEYS.items()})
_LEAVES: dict[str, list[str]] = {}
for _k in (k for k in KNOWN_KEYS if k not in SAC_KEYS):
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
