"""SmolVLA behaviour cloning on a LeRobot dataset, through LeRobot's own loss.

The dataset is read by ``LeRobotDataset(repo_id, root, delta_timestamps={"action": chunk})`` (LeRobot's
own action chunking, as its training script does), batches go through the policy's LeRobot
preprocessor (tokenizer, normalisation with the dataset's state stats) and the loss is
``SmolVLAPolicy.forward(batch)`` (flow matching, ``x_t = t noise + (1 - t) action``). The result is a
LeRobot ``from_pretrained`` folder (``<out>/lerobot``, weights + config + pre/post processors) that
``reinflow train --policy smolvla --policy-path <out>`` fine-tunes.

Frames: the action normalisation stats are the env's bounds (mid, half-range), so SmolVLA's
normalised action frame is the env's [-1, 1] frame, the one reinflow's sigma bounds are set in;
the state is standardised with the dataset's mean / std.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from reinflow import ConfigError
from reinflow.untrusted import read_json


@dataclass
class SmolVLABCConfig:
    """Behaviour cloning of LeRobot's SmolVLA on a LeRobot dataset (LeRobot's own flow-matching loss).
    Its callers validate the values (``PretrainConfig``, ``QuickstartConfig``)."""

    dataset: str
    """LeRobot dataset folder (meta/info.json), e.g. from `reinflow demos --format lerobot`"""
    out: str
    """output folder: <out>/lerobot is the LeRobot policy folder"""
    vlm_path: str
    """SmolVLM backbone folder / hub id of the fresh SmolVLA (e.g. from `reinflow smolvla-tiny`)"""
    chunk_size: int = 50
    """actions per chunk H"""
    trainable: Literal["heads", "expert", "all"] = "all"
    """parameters BC trains (a random tiny backbone needs all; a pretrained VLM: expert)"""
    steps: int = 300
    """gradient steps"""
    batch_size: int = 32
    """samples per step"""
    lr: float = 1e-3
    """AdamW learning rate (cosine-decayed; LeRobot's betas and grad clip)"""
    max_episodes: int | None = None
    """use only the first N episodes (a deliberately weaker policy)"""
    image_shift: int = 0
    """shift each training image by up to this many pixels (``shift_images``; 0: off)"""
    state_noise: float = 0.0
    """std of Gaussian noise added to the normalised state of each training sample (0: off)"""
    seed: int = 0
    """torch seed"""
    device: str = "cpu"
    """torch device"""
    progress: bool = True
    """show a progress bar"""


def dataset_spaces(root: Path, info: dict, side: dict):
    """(observation space, action space) of the policy: the recording env's own spaces for reinflow
    datasets, else from the dataset's features (actions bounded by their min / max)."""
    import gymnasium as gym

    if side.get("env_id"):
        from reinflow.envs.factory import check_env_id, env_spaces
        check_env_id(side["env_id"], allow_import=False, source=str(root / "meta" / "reinflow.json"))  # data
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in side.get("env_kwargs", {}).items()}
        return env_spaces(side["env_id"], kw)
    feats = info["features"]
    spaces = {"state": gym.spaces.Box(-np.inf, np.inf, tuple(feats["observation.state"]["shape"]), np.float32)}
    for key, f in feats.items():
        if f.get("dtype") == "image" and key.startswith("observation.images."):
            h, w = _hw(f)
            spaces[key.split(".", 2)[2]] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
    stats = read_json(root / "meta" / "stats.json")
    try:
        lo, hi = np.asarray(stats["action"]["min"], np.float32), np.asarray(stats["action"]["max"], np.float32)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{root / 'meta' / 'stats.json'}: expected action min / max lists") from None
    return gym.spaces.Dict(spaces), gym.spaces.Box(lo, np.maximum(hi, lo + 1e-6))


def _hw(feature: dict) -> tuple[int, int]:
    shape, names = list(feature["shape"]), list(feature.get("names") or [])
    if names[:1] == ["channels"] or shape[0] == 3:  # channel-first
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


IMAGE_PREFIX = "observation.images."


def load_chunked(root: Path, fps: int, chunk: int, max_episodes: int | None, read_batch: int = 1024) -> dict:
    """Every frame of the dataset as one batch: observations, ``action`` [N, H, A] (LeRobot's
    ``delta_timestamps`` chunking; past an episode's end it repeats the last action), ``task``.

    Camera images ([N, 3, H, W]) are kept as uint8, read ``read_batch`` frames at a time: LeRobot's float
    [0, 1] copies of every frame took 6 GiB of memory for 47k 64x64 frames and would not fit for a few
    thousand demos; ``float_images`` gives LeRobot's floats back exactly, one training batch at a time."""
    from reinflow.bc.lerobot_data import open_lerobot_dataset
    episodes = list(range(max_episodes)) if max_episodes else None
    ds = open_lerobot_dataset(root, episodes=episodes, delta_timestamps={"action": [i / fps for i in range(chunk)]})
    parts: dict[str, list] = {}
    for batch in torch.utils.data.DataLoader(ds, batch_size=read_batch, shuffle=False, num_workers=0):
        for k, v in batch.items():
            if k.startswith(IMAGE_PREFIX):  # LeRobot decodes uint8 v to v / 255: undone exactly
                v = (v * 255).round().to(torch.uint8)
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) if isinstance(v[0], torch.Tensor) else [x for part in v for x in part]
            for k, v in parts.items()}


def float_images(batch: dict) -> dict:
    """``batch`` with its uint8 camera images as LeRobot's float [0, 1] (the values it decodes to)."""
    return {k: v.float() / 255 if k.startswith(IMAGE_PREFIX) and v.dtype == torch.uint8 else v
            for k, v in batch.items()}


def shift_images(batch: dict, pad: int, generator: torch.Generator) -> dict:
    """Random-shift augmentation (as DrQ, arXiv 2004.13649): every camera image [B, C, H, W] of ``batch``
    padded by ``pad`` pixels repeating its edge, then cropped back to H x W at a random offset in
    [0, 2 * pad] per sample and axis, so the picture moves by up to ``pad`` pixels each way. ``pad`` 0
    returns ``batch`` and draws nothing."""
    if pad == 0:
        return batch
    out = dict(batch)
    for k, v in batch.items():
        if not k.startswith(IMAGE_PREFIX):
            continue
        b, _, h, w = v.shape
        padded = torch.nn.functional.pad(v.float(), (pad, pad, pad, pad), mode="replicate").to(v.dtype)
        dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).tolist()
        out[k] = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return out


def noisy_state(batch: dict, std: float, generator: torch.Generator) -> dict:
    """``batch`` with N(0, std²) added to its ``observation.state`` [B, S] (standardised by the
    preprocessor, so ``std`` is in standard deviations): a state made less reliable, so that BC has to
    read the images too. ``std`` 0 returns ``batch`` and draws nothing."""
    if std == 0:
        return batch
    state = batch["observation.state"]
    noise = torch.randn(state.shape, generator=generator).to(state.device, state.dtype)
    return {**batch, "observation.state": state + std * noise}


def smolvla_bc(cfg: SmolVLABCConfig) -> dict:
    """Train; write ``<out>/lerobot`` (+ loss_curve.png, bc_summary.json). Returns the summary."""
    from reinflow.bc.fit import fit
    from reinflow.bc.lerobot_data import SIDECAR, is_lerobot_dataset, read_lerobot_info
    from reinflow.policies.smolvla import build_smolvla_policy, export_lerobot
    from reinflow.policies.smolvla.policy import default_state_stats
    from reinflow.report.plots import plot_curve

    root = Path(cfg.dataset)
    if not is_lerobot_dataset(root):
        raise ConfigError(f"dataset={cfg.dataset}: not a LeRobot dataset folder (no meta/info.json); record one "
                          "with `reinflow demos --format lerobot --obs-mode pixels_state`")
    info = read_lerobot_info(root)
    side_path = root / "meta" / SIDECAR
    side = read_json(side_path) if side_path.is_file() else {}
    if not isinstance(side, dict):
        raise ConfigError(f"{side_path}: expected a JSON object")
    if not any(f.get("dtype") == "image" for f in info["features"].values()):
        raise ConfigError(f"dataset={cfg.dataset}: no camera images; SmolVLA needs them (record with "
                          "--obs-mode pixels_state)")
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    data = load_chunked(root, int(info["fps"]), cfg.chunk_size, cfg.max_episodes)
    n = len(data["task"])
    obs_space, act_space = dataset_spaces(root, info, side)
    state = data["observation.state"].double()
    stats = {"observation.state": {"mean": state.mean(0).tolist(), "std": state.std(0).clamp_min(1e-3).tolist()}}
    stats["action"] = default_state_stats(act_space.low, act_space.high)
    policy = build_smolvla_policy(obs_space, act_space, vlm_path=cfg.vlm_path, chunk_size=cfg.chunk_size,
                                  trainable=cfg.trainable, instruction=side.get("instruction") or data["task"][0],
                                  device=cfg.device, stats=stats)
    # the images stay uint8 and out of the preprocessor (SmolVLA's normalisation leaves them as they are)
    images = {k: v for k, v in data.items() if k.startswith(IMAGE_PREFIX)}
    batch_all = policy.preprocessor({k: v for k, v in data.items()
                                     if k.startswith(("observation.", "action", "task")) and k not in images})
    batch_all.update({k: v.to(cfg.device) for k, v in images.items()})
    keys = [k for k, v in batch_all.items() if isinstance(v, torch.Tensor) and v.shape[:1] == (n,)]
    params = policy.trainable_parameters()
    lcfg = policy.lerobot.config
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=lcfg.optimizer_betas, eps=lcfg.optimizer_eps,
                            weight_decay=lcfg.optimizer_weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy.lerobot.train()  # LeRobot's training mode for BC; the RL adapter puts it back in eval

    def step_loss() -> torch.Tensor:
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        batch = {k: batch_all[k][idx.to(batch_all[k].device)] for k in keys}
        batch = noisy_state(shift_images(batch, cfg.image_shift, gen), cfg.state_noise, gen)
        return policy.lerobot.forward(float_images(batch))[0]

    losses = fit(step_loss, opt, sched, cfg.steps, "smolvla BC", cfg.progress, (params, lcfg.optimizer_grad_clip_norm))
    policy.set_train_mode()
    out = Path(cfg.out)
    folder = export_lerobot(policy, out)
    k = min(20, len(losses))
    summary = {"frames": n, "episodes": int(len(set(data["episode_index"].tolist()))), "steps": cfg.steps,
               "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:])),
               "seconds": time.time() - t0, "lerobot_folder": str(folder), "env_id": side.get("env_id", ""),
               "config": asdict(cfg)}
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid") if len(losses) >= k else losses
    plot_curve(range(len(smooth)), smooth, "SmolVLA BC loss (LeRobot's SmolVLAPolicy.forward)", "step",
               f"loss ({k}-step mean)", out / "loss_curve.png", logy=True)
    (out / "bc_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
