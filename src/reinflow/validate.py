"""One generic check for every config dataclass, called first in its ``__post_init__``.

tyro parses flags into the annotated types, but a ``--config`` YAML/JSON file, a run's saved
config and Python callers bypass it: ``iterations: "ten"`` or ``hidden: 5`` would otherwise fail
deep inside training. So each field's value is checked against its annotation here (ints within
int64, floats finite: ``inf``/``nan`` parse as floats but mean nothing as a learning rate or a
noise bound), and a few field names that mean the same thing in every command carry one range.
A new field is checked without new code: every number is bounded (``INT_LIMIT``, ``FLOAT_LIMIT``)
unless ``RANGES`` names a tighter range for it, and every string and list has a length bound, so
no value from a flag or a file can ask for a terabyte or a year (a checkpoint's ``chunk_size: 1e9``
would allocate one, ``denoise_steps: 1000000`` would run for days between two signal checks).
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from reinflow import ConfigError

INT_MAX = 2**63 - 1        # torch's int64 (manual_seed, step counters)
SEED_MAX = 2**32 - 1       # numpy's and gymnasium's seeding take seeds below 2**32
WIDTH_MAX = 65536          # one MLP layer; wider is a typo that would allocate gigabytes
IMAGE_MAX = 4096           # camera side in pixels
INT_LIMIT = 10**9          # any integer field without a RANGES entry: |value| <= 1e9
FLOAT_LIMIT = 1e12         # any float field: |value| <= 1e12 (products of two stay finite)
STR_MAX = 65536            # characters of any string field (paths, ids, JSON kwargs)
LIST_MAX = 4096            # items of any list/tuple/dict field
LAYERS_MAX = 64            # MLP depth

# field name -> (check, what is allowed): the same name means the same thing in every command
NAMED: dict[str, tuple[Any, str]] = {
    "seed": (lambda v: 0 <= v <= SEED_MAX, f"allowed range [0, {SEED_MAX}]"),
    "initial_noise_seed": (lambda v: 0 <= v <= SEED_MAX, f"allowed range [0, {SEED_MAX}]"),
    "hidden": (lambda v: 0 < len(v) <= LAYERS_MAX and all(1 <= w <= WIDTH_MAX for w in v),
               f"needs at least one layer width (at most {LAYERS_MAX}), each in [1, {WIDTH_MAX}]"),
    "image_size": (lambda v: all(1 <= s <= IMAGE_MAX for s in (v if isinstance(v, (list, tuple)) else [v])),
                   f"each side in [1, {IMAGE_MAX}] pixels"),
    "cameras": (lambda v: all(len(hw) == 2 and all(1 <= s <= IMAGE_MAX for s in hw) for hw in v.values()),
                f"camera name -> [H, W], each side in [1, {IMAGE_MAX}] pixels"),
}

# field name -> (lo, hi): the sizes that set memory and time. A value outside is refused naming the
# bound; the bounds are far above what any recipe uses (README, "Errors").
_EPISODES = (1, 1_000_000)
RANGES: dict[str, tuple[int | float, int | float]] = {
    "iterations": (1, 100_000_000), "max_iterations": (1, 100_000_000),
    "parallel_envs": (1, 1024), "nproc": (1, 256), "rollout_steps": (1, 100_000),
    "batch_size": (1, 1_000_000),
    "bc_batch_size": (1, 1_000_000), "steps": (1, 100_000_000), "bc_steps": (1, 100_000_000),
    "episodes": _EPISODES, "eval_episodes": _EPISODES, "train_eval_episodes": _EPISODES, "heldout_episodes": _EPISODES,
    "demo_episodes": _EPISODES, "bc_episodes": _EPISODES, "max_episodes": _EPISODES,
    "chunk_size": (1, 1024), "act_steps": (1, 1024), "denoise_steps": (1, 256), "noise_basis": (0, 1024),
    "obs_dim": (1, 2**20), "state_dim": (0, 2**20), "state_dims": (1, 2**20), "action_dim": (1, 1024),
    "pad_action_dim": (0, 1024), "padded_action_dim": (1, 2048),
    "obs_embed_dim": (1, WIDTH_MAX), "time_embed_dim": (1, WIDTH_MAX),
    "action_noise": (0, 1), "demo_noise": (0, 1),
    "ref_dim": (1, 10_000_000), "env_max_restarts": (0, 10_000),
}


def check_fields(obj: Any) -> None:
    """Raise ConfigError naming the first field whose value does not fit its annotation; converts
    whole numbers given for float fields (``lr: 1``) and whole floats given for int fields."""
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        val = getattr(obj, f.name)
        new = _fit(f.name, val, hints.get(f.name, Any))
        if new is not val:
            object.__setattr__(obj, f.name, new)
        if new is not None:
            check_range(f.name, new)


def check_value(name: str, val: Any, tp: Any) -> Any:
    """One value outside a dataclass (e.g. a nested section of a checkpoint config), checked as a
    field ``name: tp`` would be; returns it converted."""
    new = _fit(name, val, tp)
    if new is not None:
        check_range(name, new)
    return new


def check_range(name: str, val: Any, ranges: dict[str, tuple[int | float, int | float]] = RANGES) -> None:
    """The NAMED rule or ``ranges`` bound of ``name`` (a scalar, or each number of a list); an algorithm's
    settings pass their own ``RANGES`` (``rl.algorithms``)."""
    rule = NAMED.get(name)
    if rule is not None:
        if not rule[0](val):
            raise ConfigError(f"{name}={_show(val)}: {rule[1]}")
        return
    bounds = ranges.get(name)
    if bounds is None:
        return
    lo, hi = bounds
    for x in (val if isinstance(val, (list, tuple)) else [val]):
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            if x < lo:
                raise ConfigError(f"{name}={_show(val)}: must be >= {lo}")
            if x > hi:
                raise ConfigError(f"{name}={_show(val)}: must be <= {hi} (a bound on memory and time; "
                                  "README, 'Errors')")


def _show(val: Any) -> str:
    text = repr(val)
    return text if len(text) <= 60 else text[:57] + "..."


def _fit(name: str, val: Any, tp: Any) -> Any:
    """``val`` converted to ``tp`` or ConfigError naming the field."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return val
    if origin in (Union, types.UnionType):
        if val is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _fit(name, val, arm)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else ConfigError(f"{name}={_show(val)}: expected {_describe(tp)}")
    if origin is Literal:
        if val not in args:
            raise ConfigError(f"{name}={_show(val)}: allowed {', '.join(map(str, args))}")
        return val
    if origin is dict:
        if not isinstance(val, dict):
            raise ConfigError(f"{name}={_show(val)}: expected a mapping")
        if len(val) > LIST_MAX:
            raise ConfigError(f"{name}: {len(val)} entries; at most {LIST_MAX}")
        key_tp, item_tp = args if len(args) == 2 else (Any, Any)
        return {_fit(name, k, key_tp): _fit(name, v, item_tp) for k, v in val.items()}
    if origin in (list, tuple):
        if not isinstance(val, (list, tuple)):
            raise ConfigError(f"{name}={_show(val)}: expected {_describe(tp)}")
        if len(val) > LIST_MAX:
            raise ConfigError(f"{name}: {len(val)} values; at most {LIST_MAX}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(val) != len(args):
                raise ConfigError(f"{name}={_show(val)}: expected {_describe(tp)}")
            return tuple(_fit(name, v, a) for v, a in zip(val, args))
        item = args[0] if args else Any
        out = [_fit(name, v, item) for v in val]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if not isinstance(val, bool):
            raise ConfigError(f"{name}={_show(val)}: expected true or false")
        return val
    if tp is int:
        if isinstance(val, float) and math.isfinite(val) and val.is_integer():
            val = int(val)
        if isinstance(val, bool) or not isinstance(val, int):
            raise ConfigError(f"{name}={_show(val)}: expected an integer")
        if abs(val) > INT_MAX:
            raise ConfigError(f"{name}={_show(val)}: out of range (|value| <= 2**63 - 1)")
        if name not in RANGES and name not in NAMED and abs(val) > INT_LIMIT:
            raise ConfigError(f"{name}={_show(val)}: out of range (|value| <= {INT_LIMIT})")
        return val
    if tp is float:
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ConfigError(f"{name}={_show(val)}: expected a number")
        try:
            x = float(val)
        except OverflowError:
            raise ConfigError(f"{name}={_show(val)}: out of range for a float") from None
        if not math.isfinite(x):
            raise ConfigError(f"{name}={x}: must be a finite number")
        if abs(x) > FLOAT_LIMIT:
            raise ConfigError(f"{name}={x:g}: out of range (|value| <= {FLOAT_LIMIT:g})")
        return val if isinstance(val, float) else x
    if tp is str:
        if not isinstance(val, str):
            raise ConfigError(f"{name}={_show(val)}: expected a string")
        if len(val) > STR_MAX:
            raise ConfigError(f"{name}: a string of {len(val)} characters; at most {STR_MAX}")
        return val
    return val                                   # other annotations: nothing generic to check


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}s" if args else "a list"
    if origin is tuple:
        return f"{len(args)} values" if args and args[-1] is not Ellipsis else "a list"
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))
