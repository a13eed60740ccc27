"""Flow-matching behaviour cloning of the MLP flow policy, and the ``demos``/``pretrain`` commands.

For a demo step with observation o and the next H actions a (the chunk; steps past the episode
end repeat its last action), draw tau ~ U(0, 1) and x_0 ~ N(0, I) and regress the velocity on
the straight path from noise to data, in the policy's own time convention:
forward (t: 0 -> 1): x_t = (1 - t) x_0 + t a, target a - x_0;
reverse (t: 1 -> 0, LeRobot): x_t = t x_0 + (1 - t) a, target x_0 - a.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch

from reinflow import ConfigError
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.agent import Agent, SamplerConfig
from reinflow.bc.fit import fit
from reinflow.validate import check_fields


@dataclass
class DemosConfig:
    """Record expert demonstrations: the arm's or MetaWorld's scripted expert, or --expert."""

    env: str = "reinflow/ArmReach-v0"
    """env id: a built-in arm task, a MetaWorld id (metaworld:Meta-World/MT1), or any id with --expert"""
    env_kwargs: str = ""
    """JSON object of gymnasium.make kwargs, e.g. '{"env_name": "pick-place-v3"}' for MetaWorld"""
    expert: str | None = None
    """module:callable mapping an observation (or the env) to an action (default: the built-in expert)"""
    episodes: int = 100
    """episodes to record"""
    out: str = "runs/demos"
    """output folder (demos.npz + meta.json, or a LeRobot dataset with --format lerobot)"""
    format: Literal["npz", "lerobot"] = "npz"
    """npz (reinflow's format) or lerobot (a LeRobotDataset, v3.0: needs the smolvla extra)"""
    seed: int = 0
    """first episode seed"""
    obs_mode: str = "state"
    """state, or pixels_state (adds the env's camera images: the arm's top and wrist, the SO-101's front)"""
    image_size: tuple[int, int] = (64, 64)
    """camera image size (H, W) for pixels_state"""
    only_success: bool = True
    """keep only successful episodes"""
    action_noise: float | None = None
    """std of noise on the executed action in [-1, 1] units (clean one recorded; 0: none; default: the env's, 0.03)"""
    progress: bool = True
    """show a progress bar"""
    overwrite: bool = False
    """a non-empty --out is moved aside to <out>.old-N instead of being refused"""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.obs_mode not in ("state", "pixels_state"):
            raise ConfigError(f"obs_mode={self.obs_mode!r}: allowed state, pixels_state")
        if self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes}: must be >= 1")


@dataclass
class PretrainConfig:
    """Flow-matching behaviour cloning (MLP flow policy, or LeRobot's SmolVLA) on recorded demonstrations."""

    demos: str = "runs/demos"
    """demos folder written by `reinflow demos`, or a LeRobot dataset folder (meta/info.json)"""
    out: str = "runs/pretrain"
    """checkpoint folder to write (what `reinflow train --policy-path` starts from)"""
    policy: Literal["mlp", "smolvla"] = "mlp"
    """mlp, or smolvla (LeRobot's SmolVLAPolicy.forward loss on a LeRobot dataset; try --steps 300 --batch-size 32)"""
    vlm_path: str | None = None
    """policy=smolvla: SmolVLM backbone folder / hub id (e.g. from `reinflow smolvla-tiny`)"""
    trainable: Literal["heads", "expert", "all"] = "all"
    """policy=smolvla: parameters BC trains"""
    image_shift: int = 0
    """policy=smolvla: shift each training image by up to this many pixels, in [0, 16] (edge-padded random crop; 0: off)"""
    state_noise: float = 0.0
    """policy=smolvla: std of Gaussian noise on the standardised state during BC, in [0, 10] (0: off)"""
    chunk_size: int = 50
    """actions per chunk H"""
    denoise_steps: int = 1
    """Euler steps K stored for sampling (BC itself trains every t)"""
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """velocity-net widths"""
    steps: int = 3000
    """gradient steps"""
    batch_size: int = 256
    """samples per step"""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed)"""
    max_episodes: int | None = None
    """use only the first N demo episodes (a deliberately weaker policy)"""
    seed: int = 0
    """torch seed"""
    progress: bool = True
    """show a progress bar"""
    overwrite: bool = False
    """a non-empty --out is moved aside to <out>.old-N instead of being refused"""

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("chunk_size", "denoise_steps", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr}: must be > 0")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ConfigError(f"max_episodes={self.max_episodes}: must be >= 1")
        if not 0 <= self.image_shift <= 16:
            raise ConfigError(f"image_shift={self.image_shift}: allowed 0-16 pixels")
        if self.image_shift and self.policy != "smolvla":
            raise ConfigError(f"image_shift={self.image_shift}: only for --policy smolvla (the MLP reads no images)")
        if not 0 <= self.state_noise <= 10:
            raise ConfigError(f"state_noise={self.state_noise}: allowed 0-10 (standard deviations)")
        if self.state_noise and self.policy != "smolvla":
            raise ConfigError(f"state_noise={self.state_noise}: only for --policy smolvla")


def chunk_dataset(observations: list[np.ndarray], actions: list[np.ndarray], chunk: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per step: (obs [N, O], action chunk [N, H, A]); chunks running past an episode's end
    repeat its last action (the arm holds its final target)."""
    obs_out, act_out = [], []
    for obs, act in zip(observations, actions):
        t_len = len(act)
        idx = np.minimum(np.arange(t_len)[:, None] + np.arange(chunk)[None], t_len - 1)
        obs_out.append(obs)
        act_out.append(act[idx])
    return np.concatenate(obs_out).astype(np.float32), np.concatenate(act_out).astype(np.float32)


def flow_matching_loss(policy: MLPFlowPolicy, obs: torch.Tensor, chunk: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """MSE between the prediction and its straight-path target (the clean chunk for the 'action'
    parametrization, the velocity otherwise), real dims only."""
    b = chunk.shape[0]
    data = torch.zeros(b, policy.chunk_size, policy.padded_action_dim)
    data[..., : policy.action_dim] = chunk
    noise = torch.randn(data.shape, generator=generator)
    tau = torch.rand(b, generator=generator)
    if policy.time_direction == "forward":
        t, x_t, target = tau, (1 - tau)[:, None, None] * noise + tau[:, None, None] * data, data - noise
    else:
        t, x_t, target = tau, tau[:, None, None] * noise + (1 - tau)[:, None, None] * data, noise - data
    ctx = policy.encode(obs)
    if getattr(policy.cfg, "parametrization", "velocity") == "action":
        # Regress the clean chunk directly (the velocity loss is this one weighted by 1/(1-t)^2).
        return ((policy.predict_action(x_t, t, ctx) - data) ** 2)[..., : policy.action_dim].mean()
    v = policy.velocity(x_t, t, ctx).velocity
    return ((v - target) ** 2)[..., : policy.action_dim].mean()


def pretrain(cfg: PretrainConfig) -> dict:
    """Train, write the checkpoint (+ loss_curve.png), return a summary dict."""
    if cfg.policy == "smolvla":
        return _pretrain_smolvla(cfg)

    from reinflow.bc.lerobot_data import load_any_demos
    from reinflow.report.plots import plot_curve
    from reinflow.rl.checkpoint import save_agent
    from reinflow.rl.runfolder import claim_out
    try:
        demos = load_any_demos(cfg.demos)
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    n_ep = demos.num_episodes if cfg.max_episodes is None else min(cfg.max_episodes, demos.num_episodes)
    obs_np, act_np = chunk_dataset(demos.observations[:n_ep], demos.actions[:n_ep], cfg.chunk_size)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    policy = MLPFlowPolicy(MLPPolicyConfig(obs_dim=obs_np.shape[1], action_dim=act_np.shape[2],
                                           chunk_size=cfg.chunk_size, denoise_steps=cfg.denoise_steps,
                                           hidden=list(cfg.hidden), obs_keys=demos.meta.get("obs_keys")))
    policy.set_obs_stats(obs_np.mean(0), obs_np.std(0))
    obs_t = policy.prepare_obs(obs_np)
    act_t = torch.as_tensor(act_np)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=1e-6)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    def step_loss() -> torch.Tensor:
        idx = torch.randint(0, len(obs_t), (cfg.batch_size,), generator=gen)
        return flow_matching_loss(policy, obs_t[idx], act_t[idx], gen)

    losses = fit(step_loss, opt, sched, cfg.steps, "reinflow pretrain", cfg.progress)
    agent = Agent(policy, SamplerConfig(act_steps=cfg.chunk_size,
                                        reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                                        constant_sigma=False, noise_basis=0, initial_noise="sample", initial_noise_seed=0))
    summary = {"episodes": n_ep, "samples": int(len(obs_t)), "steps": cfg.steps,
               "loss_first_100": float(np.mean(losses[:100])), "loss_last_100": float(np.mean(losses[-100:]))}
    env_kwargs = {k: v for k, v in (demos.meta.get("env_kwargs") or {}).items() if k != "obs_mode"}
    extra = {"train": {"env": demos.env_id, "env_kwargs": json.dumps(env_kwargs) if env_kwargs else ""},
             "pretrain": {**asdict(cfg), **summary, "instruction": demos.instruction}}
    with claim_out(cfg.out, cfg.overwrite):  # locked; --overwrite: an earlier folder is moved aside, never deleted
        path = save_agent(cfg.out, agent, extra)
    smooth = np.convolve(losses, np.ones(20) / 20, mode="valid") if len(losses) >= 20 else losses
    plot_curve(range(len(smooth)), smooth, "flow-matching BC loss", "step", "loss (20-step mean)",
               path / "loss_curve.png", logy=True)
    (path / "loss.json").write_text(json.dumps(losses))
    return {**summary, "out": str(path)}


def _pretrain_smolvla(cfg: PretrainConfig) -> dict:
    if not cfg.vlm_path:
        raise ConfigError("policy=smolvla needs --vlm-path (a SmolVLM backbone; offline: reinflow smolvla-tiny DIR)")
    try:
        from reinflow.bc.smolvla_bc import SmolVLABCConfig, smolvla_bc
        from reinflow.rl.runfolder import claim_out
        with claim_out(cfg.out, cfg.overwrite):  # as the MLP path: an earlier folder is moved aside, never deleted
            return smolvla_bc(SmolVLABCConfig(dataset=cfg.demos, out=cfg.out, vlm_path=cfg.vlm_path,
                                              chunk_size=cfg.chunk_size, trainable=cfg.trainable, steps=cfg.steps,
                                              batch_size=cfg.batch_size, lr=cfg.lr, max_episodes=cfg.max_episodes,
                                              image_shift=cfg.image_shift, state_noise=cfg.state_noise, seed=cfg.seed,
                                              progress=cfg.progress)) | {"out": cfg.out}
    except ImportError as exc:
        raise ConfigError(f"policy=smolvla needs the extra: pip install -e '.[smolvla]' && pip install --no-deps "
                          f"lerobot==0.4.4 torchvision==0.28.0 (docs/smolvla.md) [{exc}]") from None
