"""PPO on the denoising chain (``--algorithm chain-ppo``): rollout -> GAE -> clipped-ratio update.

The update is in the shape of CleanRL's ppo_continuous_action.py. Ratios come from
``Agent.evaluate`` on the stored chain; with the per_step reduction logp has S > 1 columns and
every executed step is its own clipped term (advantage shared per chunk). ``ChainPPO`` is the
algorithm behind the trainer's seam (``reinflow.rl.algorithms.base``); ``ResidualPPO``
(residual_ppo.py) is the same algorithm on a wrapped policy.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from reinflow import ConfigError, NonFiniteError
from reinflow.flow.chain import check_per_dim_bound
from reinflow.rl.agent import Agent, BaseAgent
from reinflow.rl.algorithms.base import Algorithm, Experience
from reinflow.rl.algorithms.ppo_batch import (Batch, LayoutShiftError, cat_obs, first_minibatch_check, index_obs,
                                              pre_update_check, relayout_old_logp)
from reinflow.rl.context import cat_contexts, context_budget_bytes, index_context
from reinflow.rl.dist import DistInfo, all_reduce, average_gradients
from reinflow.rl.gae import gae, time_limit_as
from reinflow.rl.rollout import RewardScaler, Rollout, collect_rollout
from reinflow.rl.seeding import stream_seed
from reinflow.rl.trainer_state import load_optimizer
from reinflow.validate import check_range


@dataclass
class PPOConfig:
    """PPO's settings (chain-ppo, residual-ppo). ``TrainConfig`` derives from it, so each field is a
    top-level flag of ``reinflow train`` (``--clip-epsilon``) and a top-level key of config.json."""

    context_cache_gib: float = 4.0
    """frozen encoder (smolvla heads/expert): GiB of rollout prefix caches the update reuses (0: re-encode)"""
    auto_scale: bool = False
    """rescale sigma (or lr) for the chain dimension D from a D_ref reference (reinflow scale)"""
    scale_rule: Literal["sigma", "lr"] = "sigma"
    """what --auto-scale changes: sigma ∝ sqrt(D/D_ref) or lr ∝ sqrt(D_ref/D) (alternatives)"""
    scale_ref_dim: int = 28
    """D_ref of the reference settings (ReinFlow paper manipulation: 4 x 7)"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    lr_critic: float = 1e-3
    """critic learning rate (PPO)"""
    lr_warmup_iters: int = 0
    """linear LR warm-up iterations"""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """LR after warm-up: cosine decay to lr_min_frac, or constant"""
    lr_min_frac: float = 0.1
    """final LR as a fraction of the initial one (cosine)"""
    update_epochs: int = 5
    """passes over the batch per update"""
    minibatch_size: int = 40
    """samples (decisions) per minibatch"""
    clip_epsilon: float = 0.2
    """PPO clip range (0.2 for a summed ratio over D ~ 24; 0.01 suits the 'mean' ratio, ~0.1 per_step)"""
    target_kl: float | None = 0.05
    """stop the epochs when the KL estimate measured after a step exceeds this (None: never)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    bc_coef: float = 0.0
    """W2 behaviour-cloning regulariser toward the starting policy (same x_0, ODE actions)"""
    max_grad_norm_actor: float = 1.0
    """gradient-norm clip for the actor"""
    max_grad_norm_critic: float = 10.0
    """gradient-norm clip for the critic"""
    critic_warmup_iters: int = 0
    """iterations that update only the critic (useful from a pretrained policy)"""
    reward_scaling: bool = True
    """divide rewards by the running std of the discounted return"""
    norm_adv: bool = True
    """normalise advantages per batch"""
    critic_shares_features: bool = False
    """let critic gradients reach the actor's features (default: detached)"""
    old_logprob: Literal["auto", "rollout", "update"] = "auto"
    """PPO old log-probs: as sampled (rollout) or redone in the update's minibatches (update); auto: GPU, below fp32, a shift"""

    RANGES: ClassVar[dict[str, tuple[int, int]]] = {
        "update_epochs": (1, 10_000), "minibatch_size": (1, 1_000_000), "scale_ref_dim": (1, 10_000_000)}
    """bounds on memory and time (``check`` applies them)"""
    FROZEN_ON_RESUME: ClassVar[tuple[str, ...]] = ("critic_shares_features",)
    """fields a resume may not change (the critic's architecture)"""

    def check(self) -> None:
        """Every rule of these fields (checked whatever the algorithm: a config file is valid or not)."""
        for name in PPOConfig.RANGES:  # (self is a TrainConfig: self.RANGES could be another algorithm's)
            check_range(name, getattr(self, name), PPOConfig.RANGES)
        for name in ("gae_lambda", "lr_min_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)}: allowed range [0, 1]")
        for name in ("lr_critic", "clip_epsilon", "max_grad_norm_actor", "max_grad_norm_critic"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be > 0")
        for name in ("ent_coef", "bc_coef", "lr_warmup_iters", "critic_warmup_iters"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 0")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ConfigError(f"target_kl={self.target_kl}: must be > 0 (or omitted to disable)")


def advantage_stats(adv: torch.Tensor, w: torch.Tensor, info: DistInfo) -> tuple[float, float]:
    """(mean, std) of the weighted advantages over every rank's batch."""
    a, w = adv.double(), w.double()
    s = all_reduce(torch.stack([w.sum(), (w * a).sum(), (w * a**2).sum()]), info).tolist()  # one host sync
    n = max(s[0], 1.0)
    mean = s[1] / n
    var = max(s[2] / n - mean**2, 0.0) * n / max(n - 1, 1)
    return mean, var**0.5


@dataclass
class PPOLosses:
    """One minibatch's PPO terms. pg_loss, entropy (float64), value_loss: weighted means (scalars with
    gradient); logratio, ratio [M, S]; approx_kl, clip_fraction: the diagnostics of these ratios."""

    pg_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    logratio: torch.Tensor
    ratio: torch.Tensor
    approx_kl: float
    clip_fraction: float


def ppo_losses(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, value: torch.Tensor,
               returns: torch.Tensor, entropy: torch.Tensor, w: torch.Tensor, clip_epsilon: float) -> PPOLosses:
    """The clipped-ratio policy loss, the value loss and the entropy, each a mean weighted by ``w`` [M]
    (0 for the decisions of dropped episodes). logp, old_logp [M, S] (S ratio terms share the chunk's
    advantage); adv, value, returns, entropy [M] (adv already normalised if it is to be)."""
    logratio = logp - old_logp                                      # [M, S], float64
    ratio = logratio.exp()
    a = adv.double()[:, None]                                       # one advantage per chunk
    w = w.double()
    wsum = w.sum().clamp(min=1.0)
    pg = torch.max(-a * ratio, -a * ratio.clamp(1 - clip_epsilon, 1 + clip_epsilon)).mean(-1)
    v_loss = 0.5 * (w.float() * (value - returns) ** 2).sum() / wsum.float()
    with torch.no_grad():
        approx_kl = float((w * ((ratio - 1) - logratio).mean(-1)).sum() / wsum)
        clipfrac = float((w * ((ratio - 1).abs() > clip_epsilon).double().mean(-1)).sum() / wsum)
    return PPOLosses(pg_loss=(w * pg).sum() / wsum, value_loss=v_loss, entropy=(w * entropy).sum() / wsum,
                     logratio=logratio, ratio=ratio, approx_kl=approx_kl, clip_fraction=clipfrac)


def relayout_from_start(old_logprob: str, device: Any, precision: str) -> bool:
    """Whether the update recomputes the old log-probs in its own layout from the first iteration: asked
    (``update``), or under ``auto`` with reduced precision or a GPU's shape-chosen kernels, where the
    rollout's log-probs are not the update's."""
    return old_logprob == "update" or (old_logprob == "auto" and (
        torch.device(device).type != "cpu" or precision != "fp32"))


def ppo_update(agent: Agent, actor_opt: torch.optim.Optimizer, critic_opt: torch.optim.Optimizer,
               batch: Batch, cfg: Any, update_actor: bool, generator: torch.Generator,
               ref_policy: torch.nn.Module | None = None, dist_info: DistInfo | None = None,
               relayout: bool = False) -> dict[str, float]:
    """Minibatch epochs with post-step KL early stop. Returns the iteration's update metrics.
    ``relayout``: recompute the old log-probs in the first epoch's minibatches first (``relayout_old_logp``).
    Under torchrun every rank runs the same number of minibatches (equal batch sizes) and the
    same number of epochs (the KL decision uses the all-reduced value)."""
    info = dist_info or DistInfo()
    n = batch.chains.shape[0]
    adv_mean, adv_std = advantage_stats(batch.advantages, batch.weights, info)
    actor_params, critic_params = agent.actor_parameters(), agent.critic_parameters()
    stats: dict[str, list[float]] = {}
    ratio_min, ratio_max, epochs_run, post_kl = float("inf"), float("-inf"), 0, 0.0
    first_dev, shift = 0.0, 0.0
    stop = False
    for epoch in range(cfg.update_epochs):
        epochs_run = epoch + 1
        # the CPU generator fixes the order on any device; the indices then live with the batch
        perm = torch.randperm(n, generator=generator, device=generator.device).to(batch.chains.device)
        shift = relayout_old_logp(agent, batch, perm, cfg.minibatch_size) if relayout and epoch == 0 else shift
        for start in range(0, n, cfg.minibatch_size):
            idx = perm[start:start + cfg.minibatch_size]
            mb_obs, mb_chain = index_obs(batch.obs, idx), batch.chains[idx]
            mb_ctx = None if batch.context is None else index_context(batch.context, idx)
            lp, value = agent.evaluate(mb_obs, mb_chain, mb_ctx)
            mb_adv = batch.advantages[idx]
            if cfg.norm_adv:
                mb_adv = (mb_adv - adv_mean) / (adv_std + 1e-8)
            losses = ppo_losses(lp.logp, batch.logp[idx], mb_adv, value, batch.returns[idx], lp.entropy,
                                batch.weights[idx], cfg.clip_epsilon)
            pg_loss, v_loss, entropy = losses.pg_loss, losses.value_loss, losses.entropy
            logratio, ratio = losses.logratio, losses.ratio
            # invariant 1 at the update's own minibatch shape and precision, before any optimizer step
            first_dev = first_minibatch_check(ratio, len(idx), relayout) if epoch == 0 and start == 0 else first_dev
            actor_loss = (pg_loss - cfg.ent_coef * entropy).float()
            if ref_policy is not None and cfg.bc_coef > 0:
                actor_loss = actor_loss + cfg.bc_coef * _w2_to_reference(agent, ref_policy, mb_obs, mb_chain)
            loss = (actor_loss if update_actor else 0.0) + v_loss
            if not torch.isfinite(loss):
                raise NonFiniteError(f"loss is {loss.item()} at epoch {epoch} (policy {pg_loss.item():.4g}, "
                                     f"value {v_loss.item():.4g})")
            actor_opt.zero_grad(set_to_none=True)
            critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(actor_params + critic_params, info)
            a_norm = float(torch.nn.utils.clip_grad_norm_(actor_params, cfg.max_grad_norm_actor)) if update_actor else 0.0
            c_norm = float(torch.nn.utils.clip_grad_norm_(critic_params, cfg.max_grad_norm_critic))
            if not (np.isfinite(a_norm) and np.isfinite(c_norm)):
                raise NonFiniteError(f"gradient norm is not finite (actor {a_norm}, critic {c_norm}) at epoch {epoch}")
            if update_actor:
                actor_opt.step()
            critic_opt.step()
            with torch.no_grad():
                # approx_kl explodes once ratios are far from 1; the log-ratio spread stays readable.
                lr_std = float(logratio.std()) if logratio.numel() > 1 else 0.0
                ratio_min, ratio_max = min(ratio_min, float(ratio.min())), max(ratio_max, float(ratio.max()))
                if update_actor and cfg.target_kl is not None:
                    # KL measured *after* the step: the pre-step estimate is 0 on the first minibatch.
                    lp2, _ = agent.evaluate(mb_obs, mb_chain, mb_ctx)
                    lr2 = lp2.logp - batch.logp[idx]
                    r2 = lr2.exp()
                    # Also the ratio after the step: the pre-step clip fraction of the minibatch that
                    # triggers the early stop would hide a blow-up (it reads 0 on the first one).
                    ratio_min, ratio_max = min(ratio_min, float(r2.min())), max(ratio_max, float(r2.max()))
                    stats.setdefault("ppo/post_update_clip_fraction", []).append(
                        float(((r2 - 1).abs() > cfg.clip_epsilon).double().mean()))
                    kl = ((r2 - 1) - lr2).mean().reshape(1)
                    post_kl = float(all_reduce(kl, info)) / info.world_size
                    stop = post_kl > cfg.target_kl
            for key, val in (("ppo/policy_loss", pg_loss.item()), ("ppo/value_loss", v_loss.item()),
                             ("ppo/entropy", entropy.item()), ("ppo/approx_kl", losses.approx_kl),
                             ("ppo/clip_fraction", losses.clip_fraction), ("ppo/logratio_std", lr_std),
                             ("logprob/new_mean", lp.total.mean().item()),
                             ("logprob/per_dimension_new", lp.per_dim.mean().item()),
                             ("logprob/per_dimension_max", lp.per_dim.max().item()),
                             ("logprob/clamped_fraction", float(lp.clamped.double().mean())),
                             ("gradients/policy_norm", a_norm), ("gradients/critic_norm", c_norm),
                             ("gradients/policy_clipped", float(a_norm > cfg.max_grad_norm_actor)),
                             ("gradients/critic_clipped", float(c_norm > cfg.max_grad_norm_critic))):
                stats.setdefault(key, []).append(val)
            if stop:
                break
        if stop:
            break
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["logprob/per_dimension_max"] = float(np.max(stats["logprob/per_dimension_max"]))
    out.update({"ppo/advantage_mean": adv_mean, "ppo/advantage_std": adv_std,
                "ppo/ratio_min": ratio_min, "ppo/ratio_max": ratio_max, "ppo/epochs_run": float(epochs_run),
                "ppo/post_update_kl": post_kl, "ppo/kl_early_stop": float(stop),
                "ppo/first_minibatch_ratio_max_dev": first_dev, "ppo/old_logprob_relayout_shift": shift})
    return out


def _w2_to_reference(agent: Agent, ref_policy: torch.nn.Module, obs: Any, chain: torch.Tensor) -> torch.Tensor:
    """Squared distance between the ODE actions of the current and the starting policy from the
    same x_0: a coupling, hence an upper bound on W2^2 between their action distributions."""
    x0 = chain[:, 0]
    cur = agent.act(obs, deterministic=True, x0=x0).chain[:, -1]
    with torch.no_grad():
        ref = ref_policy.act(obs, deterministic=True, x0=x0).chain[:, -1]
    m = agent.mask.float()
    return (((cur - ref) ** 2) * m).sum((-1, -2)).mean() / m.sum()


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = float(target.var())
    return float("nan") if var == 0 else 1.0 - float((target - pred).var()) / var


def lr_factor(cfg: Any, it: int) -> float:
    """Linear warm-up, then cosine decay to lr_min_frac (or constant)."""
    if it < cfg.lr_warmup_iters:
        return (it + 1) / (cfg.lr_warmup_iters + 1)
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(cfg.iterations - cfg.lr_warmup_iters - 1, 1)
    frac = min((it - cfg.lr_warmup_iters) / span, 1.0)
    return cfg.lr_min_frac + (1 - cfg.lr_min_frac) * 0.5 * (1 + math.cos(math.pi * frac))


class ChainPPO(Algorithm[Rollout]):
    """PPO on the whole flow policy's chain: every trainable weight of the policy and the noise head."""

    name = "chain-ppo"
    health = "ppo"
    config = PPOConfig
    # fine-tuning a trained flow policy moves it with small steps (docs/benchmarks.md §1.1, §3.1)
    default_lr_actor = 3e-5

    @classmethod
    def prepare_agent(cls, cfg: Any, agent: BaseAgent) -> Agent:
        if not isinstance(agent, Agent):  # PPO's ratio is the chain's likelihood: a dsrl chain injects no noise
            raise ConfigError(f"algorithm={cls.name}: --policy-path holds a dsrl policy (a noise actor over a frozen "
                              "base), whose chain injects no noise; continue it with --algorithm dsrl, or start PPO "
                              "from the BC checkpoint it was trained from")
        return agent

    @classmethod
    def resolve(cls, cfg: Any, act_space: Any, verbose: bool) -> tuple[Any, dict | None]:
        from reinflow.rl.auto_scale import apply_auto_scale  # (it reads rl.build, which reads the config)
        return apply_auto_scale(cfg, act_space, verbose)   # --auto-scale: its settings for this chain's D

    @classmethod
    def describe(cls, cfg: Any, act_steps: int, action_dim: int) -> dict[str, str]:
        basis = min(cfg.noise_basis, act_steps)  # capped at the executed steps, as sampler_config does
        recipe = (f"noise basis {cfg.noise_basis}, sigma in [{cfg.sigma_min}, {cfg.sigma_max}], lr {cfg.lr_actor:g} "
                  f"({cfg.lr_schedule}), clip {cfg.clip_epsilon}, x_0 {cfg.initial_noise}")
        settings = (f"algorithm {cfg.algorithm}, noise basis {cfg.noise_basis} (0 = white), reduction "
                    f"`{cfg.logprob_reduction}`, sigma in [{cfg.sigma_min}, {cfg.sigma_max}], lr_actor {cfg.lr_actor:g} "
                    f"({cfg.lr_schedule}), clip {cfg.clip_epsilon}, target_kl {cfg.target_kl}, x_0 {cfg.initial_noise}, "
                    f"{cfg.parallel_envs} envs x {cfg.rollout_steps} decisions, {cfg.update_epochs} epochs, "
                    f"minibatch {cfg.minibatch_size}, critic warm-up {cfg.critic_warmup_iters} iterations, "
                    f"precision {cfg.precision}")
        return {"space": f"chain D = {basis or act_steps} x {action_dim} = {(basis or act_steps) * action_dim}",
                "chain": f"noise basis {basis} (0 = white): D = {(basis or act_steps) * action_dim}",
                "recipe": recipe, "settings": settings}

    def __init__(self, cfg: Any, agent: Agent, info: DistInfo, device: torch.device, truncation: str):
        super().__init__(cfg, agent, info, device, truncation)
        self.actor_opt = torch.optim.AdamW(agent.actor_parameters(), lr=cfg.lr_actor, weight_decay=0.0)
        self.critic_opt = torch.optim.AdamW(agent.critic_parameters(), lr=cfg.lr_critic, weight_decay=0.0)
        self.scaler = RewardScaler(cfg.parallel_envs * info.world_size, cfg.gamma) if cfg.reward_scaling else None
        # the W2 regulariser's anchor: the starting policy, frozen
        self.ref = copy.deepcopy(agent).eval().requires_grad_(False) if cfg.bc_coef > 0 else None
        self.sigma_lo = agent.sampler.sigma_lo
        # auto also switches on for good the first time a first minibatch shows a shift (update())
        self.relayout = relayout_from_start(cfg.old_logprob, device, cfg.precision)

    def begin_iteration(self, it: int) -> dict[str, float]:
        cfg = self.cfg
        lo, hi = cfg.schedule().bounds_at(it, cfg.iterations)
        self.agent.set_sigma_bounds(lo, hi)
        self.sigma_lo = lo
        for opt, base in ((self.actor_opt, cfg.lr_actor), (self.critic_opt, cfg.lr_critic)):
            for group in opt.param_groups:
                group["lr"] = base * lr_factor(cfg, it)
        return {"noise/sigma_lo": lo, "noise/sigma_hi": hi, "lr/actor": self.actor_opt.param_groups[0]["lr"],
                "lr/critic": self.critic_opt.param_groups[0]["lr"]}

    def collect(self, envs: Any, raw_obs: Any, it: int, generators: list[torch.Generator]) -> tuple[Experience[Rollout], Any]:
        cfg, agent = self.cfg, self.agent
        roll, raw_obs = collect_rollout(envs, agent, raw_obs, cfg.rollout_steps, self.scaler, generators, self.info,
                                        context_budget_bytes(agent.policy, cfg.context_cache_gib))
        check_per_dim_bound(float(roll.per_dim.max()), roll.bound, self.sigma_lo, "rollout")
        metrics = {"logprob/per_dimension": float(roll.per_dim.mean()), "logprob/per_dimension_bound": roll.bound,
                   "logprob/num_dims": roll.num_dims, "logprob/old_mean": float(roll.logp.sum(-1).mean()),
                   "noise/sigma_mean": roll.sigma_mean, "rollout/reward_mean": float(roll.raw_rewards.mean()),
                   "rollout/episodes_dropped": roll.dropped_episodes,
                   **{f"rollout/reward_{k}": v for k, v in roll.reward_components.items()}}
        return Experience(env_steps=roll.env_steps, episodes=roll.episodes, metrics=metrics, data=roll), raw_obs

    def update(self, exp: Experience[Rollout], it: int) -> dict[str, float]:
        cfg, agent, roll = self.cfg, self.agent, exp.data
        term, trunc = time_limit_as(roll.terminated, roll.truncated, self.truncation)
        adv = gae(roll.rewards, roll.values, term, trunc, roll.final_values, roll.last_values, cfg.gamma, cfg.gae_lambda)
        ctxs = roll.contexts  # frozen encoder: the update reuses the rollout's contexts
        pre_dev = pre_update_check(agent, roll.obs[0], roll.chains[0], roll.logp[0], ctxs[0] if ctxs else None)
        batch = Batch(obs=cat_obs(roll.obs), chains=roll.chains.flatten(0, 1), logp=roll.logp.flatten(0, 1),
                      advantages=adv.advantages.flatten(), returns=adv.returns.flatten(),
                      values=roll.values.flatten(), weights=roll.valid.flatten().float(),
                      context=cat_contexts(ctxs) if ctxs else None)
        roll.contexts = None  # the batch holds the one copy
        actor_on = it >= cfg.critic_warmup_iters
        del ctxs  # the batch holds the one copy of the kept contexts (not twice the budget through the update)
        upd = self._update_checked(batch, actor_on, it)
        check_per_dim_bound(upd["logprob/per_dimension_max"], roll.bound, self.sigma_lo, "update")
        return {**upd, "ppo/pre_update_ratio_max_dev": pre_dev, "ppo/context_reused": float(batch.context is not None),
                "ppo/explained_variance": explained_variance(batch.values, batch.returns),
                "ppo/actor_updated": float(actor_on)}

    def _update_checked(self, batch: Batch, actor_on: bool, it: int) -> dict[str, float]:
        """ppo_update; under --old-logprob auto a first-minibatch shift (raised before any optimizer step,
        so nothing changed) switches the recomputation on for the rest of the run and redoes the update."""
        def run() -> dict[str, float]:
            gen = torch.Generator().manual_seed(stream_seed(self.cfg.seed, it, self.info.rank, 2))  # minibatch order
            return ppo_update(self.agent, self.actor_opt, self.critic_opt, batch, self.cfg, actor_on, gen, self.ref,
                              self.info, self.relayout)
        try:
            return {**run(), "ppo/old_logprob_recomputed": float(self.relayout)}
        except LayoutShiftError as exc:
            if self.relayout or self.cfg.old_logprob != "auto" or self.info.enabled:
                raise  # (under torchrun the ranks must agree: --old-logprob update there)
            self.relayout = True
            print(f"[reinflow] iteration {it}: {str(exc).split(': kernel')[0]}; --old-logprob auto recomputes the old "
                  "log-probs in the update's own minibatches from now on", file=sys.stderr, flush=True)
            return {**run(), "ppo/old_logprob_recomputed": 1.0}

    def state_dict(self) -> dict:
        return {"actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None}

    def load_state_dict(self, state: dict) -> None:
        load_optimizer(self.actor_opt, state.get("actor_opt"), "actor_opt")
        load_optimizer(self.critic_opt, state.get("critic_opt"), "critic_opt")
        if self.scaler is not None and state.get("scaler"):
            held, here = len(state["scaler"]["ret"]), len(self.scaler.ret)
            if held != here:
                raise ConfigError(f"trainer state: the reward scaler holds {held} envs, this run has {here}")
            self.scaler.load_state_dict(state["scaler"])
