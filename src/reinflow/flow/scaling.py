"""Dimension-aware scaling of the noise bounds / learning rate (docs/design.md §4).

The model. One ratio term's log-prob sums (or averages) ``D`` Gaussian entries. With the sample
fixed and every mean moved by a per-dimension step d (Adam makes d ~ lr, independent of D):

    Var(log pi_new - log pi_old) ~= ||delta||^2 / sigma^2 = D d^2 / sigma^2     (sum)
    KL(old || new)                = ||delta||^2 / (2 sigma^2)  ~= Var / 2
    mean reduction: the log-ratio is divided by D, so its std is d / (sigma sqrt(D)).

So the std ``s`` of the log-ratio scales like sqrt(D_eff) * lr / sigma with D_eff = D (sum,
per_step with D = K*A per term) or 1/D (mean). Keeping ``s`` at its reference value needs EITHER
sigma * sqrt(D/D_ref) ("sigma" rule) OR lr * sqrt(D_ref/D) ("lr" rule). Either one already keeps
the KL at the reference value, so target KL and clip epsilon stay; scaling two of them counts the
same effect twice. (Scaling target KL by D/D_ref is only right when BOTH sigma and lr stay, and
then it merely stops the KL early-stop from firing while the ratio spread still grows.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from reinflow import ConfigError
from reinflow.constants import REDUCTIONS

Reduction = Literal["sum", "mean", "per_step"]
Rule = Literal["sigma", "lr", "none"]
RULES = ("sigma", "lr", "none")


@dataclass
class ScaleReference:
    """Hyperparameters known to train healthily at a reference dimension (defaults: ReinFlow's
    manipulation regime, 4-step chunks x 7 joints, summed log-probs)."""

    dim: int = 28                  # D_ref: Gaussian entries in one reference ratio term
    sigma_min: float = 0.08        # lower noise bound that worked at D_ref
    sigma_max: float = 0.16        # upper noise bound that worked at D_ref
    lr: float = 1e-5               # actor learning rate that worked at D_ref
    target_kl: float = 0.01        # KL early-stop target at D_ref (on the ratio's own scale)
    clip_epsilon: float = 0.05     # PPO clip at D_ref
    reduction: Reduction = "sum"   # how the reference log-prob was reduced

    def __post_init__(self) -> None:
        checks = [
            ("dim", isinstance(self.dim, int) and self.dim >= 1, "integer >= 1"),
            ("sigma_min", 0.0 < self.sigma_min, "(0, sigma_max]"),
            ("sigma_max", self.sigma_max >= self.sigma_min, "[sigma_min, inf)"),
            ("lr", 0.0 < self.lr <= 1.0, "(0, 1]"),
            ("target_kl", 0.0 < self.target_kl, "(0, inf)"),
            ("clip_epsilon", 0.0 < self.clip_epsilon < 1.0, "(0, 1)"),
            ("reduction", self.reduction in REDUCTIONS, "one of " + ", ".join(REDUCTIONS)),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"ScaleReference.{name}={getattr(self, name)!r}: allowed range {allowed}")


@dataclass
class ScaleResult:
    """Rescaled hyperparameters. ``values``/``reasons`` keys: sigma_min, sigma_max, lr, target_kl,
    clip_epsilon. ``ratio_spread_*``: predicted std of the PPO log-ratio term for an update that
    reaches the reference KL target, sqrt(2 target_kl_ref), at the reference and at the new D."""

    values: dict[str, float]
    reasons: dict[str, str]
    ratio_spread_ref: float
    ratio_spread_new: float
    num_dims: int
    ref: ScaleReference
    reduction: str
    rule: str
    notes: list[str] = field(default_factory=list)

    @property
    def clip_fraction_ref(self) -> float:
        return predicted_clip_fraction(self.ratio_spread_ref, self.ref.clip_epsilon)

    @property
    def clip_fraction_new(self) -> float:
        return predicted_clip_fraction(self.ratio_spread_new, self.values["clip_epsilon"])


def ratio_term_dims(act_steps: int, action_dim: int, denoise_steps: int, reduction: str) -> int:
    """Gaussian entries in ONE ratio term: K*act_steps*A for sum/mean, K*A for per_step."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction={reduction!r}: allowed {', '.join(REDUCTIONS)}")
    for name, v in (("act_steps", act_steps), ("action_dim", action_dim), ("denoise_steps", denoise_steps)):
        if int(v) < 1:
            raise ConfigError(f"{name}={v}: allowed range [1, inf)")
    steps = 1 if reduction == "per_step" else act_steps
    return int(denoise_steps) * int(steps) * int(action_dim)


def effective_dims(reduction: str, num_dims: int) -> float:
    """D_eff with std(log-ratio term) = sqrt(D_eff) * d / sigma (d = per-dim mean step)."""
    return 1.0 / num_dims if reduction == "mean" else float(num_dims)


def predicted_clip_fraction(spread: float, clip_epsilon: float) -> float:
    """P(|log r| > eps) for log r ~ N(0, spread^2): the clip fraction a Gaussian spread predicts."""
    if spread <= 0:
        return 0.0
    return math.erfc(clip_epsilon / (spread * math.sqrt(2.0)))


def scale_for_dimension(ref: ScaleReference, num_dims: int, reduction: str = "sum",
                        rule: str = "sigma") -> ScaleResult:
    """Rescale ``ref`` to ``num_dims`` entries per ratio term (see ``ratio_term_dims``).

    sum / per_step: the chosen rule restores the reference log-ratio spread; it never loosens
    (sigma is not shrunk, lr is not raised when D < D_ref: a smaller spread is not a failure).
    mean: the spread shrinks like 1/sqrt(D); sigma and lr stay and epsilon / target KL are
    re-expressed on that smaller scale, whatever the rule.
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction={reduction!r}: allowed {', '.join(REDUCTIONS)}")
    if rule not in RULES:
        raise ConfigError(f"rule={rule!r}: allowed {', '.join(RULES)}")
    if int(num_dims) < 1:
        raise ConfigError(f"num_dims={num_dims}: allowed range [1, inf)")
    num_dims = int(num_dims)
    d_ref, d_new = effective_dims(ref.reduction, ref.dim), effective_dims(reduction, num_dims)
    growth = math.sqrt(d_new / d_ref)          # spread multiplier with nothing rescaled
    s_ref = math.sqrt(2.0 * ref.target_kl)
    v = {"sigma_min": ref.sigma_min, "sigma_max": ref.sigma_max, "lr": ref.lr,
         "target_kl": ref.target_kl, "clip_epsilon": ref.clip_epsilon}
    same = "unchanged: "
    r = {k: same + "the rule leaves it at the reference value" for k in v}
    notes = [f"D = {num_dims} entries per ratio term ({reduction}), D_ref = {ref.dim} ({ref.reduction}); "
             f"unscaled log-ratio spread grows x{growth:.4g}"]
    if reduction == "per_step":
        notes.append("per_step: each executed chunk step is its own ratio term of K*A entries, so D is per term")
    sig_k, lr_k = 1.0, 1.0
    if reduction == "mean":
        # The ratio is a geometric mean of per-dim ratios: nothing blows up with D. Shrinking sigma
        # or lr to match would only cut exploration / learning speed; instead read eps on that scale.
        v["clip_epsilon"] = ref.clip_epsilon * growth
        v["target_kl"] = ref.target_kl * growth ** 2
        r["clip_epsilon"] = (f"x{growth:.4g}: the mean log-ratio's std scales like sqrt(D_eff) = d/(sigma*sqrt(D)), "
                             "so eps is re-expressed on that scale to keep the same clip fraction")
        r["target_kl"] = f"x{growth ** 2:.4g}: KL of the averaged log-ratio ~ spread^2/2 scales with the spread squared"
        for k in ("sigma_min", "sigma_max", "lr"):
            r[k] = "unchanged: with averaged log-probs the ratio spread shrinks with D, nothing explodes"
        notes.append(f"rule {rule!r} not applied: it exists for summed log-probs")
        notes.append("the averaged log-ratio's mean, -d^2/(2 sigma^2), does not shrink with D: at large D this "
                     "second-order drift can exceed the spread")
    elif rule != "none" and growth <= 1.0:
        # Spread already at or below the reference: "restoring" it would shrink sigma (less
        # exploration) or raise lr (less stable). A smaller spread is not a failure.
        r = {k: f"unchanged: the log-ratio spread is x{growth:.4g} of the reference, not above it; "
                "rescaling would only loosen the update" for k in v}
    elif rule == "sigma":
        sig_k = growth
        v["sigma_min"], v["sigma_max"] = ref.sigma_min * sig_k, ref.sigma_max * sig_k
        r["sigma_min"] = r["sigma_max"] = (f"x sqrt(D/D_ref) = x{growth:.4g}: spread = sqrt(D)*d/sigma stays at "
                                           "its reference value")
        r["lr"] = "unchanged: sigma-scaling already restores the spread (lr-scaling is the alternative, never both)"
        r["target_kl"] = "unchanged: KL = D*d^2/(2 sigma^2) is constant once sigma ~ sqrt(D)"
        r["clip_epsilon"] = "unchanged: the log-ratio spread it is compared with is constant"
    elif rule == "lr":
        lr_k = 1.0 / growth
        v["lr"] = ref.lr * lr_k
        r["lr"] = f"x sqrt(D_ref/D) = x{lr_k:.4g}: with Adam ||delta|| ~ lr*sqrt(D), so the spread stays"
        r["sigma_min"] = r["sigma_max"] = ("unchanged: lr-scaling already restores the spread "
                                           "(sigma-scaling is the alternative, never both)")
        r["target_kl"] = ("unchanged: ||delta|| is held at its reference size, so KL = ||delta||^2/(2 sigma^2) is too "
                          "(x D/D_ref only if lr AND sigma stayed)")
        r["clip_epsilon"] = "unchanged: the log-ratio spread it is compared with is constant"
    else:
        r = {k: f"unchanged (rule none): log-ratio spread grows x{growth:.4g}, KL x{growth ** 2:.4g}" for k in v}
        if growth > 1.5:
            notes.append(f"a target KL from D_ref is reached {growth ** 2:.3g}x sooner; scaling it x{growth ** 2:.3g} "
                         "only hides the growing spread — prefer rule sigma or lr")
    s_new = s_ref * growth / sig_k * lr_k
    notes.append("sigma- and lr-scaling are alternatives: applying both shrinks the spread twice")
    return ScaleResult(values=v, reasons=r, ratio_spread_ref=s_ref, ratio_spread_new=s_new, num_dims=num_dims,
                       ref=ref, reduction=reduction, rule=rule, notes=notes)


def format_scale_table(result: ScaleResult) -> str:
    """Plain-text table: parameter, reference value, rescaled value, one-line reason."""
    ref = result.ref
    lines = [f"reinflow scale: rule {result.rule}, reduction {result.reduction}",
             *("  " + n for n in result.notes),
             f"{'parameter':<13} {'reference':>10} {'rescaled':>10}  reason"]
    for k, new in result.values.items():
        lines.append(f"{k:<13} {getattr(ref, k):>10.4g} {new:>10.4g}  {result.reasons[k]}")
    lines.append(f"predicted log-ratio std at the reference KL step: {result.ratio_spread_ref:.4g} (D_ref) -> "
                 f"{result.ratio_spread_new:.4g} (D); clip fraction {result.clip_fraction_ref:.2f} -> "
                 f"{result.clip_fraction_new:.2f}")
    return "\n".join(lines)


@dataclass
class ScaleArgs:
    """Rescale reference PPO/noise hyperparameters to a chunk policy's dimension."""

    chunk_size: int = 50           # H: actions per chunk
    action_dim: int = 6            # A: real (unpadded) action dims
    denoise_steps: int = 1         # K: Euler steps in the chain
    act_steps: int | None = None   # executed steps per chunk (default: chunk_size)
    reduction: Reduction = "sum"   # how the log-prob entries are reduced into the ratio
    rule: Rule = "sigma"           # sigma: sigma ~ sqrt(D); lr: lr ~ 1/sqrt(D); none
    ref_dim: int = 28
    ref_sigma_min: float = 0.08
    ref_sigma_max: float = 0.16
    ref_lr: float = 1e-5
    ref_target_kl: float = 0.01
    ref_clip_epsilon: float = 0.05
    ref_reduction: Reduction = "sum"
