"""``SmolVLAFlowPolicy``: LeRobot's own ``SmolVLAPolicy`` behind reinflow's ``FlowPolicy`` contract.

* ``prepare_obs``: the vector env's batched obs -> SmolVLA feature names, through LeRobot's policy
  preprocessor (state normalisation with the policy's stats, task newline, tokenizer). Images stay
  uint8 at env resolution (cheap to store in the rollout buffer); SmolVLA's own
  ``prepare_images`` resizes/pads and maps to [-1, 1] inside ``encode``.
* ``encode``: ``embed_prefix`` + one VLM forward that fills the prefix KV cache, once per chunk, under
  ``no_grad`` unless the ``all`` preset trains prefix parameters.
* ``velocity``: LeRobot's ``denoise_step`` (the action expert, with gradients). Its action-token
  hidden states (the input of ``action_out_proj``, caught by a forward hook) are the per-step
  noise features ``[B, H, F]``.
* Time runs t: 1 -> 0, dt = -1/K ("reverse"), exactly as LeRobot's ``sample_actions``.

The base model is always in eval mode; ``trainable`` picks which parameters PPO updates.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reinflow import ConfigError
from reinflow.policies.base import FlowPolicy, VelocityOut
from reinflow.policies.smolvla import compat
from reinflow.validate import check_fields

OBS_STATE = "observation.state"
OBS_IMAGES = "observation.images"
LANG_TOKENS = "observation.language.tokens"
LANG_MASK = "observation.language.attention_mask"
HEAD_MODULES = ("action_in_proj", "action_out_proj", "action_time_mlp_in", "action_time_mlp_out")
TRAINABLE_SETS = ("heads", "expert", "all")
"""what PPO may update (``--trainable``): action heads, the action expert, or everything"""
SETTINGS_FILE = "reinflow_smolvla.json"
"""reinflow's settings beside a LeRobot folder (``export_lerobot``)"""


@dataclass
class SmolVLASettings:
    """Everything (besides weights) that rebuilds the adapter; ``policy_config()`` is its JSON."""

    vlm_path: str | None = None
    """fresh SmolVLA around this SmolVLM backbone folder / hub id (e.g. from ``reinflow smolvla-tiny``)"""
    policy_path: str | None = None
    """a LeRobot SmolVLA folder or hub id (``lerobot/smolvla_base``), or a save_extra folder"""
    instruction: str = ""
    chunk_size: int = 50
    denoise_steps: int = 1
    trainable: str = "heads"
    device: str = "cpu"
    action_dim: int = 6
    state_dim: int = 0
    state_dims: int | None = None
    """feed only the first N state dims to the policy (e.g. joint positions for an SO-100 checkpoint)"""
    cameras: dict[str, list[int]] = field(default_factory=dict)
    """env camera name -> [H, W]"""
    camera_map: dict[str, str] = field(default_factory=dict)
    """env camera name -> policy image feature (default observation.images.<name>)"""
    action_low: list[float] = field(default_factory=list)
    action_high: list[float] = field(default_factory=list)
    stats: dict | None = None
    """normalisation stats for a fresh policy ({feature: {mean, std}}); default from the spaces"""
    z_warn: float = 6.0
    """check_obs_frame warns when |mean z-score| of a state dim exceeds this"""
    feature_norm: bool = True
    """the critic, the residual and dsrl read the pooled prefix layer-normalised (raw, it differs between
    observations by ~0.016 a dim: too little for their first layer); configs written without it read it raw"""

    def __post_init__(self) -> None:
        check_fields(self)  # a checkpoint's config.json may come from anywhere
        if self.trainable not in TRAINABLE_SETS:
            raise ConfigError(f"trainable={self.trainable!r}: allowed {', '.join(TRAINABLE_SETS)}")
        if self.denoise_steps < 1:
            raise ConfigError(f"denoise_steps={self.denoise_steps}: must be >= 1")
        if (self.vlm_path is None) == (self.policy_path is None):
            raise ConfigError("smolvla: give exactly one of vlm_path (fresh policy around a SmolVLM backbone) "
                              "or policy_path (a LeRobot SmolVLA checkpoint)")


class SmolVLAFlowPolicy(FlowPolicy):
    time_direction = "reverse"
    noise_features_per_step = True

    def __init__(self, lerobot_policy: nn.Module, preprocessor: Any, postprocessor: Any,
                 settings: SmolVLASettings):
        super().__init__()
        self.settings = settings
        # The checkpoint's dtype (LeRobot loads a pretrained VLM in bfloat16) is converted explicitly to
        # float32 master weights: AdamW and the float64 chain log-density want them; --precision bf16
        # computes in bfloat16 through autocast (reinflow.rl.precision). The run records both dtypes.
        self.source_dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in lerobot_policy.parameters()})
        self.lerobot = lerobot_policy.to(device=settings.device, dtype=torch.float32)
        self.preprocessor, self.postprocessor = preprocessor, postprocessor
        cfg = self.lerobot.config
        cfg.use_cache = True  # the prefix KV cache is what makes per-step velocity calls cheap
        self.model = self.lerobot.model  # VLAFlowMatching (registered once, via self.lerobot)
        self.chunk_size = int(cfg.chunk_size)
        self.action_dim = int(cfg.action_feature.shape[0])
        self.padded_action_dim = int(cfg.max_action_dim)
        self.denoise_steps = int(settings.denoise_steps)
        self.noise_feature_dim = int(self.model.vlm_with_expert.expert_hidden_size)
        self.value_feature_dim = int(self.model.vlm_with_expert.config.text_config.hidden_size)
        if self.action_dim != settings.action_dim:
            raise ConfigError(f"smolvla: the checkpoint outputs {self.action_dim} action dims, "
                              f"the env has {settings.action_dim}")
        self._features: torch.Tensor | None = None
        self.model.action_out_proj.register_forward_hook(self._catch_features)
        self._apply_preset()
        self.set_train_mode()

    # --- parameters ---------------------------------------------------------------------------
    def preset_parameter_names(self) -> set[str]:
        """Names (in ``self.named_parameters()``) that the ``trainable`` preset trains."""
        names = {n for n, _ in self.named_parameters()}
        heads = {n for n in names if any(n.startswith(f"lerobot.model.{m}.") for m in HEAD_MODULES)}
        if self.settings.trainable == "heads":
            return heads
        expert = {n for n in names if n.startswith("lerobot.model.vlm_with_expert.lm_expert.")}
        if self.settings.trainable == "expert":
            return heads | expert
        return names - self._unused_by_actions(names)

    def _unused_by_actions(self, names: set[str]) -> set[str]:
        """VLM parameters no action depends on: the LM head, the final text norm, and the last
        VLM layer's query/output/MLP (only its keys and values reach the expert via the cache).
        Assumes one expert layer per VLM layer (LeRobot's default ``num_expert_layers=-1``); with
        fewer expert layers some more VLM weights get no gradient (harmless: AdamW skips them)."""
        vwe = self.model.vlm_with_expert
        last = f"text_model.layers.{vwe.num_vlm_layers - 1}."
        out = set()
        for n in names:
            if ".lm_head." in n or n.endswith("text_model.norm.weight"):
                out.add(n)
            elif "lm_expert" not in n and last in n and not any(
                    k in n for k in ("input_layernorm", "self_attn.k_proj", "self_attn.v_proj")):
                out.add(n)
        return out

    def _apply_preset(self) -> None:
        keep = self.preset_parameter_names()
        for n, p in self.named_parameters():
            p.requires_grad_(n in keep)
        self._prefix_trainable = any(
            p.requires_grad for n, p in self.named_parameters()
            if not n.startswith("lerobot.model.vlm_with_expert.lm_expert.")
            and not any(n.startswith(f"lerobot.model.{m}.") for m in HEAD_MODULES))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def frozen_encoder(self) -> bool:
        """``heads`` / ``expert``: the prefix (vision encoder, VLM, state projection) is frozen, so the
        PPO update can reuse the rollout's prefix KV cache instead of re-encoding (reinflow.rl.context)."""
        return not self._prefix_trainable

    def set_train_mode(self) -> None:
        self.eval()  # never train mode: same log-prob at rollout and update (docs/design.md §5, invariant 1)

    def train(self, mode: bool = True) -> "SmolVLAFlowPolicy":
        return super().train(False)

    # --- observations ---------------------------------------------------------------------------
    def policy_camera(self, cam: str) -> str:
        return self.settings.camera_map.get(cam, f"{OBS_IMAGES}.{cam}")

    def prepare_obs(self, raw_obs: Any) -> dict[str, torch.Tensor]:
        if not isinstance(raw_obs, dict) or "state" not in raw_obs:
            raise ConfigError("smolvla needs image observations: use the env's pixels mode "
                              "(Dict obs with 'state' and camera images)")
        # observations stay on the host (LeRobot's preprocessor runs there; the rollout batch of images
        # is not held on the GPU): encode() moves each batch to the model's device
        state = torch.as_tensor(np.asarray(raw_obs["state"]), dtype=torch.float32, device="cpu")
        if self.settings.state_dims is not None:
            state = state[..., : self.settings.state_dims]
        batch: dict[str, Any] = {OBS_STATE: state}
        for cam in self.settings.cameras:
            img = torch.as_tensor(np.asarray(raw_obs[cam]), device="cpu")
            batch[self.policy_camera(cam)] = img.permute(0, 3, 1, 2).contiguous()  # [B,3,H,W] uint8
        tasks = raw_obs.get("task")
        n = state.shape[0]
        batch["task"] = list(tasks) if tasks is not None else [self.settings.instruction] * n
        out = self.preprocessor(batch)
        res = {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and k.startswith("observation.")}
        tokens, mask = res[LANG_TOKENS], res[LANG_MASK].bool()
        width = int(self.lerobot.config.tokenizer_max_length)
        if tokens.shape[1] < width:  # fixed width so rollout steps concatenate
            pad = width - tokens.shape[1]
            tokens = torch.nn.functional.pad(tokens, (0, pad), value=self._pad_id())
            mask = torch.nn.functional.pad(mask, (0, pad), value=False)
        res[LANG_TOKENS], res[LANG_MASK] = tokens, mask
        return res

    def _pad_id(self) -> int:
        for step in self.preprocessor.steps:
            tok = getattr(step, "input_tokenizer", None)
            if tok is not None and tok.pad_token_id is not None:
                return int(tok.pad_token_id)
        return 0

    def state_stats(self) -> dict[str, torch.Tensor] | None:
        for step in self.preprocessor.steps:
            stats = getattr(step, "_tensor_stats", None)
            if type(step).__name__ == "NormalizerProcessorStep" and stats and OBS_STATE in stats:
                return {k: v.detach().cpu().double() for k, v in stats[OBS_STATE].items()}
        return None

    def check_obs_frame(self, raw_obs: Any) -> list[str]:
        """Warnings when observations are far outside the frame the policy's stats expect (docs/design.md §5, invariant 5)."""
        stats = self.state_stats()
        if stats is None or not isinstance(raw_obs, dict) or "state" not in raw_obs:
            return []
        state = torch.as_tensor(np.asarray(raw_obs["state"]), dtype=torch.float64).reshape(-1, np.shape(raw_obs["state"])[-1])
        if self.settings.state_dims is not None:
            state = state[:, : self.settings.state_dims]
        if "mean" in stats and "std" in stats:
            center, scale, what = stats["mean"], stats["std"], "z-score"
        elif "min" in stats and "max" in stats:
            center, scale, what = (stats["max"] + stats["min"]) / 2, (stats["max"] - stats["min"]) / 2, "scaled offset"
        else:
            return []
        if center.numel() != state.shape[1]:
            return [f"{OBS_STATE}: env gives {state.shape[1]} dims, the policy's stats have {center.numel()} "
                    "(set state_dims to pick the dims the checkpoint was trained on)"]
        z = ((state - center) / scale.clamp_min(1e-8)).mean(0)
        bad = torch.nonzero(z.abs() > self.settings.z_warn).flatten()
        if bad.numel() == 0:
            return []
        worst = bad[z[bad].abs().argsort(descending=True)][:5].tolist()
        detail = "; ".join(f"[{i}] {what} {float(z[i]):+.1f} (obs {float(state[:, i].mean()):.4g}, policy "
                           f"center {float(center[i]):.4g} scale {float(scale[i]):.4g})" for i in worst)
        return [f"{OBS_STATE}: {bad.numel()} of {z.numel()} dims have |mean {what}| > {self.settings.z_warn:g} "
                f"under the policy's normalisation stats, worst: {detail}. The observations are not in the "
                "frame this policy was trained on (units, joint order, offsets, or the wrong stats)."]

    # --- the contract -----------------------------------------------------------------------------
    def encode(self, obs: dict[str, torch.Tensor]) -> dict[str, Any]:
        lr = self.lerobot
        dev = self.model.action_out_proj.weight.device  # follows .to(device) by the trainer
        batch = {k: v.to(dev) for k, v in obs.items()}
        for key in lr.config.image_features:
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].float() / 255.0
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._prefix_trainable):
            images, img_masks = lr.prepare_images(batch)
            state = lr.prepare_state(batch)
            embs, pad_masks, att_masks = self.model.embed_prefix(
                images, img_masks, batch[LANG_TOKENS], batch[LANG_MASK], state=state)
            att_2d = _make_att_2d_masks(pad_masks, att_masks)
            pos = torch.cumsum(pad_masks, dim=1) - 1
            prefix_out, cache = compat.fill_prefix_cache(self.model, embs, att_2d, pos)
            hidden = prefix_out if prefix_out is not None else embs
            m = pad_masks.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp_min(1.0)
            if self.settings.feature_norm:
                pooled = torch.nn.functional.layer_norm(pooled, pooled.shape[-1:])
        return {"cache": cache, "prefix_pad_masks": pad_masks, "value": pooled}

    def _catch_features(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._features = inputs[0]

    def velocity(self, x: torch.Tensor, t: torch.Tensor, ctx: dict[str, Any]) -> VelocityOut:
        self._features = None
        cache = compat.fresh_cache(ctx["cache"])
        v = compat.denoise_step(self.model, ctx["prefix_pad_masks"], cache, x, t.to(torch.float32))
        feats, self._features = self._features, None
        if feats is None:
            raise RuntimeError("LeRobot's denoise_step did not call action_out_proj: unsupported version")
        return VelocityOut(velocity=v, noise_features=feats)

    def value_features(self, ctx: dict[str, Any]) -> torch.Tensor:
        return ctx["value"]

    def postprocess_action(self, action: torch.Tensor) -> torch.Tensor:
        """Chain action (SmolVLA's normalised frame) -> the env's [-1, 1] frame: LeRobot's
        postprocessor unnormalises with the policy's stats, then the env's bounds rescale. For a
        fresh policy whose action stats come from the env's bounds this is the identity."""
        out = self.postprocessor(action.detach())
        lo = torch.tensor(self.settings.action_low, dtype=out.dtype, device="cpu")  # the env's bounds, on the host
        hi = torch.tensor(self.settings.action_high, dtype=out.dtype, device="cpu")
        finite = torch.isfinite(lo) & torch.isfinite(hi)
        mid = torch.where(finite, (hi + lo) / 2, torch.zeros_like(lo))
        half = torch.where(finite, (hi - lo) / 2, torch.ones_like(lo))
        return ((out.cpu() - mid) / half).to(action.device)

    def policy_config(self) -> dict:
        return {"type": "smolvla", **asdict(self.settings)}

    def save_extra(self, directory: str) -> None:
        export_lerobot(self, directory)

    def num_parameters(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        return {"total": total, "trainable": sum(p.numel() for p in self.trainable_parameters())}


def _make_att_2d_masks(pad_masks: torch.Tensor, att_masks: torch.Tensor) -> torch.Tensor:
    from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks
    return make_att_2d_masks(pad_masks, att_masks)


def default_state_stats(low: np.ndarray, high: np.ndarray) -> dict[str, list[float]]:
    """mean/std from finite Box bounds (mid, half-range), else 0/1."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    finite = np.isfinite(low) & np.isfinite(high) & (high > low)
    lo, hi = np.where(finite, low, 0.0), np.where(finite, high, 0.0)
    mean = np.where(finite, (hi + lo) / 2.0, 0.0)
    std = np.where(finite, (hi - lo) / 2.0, 1.0)
    return {"mean": [float(v) for v in mean], "std": [float(max(v, 1e-6)) for v in std]}


def export_lerobot(policy: "SmolVLAFlowPolicy", directory: str | Path) -> Path:
    """Write ``directory/lerobot``: LeRobot config + weights + pre/post processors + reinflow settings."""
    out = Path(directory) / "lerobot"
    out.mkdir(parents=True, exist_ok=True)
    cfg = policy.lerobot.config
    cfg.load_vlm_weights = False  # every weight is in model.safetensors: no backbone download on load
    policy.lerobot.save_pretrained(out)
    policy.preprocessor.save_pretrained(out)
    policy.postprocessor.save_pretrained(out)
    settings = {**policy.policy_config(), "policy_path": None, "vlm_path": None}
    settings.pop("type", None)
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return out
