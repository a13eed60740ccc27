"""The resumable trainer state (optimizers, reward scaler, torch RNG, counters), stored without pickle.

A run folder may come from someone else, and unpickling runs whatever code the file names. So the
state is split into ``trainer_state.safetensors`` (every tensor: Adam moments, step counters, the
RNG state) and ``trainer_state.json`` (the structure, with plain values and ``{"__tensor__": key}``
placeholders). Neither format can execute code; reading validates the structure and every value a
resume uses, so a crafted or damaged file ends in one ``error:`` line.

Checkpoints written before this format hold a pickled ``trainer_state.pt``: it is refused, never
unpickled (see README, "Faults").
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reinflow import ConfigError
from reinflow.untrusted import parse_json, read_text
from reinflow.validate import RANGES

ITERATION_MAX = RANGES["iterations"][1]
ENV_STEPS_MAX = 2**62

TENSORS, STRUCTURE, LEGACY = "trainer_state.safetensors", "trainer_state.json", "trainer_state.pt"
# dicts whose keys are not all strings (optimizer state is keyed by parameter index), and tuples
# (Adam's betas), are tagged so they come back as they went in: a resumed run is bit-identical.
_TENSOR, _ITEMS, _TUPLE = "__tensor__", "__items__", "__tuple__"


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {_TENSOR: path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not {_TENSOR, _ITEMS, _TUPLE} & set(obj):
            return {k: _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {_ITEMS: [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"trainer state at {path!r}: cannot store a {type(obj).__name__}")


def write_trainer_state(directory: Path, state: dict) -> None:
    """Write both files into ``directory`` (the caller fsyncs and renames the folder)."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, tensors, "state")
    save_file(tensors, str(directory / TENSORS))
    with open(directory / STRUCTURE, "w") as f:
        json.dump(structure, f)
        f.flush()
        os.fsync(f.fileno())


def _decode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            key = obj[_TENSOR]
            if not isinstance(key, str) or key not in tensors:
                raise ValueError(f"{where}: refers to a tensor {key!r} that {TENSORS} does not hold")
            return tensors[key]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors, where) for v in _as_list(obj[_TUPLE], where))
        if set(obj) == {_ITEMS}:
            out = {}
            for item in _as_list(obj[_ITEMS], where):
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (int, str))):
                    raise ValueError(f"{where}: malformed {_ITEMS} entry")
                out[item[0]] = _decode(item[1], tensors, f"{where}.{item[0]}")
            return out
        return {k: _decode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    return obj


def _as_list(val: Any, where: str) -> list:
    if not isinstance(val, list):
        raise ValueError(f"{where}: expected a list")
    return val


def read_trainer_state(ck: Path) -> dict:
    """The state a checkpoint folder holds for resuming, validated; ConfigError otherwise."""
    if not (ck / STRUCTURE).is_file() or not (ck / TENSORS).is_file():
        if (ck / LEGACY).is_file():
            raise ConfigError(f"checkpoint {ck}: {LEGACY} is the pickle format of reinflow before 0.2, which is "
                              "never loaded (unpickling a file can run any code in it); resume it with the reinflow "
                              f"that wrote it, or start a new run from its weights: --policy-path {ck}")
        raise ConfigError(f"checkpoint {ck}: no {STRUCTURE} + {TENSORS}; it cannot be resumed "
                          f"(start a new run from its weights: --policy-path {ck})")
    try:
        tensors = load_file(str(ck / TENSORS))
        structure = parse_json(read_text(ck / STRUCTURE), STRUCTURE)  # bounded size, depth and integers
        state = _upgrade(_decode(structure, tensors, "state"))
        _check_state(state)
    except (SafetensorError, OSError, ValueError, ConfigError) as exc:
        raise ConfigError(f"checkpoint {ck}: trainer state unreadable ({exc}); cannot resume from it") from None
    return state


def _check_state(state: Any) -> None:
    """The values the trainer reads, with the types it needs (the algorithm checks its own part)."""
    if not isinstance(state, dict):
        raise ValueError("top level is not an object")
    for key, top in (("iteration", ITERATION_MAX), ("env_steps", ENV_STEPS_MAX)):
        val = state.get(key)
        if isinstance(val, bool) or not isinstance(val, int) or not 0 <= val <= top:
            raise ValueError(f"{key}={str(val)[:40]}: expected an integer in [0, {top}]")
    if not isinstance(state.get("algorithm"), dict):
        raise ValueError("algorithm: expected the algorithm's state (an object)")
    rng = state.get("torch_rng")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
        raise ValueError("torch_rng: expected a uint8 tensor")
    scaler = state["algorithm"].get("scaler")
    if scaler is not None:
        if not isinstance(scaler, dict) or not isinstance(scaler.get("ret"), list):
            raise ValueError("scaler: expected {ret, count, mean, m2}")
        nums = [*scaler["ret"], scaler.get("count"), scaler.get("mean"), scaler.get("m2")]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in nums):
            raise ValueError("scaler: expected finite numbers")
        if not (scaler["count"] > 0 and scaler["m2"] >= 0):
            raise ValueError(f"scaler: count={scaler['count']!r} must be > 0 and m2={scaler['m2']!r} >= 0")


def _upgrade(state: Any) -> Any:
    """A state written before the algorithm seam (optimizers at the top level) in today's layout."""
    if isinstance(state, dict) and "algorithm" not in state and "actor_opt" in state:
        state = dict(state)
        state["algorithm"] = {k: state.pop(k) for k in ("actor_opt", "critic_opt", "scaler") if k in state}
    return state


def load_optimizer(opt: torch.optim.Optimizer, state: Any, name: str) -> None:
    """Load a saved optimizer state after checking it fits ``opt`` (same parameter groups, every
    saved moment shaped like its parameter): a misfit is refused here, before the run folder is
    touched, instead of crashing at the first optimizer step."""
    if not isinstance(state, dict) or not isinstance(state.get("param_groups"), list) \
            or not isinstance(state.get("state"), dict):
        raise ConfigError(f"trainer state {name}: expected an optimizer state (param_groups, state)")
    groups = state["param_groups"]
    if len(groups) != len(opt.param_groups) or any(
            not isinstance(g, dict) or not isinstance(g.get("params"), list) or len(g["params"]) != len(h["params"])
            for g, h in zip(groups, opt.param_groups)):
        raise ConfigError(f"trainer state {name}: its parameter groups do not match this run's model")
    params = [p for g in opt.param_groups for p in g["params"]]
    for idx, moments in state["state"].items():
        if not isinstance(idx, int) or not 0 <= idx < len(params) or not isinstance(moments, dict):
            raise ConfigError(f"trainer state {name}: entry {idx!r} names no parameter of this run's model")
        for key, val in moments.items():
            if isinstance(val, torch.Tensor) and val.dim() > 0 and val.shape != params[idx].shape:
                raise ConfigError(f"trainer state {name}: {key} of parameter {idx} has shape {tuple(val.shape)}, "
                                  f"the model's parameter {tuple(params[idx].shape)}")
    try:
        opt.load_state_dict(state)
        _check_loaded(opt)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise ConfigError(f"trainer state {name}: does not fit this run ({exc})") from None


def _check_loaded(opt: torch.optim.Optimizer) -> None:
    """What ``load_state_dict`` took over unchecked: the hyperparameters (a crafted ``betas`` or ``eps``
    would turn the first step into NaN) and the moments' values. ValueError."""
    for g, group in enumerate(opt.param_groups):
        for key, val in group.items():
            vals = list(val) if isinstance(val, (tuple, list)) and key != "params" else [] if key == "params" else [val]
            if not all(x is None or isinstance(x, (bool, str)) or (isinstance(x, (int, float)) and math.isfinite(x))
                       or (isinstance(x, torch.Tensor) and x.numel() == 1 and bool(torch.isfinite(x))) for x in vals):
                raise ValueError(f"param group {g}: {key}={str(val)[:40]}: expected finite numbers")
        betas = group.get("betas")
        if betas is not None and not (len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)):
            raise ValueError(f"param group {g}: betas={str(betas)[:40]}: expected two numbers in [0, 1)")
        if "eps" in group and not float(group["eps"]) > 0:
            raise ValueError(f"param group {g}: eps={group['eps']!r}: must be > 0")
        for i, p in enumerate(group["params"]):
            for key, val in opt.state.get(p, {}).items():
                if isinstance(val, torch.Tensor) and val.is_floating_point() and not bool(torch.isfinite(val).all()):
                    raise ValueError(f"{key} of parameter {i} in group {g} holds NaN/inf")
                if isinstance(val, torch.Tensor) and key in ("exp_avg_sq", "max_exp_avg_sq", "step") \
                        and bool((val < 0).any()):
                    raise ValueError(f"{key} of parameter {i} in group {g} is negative")
