"""Soft actor-critic over a latent action (``--algorithm dsrl``: the initial noise of a frozen chain).

Twin Q networks over (features, latent) with Polyak-averaged targets, the clipped double-Q soft
target, a reparametrised actor loss and an auto-tuned entropy temperature (Haarnoja et al. 2018,
"Soft Actor-Critic Algorithms and Applications"). Shapes: B batch, F features, L latent dims.
The actor is the policy's (``DSRLFlowPolicy.actor``): eval needs it; the critics, targets,
temperature and optimizers are training state (``state_dict``, the trainer-state format).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from reinflow import ConfigError
from reinflow.policies.dsrl import NoiseActor
from reinflow.policies.mlp import mlp


def _grad_norm(params: list[nn.Parameter]) -> torch.Tensor:
    """Total gradient norm, a 0-dim tensor where the gradients are (read once per step with the rest)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an optimizer's saved moments and hyperparameters, keeping this code's kernel choice (its
    ``foreach`` / ``fused`` flags): a checkpoint written with the foreach kernels still loads and
    continues fused, and no file picks the kernel."""
    own = {k: opt.param_groups[0][k] for k in ("foreach", "fused")}
    opt.load_state_dict({**state, "param_groups": [{**g, **own} for g in state["param_groups"]]})


class TwinQ(nn.Module):
    """Q_1, Q_2 (feats [B, F], latent [B, L]) -> [B] each; LayerNorm MLPs (the paper's critics)."""

    def __init__(self, feat_dim: int, latent_dim: int, hidden: list[int]):
        super().__init__()
        self.q1 = mlp([feat_dim + latent_dim, *hidden, 1], act=nn.ReLU, layer_norm=True)
        self.q2 = mlp([feat_dim + latent_dim, *hidden, 1], act=nn.ReLU, layer_norm=True)

    def forward(self, feats: torch.Tensor, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([feats, latent], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def soft_target(reward: torch.Tensor, done: torch.Tensor, gamma: float, q1_next: torch.Tensor,
                q2_next: torch.Tensor, logp_next: torch.Tensor, alpha: float) -> torch.Tensor:
    """y = r + gamma (1 - done) (min(Q1', Q2') - alpha log pi(c' | o')), all [B]."""
    return reward + gamma * (1.0 - done) * (torch.minimum(q1_next, q2_next) - alpha * logp_next)


class SAC:
    """Twin critics + targets + temperature around an existing ``actor`` (trained in place), with the
    settings of ``cfg``: a TrainConfig (``DSRLConfig``'s fields; gamma per decision; lr_actor, SAC's one
    learning rate for actor, critics and temperature)."""

    def __init__(self, actor: NoiseActor, feat_dim: int, cfg: Any, device: torch.device | str = "cpu"):
        self.actor, self.gamma, self.tau, self.hidden = actor, cfg.gamma, cfg.dsrl_tau, list(cfg.dsrl_hidden)
        self.target_entropy = cfg.dsrl_target_entropy * actor.latent_dim  # the squashed latent's total on [-1, 1]^L
        self.q = TwinQ(feat_dim, actor.latent_dim, self.hidden).to(device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.dsrl_init_alpha), device=device, requires_grad=True)
        # parameter lists cached and fused Adam (one kernel per parameter; 3-4 % of a CPU step less than
        # foreach, the same update up to float32 rounding): at a high update-to-data ratio on a CPU the
        # per-step overhead of small networks is a large part of the cost
        self._actor_params, self._q_params = list(actor.parameters()), list(self.q.parameters())
        self._qt_params = list(self.q_target.parameters())
        self.actor_opt = torch.optim.Adam(self._actor_params, lr=cfg.lr_actor, fused=True)
        self.critic_opt = torch.optim.Adam(self._q_params, lr=cfg.lr_actor, fused=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.lr_actor, fused=True)

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def update(self, b: dict[str, torch.Tensor], generator: torch.Generator | None = None,
               actor_step: bool = True) -> dict[str, float]:
        """One gradient step of the critics (and, with ``actor_step``, of actor and temperature) on a
        replay batch {feat, latent, reward, next_feat, done}; returns the step's numbers. They are
        gathered as tensors and read in one transfer: on a GPU each float() would wait for the device."""
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            c_next, logp_next = self.actor.sample(b["next_feat"], generator=generator)
            q1_t, q2_t = self.q_target(b["next_feat"], c_next)
            y = soft_target(b["reward"], b["done"], self.gamma, q1_t, q2_t, logp_next, alpha)
        q1, q2 = self.q(b["feat"], b["latent"])
        q_loss = 0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        q_grad = _grad_norm(self._q_params)
        self.critic_opt.step()
        out = {"q_loss": q_loss.detach(), "q_mean": q1.detach().mean(), "q_target_mean": y.mean(),
               "critic_grad_norm": q_grad}
        if actor_step:
            out.update(self._actor_step(b["feat"], generator, alpha))
        self._polyak()
        return dict(zip(out, torch.stack([v.to(q_loss.device, torch.float32) for v in out.values()]).tolist()))

    def _actor_step(self, feats: torch.Tensor, generator: torch.Generator | None,
                    alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        c, logp = self.actor.sample(feats, generator=generator)
        q1, q2 = self.q(feats, c)
        actor_loss = (alpha * logp - torch.minimum(q1, q2)).mean()
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        self.alpha_opt.zero_grad(set_to_none=True)
        # one backward pass for both losses, into the actor and the temperature only: the critics'
        # weight gradients (a matmul per layer, ~12 % of a step's arithmetic) are never computed
        torch.autograd.backward([actor_loss, alpha_loss], inputs=[*self._actor_params, self.log_alpha])
        a_grad = _grad_norm(self._actor_params)
        self.actor_opt.step()
        self.alpha_opt.step()
        return {"actor_loss": actor_loss.detach(), "alpha_loss": alpha_loss.detach(),
                "entropy": -logp.detach().mean(), "actor_grad_norm": a_grad,
                "latent_abs_mean": c.detach().abs().mean() / self.actor.bound}

    @torch.no_grad()
    def _polyak(self) -> None:
        torch._foreach_lerp_(self._qt_params, self._q_params, self.tau)  # pt += tau (p - pt)

    # --- training state (no pickle: nested dicts of tensors) --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "log_alpha": self.log_alpha.detach(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ConfigError naming the part of a checkpoint's SAC state that does not fit."""
        for name in ("q", "q_target"):
            try:
                getattr(self, name).load_state_dict(state[name])
            except (KeyError, TypeError, RuntimeError) as exc:
                raise ConfigError(f"dsrl state: {name} does not fit --dsrl-hidden {self.hidden} "
                                  f"({str(exc).splitlines()[0][:200]})") from None
        log_alpha = state.get("log_alpha")
        if not isinstance(log_alpha, torch.Tensor) or log_alpha.numel() != 1 or not bool(torch.isfinite(log_alpha).all()):
            raise ConfigError("dsrl state: log_alpha is not one finite number")
        with torch.no_grad():
            self.log_alpha.copy_(log_alpha.reshape(()))
        for name in ("actor_opt", "critic_opt", "alpha_opt"):
            try:
                _load_optimizer(getattr(self, name), state[name])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"dsrl state: {name} does not fit this run ({str(exc)[:200]})") from None
