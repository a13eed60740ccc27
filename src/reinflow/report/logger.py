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
import threading
from pathlib import Path
from typing import Any

from reinflow import ConfigError
from reinflow.untrusted import LINE_MAX_BYTES, iter_jsonl, parse_json


def truncate_metrics(path: Path, keep_below_iteration: int) -> None:
    """Drop half-written lines and lines with iteration >= ``keep_below_iteration``. Read line by line
    (a long run's file may be large); a line that is not a JSON object with an integer iteration is
    damaged and dropped. The file is replaced atomically."""
    if not path.exists():
        return
    if path.is_symlink() or not path.is_file():
        raise ConfigError(f"{path}: is not a regular file; a run's metrics.jsonl must be one")
    tmp = path.with_suffix(".jsonl.tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        for raw in src:
            if len(raw) > LINE_MAX_BYTES or not raw.endswith(b"\n"):
                continue
            try:
                row = parse_json(raw.decode("utf-8"), str(path))
            except (ConfigError, UnicodeDecodeError):
                continue                              # damaged bytes: that line is dropped
            it = row.get("iteration") if isinstance(row, dict) else None
            if isinstance(it, int) and not isinstance(it, bool) and it < keep_below_iteration:
                dst.write(raw)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, path)


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl (bounded: untrusted.iter_jsonl); unreadable lines are skipped."""
    rows = []
    for _, line in iter_jsonl(path):
        if not line:
            continue
        try:
            rows.append(parse_json(line, str(path)))
        except ConfigError:
            continue
    return rows


def _quiet_tensorboard_thread(args: Any) -> None:
    """TensorBoard writes from a thread; when a write fails (a full disk) the thread stores the error,
    which the next ``add_scalar``/``close`` raises in the main thread, and *also* prints a traceback.
    Only the main thread's one ``error:`` line should be seen: the thread's copy is dropped."""
    if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
        return
    _PREVIOUS_HOOK(args)


_PREVIOUS_HOOK = threading.excepthook


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
            if threading.excepthook is _PREVIOUS_HOOK:
                threading.excepthook = _quiet_tensorboard_thread
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
        try:
            self._f.write(json.dumps(row) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:  # name the file (a failed write's OSError has no filename)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        numeric = {k: v for k, v in row.items() if isinstance(v, (int, float)) and v is not None}
        if self._tb is not None:
            try:
                for k, v in numeric.items():
                    if k not in ("iteration", "env_steps") and math.isfinite(v):
                        self._tb.add_scalar(k, v, env_steps)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(self.out / "tensorboard")) from None
        if self._wandb is not None:
            self._wandb.log(numeric)

    def close(self) -> None:
        self._f.close()
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError as exc:  # close runs in `finally`: it must not hide the error that stopped the run
                print(f"[reinflow] warning: {self.out / 'tensorboard'}: {exc.strerror or exc}", flush=True)
        if self._wandb is not None:
            self._wandb.finish()


def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None  # strict JSON has no NaN/inf; a missing value reads as null
    return v
