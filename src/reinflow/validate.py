"""One generic check for every config dataclass, called first in its ``__post_init__``.

tyro parses flags into the annotated types, but a ``--config`` YAML/JSON file, a run's saved
config and Python callers bypass it: ``iterations: "ten"`` or ``hidden: 5`` would otherwise fail
deep inside training. So each field's value is checked against its annotation here (ints within
int64, floats finite: ``inf``/``nan`` parse as floats but mean nothing as a learning rate or a
noise bound), and a few field names that mean the same thing in every command carry one range.
A new field is checked without new code.
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

# field name -> (check, what is allowed): the same name means the same thing in every command
NAMED: dict[str, tuple[Any, str]] = {
    "seed": (lambda v: 0 <= v <= SEED_MAX, f"allowed range [0, {SEED_MAX}]"),
    "initial_noise_seed": (lambda v: 0 <= v <= SEED_MAX, f"allowed range [0, {SEED_MAX}]"),
    "hidden": (lambda v: len(v) > 0 and all(1 <= w <= WIDTH_MAX for w in v),
               f"needs at least one layer width, each in [1, {WIDTH_MAX}]"),
    "image_size": (lambda v: all(1 <= s <= IMAGE_MAX for s in v), f"each side in [1, {IMAGE_MAX}] pixels"),
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
        rule = NAMED.get(f.name)
        if rule is not None and new is not None and not rule[0](new):
            raise ConfigError(f"{f.name}={_show(new)}: {rule[1]}")


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
    if origin in (list, tuple):
        if not isinstance(val, (list, tuple)):
            raise ConfigError(f"{name}={_show(val)}: expected {_describe(tp)}")
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
        return val if isinstance(val, float) else x
    if tp is str:
        if not isinstance(val, str):
            raise ConfigError(f"{name}={_show(val)}: expected a string")
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
