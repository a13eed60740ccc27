"""``reinflow quickstart [--policy mlp|smolvla]``: demos -> BC -> evaluation -> fine-tuning -> evaluation
-> report, one pipeline for every policy kind (``reinflow.quickstart``)."""

from __future__ import annotations

import sys

from reinflow.cli_args import tyro_cli

# the quickstart's --eval-episodes of reinflow <= 0.2: in reinflow train --eval-episodes is the periodic evaluation
OLD_HELDOUT_FLAG = "--eval-episodes"


def run(argv: list[str]) -> int:
    from reinflow.quickstart import QuickstartConfig, run_quickstart
    if any(a == OLD_HELDOUT_FLAG or a.startswith(OLD_HELDOUT_FLAG + "=") for a in argv):
        print(f"[reinflow] quickstart {OLD_HELDOUT_FLAG} is now --heldout-episodes (episodes before and after "
              "fine-tuning); the run's periodic evaluation is --train-eval-episodes", file=sys.stderr, flush=True)
    run_quickstart(tyro_cli(QuickstartConfig, list(argv), "reinflow quickstart"))
    return 0
