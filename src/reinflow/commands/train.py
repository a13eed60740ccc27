"""``reinflow train``: a training run from flags, a config file, a preset, or ``--resume``; ``--nproc N``
relaunches itself under torchrun."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from reinflow import ConfigError
from reinflow.cli_args import parse_with_defaults, pop_flag

if TYPE_CHECKING:
    from reinflow.rl.runfolder import ResumePoint


def run(argv: list[str]) -> int:
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.presets import preset_overrides
    from reinflow.rl.trainer import train
    given = list(argv)
    base, source, point = None, "--config", None
    if "--resume" in argv:
        point, source, argv = _resume_defaults(argv)
        base = {k: v for k, v in point[1]["train"].items() if k != "overwrite"}
    cfg = parse_with_defaults(TrainConfig, argv, "reinflow train", preset_overrides, base, source)
    if cfg.nproc > 1 and "WORLD_SIZE" not in os.environ:
        if cfg.device != "cpu":  # one GPU per rank, checked before any process starts
            import torch

            from reinflow.rl.dist import rank_device
            rank_device(cfg.device, cfg.nproc - 1, cfg.nproc, torch.cuda.device_count())
        return _launch_torchrun(cfg.nproc, given)
    res = train(cfg, point)
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
    """``--nproc N``: rerun this command under PyTorch's own launcher on this machine (run in this
    process, so its failure report is ours). Each rank leaves its ``error:`` line in a file (``cli.main``,
    RANK_ERRORS) instead of printing it; the first one written, the cause, is printed once here, with
    the ranks' exit code, instead of one line per rank and torchrun's ChildFailedError traceback."""
    import logging
    import tempfile

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from reinflow.cli import RANK_ERRORS
    _, rest = pop_flag(argv, "--nproc")
    args = ["--standalone", f"--nproc_per_node={nproc}", "-m", "reinflow", "train", *rest]
    print("launching: torch.distributed.run " + " ".join(args), flush=True)
    quiet = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
             if name.startswith("torch.distributed.elastic")] + [logging.getLogger("torch.distributed.elastic")]
    levels = [q.level for q in quiet]
    with tempfile.TemporaryDirectory(prefix="reinflow-ranks-") as tmp:
        os.environ[RANK_ERRORS] = str(Path(tmp) / "error")  # the ranks inherit it
        for q in quiet:                                        # its own per-rank failure log is ours to give
            q.setLevel(logging.CRITICAL)
        try:
            run(parse_args(args))
            return 0
        except (ChildFailedError, SignalException) as exc:
            # SignalException: Ctrl-C / SIGTERM reached the launcher, which passed it on to the ranks
            codes = sorted({f.exitcode for f in exc.failures.values()}) if isinstance(exc, ChildFailedError) else []
            written = sorted(Path(tmp).glob("error.*"), key=lambda f: f.stat().st_mtime_ns)
            if written:
                print(f"error: {written[0].read_text().strip()}", file=sys.stderr)
                return 2
            if isinstance(exc, SignalException):  # the ranks stopped after their iteration, as one process does
                print(f"[reinflow] --nproc {nproc}: stopped by {signal.Signals(exc.sigval).name}; the run folder keeps "
                      "its last complete checkpoint (continue with reinflow train --out RUN --resume)", file=sys.stderr)
                return 0
            if 1 in codes:  # a bug: the rank printed its traceback and how to report it
                return 1
            print(f"error: reinflow train --nproc {nproc}: ranks {sorted(exc.failures)} ended with exit codes {codes} "
                  "(negative: killed by that signal) before reporting why; run it with --nproc 1 to see the error",
                  file=sys.stderr)
            return 2
        finally:
            os.environ.pop(RANK_ERRORS, None)
            for q, level in zip(quiet, levels):
                q.setLevel(level)


def _resume_defaults(argv: list[str]) -> tuple[ResumePoint, str, list[str]]:
    """``--resume``: (the run's ``resume_point``, read once and passed to the trainer, where it was read
    from, the other flags). The config saved with the run's checkpoint becomes the defaults, flags given
    now override it (the trainer refuses overrides that would change the model, chain or env)."""
    from reinflow.rl.runfolder import resume_point
    out, rest = pop_flag(argv, "--out")
    if out is None:
        raise ConfigError("--resume needs --out RUN_FOLDER (the run to continue)")
    cfg_flag, rest = pop_flag(rest, "--config")
    if cfg_flag:
        raise ConfigError("--resume and --config cannot be combined: a resumed run keeps its own config")
    ck, saved = resume_point(out)  # ck None: the run was stopped before its first checkpoint and starts over
    where = (ck if ck is not None else Path(out)) / "config.json"
    if ck is None:
        print(f"[reinflow] {out} has no checkpoint yet (stopped before its first one): starting it over from "
              "iteration 0 with its saved config", file=sys.stderr, flush=True)
    return (ck, saved), f"--resume: {where}", ["--out", out, *rest]
