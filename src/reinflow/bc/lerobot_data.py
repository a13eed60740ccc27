"""Demonstrations as a LeRobot dataset (the installed LeRobot's format: v3.0 in 0.4.4), both ways.

``write_lerobot_dataset(demos, root)`` turns reinflow demos (``reinflow.envs.demos.Demos``) into a
``LeRobotDataset`` through LeRobot's own writer (``LeRobotDataset.create`` / ``add_frame`` /
``save_episode`` / ``finalize``), with the feature names SmolVLA reads::

    observation.state            float32 [S]          the env's state vector
    observation.images.<camera>  image   [H, W, 3]    one per recorded camera (PNG in the parquet files)
    action                       float32 [A]          the expert's action in the env's [-1, 1] frame
    task                         the env's instruction (LeRobot's per-frame task string)

plus ``meta/reinflow.json`` (env id, env kwargs, seeds, expert, per-episode success) so
``reinflow pretrain`` knows the env a dataset came from. Rewards are not written: LeRobot 0.4.4's
writer cannot encode shape-(1,) float features with numpy 2 (``next.reward`` fails in
``datasets``), and behaviour cloning does not read them.

``load_lerobot_demos(root)`` reads any such folder back (a user's own LeRobot data included: it
needs ``observation.state`` and ``action``) into ``Demos``, through ``LeRobotDataset(repo_id,
root=root)``, offline. Nothing here is imported by reinflow's core path unless a LeRobot dataset
is asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from reinflow import ConfigError

STATE, ACTION, IMAGES = "observation.state", "action", "observation.images"
SIDECAR = "reinflow.json"
# info.json counts, bounded before LeRobot allocates anything from them (total_episodes 1e15 once
# grew the process to 2.9 GB): far above any dataset reinflow trains on
INFO_BOUNDS = {"total_episodes": (0, 1_000_000), "total_frames": (0, 1_000_000_000), "total_tasks": (0, 1_000_000),
               "chunks_size": (1, 1_000_000), "fps": (1, 10_000)}
FEATURE_VALUES_MAX = 2**26       # values of one frame's feature (an image: H x W x 3)


def is_lerobot_dataset(path: str | os.PathLike) -> bool:
    """A LeRobot dataset folder (``meta/info.json``), as opposed to reinflow's ``demos.npz`` format."""
    return (Path(path) / "meta" / "info.json").is_file()


def lerobot_dataset_class():
    """LeRobot's dataset class, with a clear error when the extra is missing. Its ``download`` is
    refused: reinflow reads a dataset from its folder, offline (a missing file once sent it to the
    Hub and ended in a raw MaxRetryError)."""
    try:
        from reinflow.policies.smolvla.tv_shim import ensure_torchvision
        ensure_torchvision()  # lerobot.datasets imports torchvision at module level
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as exc:
        raise ConfigError(f"LeRobot datasets need LeRobot: pip install -e '.[smolvla]' && pip install --no-deps "
                          f"lerobot==0.4.4 torchvision==0.28.0 (see docs/smolvla.md) [{exc}]") from None

    class LocalLeRobotDataset(LeRobotDataset):
        def download(self, *args, **kwargs):
            raise ConfigError(f"{self.root}: the LeRobot dataset's files are incomplete (LeRobot wanted to download "
                              "the rest); reinflow reads a dataset from its folder only: copy the whole dataset there")

        pull_from_repo = download

    return LocalLeRobotDataset


def read_lerobot_info(root: str | os.PathLike) -> dict:
    """``meta/info.json`` of a LeRobot dataset, checked before LeRobot reads anything: bounded size and
    depth, the format version this LeRobot reads, counts and feature shapes in range, and the files
    LeRobot would otherwise download. ConfigError naming the file and the field."""
    from reinflow.untrusted import read_json
    from reinflow.untrusted import check_tree
    root = Path(root)
    check_tree(root, "LeRobot dataset")  # a symlinked data file or data/ folder would be read from outside it
    where = root / "meta" / "info.json"
    info = read_json(where)
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise ConfigError(f"{where}: expected an object with a 'features' object")
    version, want = info.get("codebase_version"), _codebase_version()
    if version != want:
        raise ConfigError(f"{where}: codebase_version={str(version)[:20]!r}; the installed LeRobot reads {want} "
                          f"datasets (a v2.1 one converts with: python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 "
                          "--repo-id ID --root DIR, LeRobot's own script)")
    for key in (STATE, ACTION):
        if key not in info["features"]:
            raise ConfigError(f"{root}: LeRobot dataset has no '{key}' feature (has: "
                              f"{', '.join(sorted(map(str, info['features']))[:10])}); reinflow needs '{STATE}' and '{ACTION}'")
    for key, (lo, hi) in INFO_BOUNDS.items():
        val = info.get(key)
        if (val is not None or key == "fps") and (isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi):
            raise ConfigError(f"{where}: {key}={str(val)[:40]}; expected an integer in [{lo}, {hi}]")
    for name, feat in info["features"].items():
        shape = feat.get("shape") if isinstance(feat, dict) else None
        if not (isinstance(shape, list) and 0 < len(shape) <= 4 and all(
                isinstance(d, int) and not isinstance(d, bool) and 0 < d <= FEATURE_VALUES_MAX for d in shape)
                and int(np.prod(shape)) <= FEATURE_VALUES_MAX and isinstance(feat.get("dtype"), str)):
            raise ConfigError(f"{where}: feature {str(name)[:60]!r}: expected {{dtype, shape}} with 1-4 positive "
                              f"sizes of at most {FEATURE_VALUES_MAX} values in all")
    missing = [rel for rel, pattern in (("meta/tasks.parquet", None), ("meta/episodes/", "*/*.parquet"),
                                        ("data/", "*/*.parquet"))
               if not ((root / rel).is_file() if pattern is None else any((root / rel).glob(pattern)))]
    if missing:
        raise ConfigError(f"{root}: LeRobot dataset without {', '.join(missing)}; reinflow reads a dataset from its "
                          "folder, offline, and never downloads: copy the whole dataset there")
    for key, rel, cols in (("total_episodes", "meta/episodes", ()), ("total_frames", "data", (STATE, ACTION))):
        rows = _parquet_rows(root / rel, cols)
        if rows != info.get(key):  # LeRobot would take the difference for files still to download
            raise ConfigError(f"{where}: {key}={info.get(key)} but {rel}/ holds {rows} rows; the dataset is incomplete "
                              "or was edited: record it again (reinflow demos --format lerobot) or repair it")
    return info


def _parquet_rows(folder: Path, columns: tuple[str, ...]) -> int:
    """Rows of the parquet files under ``folder`` from their footers (no data is read); each must hold
    ``columns`` (a missing one would be read as all-null, then NaN)."""
    import pyarrow.parquet as pq
    total = 0
    for f in sorted(folder.glob("*/*.parquet")):
        try:
            pf = pq.ParquetFile(f)
            total, names = total + pf.metadata.num_rows, pf.schema_arrow.names
        except Exception as exc:  # noqa: BLE001 - pyarrow reports a damaged footer with several types
            raise ConfigError(f"{f}: not a readable parquet file ({type(exc).__name__})") from None
        for col in columns:
            if col not in names:
                raise ConfigError(f"{f}: has no '{col}' column (meta/info.json lists it); reinflow trains on "
                                  f"'{STATE}' and '{ACTION}': record the dataset again or repair it")
    return total


def _codebase_version() -> str:
    lerobot_dataset_class()
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION
    return CODEBASE_VERSION


# What LeRobot is handed instead of a dataset's own repo id and revision: the Hub refuses this id before
# any request ("--" is not allowed in a repo id) and "local" is no codebase version, so LeRobot's
# fallbacks for a damaged folder (look up the version tags, download the metadata) cannot go online.
OFFLINE_REPO_ID, OFFLINE_REVISION = "reinflow-local/offline--dataset", "local"


@contextlib.contextmanager
def _hub_offline():
    """The Hugging Face Hub and ``datasets`` in offline mode while a dataset is opened (the env variables
    for code that reads them late, huggingface_hub's constant for code that already imported it)."""
    import huggingface_hub.constants as hub
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved_env, saved_const = {k: os.environ.get(k) for k in names}, hub.HF_HUB_OFFLINE
    os.environ.update({k: "1" for k in names})
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = saved_const
        for k, v in saved_env.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def open_lerobot_dataset(root: str | os.PathLike, **kwargs):
    """``LeRobotDataset`` over a local folder (checked by ``read_lerobot_info`` first), offline; whatever
    LeRobot raises on a damaged dataset is one ConfigError naming the folder."""
    root = Path(root)
    info = read_lerobot_info(root)
    try:
        with _hub_offline():
            ds = lerobot_dataset_class()(OFFLINE_REPO_ID, root=root, revision=OFFLINE_REVISION, **kwargs)
        check_contents(ds, info, root, whole=kwargs.get("episodes") is None)
        return ds
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - LeRobot's reader fails on damaged files with any error type
        raise ConfigError(f"{root}: LeRobot could not read the dataset ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def check_contents(ds, info: dict, root: Path, whole: bool = True) -> None:
    """What LeRobot read agrees with ``meta/info.json`` (episode table rows, frames when ``whole``), has
    the columns reinflow trains on, and holds finite numbers in them; ConfigError naming what differs."""
    fix = "the dataset is incomplete or was edited: record it again (reinflow demos --format lerobot) or repair it"
    rows = len(ds.meta.episodes) if ds.meta.episodes is not None else 0
    if rows != info.get("total_episodes"):
        raise ConfigError(f"{root}: meta/info.json says total_episodes={info.get('total_episodes')} but the episode "
                          f"table (meta/episodes/) has {rows} rows; {fix}")
    cols = ds.hf_dataset.column_names
    for key in (STATE, ACTION):
        if key not in cols:
            raise ConfigError(f"{root}: the data files have no '{key}' column (meta/info.json lists it); {fix}")
    if whole and ds.hf_dataset.num_rows != info.get("total_frames"):
        raise ConfigError(f"{root}: meta/info.json says total_frames={info.get('total_frames')} but the data files "
                          f"hold {ds.hf_dataset.num_rows} frames; {fix}")
    table = ds.hf_dataset.with_format("numpy")
    for key in (STATE, ACTION):
        values = np.asarray(table[key], dtype=np.float64).reshape(ds.hf_dataset.num_rows, -1)
        bad = np.nonzero(~np.isfinite(values).all(axis=1))[0]
        if len(bad):
            raise ConfigError(f"{root}: column '{key}' holds NaN or inf (frame {int(bad[0])}, {len(bad)} frames in all); "
                              "reinflow trains only on finite data: fix or drop those frames")


def _fresh_root(root: str | os.PathLike) -> Path:
    """LeRobot creates the dataset folder itself: an existing one must be empty (it is removed)."""
    from reinflow.rl.runfolder import MARKER
    root = Path(root)
    if root.is_dir() and all(p.name == MARKER for p in root.iterdir()):  # empty, or claimed by reinflow demos
        (root / MARKER).unlink(missing_ok=True)
        root.rmdir()
    elif root.exists():
        raise ConfigError(f"{root}: already exists and is not empty; LeRobot writes a dataset into a new folder")
    return root


def dataset_features(state_dim: int, action_dim: int, cameras: dict[str, tuple[int, int]]) -> dict:
    """LeRobot feature spec; ``cameras``: name -> (H, W)."""
    feats = {STATE: {"dtype": "float32", "shape": (state_dim,), "names": [f"s{i}" for i in range(state_dim)]},
             ACTION: {"dtype": "float32", "shape": (action_dim,), "names": [f"a{i}" for i in range(action_dim)]}}
    for cam, (h, w) in cameras.items():
        feats[f"{IMAGES}.{cam}"] = {"dtype": "image", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    return feats


def write_lerobot_dataset(demos, root: str | os.PathLike, fps: int, repo_id: str | None = None,
                          progress: bool = True) -> Path:
    """Write ``demos`` (``Demos``) as a LeRobot dataset at ``root`` (must not exist). Returns root."""
    dataset_cls = lerobot_dataset_class()
    if not progress:  # LeRobot's writer shows a `datasets` progress bar per episode
        import datasets
        datasets.disable_progress_bars()
    root = _fresh_root(root)
    cams = {c: tuple(int(v) for v in eps[0].shape[1:3]) for c, eps in demos.images.items()}
    repo_id = repo_id or f"reinflow/{demos.env_id.split('/')[-1] or 'demos'}"
    ds = dataset_cls.create(repo_id=repo_id, fps=int(fps), features=dataset_features(
        demos.observations[0].shape[1], demos.actions[0].shape[1], cams), root=root, use_videos=False,
        robot_type="reinflow-arm")
    task = demos.instruction or "do the task"
    for e in range(demos.num_episodes):
        for t in range(len(demos.actions[e])):
            frame = {STATE: demos.observations[e][t].astype(np.float32), ACTION: demos.actions[e][t].astype(np.float32),
                     "task": task}
            for cam, eps in demos.images.items():
                frame[f"{IMAGES}.{cam}"] = eps[e][t]
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    meta = {k: demos.meta[k] for k in ("env_id", "env_kwargs", "obs_mode", "instruction", "episode_seeds",
                                       "episode_success", "seed", "action_noise", "expert") if k in demos.meta}
    (root / "meta" / SIDECAR).write_text(json.dumps({"format": "reinflow-lerobot", **meta}, indent=2))
    return root


def load_lerobot_demos(root: str | os.PathLike):
    """Any LeRobot dataset folder -> ``Demos`` (state, action, images per camera, episode splits).
    Images come back uint8 [T, H, W, 3]; the instruction is the first frame's task."""
    from reinflow.envs.demos import Demos
    from reinflow.untrusted import read_json
    root = Path(root)
    if not is_lerobot_dataset(root):
        raise ConfigError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    info = read_lerobot_info(root)
    feats = info["features"]
    video = [k for k, f in feats.items() if f.get("dtype") == "video"]
    if video:
        raise ConfigError(f"{root}: video features {', '.join(video)} need LeRobot's video decoder (torchcodec), "
                          "which this install lacks; re-record with images (use_videos=False)")
    ds = open_lerobot_dataset(root)
    cams = [k for k, f in feats.items() if f.get("dtype") == "image"]
    cols = {k: [] for k in (STATE, ACTION, "episode_index", *cams)}
    tasks = []
    for i in range(len(ds)):
        item = ds[i]
        for k in cols:
            cols[k].append(np.asarray(item[k]))
        tasks.append(item.get("task", ""))
    ep = np.asarray(cols.pop("episode_index")).reshape(-1)
    if len(ep) == 0:
        raise ConfigError(f"{root}: LeRobot dataset has no frames")
    split = np.nonzero(np.diff(ep))[0] + 1
    state = np.stack(cols[STATE]).astype(np.float32).reshape(len(ep), -1)
    action = np.stack(cols[ACTION]).astype(np.float32).reshape(len(ep), -1)
    side = root / "meta" / SIDECAR
    meta = read_json(side) if side.is_file() else {}
    if not isinstance(meta, dict) or not all(isinstance(meta.get(k, ""), str) for k in ("env_id", "instruction")) \
            or not all(isinstance(x, bool) for x in meta.get("episode_success", [])):
        raise ConfigError(f"{side}: expected a JSON object with string env_id / instruction and a list of "
                          "booleans episode_success")
    rewards = np.zeros(len(ep), np.float32)  # not stored (module doc); BC does not read them
    success = np.zeros(len(ep), bool)
    ends = np.append(split, len(ep)) - 1
    success[ends] = np.asarray(meta.get("episode_success", [False] * len(ends)), bool)[: len(ends)]
    images = {}
    for k in cams:  # LeRobot returns float [3, H, W] in [0, 1]
        img = (np.stack(cols[k]) * 255.0).round().clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        images[k[len(IMAGES) + 1:] if k.startswith(IMAGES + ".") else k] = np.split(img, split)
    meta.update(format="lerobot", lerobot_root=str(root), fps=int(info.get("fps", 0)), obs_dim=state.shape[1],
                action_dim=action.shape[1], lerobot_features=sorted(feats))
    return Demos(env_id=meta.get("env_id", ""), instruction=meta.get("instruction", tasks[0]),
                 observations=np.split(state, split), actions=np.split(action, split),
                 rewards=np.split(rewards, split), successes=np.split(success, split), images=images, meta=meta)



def load_any_demos(path: str | os.PathLike):
    """``Demos`` from a LeRobot dataset folder or from reinflow's ``demos.npz`` format."""
    from reinflow.envs.demos import load_demos
    if is_lerobot_dataset(path):
        return load_lerobot_demos(path)
    return load_demos(path)


def env_fps(env_id: str, env_kwargs: dict) -> int:
    """The env's control rate (its ``render_fps``), the dataset's fps; built as reinflow builds it (an env
    family's own kwargs, e.g. the SO-101's obs_mode, never reach gymnasium.make)."""
    from reinflow.envs.factory import build_env
    env = build_env(env_id, env_kwargs)
    try:
        return int(env.metadata.get("render_fps") or 10)
    finally:
        env.close()


def record_lerobot_demos(env_id: str, episodes: int, root: str | os.PathLike, **record_kwargs) -> dict:
    """``record_demos`` (scripted expert) straight into a LeRobot dataset at ``root``."""
    import shutil
    import tempfile

    from reinflow.envs.demos import load_demos, record_demos
    _fresh_root(root)  # fail before recording, not after
    tmp = tempfile.mkdtemp(prefix="reinflow_demos_")
    try:
        summary = record_demos(env_id, episodes, tmp, **record_kwargs)
        demos = load_demos(tmp)
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in demos.meta.get("env_kwargs", {}).items()}
        write_lerobot_dataset(demos, root, env_fps(env_id, kw), progress=record_kwargs.get("progress", True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**summary, "path": str(root), "format": "lerobot"}
