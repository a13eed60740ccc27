"""Output folders are never lost by accident, one process writes a run at a time, and a resume
never changes what a run is.

* ``check_out`` (read-only, before anything is built): a non-empty ``--out`` without ``--resume``
  is refused, naming the two ways on (``--resume``, or ``--overwrite`` / a new folder); an output
  folder overlapping the starting checkpoint (``--policy-path``) is refused, so nothing writes there;
  ``--overwrite`` is refused for a folder reinflow did not make (a YAML ``out: ~/data`` with
  ``overwrite: true`` once moved any folder aside), and for the current folder or one above it.
* ``RunFolder`` / ``claim_out`` (just before the first write): the folder is locked (``flock`` on the
  folder itself: the kernel drops it when the process ends, however it ends, so a crash never leaves
  a stale lock, and the lock moves with the folder when ``--overwrite`` renames it); a second
  process gets one ``error:`` line. ``--overwrite`` moves the old folder aside to ``<out>.old-N``
  (nothing is deleted), then the folder is created with a ``.reinflow`` marker.
* ``resume_point``: what ``--resume`` continues: the run's newest complete checkpoint, or, for a run
  killed before its first checkpoint, nothing (it starts over from iteration 0 with its saved
  config). Symlinks anywhere in the run folder are refused first: a write would follow them; so is a
  folder that is a checkpoint, demo set, dataset or report (``folder_kind``): a pretrain checkpoint's
  config.json has a ``train`` section too, and was once "resumed" into. No writer's ``--out`` may lie
  inside a checkpoint, demo set or dataset either.
* ``resume_changes``: a resumed run may change how it trains (iterations, lr, logging ...) but not
  the model, the chain or the env it trains on; the changes are returned to be recorded.
Every command that writes a folder (train, quickstart, demos, pretrain) uses these.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

from reinflow import ConfigError, __version__

try:
    import fcntl
except ImportError:  # not POSIX: no locking (reinflow's supported platforms are Linux and macOS)
    fcntl = None

MARKER = ".reinflow"          # written into every folder reinflow claims (and ignored when judging "empty")

# bookkeeping of the command itself (a run folder may be moved), never a change of the run
NOT_RECORDED = ("out", "resume", "overwrite", "auto_scale", "scale_rule", "scale_ref_dim", "progress")


def _aside(p: Path) -> Path:
    n = 1
    while p.with_name(f"{p.name}.old-{n}").exists():
        n += 1
    return p.with_name(f"{p.name}.old-{n}")


def _non_empty(p: Path) -> bool:
    """Holds anything but reinflow's marker (a folder a run claimed and then was killed in is empty)."""
    try:
        return p.is_dir() and any(e.name != MARKER for e in os.scandir(p))
    except OSError as exc:
        raise ConfigError(f"out={p}: cannot read the folder ({exc.strerror})") from None


def made_by_reinflow(p: Path) -> bool:
    """A folder reinflow wrote: its marker, or (folders from before the marker) the layout of a run,
    a checkpoint, a demo set, a LeRobot dataset written by ``reinflow demos``, or a quickstart report."""
    return ((p / MARKER).is_file() or (p / "checkpoints" / "latest").is_file() or (p / "meta" / "reinflow.json").is_file()
            or _json_says(p / "config.json", lambda d: "train" in d or "reinflow_version" in d)
            or _json_says(p / "meta.json", lambda d: d.get("format") == "reinflow-demos")
            or _json_says(p / "summary.json", lambda d: "success_before" in d and "run_folder" in d))


# folders reinflow reads as a whole and never writes into (a run is written only into its own folder)
NOT_WRITABLE = ("checkpoint", "demo set", "LeRobot dataset")


def folder_kind(p: Path) -> str | None:
    """Which reinflow folder ``p`` is: 'checkpoint', 'demo set', 'LeRobot dataset', 'quickstart report',
    'run', or None (empty, unknown, or not there). Read-only; files are read with the bounds of
    ``reinflow.untrusted``."""
    if not p.is_dir():
        return None
    # a stray file alone (a demos.npz in a project folder) does not make one: the pair of files does
    if ((p / "model.safetensors").exists() and (p / "config.json").exists()) or \
            _json_says(p / "config.json", lambda d: "policy" in d or "format_version" in d):
        return "checkpoint"
    if ((p / "demos.npz").exists() and (p / "meta.json").exists()) or \
            _json_says(p / "meta.json", lambda d: d.get("format") == "reinflow-demos"):
        return "demo set"
    if (p / "meta" / "info.json").exists():
        return "LeRobot dataset"
    if _json_says(p / "summary.json", lambda d: "success_before" in d and "run_folder" in d):
        return "quickstart report"
    if (p / "checkpoints").is_dir() or _json_says(p / "config.json", lambda d: isinstance(d.get("train"), dict)):
        return "run"
    return None


def _check_not_inside(p: Path, out: str | Path) -> None:
    """Refuse an output folder inside a checkpoint, demo set or dataset (the folder itself is judged by
    ``--resume``, and a non-empty one is never written into without ``--overwrite``, which moves it aside)."""
    for q in p.absolute().parents:
        kind = folder_kind(q)
        if kind in NOT_WRITABLE:
            raise ConfigError(f"out={out}: lies inside {q}, which is a {kind}, not a run folder; reinflow never "
                              "writes into one (nothing was written): choose a new --out")


def _json_says(path: Path, test: Any) -> bool:
    from reinflow.untrusted import read_json
    try:
        data = read_json(path) if path.is_file() else None
    except ConfigError:
        return False
    return isinstance(data, dict) and bool(test(data))


def _check_overwrite(p: Path, out: str | Path) -> None:
    a = p.absolute()
    if not a.name or a == Path.cwd() or a in Path.cwd().parents or a == Path.home():
        raise ConfigError(f"out={out}: is the current folder, one above it or the home folder; --overwrite would "
                          "move it aside: name the run folder itself (e.g. --out runs/NAME)")
    if not made_by_reinflow(p):
        raise ConfigError(f"out={out}: --overwrite moves only folders reinflow wrote (a run, checkpoint, demo set or "
                          "quickstart report), and this one is not: nothing was moved; choose a new --out")


def check_out(out: str | Path, resume: bool = False, overwrite: bool = False, policy_path: str | None = None,
              can_resume: bool = True) -> None:
    """Refuse an output folder that would lose or overwrite something; writes nothing. ``can_resume``:
    the command has ``--resume`` (only ``train``), so a refusal may name it."""
    p = Path(out)
    if not str(out).strip():
        raise ConfigError("out='': needs a folder path")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"out={out}: is a file, not a folder; choose a folder path")
    parent = p.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"out={out}: {parent} is a file, so no folder can be made under it")
    if p.is_dir():
        _probe_lock(p, out)
    if resume:
        _check_not_inside(p, out)
        return
    if policy_path:
        a, b = p.resolve(), Path(policy_path).resolve()
        if a == b or a in b.parents or b in a.parents:
            raise ConfigError(f"out={out}: overlaps --policy-path {policy_path}; a run never writes into the "
                              "checkpoint it starts from: choose another --out")
    _check_not_inside(p, out)
    if _non_empty(p):
        if not overwrite:
            _refuse_non_empty(p, out, can_resume)
        _check_overwrite(p, out)


def _refuse_non_empty(p: Path, out: str | Path, can_resume: bool = True) -> None:
    raise ConfigError(f"out={out}: the folder exists and is not empty (an earlier run?); nothing was written. "
                      + ("Continue it with --resume, move" if can_resume else "Move") + " it aside with --overwrite "
                      f"(-> {_aside(p.absolute()).name}), or choose a new --out")


def _lock_fd(p: Path, out: str | Path, shared: bool = False) -> int | None:
    """An open descriptor of folder ``p`` holding its exclusive lock (``shared``: a shared one, which
    only tells whether a writer holds it); ConfigError if another process has it. A few short retries:
    another process's probe holds a shared lock for microseconds."""
    if fcntl is None:
        return None
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"out={out}: cannot open the folder ({exc.strerror or exc})") from None
    for attempt in range(5):
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise ConfigError(f"out={out}: cannot lock the folder ({exc.strerror or exc})") from None
            time.sleep(0.02 * (attempt + 1))
    os.close(fd)
    raise ConfigError(f"out={out}: another reinflow process is writing this folder (it holds the folder's lock); "
                      "wait for it to end, or choose another --out")


def _probe_lock(p: Path, out: str | Path) -> None:
    """Refuse a folder another process writes, without taking it (data-parallel ranks probe at once)."""
    fd = _lock_fd(p, out, shared=True)
    if fd is not None:
        os.close(fd)                                  # closing the descriptor releases the probe's lock


class RunFolder:
    """The output folder of one process: locked (if it exists) from construction until ``close``.

    ``claim`` creates it (or moves a non-empty one aside with ``overwrite``) and locks it. Use as a
    context manager, or keep the object for as long as the folder is written: the lock is released
    when it is closed or garbage-collected, and by the kernel when the process ends."""

    def __init__(self, out: str | Path, lock: bool = True):
        self.path, self.out, self.enabled = Path(out), out, lock
        self.moved: Path | None = None
        self._fd: int | None = None
        if lock and self.path.is_dir():
            self._fd = _lock_fd(self.path, out)

    def claim(self, overwrite: bool = False, can_resume: bool = True) -> Path | None:
        """Create the folder (moving a non-empty one aside with ``overwrite``), locked; returns where
        the earlier contents went (None if nothing was moved)."""
        p, old = self.path, None
        try:
            if self.enabled and self._fd is None and p.is_dir():
                self._fd = _lock_fd(p, self.out)
            if _non_empty(p):                         # re-checked under the lock: check_out ran before it
                if not overwrite:
                    _refuse_non_empty(p, self.out, can_resume)
                _check_overwrite(p, self.out)
                self.moved = _aside(p.absolute())
                p.rename(self.moved)                  # the lock moves with it until the new folder is locked
                old, self._fd = self._fd, None
            p.mkdir(parents=True, exist_ok=True)
            if self.enabled and self._fd is None:
                self._fd = _lock_fd(p, self.out)
            if old is not None:
                os.close(old)
            if not (p / MARKER).exists():
                (p / MARKER).write_text(json.dumps({"made_by": "reinflow", "version": __version__}) + "\n")
        except OSError as exc:
            raise ConfigError(f"out={self.out}: cannot create the folder ({exc.strerror or exc})") from None
        if self.moved is not None:
            print(f"[reinflow] moved the earlier contents of {p} aside to {self.moved}", flush=True)
        return self.moved

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def claim_out(out: str | Path, overwrite: bool = False, can_resume: bool = False) -> RunFolder:
    """``RunFolder(out)`` claimed: keep the returned object while writing the folder (its ``moved``:
    where ``overwrite`` put the earlier contents)."""
    folder = RunFolder(out)
    folder.claim(overwrite, can_resume)
    return folder


ResumePoint = tuple[Path | None, dict]
"""what ``--resume`` continues: (its checkpoint, or None for a run stopped before its first; its config.json)"""


def resume_point(out: str | Path) -> ResumePoint:
    """(checkpoint to resume from, its config.json) for ``--resume``; (None, the run's config.json) for
    a run killed before its first checkpoint, which then starts over from iteration 0. Refuses a run
    folder with a symlink anywhere in it, and one that is not a run of ``reinflow train``."""
    from reinflow.rl.checkpoint import read_checkpoint_config, resolve_checkpoint
    from reinflow.untrusted import check_tree, read_json
    p = Path(out)
    if not p.is_dir():
        raise ConfigError(f"--resume: {out} not found; is --out the folder of an earlier run?")
    kind = folder_kind(p)
    if kind not in (None, "run"):
        fix = {"checkpoint": f"start a new run from it with --policy-path {out} --out NEW_FOLDER",
               "demo set": f"pretrain on it with reinflow pretrain --demos {out}",
               "LeRobot dataset": f"pretrain on it with reinflow pretrain --demos {out}"}.get(kind, "choose the run folder")
        raise ConfigError(f"--resume: {out} is a {kind}, not a run folder of reinflow train; nothing was written: {fix}")
    check_tree(p, "run", skip=("wandb",))
    ckdir, config = p / "checkpoints", p / "config.json"
    started = ckdir.is_dir() and any(e.name == "latest" or e.name.startswith("iter_") for e in os.scandir(ckdir))
    if started or (ckdir.is_dir() and not config.is_file()):
        ck = resolve_checkpoint(p, for_resume=True)
        saved, where = read_checkpoint_config(ck), ck / "config.json"
    elif config.is_file():
        ck, saved, where = None, read_json(config), config
    else:
        raise ConfigError(f"--resume: {out} holds no checkpoint and no config.json (a run stopped before it wrote "
                          "anything, or not a run folder); start it again without --resume")
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict):
        raise ConfigError(f"--resume: {where} has no 'train' section; not a run folder of reinflow train")
    return ck, saved


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """``obj`` as JSON at ``path`` via a temp file + fsync + rename: a kill or a full disk leaves the
    old file or the new one, never half of one (OSError names ``path``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(obj, indent=2, default=str))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def resume_changes(new: dict[str, Any], saved: dict[str, Any], derived: dict[str, Any], where: str) -> dict:
    """``{field: {"from": saved, "to": new}}`` for the fields a resume changes; ConfigError for a
    frozen one. ``derived`` holds the sizes the run really used where its config said None
    (e.g. chunk_size taken from the checkpoint), so restating them is not a change."""
    from reinflow.rl.config import FROZEN_ON_RESUME, upgrade_legacy
    saved = upgrade_legacy(saved)
    changes = {}
    for name, val in new.items():
        if name in NOT_RECORDED or name not in saved:
            continue
        old = saved[name]
        if _same(val, old) or (old is None and name in derived and _same(val, derived[name])):
            continue
        if name in FROZEN_ON_RESUME:
            was = old if old is not None or name not in derived else derived[name]
            raise ConfigError(f"--resume: {name}={val!r} but the run in {where} was trained with {name}={was!r}; "
                              f"{name} defines the model, the chain or the env and cannot change on resume "
                              "(start a new run from its checkpoint with --policy-path instead)")
        changes[name] = {"from": old, "to": val}
    return changes


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b
