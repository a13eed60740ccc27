"""Construction, rebuild and export of the SmolVLA adapter (the API the trainer calls).

* ``build_smolvla_policy(observation_space, action_space, *, vlm_path | policy_path, ...)``
* ``load_smolvla_policy(dir_or_config)``: from ``policy_config()`` JSON or a ``save_extra`` folder.
* ``export_lerobot(policy, dir)``: ``dir/lerobot`` loads with ``SmolVLAPolicy.from_pretrained`` and
  LeRobot's ``make_pre_post_processors(cfg, pretrained_path=dir/lerobot)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reinflow import ConfigError
from reinflow.policies.smolvla.policy import (
    OBS_IMAGES,
    OBS_STATE,
    SmolVLAFlowPolicy,
    SETTINGS_FILE,
    SmolVLASettings,
    default_state_stats,
)
from reinflow.policies.smolvla.tv_shim import ensure_torchvision



def _spaces(observation_space: Any, action_space: Any) -> tuple[int, dict[str, list[int]], np.ndarray, np.ndarray]:
    import gymnasium as gym

    if not isinstance(observation_space, gym.spaces.Dict) or "state" not in observation_space.spaces:
        raise ConfigError("policy=smolvla needs image observations: a Dict observation space with 'state' and "
                          "camera images: --env-kwargs '{\"obs_mode\": \"pixels_state\"}' (the arm, MetaWorld, "
                          "the SO-101) or '{\"cameras\": [\"<camera of the model>\"]}' (any MuJoCo env, docs/so101.md)")
    cams = {k: [int(s.shape[0]), int(s.shape[1])] for k, s in observation_space.spaces.items()
            if k != "state" and len(s.shape) == 3 and s.shape[-1] == 3}
    if not cams:
        raise ConfigError("policy=smolvla: the observation space has no camera image (H, W, 3)")
    if not isinstance(action_space, gym.spaces.Box):
        raise ConfigError(f"policy=smolvla needs a Box action space, got {type(action_space).__name__}")
    state_dim = int(np.prod(observation_space["state"].shape))
    return state_dim, cams, action_space.low.astype(np.float64).ravel(), action_space.high.astype(np.float64).ravel()


def build_smolvla_policy(observation_space: Any, action_space: Any, *, vlm_path: str | None = None,
                         policy_path: str | None = None, chunk_size: int = 50, denoise_steps: int = 1,
                         trainable: str = "heads", instruction: str = "", device: str = "cpu",
                         stats: dict | None = None, camera_map: dict[str, str] | None = None,
                         state_dims: int | None = None, feature_norm: bool = True) -> SmolVLAFlowPolicy:
    """A SmolVLA adapter for this env.

    ``vlm_path``: a fresh SmolVLA (random action expert) around a SmolVLM backbone folder/hub id;
    its VLM weights are loaded when the folder has them (a ``reinflow smolvla-tiny`` folder has
    none: random). ``policy_path``: a LeRobot SmolVLA checkpoint (``lerobot/smolvla_base``, a
    fine-tuned folder, or a folder written by ``save_extra``).
    """
    ensure_torchvision()
    state_dim, cams, low, high = _spaces(observation_space, action_space)
    settings = SmolVLASettings(vlm_path=vlm_path, policy_path=policy_path, instruction=instruction,
                               chunk_size=chunk_size, denoise_steps=denoise_steps, trainable=trainable,
                               device=device, action_dim=int(low.size), state_dim=state_dim,
                               state_dims=state_dims, cameras=cams, camera_map=dict(camera_map or {}),
                               action_low=low.tolist(), action_high=high.tolist(), stats=stats,
                               feature_norm=feature_norm)
    if vlm_path is not None:
        lr_policy, pre, post = _fresh(settings)
    else:
        lr_policy, pre, post = _pretrained(settings)
    return SmolVLAFlowPolicy(lr_policy, pre, post, settings)


def _features(settings: SmolVLASettings, policy_state_dim: int) -> tuple[dict, dict]:
    from lerobot.configs.types import FeatureType, PolicyFeature

    inputs = {OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(policy_state_dim,))}
    for cam, (h, w) in settings.cameras.items():
        key = settings.camera_map.get(cam, f"{OBS_IMAGES}.{cam}")
        inputs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, h, w))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(settings.action_dim,))}
    return inputs, outputs


def _fresh(settings: SmolVLASettings):
    import torch
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
    from transformers import AutoConfig

    vlm = str(settings.vlm_path)
    vcfg = AutoConfig.from_pretrained(vlm)
    size = int(vcfg.vision_config.image_size)
    s_dim = settings.state_dims or settings.state_dim
    inputs, outputs = _features(settings, s_dim)
    has_weights = Path(vlm).is_dir() and any(Path(vlm).glob("*.safetensors"))
    cfg = SmolVLAConfig(vlm_model_name=vlm, load_vlm_weights=has_weights, chunk_size=settings.chunk_size,
                        n_action_steps=settings.chunk_size, num_steps=settings.denoise_steps,
                        max_state_dim=max(32, s_dim), resize_imgs_with_padding=(size, size),
                        pad_language_to="max_length", input_features=inputs, output_features=outputs,
                        device=settings.device)
    if settings.stats is None:
        inf = np.full(s_dim, np.inf)
        settings.stats = {OBS_STATE: default_state_stats(-inf, inf),
                          "action": default_state_stats(np.asarray(settings.action_low), np.asarray(settings.action_high))}
    stats = {k: {n: torch.tensor(v, dtype=torch.float32) for n, v in d.items()} for k, d in settings.stats.items()}
    lr_policy = SmolVLAPolicy(cfg)
    pre, post = make_smolvla_pre_post_processors(cfg, dataset_stats=stats)
    return lr_policy, pre, post


def _resolve(path: str) -> str:
    p = Path(path)
    if (p / "lerobot" / "config.json").exists():
        return str(p / "lerobot")
    return path


def _pretrained(settings: SmolVLASettings):
    import torch
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors

    path = _resolve(str(settings.policy_path))
    try:
        lr_policy = SmolVLAPolicy.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"policy_path={settings.policy_path}: cannot load a LeRobot SmolVLA checkpoint "
                          f"({type(exc).__name__}: {exc}). Hub ids need network access or a local HF cache.") from None
    cfg = lr_policy.config
    if cfg.chunk_size != settings.chunk_size:
        raise ConfigError(f"chunk_size={settings.chunk_size}: the checkpoint {path} was trained with "
                          f"chunk_size={cfg.chunk_size}")
    cfg.num_steps = settings.denoise_steps
    img_keys = list(cfg.image_features)
    if not settings.camera_map:
        if not all(f"{OBS_IMAGES}.{c}" in img_keys for c in settings.cameras):
            settings.camera_map = dict(zip(settings.cameras, img_keys))
    s_dim = settings.state_dims or settings.state_dim
    want = cfg.robot_state_feature.shape[0] if cfg.robot_state_feature is not None else s_dim
    if want != s_dim:
        raise ConfigError(f"policy_path={settings.policy_path}: the checkpoint expects a {want}-dim state, the env "
                          f"gives {settings.state_dim}; set state_dims={want} if its first dims match")
    dev = {"device_processor": {"device": settings.device}}
    if (Path(path) / "policy_preprocessor.json").exists() or not Path(path).is_dir():
        try:
            pre, post = make_pre_post_processors(cfg, pretrained_path=path, preprocessor_overrides=dev,
                                                 postprocessor_overrides={"device_processor": {"device": "cpu"}})
            return lr_policy, pre, post
        except (OSError, FileNotFoundError, ValueError):
            if Path(path).is_dir():
                raise
    stats = None
    if settings.stats:
        stats = {k: {n: torch.tensor(v, dtype=torch.float32) for n, v in d.items()} for k, d in settings.stats.items()}
    pre, post = make_smolvla_pre_post_processors(cfg, dataset_stats=stats)
    return lr_policy, pre, post


def load_smolvla_policy(dir_or_config: str | Path | dict) -> SmolVLAFlowPolicy:
    """Rebuild from ``policy_config()`` (a dict; weights as recorded: fresh or from policy_path) or
    load a ``save_extra`` folder (weights included)."""
    import gymnasium as gym

    if isinstance(dir_or_config, dict):
        cfg = {k: v for k, v in dir_or_config.items() if k != "type"}
        cfg.setdefault("feature_norm", False)  # a checkpoint from before it: its critic / heads read the raw pool
    else:
        folder = Path(_resolve(str(dir_or_config)))
        meta = folder / SETTINGS_FILE
        from reinflow.untrusted import read_json
        cfg = read_json(meta) if meta.exists() else {}
        if not isinstance(cfg, dict):
            raise ConfigError(f"{meta}: expected a JSON object")
        cfg.update(policy_path=str(folder), vlm_path=None)
        if not cfg.get("cameras"):
            raise ConfigError(f"{folder}: no {SETTINGS_FILE} (written by save_extra); build it with "
                              "build_smolvla_policy(observation_space, action_space, policy_path=...)")
    try:
        settings = SmolVLASettings(**cfg)
    except TypeError as exc:
        raise ConfigError(f"smolvla policy config: {exc}") from None
    spaces = {"state": gym.spaces.Box(-np.inf, np.inf, (settings.state_dim,), np.float32)}
    for cam, (h, w) in settings.cameras.items():
        spaces[cam] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
    act = gym.spaces.Box(np.asarray(settings.action_low, np.float32), np.asarray(settings.action_high, np.float32))
    return build_smolvla_policy(gym.spaces.Dict(spaces), act, vlm_path=settings.vlm_path,
                                policy_path=settings.policy_path, chunk_size=settings.chunk_size,
                                denoise_steps=settings.denoise_steps, trainable=settings.trainable,
                                instruction=settings.instruction, device=settings.device, stats=settings.stats,
                                camera_map=settings.camera_map or None, state_dims=settings.state_dims,
                                feature_norm=settings.feature_norm)
