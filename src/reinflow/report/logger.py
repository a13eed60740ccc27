"""One metrics logger with namespaced keys (``rollout/...``, ``ppo/...``, ``eval/...``; one namespace per
concern) and three sinks: ``metrics.jsonl`` (always), TensorBoard, W&B (optional; WANDB_MODE=offline
works offline). Every sink plots against the same x-axis, env steps (``env_steps`` in each row): runs of
algorithms whose iterations differ in size compare at equal samples.

Each jsonl line is one iteration, written with a single ``write`` + flush + fsync, so a kill
leaves at most a half line at the end, which ``truncate_metrics`` removes on resume together
with any iteration at or after the resume point (no duplicates).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def truncate_metrics(path: Path, keep_below_iteration: int) -> None:
    """Drop half-written lines and lines with iteration >= ``keep_below_iteration``."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(errors="replace").splitlines():  # damaged bytes: that line is dropped
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("iteration", -1) < keep_below_iteration:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class MetricsLogger:
    def __init__(self, out: str | Path, config: dict, tensorboard: bool = True, wandb: bool = False,
                 wandb_project: str = "reinflow", resume_from_iteration: int | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "metrics.jsonl"
        if resume_from_iteration is not None:
            truncate_metrics(self.path, resume_from_iteration)
        elif self.path.exists():
            self.path.unlink()
        self._f = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(self.out / "tensorboard"))
        self._wandb = None
        if wandb:
            try:
                import wandb as wb
            except ImportError:
                from reinflow import ConfigError
                raise ConfigError("wandb=True needs the extra: pip install 'reinflow[wandb]'") from None
            self._wandb = wb.init(project=wandb_project, config=config, dir=str(self.out),
                                  name=self.out.name, resume="allow")
            self._wandb.define_metric("env_steps")
            self._wandb.define_metric("*", step_metric="env_steps")  # the x-axis of every chart, as in TensorBoard

    def log(self, metrics: dict[str, Any], iteration: int, env_steps: int) -> None:
        row = {"iteration": iteration, "env_steps": env_steps}
        row.update({k: _clean(v) for k, v in metrics.items()})
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        numeric = {k: v for k, v in row.items() if isinstance(v, (int, float)) and v is not None}
        if self._tb is not None:
            for k, v in numeric.items():
                if k not in ("iteration", "env_steps") and math.isfinite(v):
                    self._tb.add_scalar(k, v, env_steps)
        if self._wandb is not None:
            self._wandb.log(numeric)

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON has no NaN/inf; a missing value reads as null
    return v
