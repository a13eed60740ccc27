"""``reinflow`` command line: quickstart | demos | pretrain | train | eval | doctor | scale | smolvla-tiny.

One contract for every command (``main``): whatever the user or the machine can cause - a bad
flag or file (ReinflowError, parser errors), an OS error (disk full, read-only folder), a missing
optional package, Ctrl-C - ends with one line ``error: ...`` and exit code 2. Only a bug in
reinflow shows a traceback, followed by a line saying how to report it (exit code 1).
``--debug`` anywhere on the command line shows the traceback of any error instead.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import Callable

from reinflow import ReinflowError, __version__

USAGE = """usage: reinflow COMMAND [flags]   (reinflow COMMAND --help for the flags)

commands:
  quickstart    demos -> pretrain -> eval -> ReinFlow fine-tuning -> eval -> report (arm task, --env ID, or --policy smolvla)
  demos         record expert demonstrations (arm, MetaWorld, or --expert module:callable; --format lerobot)
  pretrain      flow-matching behaviour cloning of the MLP flow policy on demonstrations
  train         RL fine-tuning (PPO on the chain, residual PPO) on any gymnasium env with a Box action space
  eval          evaluate a checkpoint with the sampler it was trained with
  doctor        diagnose a run folder (reinflow or W&B) or a summary JSON
  scale         rescale sigma / lr / KL / clip for a chain dimension D
  smolvla-tiny  write a tiny random SmolVLA backbone for offline tests
"""


def _lazy(module: str) -> Callable[[list[str]], int]:
    """A command imported only when it runs (``reinflow doctor`` must not pay for torch)."""
    def run(argv: list[str]) -> int:
        import importlib
        return importlib.import_module(f"reinflow.commands.{module}").run(argv)
    return run


# Set by ``train --nproc N`` for its ranks: each rank writes its error line to ``<path>.<rank>`` and the
# launching process prints the first one (commands/train.py), so it is printed once, not once per rank.
RANK_ERRORS = "REINFLOW_RANK_ERRORS"


def _report(line: str) -> None:
    """``line`` (one ``error: ...``) on stderr, or, in a rank of ``--nproc``, to its launcher's file."""
    path = os.environ.get(RANK_ERRORS)
    if path and "RANK" in os.environ:
        try:
            with open(f"{path}.{os.environ['RANK']}", "w") as f:
                f.write(line.removeprefix("error: ") + "\n")
            return
        except OSError:
            pass
    print(line, file=sys.stderr)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _lazy("train"),
    "eval": _lazy("eval"),
    "quickstart": _lazy("quickstart"),
    "demos": _lazy("demos"),
    "pretrain": _lazy("pretrain"),
    "doctor": _lazy("doctor"),
    "scale": _lazy("scale"),
    "smolvla-tiny": _lazy("smolvla_tiny"),
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
        _report(f"error: {msg}")
        return 2
    except KeyboardInterrupt as exc:
        if debug:
            raise
        how = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "Ctrl-C"  # the trainer names its signal
        way_on = ("a run folder keeps its last complete checkpoint (continue with reinflow train --out RUN --resume)"
                  if cmd in ("train", "quickstart") else "run it again (--overwrite moves a partial --out aside)")
        _report(f"error: reinflow {cmd}: interrupted ({how}) before the run could stop cleanly; {way_on}")
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
