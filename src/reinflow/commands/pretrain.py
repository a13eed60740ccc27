"""``reinflow pretrain``: flow-matching behaviour cloning on demonstrations (MLP flow policy, or SmolVLA)."""

from __future__ import annotations

import json

from reinflow.bc.pretrain import PretrainConfig, pretrain
from reinflow.cli_args import parse_with_defaults
from reinflow.rl.runfolder import check_out


def run(argv: list[str]) -> int:
    cfg = parse_with_defaults(PretrainConfig, argv, "reinflow pretrain")
    check_out(cfg.out, overwrite=cfg.overwrite, can_resume=False)
    summary = pretrain(cfg)
    print(json.dumps(summary, indent=2))
    print(f"checkpoint: {summary['out']} (loss curve: {summary['out']}/loss_curve.png)")
    return 0
