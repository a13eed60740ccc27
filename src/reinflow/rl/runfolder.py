"""Output folders are never lost by accident, and a resume never changes what a run is.

* ``check_out`` (read-only, before anything is built): a non-empty ``--out`` without ``--resume``
  is refused, naming the two ways on (``--resume``, or ``--overwrite`` / a new folder); an output
  folder overlapping the starting checkpoint (``--policy-path``) is refused, so nothing writes there.
* ``claim_out`` (just before the first write): ``--overwrite`` moves the old folder aside to
  ``<out>.old-N`` (nothing is deleted), then the folder is created.
* ``resume_changes``: a resumed run may change how it trains (iterations, lr, logging ...) but not
  the model, the chain or the env it trains on; the changes are returned to be recorded.
Every command that writes a folder (train, quickstart, demos, pretrain) uses these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reinflow import ConfigError

# TrainConfig fields that define the model, the denoising chain, the env (and the batch layout the
# reward scaler's state is shaped by); a resume that changes one of them is refused.
FROZEN_ON_RESUME = ("env", "algorithm", "env_kwargs", "policy", "policy_path", "vlm_path", "trainable", "chunk_size", "act_steps",
                    "denoise_steps", "hidden", "sigma_min", "sigma_max", "noise_schedule", "sigma_max_final",
                    "noise_hold_frac", "initial_noise", "initial_noise_seed", "logprob_reduction", "logprob_clamp", "mask_executed", "critic_shares_features",
                    "parallel_envs", "nproc", "dsrl_components", "dsrl_bound", "dsrl_hidden", "dsrl_buffer_size")
# bookkeeping of the command itself (a run folder may be moved), never a change of the run
NOT_RECORDED = ("out", "resume", "overwrite", "auto_scale", "scale_rule", "scale_ref_dim", "progress")


def _aside(p: Path) -> Path:
    n = 1
    while p.with_name(f"{p.name}.old-{n}").exists():
        n += 1
    return p.with_name(f"{p.name}.old-{n}")


def _non_empty(p: Path) -> bool:
    try:
        return p.is_dir() and any(p.iterdir())
    except OSError as exc:
        raise ConfigError(f"out={p}: cannot read the folder ({exc.strerror})") from None


def check_out(out: str | Path, resume: bool = False, overwrite: bool = False, policy_path: str | None = None) -> None:
    """Refuse an output folder that would lose or overwrite something; writes nothing."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"out={out}: is a file, not a folder; choose a folder path")
    parent = p.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"out={out}: {parent} is a file, so no folder can be made under it")
    if resume:
        return
    if policy_path:
        a, b = p.resolve(), Path(policy_path).resolve()
        if a == b or a in b.parents or b in a.parents:
            raise ConfigError(f"out={out}: overlaps --policy-path {policy_path}; a run never writes into the "
                              "checkpoint it starts from: choose another --out")
    if _non_empty(p) and not overwrite:
        raise ConfigError(f"out={out}: the folder exists and is not empty (an earlier run?); nothing was written. "
                          "Continue it with --resume, move it aside with --overwrite "
                          f"(-> {_aside(p).name}), or choose a new --out")


def claim_out(out: str | Path, overwrite: bool = False) -> Path | None:
    """Create the output folder; with ``overwrite`` move a non-empty one aside first (returned)."""
    p = Path(out)
    moved = None
    try:
        if overwrite and _non_empty(p):
            moved = _aside(p)
            p.rename(moved)
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"out={out}: cannot create the folder ({exc.strerror or exc})") from None
    if moved is not None:
        print(f"[reinflow] moved the earlier contents of {p} aside to {moved}", flush=True)
    return moved


def resume_changes(new: dict[str, Any], saved: dict[str, Any], derived: dict[str, Any], where: str) -> dict:
    """``{field: {"from": saved, "to": new}}`` for the fields a resume changes; ConfigError for a
    frozen one. ``derived`` holds the sizes the run really used where its config said None
    (e.g. chunk_size taken from the checkpoint), so restating them is not a change."""
    from reinflow.rl.config import upgrade_legacy
    saved = upgrade_legacy(saved)
    changes = {}
    for name, val in new.items():
        if name in NOT_RECORDED or name not in saved:
            continue
        old = saved[name]
        if _same(val, old) or (old is None and name in derived and _same(val, derived[name])):
            continue
        if name in FROZEN_ON_RESUME:
            was = old if old is not None or name not in derived else derived[name]
            raise ConfigError(f"--resume: {name}={val!r} but the run in {where} was trained with {name}={was!r}; "
                              f"{name} defines the model, the chain or the env and cannot change on resume "
                              "(start a new run from its checkpoint with --policy-path instead)")
        changes[name] = {"from": old, "to": val}
    return changes


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
