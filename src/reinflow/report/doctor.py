"""``reinflow doctor PATH [--json]``: explain what went wrong in a run, with numbers.

PATH may be a reinflow run folder (metrics.jsonl + config.json), a W&B run folder
(files/wandb-summary.json + files/config.yaml, files/wandb-history.jsonl when present), or a bare
summary .json / history .jsonl file plus flags for what it lacks. Flags override the config.
The findings come from ``reinflow.rl.health.diagnose`` (the same engine the trainer runs live).
Exit code 0 whatever is found; 2 with one line on stderr when the input cannot be read.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from reinflow import ConfigError, ReinflowError
from reinflow.rl.health import KNOWN_KEYS, Diagnosis, RunContext, format_finding, normalize_keys
from reinflow.untrusted import CONFIG_MAX_BYTES, METRICS_MAX_BYTES, parse_json, parse_yaml, read_text

# RunContext field -> config keys that mean it (reinflow, W&B seed run, ReinFlow reference, LeRobot).
ALIASES: dict[str, tuple[str, ...]] = {
    "chunk_size": ("chunk_size", "horizon_steps", "action_horizon"),
    "act_steps": ("act_steps", "n_action_steps", "act_horizon"),
    "action_dim": ("action_dim", "act_dim"),
    "padded_action_dim": ("padded_action_dim", "max_action_dim"),
    "denoise_steps": ("denoise_steps", "num_denoising_steps", "denoising_steps", "ft_denoising_steps"),
    "sigma_min": ("sigma_min", "min_logprob_denoising_std", "noise_std_min"),
    "sigma_max": ("sigma_max", "max_logprob_denoising_std", "noise_std_max"),
    "clip_epsilon": ("clip_epsilon", "clip_ploss_coef", "clip_range", "clip_coef"),
    "logprob_reduction": ("logprob_reduction",),
    "num_dims": ("num_dims",),
    "lr": ("lr_actor", "actor_lr", "lr", "learning_rate"),
    "max_grad_norm": ("max_grad_norm_actor", "max_grad_norm"),
    "max_grad_norm_critic": ("max_grad_norm_critic",),
    "target_kl": ("target_kl",),
}
INT_FIELDS = {"chunk_size", "act_steps", "action_dim", "padded_action_dim", "denoise_steps", "num_dims"}
EXPECTED = ("expected a reinflow run folder (metrics.jsonl + config.json), a W&B run folder "
            "(files/wandb-summary.json + files/config.yaml) or a summary .json / history .jsonl file")


@dataclass
class DoctorArgs:
    """Explain a run's metrics: what was seen, why, what to change."""

    # run folder, W&B run folder, or summary .json / history .jsonl
    path: Annotated[str, tyro.conf.arg(metavar="PATH")]
    json: bool = False                       # machine-readable output
    chunk_size: int | None = None            # H, actions per chunk
    act_steps: int | None = None             # executed steps per chunk (default: chunk size)
    action_dim: int | None = None            # A, real action dims
    padded_action_dim: int | None = None     # dims the policy pads actions to (SmolVLA: 32)
    denoise_steps: int | None = None         # K, Euler steps of the chain
    sigma_min: float | None = None           # lower noise bound
    sigma_max: float | None = None           # upper noise bound
    clip_epsilon: float | None = None        # PPO clip range
    reduction: Literal["sum", "mean", "per_step"] | None = None   # how log-probs enter the ratio
    lr: float | None = None                  # actor learning rate
    max_grad_norm: float | None = None       # actor gradient clip (critic's too unless given)
    max_grad_norm_critic: float | None = None  # critic gradient clip


def _read_text(path: Path, max_bytes: int = CONFIG_MAX_BYTES) -> str:
    """A regular file of bounded size (a FIFO would block, /dev/zero never ends): untrusted.read_text."""
    return read_text(path, max_bytes)


def _read_json(path: Path) -> Any:
    """One JSON document, depth and integer size bounded (untrusted.parse_json)."""
    return parse_json(_read_text(path), str(path))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line. A final partial line (a run killed mid-write) is skipped."""
    text = _read_text(path, METRICS_MAX_BYTES)
    rows, lines = [], text.split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = parse_json(line, f"line {n}")
        except ConfigError as e:
            if n == len(lines) and not text.endswith("\n") and rows:
                print(f"reinflow doctor: {path}: skipped a partial last line", file=sys.stderr)
                continue
            raise ReinflowError(f"{path}: line {n} is not valid JSON ({str(e).partition(': ')[2]}); expected one "
                                "JSON object per line") from None
        if not isinstance(row, dict):
            raise ReinflowError(f"{path}: line {n} is {type(row).__name__}; expected a JSON object per line")
        rows.append(_checked_row(row, path, n))
    if not rows:
        raise ReinflowError(f"{path}: no metrics records; expected one JSON object per line")
    return rows


# metrics the checks take a log, a square root or an integer of: a value outside these ranges is not a
# measurement but a damaged or crafted file (`logprob/num_dims: -7` once ended in a math domain error)
VALUE_RULES: dict[str, tuple[Any, str]] = {
    "logprob/num_dims": (lambda v: math.isfinite(v) and v == int(v) and 1 <= v <= 2**40, "a whole number in [1, 2**40]"),
    "noise/sigma_lo": (lambda v: not v <= 0, "> 0"),
    "noise/sigma_hi": (lambda v: not v <= 0, "> 0"),
    "ppo/ratio_min": (lambda v: not v < 0, ">= 0"),
    "ppo/ratio_max": (lambda v: not v < 0, ">= 0"),
}


def _checked_row(row: dict[str, Any], path: Path, n: int | None) -> dict[str, Any]:
    for key, (ok, allowed) in VALUE_RULES.items():
        val = row.get(key)
        if isinstance(val, (int, float)) and not isinstance(val, bool) and not ok(val):
            where = f"line {n}: " if n is not None else ""
            raise ReinflowError(f"{path}: {where}{key}={val!r}; a measured value is {allowed}")
    return row


def _read_yaml(path: Path) -> Any:
    try:
        return parse_yaml(_read_text(path), str(path))
    except ConfigError as e:
        raise ReinflowError(f"{e}; expected W&B's `key: {{value: ...}}` layout") from None


def _flatten(obj: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, leaf value) pairs; W&B's ``{desc, value}`` wrappers are unwrapped."""
    if isinstance(obj, dict):
        if "value" in obj and set(obj) <= {"value", "desc"}:
            return _flatten(obj["value"], path)
        return [p for k, v in obj.items() for p in _flatten(v, path + (str(k),))]
    return [(path, obj)]


def context_from_config(config: Any, source: str) -> RunContext:
    """RunContext from a reinflow config.json or a W&B config; unknown fields stay None."""
    if config is None:
        return RunContext()
    if not isinstance(config, dict):
        raise ReinflowError(f"{source}: top level is {type(config).__name__}; expected a mapping of config keys")
    pairs = _flatten(config)
    # derived values (the real chunk/action sizes) beat the train config's requests (None = policy default)
    pairs.sort(key=lambda p: 0 if p[0][:1] == ("derived",) else 1)
    kw: dict[str, Any] = {}
    for name, keys in ALIASES.items():
        for path, val in pairs:
            if path and path[-1] in keys and val is not None and not (path[:1] == ("derived",) and len(path) > 2):
                kw[name] = _number(val, name, path[-1], source) if name != "logprob_reduction" else str(val)
                break
    rule = next((v for p, v in pairs if p == ("derived", "auto_scale", "rule")), None)
    if rule:
        kw["scale_rule"] = str(rule)
    return RunContext(**kw)


def _number(val: Any, name: str, key: str, source: str) -> float | int:
    shown = repr(val) if len(repr(val)) <= 60 else repr(val)[:57] + "..."
    if isinstance(val, bool) or not isinstance(val, (int, float, str)):
        raise ReinflowError(f"{source}: field {key!r} = {shown}; expected a number")
    try:
        x = float(val)
    except (ValueError, OverflowError):
        raise ReinflowError(f"{source}: field {key!r} = {shown}; expected a number") from None
    if not math.isfinite(x) or x <= 0:
        raise ReinflowError(f"{source}: field {key!r} = {shown}; expected a positive number")
    if name in INT_FIELDS:
        if x != int(x) or x > 2**40:
            raise ReinflowError(f"{source}: field {key!r} = {shown}; expected a whole number in [1, 2**40]")
        return int(x)
    return x


def load_run(path: Path) -> tuple[list[dict[str, Any]], RunContext, str]:
    """(history, context, description of what was read). Raises ReinflowError on bad input."""
    if not path.exists():
        raise ReinflowError(f"{path}: no such file or folder; {EXPECTED}")
    if path.is_dir():
        if (path / "metrics.jsonl").is_file():
            cfg = path / "config.json"
            ctx = context_from_config(_read_json(cfg), str(cfg)) if cfg.is_file() else RunContext()
            hist = _read_jsonl(path / "metrics.jsonl")
            what = f"reinflow run folder, {len(hist)} iterations" + ("" if cfg.is_file() else ", no config.json")
            return hist, ctx, what
        files = path / "files" if (path / "files").is_dir() else path
        summary = files / "wandb-summary.json"
        if summary.is_file():
            yml = files / "config.yaml"
            ctx = context_from_config(_read_yaml(yml), str(yml)) if yml.is_file() else RunContext()
            hist_file = files / "wandb-history.jsonl"
            if hist_file.is_file():
                hist = _read_jsonl(hist_file)
                return hist, ctx, f"W&B run folder, {len(hist)} history records"
            return [_summary(summary)], ctx, "W&B run folder, summary only (no wandb-history.jsonl: trends not judged)"
        raise ReinflowError(f"{path}: folder has neither metrics.jsonl nor files/wandb-summary.json; {EXPECTED}")
    if path.suffix == ".jsonl":
        hist = _read_jsonl(path)
        return hist, RunContext(), f"history file, {len(hist)} records"
    return [_summary(path)], RunContext(), "summary file"


def check_is_run(hist: list[dict[str, Any]], path: Path) -> None:
    """A file can be valid JSON and still not be a run: nothing would be judged, and "HEALTHY"
    about it would be a lie. At least one training metric the doctor knows must be present."""
    known = set(KNOWN_KEYS) - {"iteration", "env_steps"}
    if not any(k in known for row in hist for k in normalize_keys(row)):
        raise ReinflowError(f"{path}: holds none of the training metrics the doctor reads (e.g. "
                            "ppo/clip_fraction, logprob/new_mean, ppo/ratio_max, rollout/reward_mean): not a run "
                            f"it can judge; {EXPECTED}")


def _summary(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ReinflowError(f"{path}: top level is {type(data).__name__}; expected a JSON object of metric: value")
    return _checked_row(data, path, None)


def _apply_flags(ctx: RunContext, a: DoctorArgs) -> RunContext:
    for f in fields(DoctorArgs):
        name = "logprob_reduction" if f.name == "reduction" else f.name
        val = getattr(a, f.name)
        if val is not None and name not in ("path", "json"):
            if name != "logprob_reduction":
                _number(val, name, "--" + f.name.replace("_", "-"), "command line")
            setattr(ctx, name, val)
    return ctx


def render(diag: Diagnosis, source: str, what: str, ctx: RunContext) -> str:
    """The plain report: a header, one block per finding (causal order), then what was not judged."""
    def g(x: Any) -> str:
        return "?" if x is None else f"{x:g}" if isinstance(x, (int, float)) else str(x)
    lines = [f"reinflow doctor: {source} ({what})",
             f"run: chunk {g(ctx.chunk_size)} x {g(ctx.action_dim)} action dims (padded {g(ctx.padded_action_dim)}), "
             f"K = {g(ctx.denoise_steps)}, D = {g(ctx.total_dims())}, sigma [{g(ctx.sigma_min)}, {g(ctx.sigma_max)}], "
             f"eps {g(ctx.clip_epsilon)}, reduction {g(ctx.logprob_reduction)}, "
             f"max_grad_norm {g(ctx.max_grad_norm)}", ""]
    for i, f in enumerate(diag.findings, 1):
        lines += [f"{i}. {format_finding(f)}", ""]
    lines.append("not judged:" + ("".join(f"\n  - {n}" for n in diag.not_judged) if diag.not_judged else " nothing"))
    return "\n".join(lines)
