"""DSRL (``--algorithm dsrl``): SAC over the initial noise x_0 of a frozen flow policy's chain.

Wagenmaker et al., "Steering Your Diffusion Policy with Latent Space Reinforcement Learning"
(arXiv 2506.15799), the DSRL-SAC variant: the BC policy never changes; a noise actor pi(c | o)
picks a bounded latent c, x_0 = map(c) (``policies.dsrl``: smooth DCT coefficients by default), and
the chain runs its deterministic ODE from there. Each decision (one executed chunk) is one SAC
transition (features of o, c, the chunk's summed reward, features of the next o, done) in a replay
buffer; an iteration collects ``rollout_steps`` decisions per env through the env loop every algorithm
uses (``rl.envloop.decisions``), then takes ``dsrl_utd`` gradient steps per new decision. The agent
(``DSRLAgent``) is the DSRL policy behind ``act`` with nothing PPO needs (no noise head, no critic):
the trainer's evaluation, keep-best and ``reinflow eval`` act through it, the actor's mean in
deterministic mode.

Resume: the replay buffer, critics, targets, temperature and optimizers are the trainer state
(safetensors + JSON), so a resumed run continues with the data and critics it had.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from reinflow import ConfigError, NonFiniteError
from reinflow.flow.chain import sample_chain
from reinflow.policies.dsrl import BOUND_RANGE, DSRLFlowPolicy
from reinflow.rl.agent import ActResult, BaseAgent, SamplerConfig, batch_size
from reinflow.rl.algorithms.base import Algorithm, Experience
from reinflow.rl.dist import DistInfo
from reinflow.rl.envloop import decisions, info_field, stack_obs
from reinflow.rl.replay import ReplayBuffer
from reinflow.rl.sac import SAC
from reinflow.rl.seeding import stream_seed
from reinflow.validate import NAMED

UPDATE_TAG = 3  # seeding.stream_seed tag of the update's replay sampling and actor noise


class DSRLAgent(BaseAgent):
    """A DSRL policy (frozen base + noise actor) behind ``act``: x_0 from the actor (its mean when
    deterministic), then the base's chain as an ODE. Nothing PPO needs: no noise head (the chain injects
    no noise), no critic (SAC's twin critics are training state, ``rl.sac``), no likelihood."""

    legacy_keys = ("noise_head.", "critic.")  # PPO's heads, built for dsrl by reinflow <= 0.1, never trained

    def __init__(self, policy: DSRLFlowPolicy, sampler: SamplerConfig):
        if not isinstance(policy, DSRLFlowPolicy):
            raise ConfigError("algorithm=dsrl: the checkpoint's policy is not a dsrl policy")
        super().__init__(policy, sampler)
        self.from_prior = False
        """stochastic ``act`` draws the latent from ``prior_latent`` instead of the actor (SAC's warm-up)"""

    def act(self, obs: Any, deterministic: bool = False, generator: Any = None,
            x0: torch.Tensor | None = None, context: Any = None) -> ActResult:
        pol = self.policy
        ctx = pol.encode(obs) if context is None else context
        batch, latent = batch_size(obs), None
        if x0 is None:
            feats = pol.value_features(ctx).detach()
            if self.from_prior and not deterministic:
                latent = pol.prior_latent(batch, generator, feats.device, feats.dtype)
            else:
                latent = pol.actor.sample(feats, deterministic, generator)[0]
            x0 = pol.latent_to_x0(latent)
        s = sample_chain(pol, None, ctx, batch, self.mask, deterministic=True, x0=x0)
        return ActResult(action=s.action, chain=s.chain, logp=None, value=None, logprob=None, context=ctx,
                         latent=latent)


@dataclass
class Added:
    """DSRL's ``Experience.data``: what one collection put in the replay buffer (the transitions are there)."""

    transitions: int
    """decisions added (one per env and decision, those of fault-dropped episodes left out)"""


@dataclass
class DSRLConfig:
    """``--algorithm dsrl``'s settings: SAC over the initial noise x_0 of the frozen policy's chain
    (policies/dsrl.py). An iteration collects rollout_steps decisions per env, then takes dsrl_utd
    gradient steps per new decision; gamma is per decision; lr_actor is SAC's one learning rate (actor,
    critics, temperature); the PPO and noise fields do not apply. ``TrainConfig`` derives from it, so
    each field is a top-level flag (``--dsrl-utd``) and a top-level key of config.json."""

    dsrl_components: int = 8
    """dsrl latent: M smooth (DCT) coefficients of x_0 per action dim over the executed steps (0: x_0's H x A entries)"""
    dsrl_bound: float = 2.5
    """dsrl latent bound: c = bound * tanh(u), in units of x_0's N(0, 1) noise (the paper's action magnitude, 1.5)"""
    dsrl_utd: float = 2.0
    """dsrl update-to-data ratio: gradient steps per stored decision"""
    dsrl_batch_size: int = 256
    """dsrl replay samples per gradient step"""
    dsrl_buffer_size: int = 100_000
    """dsrl replay capacity in decisions (the oldest are overwritten)"""
    dsrl_warmup: int = 300
    """dsrl decisions played with c ~ N(0, I) clipped to the bound (the BC policy's own noise) before updates start"""
    dsrl_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """dsrl actor and twin-critic hidden widths (LayerNorm MLPs)"""
    dsrl_tau: float = 0.005
    """dsrl Polyak rate of the target critics"""
    dsrl_target_entropy: float = -1.0
    """dsrl target entropy per latent dim of the tanh-squashed actor on [-1, 1] (at most log 2; the paper: 0)"""
    dsrl_init_alpha: float = 1.0
    """dsrl initial entropy temperature (auto-tuned from there)"""
    dsrl_reward_scale: float = 1.0
    """dsrl factor on each decision's reward (the sum over its executed steps)"""
    dsrl_init: Literal["auto", "zero", "fixed"] = "auto"
    """dsrl latent's centre: x_0 = 0, or fixed (the --initial-noise-seed draw); auto: fixed if --initial-noise fixed"""

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "dsrl_components": (0, 1024), "dsrl_bound": BOUND_RANGE, "dsrl_utd": (1e-3, 256.0),
        "dsrl_batch_size": (1, 65536), "dsrl_buffer_size": (1, 10**8), "dsrl_warmup": (0, 10**8),
        "dsrl_tau": (1e-6, 1.0), "dsrl_target_entropy": (-100.0, math.log(2.0)), "dsrl_init_alpha": (1e-6, 1e3),
        "dsrl_reward_scale": (1e-6, 1e6)}
    """each field's allowed range (checked by ``check``, whatever the algorithm: a config file is valid or not)"""
    FROZEN_ON_RESUME: ClassVar[tuple[str, ...]] = ("dsrl_components", "dsrl_bound", "dsrl_hidden", "dsrl_buffer_size")
    """fields a resume may not change (the latent, the actor and critics, the replay buffer's shape)"""

    def check(self) -> None:
        for name, (lo, hi) in DSRLConfig.RANGES.items():  # (self is a TrainConfig: not self.RANGES)
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{name}={getattr(self, name)}: allowed range [{lo:g}, {hi:g}]")
        from reinflow.policies.mlp import check_net_size  # the widths alone: the env's sizes add to it later
        check_net_size([[1, *self.dsrl_hidden, 1]] * 3, "the DSRL actor and twin critics", f"dsrl_hidden={self.dsrl_hidden}")
        ok, allowed = NAMED["hidden"]
        if not ok(self.dsrl_hidden):
            raise ConfigError(f"dsrl_hidden={self.dsrl_hidden}: {allowed}")


class DSRL(Algorithm[Added]):
    name = "dsrl"
    health = "sac"
    config = DSRLConfig
    default_lr_actor = 3e-4  # SAC's one lr: actor, critics and temperature
    family = "SAC"
    budget_in_env_steps = True  # SAC's sample efficiency is judged per env step

    @classmethod
    def describe(cls, cfg: Any, act_steps: int, action_dim: int) -> dict[str, str]:
        m, seed = cfg.dsrl_components, cls.x0_seed(cfg)
        recipe = (f"SAC over x_0's {m or act_steps} x {action_dim} {'DCT coefficients' if m else 'entries'} (bound "
                  f"{cfg.dsrl_bound:g}), UTD {cfg.dsrl_utd:g}, batch {cfg.dsrl_batch_size}, lr {cfg.lr_actor:g}, "
                  f"target entropy {cfg.dsrl_target_entropy:g}/dim, warm-up {cfg.dsrl_warmup} decisions, centred at "
                  f"{'x_0 = 0' if seed is None else f'the fixed x_0 (seed {seed})'}")
        return {"space": f"SAC latent {m or act_steps} x {action_dim} (x_0)",
                "chain": "the ODE from the actor's x_0 (no injected noise)", "recipe": recipe,
                "settings": f"algorithm {cls.name}, {recipe}, {cfg.parallel_envs} envs x {cfg.rollout_steps} decisions"}

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        # PPO's knobs would be silently ignored: refuse them, naming the way out. --initial-noise fixed is
        # dsrl's too: with --dsrl-init fixed or auto it centres the latent at that draw.
        ppo_only = {"initial_noise": (("sample", "fixed"), "--initial-noise"), "bc_coef": ((0.0,), "--bc-coef")}
        for name, (allowed, flag) in ppo_only.items():
            if getattr(cfg, name) not in allowed:
                raise ConfigError(f"{name}={getattr(cfg, name)!r}: a PPO setting (chain-ppo, residual-ppo); "
                                  f"--algorithm dsrl has no use for it: drop {flag}")
        if cfg.preset not in (None, "default"):
            raise ConfigError(f"preset={cfg.preset!r}: a PPO recipe; --algorithm dsrl takes its own --dsrl-* flags "
                              "(drop --preset, or use --preset default)")
        if cfg.nproc > 1:
            raise ConfigError(f"nproc={cfg.nproc}: algorithm=dsrl runs in one process (its replay buffer and SAC "
                              "updates are not data-parallel); drop --nproc")

    @staticmethod
    def x0_seed(cfg: Any) -> int | None:
        """The seed of the x_0 a new dsrl actor's latent is centred at (``dsrl_init``), None: x_0 = 0. Which
        centre steers better depends on the BC (docs/benchmarks.md §5, "Where the untrained actor starts"): on
        the SO-101 camera BC 16 latents around the fixed draw solve twice the states they solve around 0, on
        tiny SmolVLA reach the reverse (its quickstart asks for zero)."""
        fixed = cfg.dsrl_init == "fixed" or (cfg.dsrl_init == "auto" and cfg.initial_noise == "fixed")
        return cfg.initial_noise_seed if fixed else None

    @classmethod
    def prepare_agent(cls, cfg: Any, agent: BaseAgent) -> BaseAgent:
        if not cfg.policy_path:
            raise ConfigError(f"algorithm={cls.name} steers a pretrained policy's x_0: give --policy-path "
                              "(a BC checkpoint)")
        if isinstance(agent, DSRLAgent):  # a dsrl checkpoint continues with its own actor
            return agent
        # centred where the BC was measured: a fixed-noise BC (SmolVLA's quickstart) at its x_0
        steered = DSRLAgent(DSRLFlowPolicy(agent.policy, agent.sampler.act_steps, cfg.dsrl_components, cfg.dsrl_bound,
                                           cfg.dsrl_hidden, x0_seed=cls.x0_seed(cfg)), agent.sampler)
        steered.critic_shares_features = agent.critic_shares_features  # the checkpoint's config.json keeps the flag
        return steered

    def __init__(self, cfg: Any, agent: BaseAgent, info: DistInfo, device: torch.device, truncation: str):
        super().__init__(cfg, agent, info, device, truncation)
        if info.world_size > 1:
            raise ConfigError(f"world_size={info.world_size}: algorithm=dsrl runs in one process (its replay "
                              "buffer and SAC updates are not data-parallel); run it without torchrun")
        if not isinstance(agent, DSRLAgent):
            raise ConfigError("algorithm=dsrl: the checkpoint's policy is not a dsrl policy")
        self.policy = pol = agent.policy
        feat, latent = pol.value_feature_dim, pol.latent_dim
        self.sac = SAC(pol.actor, feat, cfg, device)
        self.buffer = ReplayBuffer(cfg.dsrl_buffer_size, {"feat": (feat,), "latent": (latent,), "reward": (),
                                                         "next_feat": (feat,), "done": ()}, device)
        self.owed = 0.0        # fractional gradient steps carried to the next iteration
        self.grad_steps = 0

    def begin_iteration(self, it: int) -> dict[str, float]:
        return {"lr/actor": self.cfg.lr_actor}

    # --- collection ------------------------------------------------------------------------------
    @torch.no_grad()
    def collect(self, envs: Any, raw_obs: Any, it: int, generators: list[torch.Generator]) -> tuple[Experience[Added], Any]:
        """``rollout_steps`` decisions of the env loop; each kept one is a replay transition (features of o,
        the latent c that chose x_0, the chunk's reward, features of the next o, done)."""
        cfg, pol, agent, buf = self.cfg, self.policy, self.agent, self.buffer
        n = envs.num_envs
        episodes, rewards, env_steps, added, dropped, warm = [], [], 0, 0, 0, 0
        agent.from_prior = buf.added < cfg.dsrl_warmup  # the BC policy's own in-span noise, clipped to the bound
        try:
            for step in decisions(envs, agent, raw_obs, cfg.rollout_steps, generators):
                warm += n if agent.from_prior else 0
                feats, done, reward = pol.value_features(step.act.context).detach(), step.done, step.reward
                # the next decision's context doubles as this one's next state, except where an episode ended
                # (same-step autoreset: its last observation is in final_obs)
                next_feats = pol.value_features(step.next_context).detach().clone()
                ended = np.nonzero(done)[0]
                if len(ended):
                    last = pol.prepare_obs(stack_obs([step.infos["final_obs"][i] for i in ended]))
                    next_feats[torch.as_tensor(ended, device=feats.device)] = pol.value_features(pol.encode(last)).detach()
                keep = info_field(step.infos, "episode_dropped", n) == 0   # a fault's decision is no transition
                # a time limit bootstraps unless part of the task
                stop = step.terminated | (step.truncated & (self.truncation == "terminal"))
                idx = torch.as_tensor(np.nonzero(keep)[0], device=feats.device)
                as_t = lambda x: torch.as_tensor(x, dtype=torch.float32, device=feats.device)[idx]  # noqa: E731
                buf.add(feat=feats[idx], latent=step.act.latent[idx], reward=as_t(reward * cfg.dsrl_reward_scale),
                        next_feat=next_feats[idx], done=as_t(stop))
                agent.from_prior = buf.added < cfg.dsrl_warmup   # read when the next decision is sampled
                added += len(idx)
                dropped += int((~keep & done).sum())
                rewards += [float(x) for x in reward[keep]]
                env_steps += step.env_steps
                episodes += [step.episode(i) for i in np.nonzero(done & keep)[0]]
                raw_obs = step.raw_obs
        finally:
            agent.from_prior = False  # evaluation and checkpoints never see the warm-up switch
        metrics = {"rollout/reward_mean": float(np.mean(rewards)) if rewards else None,
                   "rollout/episodes_dropped": dropped, "sac/warmup_fraction": warm / max(n * cfg.rollout_steps, 1)}
        return Experience(env_steps=env_steps, episodes=episodes, metrics=metrics, data=Added(added)), raw_obs

    # --- learning --------------------------------------------------------------------------------
    def update(self, exp: Experience[Added], it: int) -> dict[str, float]:
        cfg, buf = self.cfg, self.buffer
        out = {"sac/buffer_size": len(buf), "sac/buffer_capacity": buf.capacity, "sac/batch_size": cfg.dsrl_batch_size,
               "sac/alpha": self.sac.alpha, "sac/entropy_target_per_dim": cfg.dsrl_target_entropy,
               "sac/latent_dim": self.policy.latent_dim, "sac/gamma": cfg.gamma}
        if buf.added < cfg.dsrl_warmup:  # still collecting with the BC policy's noise
            return {**out, "sac/updates": 0, "sac/grad_steps": self.grad_steps}
        self.owed += cfg.dsrl_utd * exp.data.transitions
        steps, self.owed = int(self.owed), self.owed - int(self.owed)
        idx_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, it, 0, UPDATE_TAG))
        noise_gen = torch.Generator(device=self.device).manual_seed(stream_seed(cfg.seed, it, 1, UPDATE_TAG))
        rows = []
        for _ in range(steps):
            rows.append(self.sac.update(buf.sample(cfg.dsrl_batch_size, idx_gen), noise_gen))
        self.grad_steps += steps
        out.update({"sac/updates": steps, "sac/grad_steps": self.grad_steps, "sac/alpha": self.sac.alpha})
        if rows:
            mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
            bad = [k for k, v in mean.items() if not math.isfinite(v)]
            if bad:
                raise NonFiniteError(f"SAC update: {', '.join(bad)} not finite (q_loss {mean['q_loss']:.4g}); "
                                     "lower --lr-actor or --dsrl-utd, or check the rewards' scale")
            out.update({f"sac/{k}": v for k, v in mean.items() if not k.endswith("grad_norm")})
            out["sac/entropy_per_dim"] = mean["entropy"] / self.policy.latent_dim
            out["sac/q_loss_max"] = max(r["q_loss"] for r in rows)
            out["gradients/critic_norm"], out["gradients/policy_norm"] = mean["critic_grad_norm"], mean["actor_grad_norm"]
            out["sac/reward_abs_max"] = float(buf.data["reward"][: len(buf)].abs().max())
        return out

    # --- resume ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"sac": self.sac.state_dict(), "replay": self.buffer.state_dict(), "owed": self.owed,
                "grad_steps": self.grad_steps}

    def load_state_dict(self, state: dict) -> None:
        for key in ("sac", "replay"):
            if not isinstance(state.get(key), dict):
                raise ConfigError(f"trainer state: no dsrl {key} state (was the run trained with --algorithm dsrl?)")
        self.sac.load_state_dict(state["sac"])
        self.buffer.load_state_dict(state["replay"])
        owed, steps = state.get("owed"), state.get("grad_steps")
        if not isinstance(owed, float) or not 0 <= owed < 1 or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"trainer state: dsrl owed={owed!r}, grad_steps={steps!r}: expected [0, 1) and an int >= 0")
        self.owed, self.grad_steps = owed, steps
