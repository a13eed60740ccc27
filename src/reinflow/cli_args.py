"""Command-line parsing shared by every command (``reinflow.commands``): tyro and argparse with their
usage errors turned into ConfigErrors (one ``error:`` line, like every other error), config files
(YAML/JSON) and presets as defaults under the flags."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import Callable

import tyro

from reinflow import ConfigError


def tyro_cli(cls: type, argv: list[str], prog: str, **kwargs):
    """``tyro.cli`` whose parse errors are ConfigErrors (one ``error:`` line, like every other
    error) instead of tyro's multi-line box; ``--help`` still prints and exits 0."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=argv, prog=prog, **kwargs)
    except SystemExit as exc:
        if not exc.code:
            raise
        raise ConfigError(f"{prog}: {_tyro_message(captured.getvalue())} (see {prog} --help)") from None


def _tyro_message(text: str) -> str:
    """The message paragraph of tyro's error box, on one line. On a terminal the box's title sits
    in its top border; without one (captured output) the title is the first paragraph."""
    title, paragraphs, current = None, [], []
    for line in text.splitlines():
        row = line.strip().strip("│|").strip()
        if row.startswith("╭"):
            title = row.strip("╭╮─ ")
        elif not row or set(row) <= set("─-+╰╯"):  # a rule or blank line ends a paragraph
            if current:
                paragraphs.append(current)
            current = []
        else:
            current.append(row)
    if current:
        paragraphs.append(current)
    if title is None and len(paragraphs) > 1:
        title = " ".join(paragraphs.pop(0))
    return " ".join(" ".join(paragraphs[0]).split()) if paragraphs else title or "could not parse the command line"


def parse_argparse(ap, argv: list[str]):
    """argparse with its usage errors as ConfigErrors (the same one-line form)."""
    def fail(message: str):
        raise ConfigError(f"{ap.prog}: {message} (see {ap.prog} --help)")
    ap.error = fail
    return ap.parse_args(argv)


def load_config_file(path: str) -> dict:
    """A YAML or JSON config file, read with the bounds of ``reinflow.untrusted`` (type, size, depth,
    YAML aliases)."""
    from reinflow.untrusted import parse_json, parse_yaml, read_text
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"--config {path}: no such file")
    try:
        text = read_text(p)
        data = parse_yaml(text, str(p)) if p.suffix in (".yaml", ".yml") else parse_json(text, str(p))
    except ConfigError as exc:
        raise ConfigError(f"--config {path}: cannot parse ({exc})") from None
    if isinstance(data, dict) and "train" in data and isinstance(data["train"], dict):
        # a run folder's config.json works as a config file too; what it did (resume, overwrite) is not a setting
        data = {k: v for k, v in data["train"].items() if k not in ("resume", "overwrite")}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of field names to values")
    return data


def pop_flag(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """(the value of ``name VALUE`` or ``name=VALUE``, the other arguments)."""
    out, val, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == name and i + 1 < len(argv):
            val, i = argv[i + 1], i + 2
            continue
        if a.startswith(name + "="):
            val = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    return val, out


def parse_with_defaults(cls: type, argv: list[str], prog: str, presets: Callable[[str], dict] | None = None,
                        base: dict | None = None, source: str = "--config"):
    """tyro over a dataclass, with ``--config FILE`` (or ``base``, read from ``source``) and a
    preset (``--preset NAME``, else the file's ``preset:``) as defaults under the flags."""
    cfg_path, argv = pop_flag(argv, "--config")
    preset, argv = pop_flag(argv, "--preset") if presets else (None, argv)
    file_values = dict(base or {})
    if cfg_path:
        file_values, source = load_config_file(cfg_path), f"--config {cfg_path}"
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
    if isinstance(file_values.get("env"), str) and pop_flag(argv, "--env")[0] is None:
        from reinflow.envs.factory import check_env_id
        check_env_id(file_values["env"], allow_import=False, source=source)  # an id read from a file is data
    if file_values.get("env_kwargs") and pop_flag(argv, "--env-kwargs")[0] is None:
        _check_file_env_kwargs(file_values["env_kwargs"], source)  # nor is a path it names opened
    values: dict = {}
    # a config file's preset applies; a resumed run's recorded one does not (its values are all explicit, and
    # it may name a recipe this version no longer ships)
    preset = preset or (file_values.get("preset") if presets and base is None else None)
    if preset:
        if not isinstance(preset, str):
            raise ConfigError(f"preset={preset!r}: expected a preset name")
        values.update(presets(preset))
    values.update(file_values)  # a file's explicit values win over its preset's
    if preset:
        values["preset"] = preset
    try:
        default = cls(**values) if values or _all_defaults(cls) else None
    except TypeError as exc:
        raise ConfigError(f"{prog}: {exc}") from None
    return tyro_cli(cls, argv, prog, default=default)


def _check_file_env_kwargs(value: object, source: str) -> None:
    from reinflow.untrusted import check_env_kwargs_files, parse_json
    if isinstance(value, str):
        try:
            value = parse_json(value, f"{source}: env_kwargs")
        except ConfigError:
            return  # not JSON: refused with its reason when the env is built
    check_env_kwargs_files(value, source)


def _all_defaults(cls: type) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls))
