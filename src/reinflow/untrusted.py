"""Reading files that may come from anyone: run folders, checkpoints, datasets, config files, W&B folders.

Every reader here bounds what it reads *before* parsing, so a crafted file costs one ``error:`` line:

* the file type: only a regular file is opened for reading (a FIFO would block forever, ``/dev/zero``
  never ends); it is opened non-blocking, then checked with ``fstat`` on the open descriptor;
* the size: at most ``max_bytes`` (a few MiB for a config; more for metrics);
* the nesting depth: JSON and YAML parsers recurse, and so does every walk over what they return;
* YAML aliases: an alias is a pointer, so ten nested lists of ten aliases expand to 10^10 nodes
  (the "billion laughs"); the expanded node count is bounded before anything is built;
* integers: a JSON integer longer than 100 digits is read as a float (±inf beyond float range),
  never as a 5000-digit int (Python refuses to even print one).

``check_tree`` refuses symlinks (and FIFOs, devices, sockets) anywhere inside a folder reinflow
writes into or reads as a whole: a link would make a write land outside the folder.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from reinflow import ConfigError

MiB = 2**20
CONFIG_MAX_BYTES = 16 * MiB      # config.json, meta.json, info.json, trainer_state.json, YAML configs
METRICS_MAX_BYTES = 512 * MiB    # metrics.jsonl / wandb-history.jsonl (~250k iterations at 2 KiB)
LINE_MAX_BYTES = 4 * MiB         # one metrics line
MAX_DEPTH = 64                   # nesting of JSON / YAML containers
MAX_YAML_NODES = 1_000_000       # YAML nodes after expanding aliases
MAX_INT_DIGITS = 100
MAX_TREE_ENTRIES = 1_000_000     # entries check_tree walks


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | os.PathLike, max_bytes: int = CONFIG_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ConfigError naming the file otherwise."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot open ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{p}: is {_kind(st.st_mode)}; expected a regular file")
        if st.st_size > max_bytes:
            raise ConfigError(f"{p}: is {st.st_size} bytes; the most reinflow reads from such a file is {max_bytes}")
        chunks, total = [], 0
        while True:                                 # the file may grow while it is read: read at most max_bytes + 1
            chunk = os.read(fd, min(MiB, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ConfigError(f"{p}: is larger than {max_bytes} bytes, the most reinflow reads from such a file")
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def check_regular_file(path: str | os.PathLike, max_bytes: int) -> None:
    """A regular file of at most ``max_bytes``, for readers that open the path themselves (np.load)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: is {_kind(st.st_mode)}; expected a regular file")
    if st.st_size > max_bytes:
        raise ConfigError(f"{path}: is {st.st_size} bytes; the most reinflow reads from such a file is {max_bytes}")


def read_text(path: str | os.PathLike, max_bytes: int = CONFIG_MAX_BYTES) -> str:
    data = read_bytes(path, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) <= MAX_INT_DIGITS else float(text)


def check_depth(obj: Any, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """``obj`` if its containers nest at most ``max_depth`` deep (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > max_depth:
            raise ConfigError(f"{where}: nested more than {max_depth} levels deep")
        stack.extend((c, depth + 1) for c in children)
    return obj


def parse_json(text: str, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with its failures (syntax, recursion, huge integers) as one ConfigError."""
    try:
        obj = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested more than {max_depth} levels deep") from None
    except ValueError as exc:                        # e.g. a number the float parser rejects
        raise ConfigError(f"{where}: malformed JSON ({str(exc)[:80]})") from None
    return check_depth(obj, where, max_depth)


def read_json(path: str | os.PathLike, max_bytes: int = CONFIG_MAX_BYTES) -> Any:
    return parse_json(read_text(path, max_bytes), str(path))


def iter_jsonl(path: str | os.PathLike, max_bytes: int = METRICS_MAX_BYTES):
    """(line number, stripped line) of a JSON-lines file, read with the same bounds (a regular file,
    at most ``max_bytes``); lines longer than LINE_MAX_BYTES are yielded as ``None`` (damaged)."""
    for n, line in enumerate(read_text(path, max_bytes).split("\n"), 1):
        yield n, (None if len(line) > LINE_MAX_BYTES else line)


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` with aliases counted where they expand (MAX_YAML_NODES) and depth bounded."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _count_nodes(node, where)
        obj = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: malformed YAML{at} ({getattr(exc, 'problem', None) or 'syntax error'})") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    return check_depth(obj, where)


def _count_nodes(root: Any, where: str) -> None:
    """Nodes of the YAML graph as the document would expand them (an alias counts its whole target)."""
    import yaml

    sizes: dict[int, int] = {}
    order, stack = [], [(root, 1)]
    while stack:                                     # post-order over the graph, each node once
        node, depth = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        sizes[id(node)] = 0
        order.append(node)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((c, depth + 1) for kv in node.value for c in kv)
    for node in reversed(order):                     # children were appended after their parents
        if isinstance(node, yaml.SequenceNode):
            kids = node.value
        elif isinstance(node, yaml.MappingNode):
            kids = [c for kv in node.value for c in kv]
        else:
            kids = []
        sizes[id(node)] = min(1 + sum(sizes[id(c)] for c in kids), MAX_YAML_NODES + 1)
    if sizes[id(root)] > MAX_YAML_NODES:
        raise ConfigError(f"{where}: its aliases expand to more than {MAX_YAML_NODES} values (a YAML alias bomb?)")


def check_tree(root: str | os.PathLike, what: str, skip: tuple[str, ...] = ()) -> None:
    """Refuse symlinks and special files anywhere inside ``root`` (``root`` itself may be a link the
    user typed); nothing is followed. ``skip``: top-level folders another tool owns (W&B's ``wandb/``
    holds its own ``latest-run`` link; reinflow never writes there). ConfigError naming the first one."""
    top = Path(root)
    if not top.is_dir():
        return
    stack, seen = [top], 0
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise ConfigError(f"{what} {top}: cannot list {folder} ({exc.strerror or exc})") from None
        for entry in entries:
            if folder == top and entry.name in skip and entry.is_dir(follow_symlinks=False):
                continue
            seen += 1
            if seen > MAX_TREE_ENTRIES:
                raise ConfigError(f"{what} {top}: holds more than {MAX_TREE_ENTRIES} files")
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                raise ConfigError(f"{what} {top}: {Path(entry.path).relative_to(top)} is a symlink; reinflow never "
                                  f"follows links inside a {what} (a read or write would reach outside it): "
                                  "replace it with the real file or folder")
            if stat.S_ISDIR(mode):
                stack.append(Path(entry.path))
            elif not stat.S_ISREG(mode):
                raise ConfigError(f"{what} {top}: {Path(entry.path).relative_to(top)} is {_kind(mode)}; expected "
                                  "regular files and folders only")


# --- env kwargs that name files -----------------------------------------------------------------------
ENV_FILE_MAX_BYTES = 64 * MiB                     # a model/asset file an env kwarg names (MuJoCo XML, mesh ...)
_FILE_KEYS = ("file", "path", "dir", "xml", "urdf", "mjcf", "asset", "mesh")
_FILE_EXTS = (".xml", ".urdf", ".mjcf", ".mjb", ".stl", ".obj", ".msh", ".png", ".jpg", ".npz", ".npy", ".json",
              ".yaml", ".yml", ".pkl", ".pt", ".pth", ".safetensors", ".h5", ".txt", ".csv")


def _names_a_file(key: str, value: str) -> bool:
    k, v = key.lower(), value.strip()
    return (any(k.endswith(s) for s in _FILE_KEYS) or "/" in v or "\\" in v or v.startswith("~")
            or v.lower().endswith(_FILE_EXTS))


def file_kwargs(obj: Any, key: str = "") -> list[tuple[str, str]]:
    """(key, value) of every string in env kwargs ``obj`` (nested lists/dicts too) that names a file:
    its key says so (``xml_file``, ``model_path`` ...), or its value looks like a path or a file name."""
    found, stack = [], [(key, obj)]
    while stack:
        k, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((str(kk), vv) for kk, vv in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((k, vv) for vv in v)
        elif isinstance(v, str) and v and _names_a_file(k, v):
            found.append((k, v))
    return found


def check_env_kwargs_files(kw: Any, source: str | None = None) -> None:
    """Env kwargs that name files: refused when read from a file (``source``: a run's config.json, a
    checkpoint, a ``--config`` file: it would make reinflow open a path outside it); typed on the
    command line (``source`` None), each existing one must be a regular file of at most
    ENV_FILE_MAX_BYTES (a FIFO would hang the env's ``open()``, ``/dev/zero`` never ends)."""
    for key, value in file_kwargs(kw):
        if source is not None:
            raise ConfigError(f"env_kwargs {key}={value!r}: names a file, and it was read from {source}; reinflow "
                              "never opens a path named by a run folder, checkpoint or config file: pass it on the "
                              f"command line instead (--env-kwargs '{{\"{key}\": ...}}')")
        path = os.path.expanduser(value)
        if os.path.lexists(path):
            try:
                check_regular_file(path, ENV_FILE_MAX_BYTES)
            except ConfigError as exc:
                raise ConfigError(f"env_kwargs {key}={value!r}: {str(exc).partition(': ')[2]}") from None
