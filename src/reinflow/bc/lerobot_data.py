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

import json
import os
from pathlib import Path

import numpy as np

from reinflow import ConfigError

STATE, ACTION, IMAGES = "observation.state", "action", "observation.images"
SIDECAR = "reinflow.json"


def is_lerobot_dataset(path: str | os.PathLike) -> bool:
    """A LeRobot dataset folder (``meta/info.json``), as opposed to reinflow's ``demos.npz`` format."""
    return (Path(path) / "meta" / "info.json").is_file()


def lerobot_dataset_class():
    """LeRobot's dataset class, with a clear error when the extra is missing."""
    try:
        from reinflow.policies.smolvla.tv_shim import ensure_torchvision
        ensure_torchvision()  # lerobot.datasets imports torchvision at module level
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as exc:
        raise ConfigError(f"LeRobot datasets need LeRobot: pip install -e '.[smolvla]' && pip install --no-deps "
                          f"lerobot==0.4.4 torchvision==0.28.0 (see docs/smolvla.md) [{exc}]") from None
    return LeRobotDataset


def _fresh_root(root: str | os.PathLike) -> Path:
    """LeRobot creates the dataset folder itself: an existing one must be empty (it is removed)."""
    root = Path(root)
    if root.is_dir() and not any(root.iterdir()):
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


def load_lerobot_demos(root: str | os.PathLike, repo_id: str | None = None):
    """Any LeRobot dataset folder -> ``Demos`` (state, action, images per camera, episode splits).
    Images come back uint8 [T, H, W, 3]; the instruction is the first frame's task."""
    from reinflow.envs.demos import Demos
    root = Path(root)
    if not is_lerobot_dataset(root):
        raise ConfigError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    info = json.loads((root / "meta" / "info.json").read_text())
    feats = info.get("features", {})
    for key in (STATE, ACTION):
        if key not in feats:
            raise ConfigError(f"{root}: LeRobot dataset has no '{key}' feature (has: {', '.join(sorted(feats))}); "
                              f"reinflow needs '{STATE}' and '{ACTION}'")
    video = [k for k, f in feats.items() if f.get("dtype") == "video"]
    if video:
        raise ConfigError(f"{root}: video features {', '.join(video)} need LeRobot's video decoder (torchcodec), "
                          "which this install lacks; re-record with images (use_videos=False)")
    ds = lerobot_dataset_class()(repo_id or str(info.get("repo_id", "local/dataset")), root=root)
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
    meta = json.loads(side.read_text()) if side.is_file() else {}
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
    """The env's control rate (its ``render_fps``), the dataset's fps."""
    import gymnasium as gym

    from reinflow.envs.arm import register_envs
    register_envs()
    env = gym.make(env_id, **env_kwargs)
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
