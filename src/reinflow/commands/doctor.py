"""``reinflow doctor RUN``: explain what went wrong in a run (reinflow or W&B folder, or a summary JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tyro

from reinflow import ReinflowError
from reinflow.cli_args import tyro_cli
from reinflow.report.doctor import DoctorArgs, _apply_flags, check_is_run, load_run, render
from reinflow.rl.health import diagnose


def run(argv: list[str]) -> int:
    """Returns the exit code (0 report, 2 bad input)."""
    args = tyro_cli(DoctorArgs, argv, "reinflow doctor", config=(tyro.conf.PositionalRequiredArgs,))
    try:
        hist, ctx, what = load_run(Path(args.path))
        check_is_run(hist, Path(args.path))
        ctx = _apply_flags(ctx, args)
        diag = diagnose(hist, ctx)
    except ReinflowError as e:
        print(f"error: reinflow doctor: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"findings": [f.as_dict() for f in diag.findings], "not_judged": diag.not_judged},
                         indent=2, allow_nan=False))
    else:
        print(render(diag, args.path, what, ctx))
    return 0
