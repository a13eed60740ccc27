"""``reinflow`` command line: quickstart | demos | pretrain | train | eval | doctor | scale | smolvla-tiny.

One contract for every command (``main``): whatever the user or the machine can cause - a bad
flag or file (ReinflowError, parser errors), an OS error (disk full, read-only folder), a missing
optional package, Ctrl-C - ends with one line ``error: ...`` and exit code 2. Only a bug in
reinflow shows a traceback, followed by a line saying how to report it (exit code 1).
``--debug`` anywhere on the command line shows the traceback of any error instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tyro

from reinflow import ConfigError, ReinflowError, __version__
from reinflow.validate import check_fields

USAGE = """usage: reinflow COMMAND [flags]   (reinflow COMMAND --help for the flags)

commands:
  quickstart    demos -> pretrain -> eval -> ReinFlow fine-tuning -> eval -> report (arm task, --env ID, or --policy smolvla)
  demos         record expert demonstrations (arm, MetaWorld, or --expert module:callable; --format lerobot)
  pretrain      flow-matching behaviour cloning of the MLP flow policy on demonstrations
  train         ReinFlow + PPO fine-tuning on any gymnasium env with a Box action space
  eval          evaluate a checkpoint with the sampler it was trained with
  doctor        diagnose a run folder (reinflow or W&B) or a summary JSON
  scale         rescale sigma / lr / KL / clip for a chain dimension D
  smolvla-tiny  write a tiny random SmolVLA backbone for offline tests
"""


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


def _pop_flag(argv: list[str], name: str) -> tuple[str | None, list[str]]:
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
    cfg_path, argv = _pop_flag(argv, "--config")
    preset, argv = _pop_flag(argv, "--preset") if presets else (None, argv)
    file_values = dict(base or {})
    if cfg_path:
        file_values, source = load_config_file(cfg_path), f"--config {cfg_path}"
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_values) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
    if isinstance(file_values.get("env"), str) and _pop_flag(argv, "--env")[0] is None:
        from reinflow.envs.factory import check_env_id
        check_env_id(file_values["env"], allow_import=False, source=source)  # an id from a file is data
    values: dict = {}
    preset = preset or (file_values.get("preset") if presets else None)
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


def _all_defaults(cls: type) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls))


def cmd_train(argv: list[str]) -> int:
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.presets import preset_overrides
    from reinflow.rl.trainer import train
    given = list(argv)
    base, source = None, "--config"
    if "--resume" in argv:
        base, source, argv = _resume_defaults(argv)
    cfg = parse_with_defaults(TrainConfig, argv, "reinflow train", preset_overrides, base, source)
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(cfg.nproc, given)
    res = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        # Only rank 0 reports. The others leave at once: at interpreter teardown a gloo rank could
        # abort ("terminate called without an active exception", SIGABRT) after a complete run,
        # and torchrun then failed the whole job. Its work is done and written by rank 0.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    ev = res.final_eval or {}
    succ = ev.get("success_rate")
    print(f"done: {res.iterations} iterations, {res.env_steps} env steps in {res.wall_s:.1f}s "
          f"({res.wall_s / max(res.iterations, 1):.2f}s/iteration); eval return {ev.get('return_mean', float('nan')):.4g}"
          + (f", success {succ:.3f}" if succ is not None else "") + f"; run folder {res.out}")
    if res.best:
        b = res.best
        print(f"best: iteration {b['iteration']} (selection success {b['success_rate']:.3f} on {b['episodes']} "
              f"episodes; held-out {b['heldout']['success_rate']:.3f} on {b['heldout']['episodes']}) "
              f"in {res.out / 'best'}")
    return 0


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """``--nproc N``: rerun this command under PyTorch's own launcher on this machine."""
    import subprocess
    _, rest = _pop_flag(argv, "--nproc")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "reinflow", "train", *rest]
    print("launching: " + " ".join(cmd[2:]), flush=True)
    return subprocess.call(cmd)


def _resume_defaults(argv: list[str]) -> tuple[dict, str, list[str]]:
    """``--resume``: the config saved with the run's checkpoint becomes the defaults, flags given
    now override it (the trainer refuses overrides that would change the model, chain or env)."""
    from reinflow.rl.runfolder import resume_point
    out, rest = _pop_flag(argv, "--out")
    if out is None:
        raise ConfigError("--resume needs --out RUN_FOLDER (the run to continue)")
    cfg_flag, rest = _pop_flag(rest, "--config")
    if cfg_flag:
        raise ConfigError("--resume and --config cannot be combined: a resumed run keeps its own config")
    ck, saved = resume_point(out)  # ck None: the run was killed before its first checkpoint and starts over
    where = (ck if ck is not None else Path(out)) / "config.json"
    if ck is None:
        print(f"[reinflow] {out} has no checkpoint yet (stopped before its first one): starting it over from "
              "iteration 0 with its saved config", file=sys.stderr, flush=True)
    train = {k: v for k, v in saved["train"].items() if k != "overwrite"}
    return train, f"--resume: {where}", ["--out", out, *rest]


@dataclass
class EvalConfig:
    """Evaluate a checkpoint with the sampler it was trained with."""

    checkpoint: tyro.conf.Positional[str]
    """checkpoint folder, or a run folder (its latest checkpoint)"""
    env: str | None = None
    """env id (default: the one the checkpoint was trained on)"""
    episodes: int = 20
    """evaluation episodes"""
    parallel_envs: int = 10
    """environments stepped in parallel"""
    stochastic: bool = False
    """sample with the learned noise instead of the deterministic ODE"""
    seed: int = 20_000
    """first env seed (default: the held-out episodes of a seed-0 run, never used to pick its best/)"""
    json_out: str | None = None
    """also write the result as JSON here"""

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("episodes", "parallel_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")


def cmd_eval(argv: list[str]) -> int:
    from reinflow.envs.factory import make_vector_env, set_headless_gl
    from reinflow.policies import base_policy_config
    from reinflow.rl.build import resolve_env_kwargs
    from reinflow.rl.checkpoint import load_agent
    from reinflow.envs.factory import check_env_id
    from reinflow.rl.evaluate import check_json_out, run_episodes, write_json_out
    cfg = tyro_cli(EvalConfig, argv, "reinflow eval")
    if cfg.json_out:
        check_json_out(cfg.json_out)  # before minutes of evaluation, and again when writing
    set_headless_gl()
    agent, ck_cfg, ck = load_agent(cfg.checkpoint)
    train_cfg = ck_cfg.get("train") if isinstance(ck_cfg.get("train"), dict) else {}
    env_id = cfg.env or train_cfg.get("env")
    if not env_id or not isinstance(env_id, str):
        raise ConfigError(f"checkpoint {ck} does not name its env: pass --env")
    if not cfg.env:
        check_env_id(env_id, allow_import=False, source=str(ck / "config.json"))
    kw = resolve_env_kwargs(train_cfg.get("env_kwargs"), env_id, base_policy_config(ck_cfg["policy"]).get("type", "mlp"))
    envs = make_vector_env(env_id, min(cfg.parallel_envs, cfg.episodes), agent.sampler.act_steps, "sync", kw)
    try:
        res = run_episodes(agent, envs, cfg.episodes, cfg.seed, deterministic=not cfg.stochastic)
    finally:
        envs.close()
    res.update(checkpoint=str(ck), env=env_id, mode="stochastic" if cfg.stochastic else "deterministic")
    print(json.dumps(res, indent=2))
    if cfg.json_out:
        write_json_out(cfg.json_out, res)
    return 0


def _lazy(module: str, func: str = "cli_main") -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib
        return importlib.import_module(module).__getattribute__(func)(argv)
    return run


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": cmd_train,
    "eval": cmd_eval,
    "quickstart": _lazy("reinflow.quickstart"),
    "demos": _lazy("reinflow.bc.pretrain", "demos_cli"),
    "pretrain": _lazy("reinflow.bc.pretrain", "pretrain_cli"),
    "doctor": _lazy("reinflow.report.doctor"),
    "scale": _lazy("reinflow.flow.scaling"),
    "smolvla-tiny": _lazy("reinflow.policies.smolvla.tiny"),
}


# optional packages -> what installs them (see pyproject.toml's extras and docs/smolvla.md)
SMOLVLA_INSTALL = ("pip install 'reinflow[smolvla]' && pip install --no-deps lerobot==0.4.4 torchvision==0.28.0 "
                   "(docs/smolvla.md)")
EXTRA_INSTALL = {"lerobot": SMOLVLA_INSTALL, "transformers": SMOLVLA_INSTALL, "torchvision": SMOLVLA_INSTALL,
                 "wandb": "pip install 'reinflow[wandb]'"}


def _missing_package(exc: ImportError) -> str | None:
    """The install hint for a missing optional package; None when the import error is reinflow's own."""
    names = [getattr(e, "name", None) or "" for e in (exc, exc.__cause__)]
    text = " ".join([str(exc), str(exc.__cause__ or "")] + names)
    for pkg, how in EXTRA_INSTALL.items():
        if pkg in text or (pkg == "lerobot" and "SmolVLA" in text):
            return f"needs the optional package {pkg} ({str(exc).splitlines()[0]}): {how}"
    top = next((n.split(".")[0] for n in names if n), "")
    if top and top != "reinflow":
        return f"needs the package {top} ({str(exc).splitlines()[0]}): pip install {top}"
    return None


def _os_message(exc: OSError) -> str:
    what = f"{exc.filename}: " if exc.filename else ""
    why = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free disk space or choose another --out", errno.EROFS: "choose a writable folder",
            errno.EACCES: "check the permissions or choose another path",
            errno.EPERM: "check the permissions or choose another path"}.get(exc.errno or 0)
    return f"{what}{why}" + (f"; {hint}" if hint else "")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"error: unknown command {cmd!r}; commands: {', '.join(COMMANDS)} (reinflow --help)", file=sys.stderr)
        return 2
    try:
        return int(COMMANDS[cmd](rest) or 0)
    except BrokenPipeError:  # output piped into `head`: not an error of the run
        return 0
    except SystemExit as exc:  # --help, or a library's own exit: its code, not a traceback
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except Exception as exc:
        if debug:
            raise
        msg = _user_message(exc)
        if msg is None:  # a bug: show where, and how to report it
            traceback.print_exc()
            print(f"reinflow {__version__}: this is a bug in reinflow, not a problem with your input. Please report it "
                  "with the command line and the traceback above (docs: README.md, 'Faults').", file=sys.stderr)
            return 1
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"error: reinflow {cmd}: interrupted (Ctrl-C) before the run could stop cleanly; a run folder "
              "keeps its last complete checkpoint (continue with --resume)", file=sys.stderr)
        return 2


def _user_message(exc: BaseException) -> str | None:
    """The one-line message of an error the user or the machine caused; None for a bug."""
    if isinstance(exc, ReinflowError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_message(exc)
    if isinstance(exc, MemoryError):
        return "out of memory; use fewer --parallel-envs, a smaller model or batch"
    if isinstance(exc, ImportError):
        return _missing_package(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
