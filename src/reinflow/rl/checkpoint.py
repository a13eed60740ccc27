"""Checkpoints: ``model.safetensors`` + ``config.json`` (+ ``trainer_state.{json,safetensors}`` for
resuming, see ``reinflow.rl.trainer_state``: nothing in a checkpoint is unpickled).

Layout of a run folder: ``checkpoints/iter_000012/`` per checkpoint and ``checkpoints/latest``,
a one-line pointer file. A checkpoint is written into a temporary folder, fsynced, renamed into
place, and only then is the pointer replaced (os.replace is atomic): a kill or a full disk at
any moment leaves the previous checkpoint valid and pointed to. A run folder whose pointer is lost
or names a missing folder still resolves to its newest complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reinflow import ConfigError, ReinflowError, __version__
from reinflow.policies import build_policy_from_config
from reinflow.rl.agent import BaseAgent, SamplerConfig
from reinflow.rl.algorithms import agent_class
from reinflow.rl.trainer_state import LEGACY, STRUCTURE, TENSORS, write_trainer_state
from reinflow.untrusted import check_tree, parse_json, read_bytes, read_text

FORMAT_VERSION = 1
KEEP = 2


class CheckpointWriteError(ReinflowError):
    """A checkpoint could not be written; the previous one is untouched."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses tensors sharing memory (tied embeddings in a VLM): store each storage
    once and record ``alias -> stored name`` in config.json."""
    out, tied, seen = {}, {}, {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.dtype) if v.numel() else None
        if key is not None and key in seen:
            tied[k] = seen[key]
            continue
        if key is not None:
            seen[key] = k
        out[k] = v.detach().cpu().contiguous().clone() if not v.is_contiguous() else v.detach().cpu()
    return out, tied


def save_agent(directory: str | Path, agent: BaseAgent, extra_config: dict | None = None,
               trainer_state: dict | None = None) -> Path:
    """Write a complete checkpoint folder atomically (tmp folder + rename). Returns its path."""
    final = Path(directory)
    state, tied = _dedupe(agent.state_dict())
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:  # a NaN written once would be trained on, evaluated and resumed from
        raise CheckpointWriteError(f"cannot write checkpoint {final}: weight {bad} holds NaN or inf (training diverged, "
                                   "or the data held non-finite values); nothing was written, an earlier checkpoint "
                                   "is unchanged: check the data, or lower the learning rate")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as exc:
        raise CheckpointWriteError(f"cannot write checkpoint in {final.parent}: {exc.strerror}") from None
    try:
        save_file(state, str(tmp / "model.safetensors"))
        config = {"format_version": FORMAT_VERSION, "reinflow_version": __version__,
                  "policy": agent.policy.policy_config(), "sampler": agent.sampler_dict(),
                  "critic_shares_features": agent.critic_shares_features, "tied_weights": tied,
                  **(extra_config or {})}
        _write_json(tmp / "config.json", config)
        if trainer_state is not None:
            write_trainer_state(tmp, trainer_state)
        agent.policy.save_extra(str(tmp))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(final.parent)
    except (OSError, SafetensorError, RuntimeError) as exc:  # torch/safetensors report a full disk as these
        shutil.rmtree(tmp, ignore_errors=True)
        why = getattr(exc, "strerror", None) or str(exc)
        raise CheckpointWriteError(f"cannot write checkpoint {final}: {why}; "
                                   "the previous checkpoint is unchanged") from None
    return final


def save_run_checkpoint(run_dir: str | Path, iteration: int, agent: BaseAgent, extra_config: dict,
                        trainer_state: dict) -> Path:
    """Checkpoint into ``run_dir/checkpoints/iter_XXXXXX`` and move the ``latest`` pointer."""
    ckdir = Path(run_dir) / "checkpoints"
    for stale in ckdir.glob(".iter_*.tmp-*"):  # left by a writer killed mid-checkpoint (one writer per run)
        shutil.rmtree(stale, ignore_errors=True)
    path = save_agent(ckdir / f"iter_{iteration:06d}", agent, extra_config, trainer_state)
    pointer_tmp = ckdir / ".latest.tmp"
    try:
        with open(pointer_tmp, "w") as f:
            f.write(path.name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(pointer_tmp, ckdir / "latest")
    except OSError as exc:
        raise CheckpointWriteError(f"cannot update {ckdir / 'latest'}: {exc.strerror or exc}") from None
    for old in sorted(ckdir.glob("iter_*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def _complete(ck: Path, for_resume: bool) -> bool:
    files = ["config.json", "model.safetensors"]
    if for_resume and not (ck / LEGACY).is_file():  # a legacy state is found, then refused with its reason
        files += [STRUCTURE, TENSORS]
    return ck.is_dir() and all((ck / f).is_file() for f in files)


def resolve_checkpoint(path: str | Path, for_resume: bool = False) -> Path:
    """A checkpoint folder, or a run folder (-> the checkpoint ``latest`` names, else its newest
    complete one; ``for_resume``: complete includes the trainer state)."""
    p = Path(path)
    ckdir = p / "checkpoints" if (p / "checkpoints").is_dir() else p if (p / "latest").is_file() else None
    if ckdir is not None:
        if ckdir != p and ckdir.is_symlink():
            raise ConfigError(f"run {path}: checkpoints/ is a symlink; reinflow never follows links inside a run "
                              "folder (a write would land outside it): replace it with the real folder")
        candidates = []
        try:
            name = read_bytes(ckdir / "latest", 4096).decode("ascii").strip()
            if name.startswith("iter_") and "/" not in name:
                candidates.append(ckdir / name)
        except (ConfigError, UnicodeDecodeError):
            pass                                  # no or damaged pointer: the newest complete folder
        candidates += sorted(ckdir.glob("iter_*"), reverse=True)
        for ck in candidates:
            if not ck.is_symlink() and _complete(ck, for_resume):
                check_tree(ck, "checkpoint")
                return ck
        what = "config.json, model.safetensors" + (f", {STRUCTURE}, {TENSORS}" if for_resume else "")
        raise ConfigError(f"run {path}: no complete checkpoint in {ckdir} (a folder iter_* with {what})")
    if not p.is_dir():
        raise ConfigError(f"checkpoint {path}: no such folder (expected a checkpoint or run folder)")
    if not _complete(p, False):
        raise ConfigError(f"checkpoint {p}: expected config.json and model.safetensors inside")
    if for_resume and not _complete(p, True):
        raise ConfigError(f"checkpoint {p}: no trainer state ({STRUCTURE} + {TENSORS}); cannot resume from it")
    check_tree(p, "checkpoint")
    return p


def read_checkpoint_config(path: Path, require: bool = True) -> dict:
    """A checkpoint's config.json, validated; ``require=False``: any JSON object (e.g. a LeRobot folder's)."""
    where = f"checkpoint {path / 'config.json'}"
    cfg = parse_json(read_text(path / "config.json"), where)
    if not require:
        return cfg if isinstance(cfg, dict) else {}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("policy"), dict) or not isinstance(cfg.get("sampler"), dict):
        raise ConfigError(f"checkpoint {path / 'config.json'}: missing 'policy' or 'sampler' section")
    version = cfg.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(f"checkpoint {path}: format_version={version!r} is newer than this reinflow "
                          f"supports ({FORMAT_VERSION}); upgrade reinflow")
    return cfg


def load_agent(path: str | Path, sampler_overrides: dict | None = None,
               policy_overrides: dict | None = None) -> tuple[BaseAgent, dict, Path]:
    """(agent with loaded weights, its config.json, resolved checkpoint folder)."""
    ck = resolve_checkpoint(path)
    cfg = read_checkpoint_config(ck)
    try:
        policy = build_policy_from_config({**cfg["policy"], **(policy_overrides or {})})
    except ConfigError as exc:  # a field out of its flag's range: name the file it came from
        raise ConfigError(str(exc) if str(ck) in str(exc) else f"checkpoint {ck / 'config.json'}: {exc}") from None
    sampler = SamplerConfig.from_dict({**cfg["sampler"], **(sampler_overrides or {})}, f"checkpoint {ck / 'config.json'}")
    agent = agent_class(cfg["policy"].get("type"))(policy, sampler)  # PPO's Agent, or the one its policy needs
    agent.critic_shares_features = cfg.get("critic_shares_features") is True
    try:
        state = load_file(str(ck / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"checkpoint {ck / 'model.safetensors'}: corrupt or truncated file ({exc})") from None
    tied = cfg.get("tied_weights") or {}
    if not isinstance(tied, dict) or not all(isinstance(v, str) for v in tied.values()):
        raise ConfigError(f"checkpoint {ck / 'config.json'}: tied_weights must map weight names to weight names")
    for alias, name in tied.items():
        if name in state:
            state[alias] = state[name]
    state.pop("mask", None)  # derived from the (possibly overridden) sampler config
    for key in [k for k in state if k.startswith(agent.legacy_keys)]:
        del state[key]  # parts an earlier reinflow built for this agent and it no longer has
    try:
        missing, unexpected = agent.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise ConfigError(f"checkpoint {ck / 'model.safetensors'}: weights do not fit the policy config "
                          f"({str(exc).splitlines()[-1].strip()})") from None
    missing = [k for k in missing if k != "mask"]
    if missing or unexpected:
        raise ConfigError(f"checkpoint {ck / 'model.safetensors'}: weights do not match the policy config "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    agent.set_sigma_bounds(sampler.sigma_lo, sampler.sigma_hi)
    return agent, cfg, ck
