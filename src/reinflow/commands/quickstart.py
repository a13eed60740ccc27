"""``reinflow quickstart [--policy mlp|smolvla]``: demos -> BC -> evaluation -> fine-tuning -> evaluation
-> report, one pipeline for every policy kind (``reinflow.quickstart``)."""

from __future__ import annotations

from reinflow.cli_args import tyro_cli


def run(argv: list[str]) -> int:
    from reinflow.quickstart import QuickstartConfig, run_quickstart
    run_quickstart(tyro_cli(QuickstartConfig, list(argv), "reinflow quickstart"))
    return 0
