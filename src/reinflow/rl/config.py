"""``reinflow train`` configuration: one flat dataclass, so the flags users already type
(``--chunk-size``, ``--sigma-min``, ``--parallel-envs`` ...) are top-level. Validated in
``__post_init__``: a bad value ends with one line naming the field and the allowed range."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from reinflow import ConfigError
from reinflow.flow.noise import SCHEDULE_ALIASES, NoiseSchedule
from reinflow.rl.algorithms import ALGORITHMS, ALIASES
from reinflow.validate import NAMED, check_fields

# field -> {name of reinflow <= 0.1: today's name}: run folders and config files keep working
LEGACY_VALUES = {"algorithm": ALIASES, "noise_schedule": SCHEDULE_ALIASES}


def upgrade_legacy(train: dict) -> dict:
    """A saved ``train`` config with the values of reinflow <= 0.1 renamed (what a resume compares)."""
    return {k: LEGACY_VALUES[k].get(v, v) if k in LEGACY_VALUES and isinstance(v, str) else v
            for k, v in train.items()}

# actor lr per algorithm (docs/benchmarks.md §1.1, §3.1): fine-tuning a trained flow policy moves it
# with small steps; a fresh, zero-initialised offset net needs larger ones
LR_ACTOR = {"chain-ppo": 3e-5, "residual-ppo": 1e-4, "dsrl": 3e-4}  # dsrl: SAC's one lr (actor, critics, alpha)
# decisions one rank collects per iteration (parallel_envs x rollout_steps): each field is bounded
# on its own (validate.RANGES), the rollout buffer holds their product (the recipes use 80)
DECISIONS_MAX = 2**17


@dataclass
class TrainConfig:
    """Fine-tune a flow policy with ReinFlow + PPO on a gymnasium env."""

    env: str = "reinflow/ArmReach-v0"
    """gymnasium env id with a Box action space (e.g. Pendulum-v1, Hopper-v5, reinflow/ArmPickLift-v0)"""
    env_kwargs: str = ""
    """JSON object of extra gymnasium.make kwargs, e.g. '{"obs_mode": "pixels_state"}'"""
    out: str = "runs/train"
    """run folder: metrics.jsonl, config.json, checkpoints/, tensorboard/"""
    iterations: int = 100
    """PPO iterations (rollout + update)"""
    parallel_envs: int = 10
    """environments stepped in parallel"""
    vector: Literal["sync", "async"] = "sync"
    """vector env: sync (fastest on few cores) or async (spawned worker processes)"""
    rollout_steps: int = 8
    """decisions (chunks) per env per iteration"""
    policy: Literal["mlp", "smolvla"] = "mlp"
    """policy type when not loading --policy-path"""
    policy_path: str | None = None
    """start from this checkpoint folder (reinflow pretrain/train output)"""
    vlm_path: str | None = None
    """policy=smolvla: a SmolVLM backbone folder/hub id for a fresh SmolVLA (e.g. from reinflow smolvla-tiny)"""
    trainable: Literal["heads", "expert", "all"] = "heads"
    """policy=smolvla: parameters PPO updates (heads: action projections + action-time MLP)"""
    algorithm: str = "auto"
    """chain-ppo: PPO on the whole chain; residual-ppo: PPO on a zero-init offset over the frozen policy; dsrl: SAC on
    the chain's x_0 over the frozen policy; auto: residual-ppo from --policy-path, else chain-ppo"""
    context_cache_gib: float = 4.0
    """frozen encoder (smolvla heads/expert): GiB of rollout prefix caches the update reuses (0: re-encode)"""
    chunk_size: int | None = None
    """actions per chunk H (default: the checkpoint's, else 8)"""
    act_steps: int | None = None
    """chunk steps executed per decision (default: the whole chunk)"""
    denoise_steps: int | None = None
    """Euler steps K (default: 1)"""
    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """MLP policy widths (new policies only)"""
    sigma_min: float = 0.16
    """lower noise bound"""
    sigma_max: float = 0.32
    """upper noise bound (start value for the decay schedule)"""
    noise_schedule: Literal["learned", "decay", "constant"] = "learned"
    """learned: the noise head's sigma in [sigma_min, sigma_max]; decay: sigma_max, then cosine to sigma_max_final; constant"""
    sigma_max_final: float | None = None
    """final sigma_max of the decay schedule"""
    noise_hold_frac: float = 0.3
    """fraction of iterations sigma_max is held before decaying"""
    noise_basis: int = 4
    """M > 0: M smooth (DCT) noise coefficients per action dim over the executed steps (D = M x A x K); 0: white noise"""
    initial_noise: Literal["sample", "fixed", "zero"] = "sample"
    """chain start x_0: a fresh N(0, I) draw (ReinFlow), one fixed draw, or zero (only the learned noise explores)"""
    initial_noise_seed: int = 0
    """seed of the fixed x_0 draw (--initial-noise fixed)"""
    logprob_reduction: Literal["sum", "mean", "per_step"] = "sum"
    """sum (exact; default), mean (per-dim average), per_step (one ratio per executed step; white noise only)"""
    logprob_clamp: float | None = 1.0
    """clamp the 'mean' log-prob to [-c, c] as the ReinFlow reference code does (ignored by sum/per_step)"""
    mask_executed: bool = True
    """log-prob counts only executed chunk steps (exact for K=1, approximate for K>1)"""
    auto_scale: bool = False
    """rescale sigma (or lr) for the chain dimension D from a D_ref reference (reinflow scale)"""
    scale_rule: Literal["sigma", "lr"] = "sigma"
    """what --auto-scale changes: sigma ∝ sqrt(D/D_ref) or lr ∝ sqrt(D_ref/D) (alternatives)"""
    scale_ref_dim: int = 28
    """D_ref of the reference settings (ReinFlow paper manipulation: 4 x 7)"""
    gamma: float = 0.99
    """discount per decision"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    lr_actor: float | None = None
    """actor (policy or offset net + noise head) learning rate (default: 3e-5 chain-ppo, 1e-4 residual-ppo; dsrl:
    3e-4 for actor, critics and temperature, constant)"""
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
    truncation: Literal["auto", "bootstrap", "terminal"] = "auto"
    """time limit: bootstrap V(final obs) or terminal (V=0); auto: env.metadata['reinflow_truncation'] or bootstrap"""
    reward_scaling: bool = True
    """divide rewards by the running std of the discounted return"""
    norm_adv: bool = True
    """normalise advantages per batch"""
    critic_shares_features: bool = False
    """let critic gradients reach the actor's features (default: detached)"""
    time_limit_min: float | None = None
    """stop cleanly (checkpoint + final evaluation) once training has run this many minutes"""
    eval_every: int = 10
    """evaluate every N iterations (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    keep_best: bool = True
    """keep the best-evaluated policy in <out>/best; re-measure it on held-out episodes at the end"""
    checkpoint_every: int = 1
    """write a checkpoint every N iterations"""
    seed: int = 0
    """seed of envs, sampler and torch"""
    device: str = "cpu"
    """torch device (cpu, cuda, cuda:N, auto); under torchrun a bare cuda is each rank's LOCAL_RANK GPU"""
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    """numerics (rl/precision.py): fp32; tf32 matmuls/convs on CUDA; bf16 autocast (log-densities stay float64)"""
    old_logprob: Literal["auto", "rollout", "update"] = "auto"
    """PPO old log-probs: as sampled (rollout) or redone in the update's minibatches (update); auto: GPU, below fp32, a shift"""
    dist_timeout_min: float = 60.0
    """torchrun: minutes a rank waits in a collective (rank 0 evaluates and checkpoints while the others wait)"""
    tensorboard: bool = True
    """also write TensorBoard event files"""
    wandb: bool = False
    """log to W&B (WANDB_MODE=offline works without network)"""
    wandb_project: str = "reinflow"
    """W&B project"""
    headless: bool = True
    """render without a display (MuJoCo EGL/OSMesa)"""
    render: bool = False
    """not implemented (no frames are recorded): --render is refused; --no-render is accepted for old scripts"""
    on_unhealthy: Literal["warn", "stop"] = "warn"
    """what the health monitor does on an error finding"""
    progress: bool = True
    """show a progress bar"""
    resume: bool = False
    """continue the run in --out from its latest checkpoint"""
    overwrite: bool = False
    """a non-empty --out (an earlier run) is moved aside to <out>.old-N instead of being refused"""
    reset_each_iteration: bool = False
    """reset every env at the start of each iteration (seeded by iteration): a killed run then
    resumes bit-identically; off, episodes continue across iterations"""
    env_max_restarts: int = 3
    """rebuild an env that raises up to this many times (its episode is dropped), then stop"""
    nonfinite: Literal["drop", "stop"] = "drop"
    """NaN/inf observation or reward: drop the episode from the batch, or stop the run"""
    nproc: int = 1
    """data-parallel processes: >1 relaunches this command under torchrun (gloo on CPU, nccl on GPUs)"""
    check_sync: bool = False
    """after every update log dist/param_max_abs_diff (max parameter difference across ranks; must be 0)"""
    preset: str | None = None
    """named recipe applied before the flags (see reinflow train --help / docs)"""

    # --- --algorithm dsrl: SAC over the initial noise x_0 of the frozen policy's chain (policies/dsrl.py) ---
    # An iteration collects rollout_steps decisions per env, then takes dsrl_utd gradient steps per new
    # decision; gamma is per decision; lr_actor is SAC's one learning rate; the PPO and noise fields do not apply.
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
    """dsrl: the x_0 its untrained actor plays: zero, or fixed (the --initial-noise-seed draw); auto: as --initial-noise"""

    def __post_init__(self) -> None:
        for name, value in upgrade_legacy({k: getattr(self, k) for k in LEGACY_VALUES}).items():
            setattr(self, name, value)
        check_fields(self)  # types, finite floats, seed range, hidden widths
        if self.algorithm not in ("auto", *ALGORITHMS):
            raise ConfigError(f"algorithm={self.algorithm!r}: allowed auto, {', '.join(ALGORITHMS)}")
        # sizes (iterations, envs, chunk, act_steps, ...) have their ranges in validate.RANGES, checked above
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every}: must be >= 1")
        if self.parallel_envs * self.rollout_steps > DECISIONS_MAX:
            raise ConfigError(f"parallel_envs={self.parallel_envs} x rollout_steps={self.rollout_steps}: "
                              f"{self.parallel_envs * self.rollout_steps} decisions per iteration; at most {DECISIONS_MAX}")
        if self.render:
            raise ConfigError("render=True: recording evaluation frames is not implemented; drop --render")
        if self.chunk_size and self.act_steps and self.act_steps > self.chunk_size:
            raise ConfigError(f"act_steps={self.act_steps}: must be <= chunk_size={self.chunk_size}")
        NoiseSchedule(self.noise_schedule, self.sigma_min, self.sigma_max, self.sigma_max_final,
                      self.noise_hold_frac)  # validates the sigma fields
        for name in ("gamma", "gae_lambda", "lr_min_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)}: allowed range [0, 1]")
        for name in ("lr_actor", "lr_critic", "clip_epsilon", "max_grad_norm_actor", "max_grad_norm_critic"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be > 0")
        for name in ("ent_coef", "bc_coef", "lr_warmup_iters", "critic_warmup_iters", "eval_every", "env_max_restarts"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 0")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ConfigError(f"target_kl={self.target_kl}: must be > 0 (or omitted to disable)")
        if not 1.0 <= self.dist_timeout_min <= 10080.0:
            raise ConfigError(f"dist_timeout_min={self.dist_timeout_min}: allowed range [1, 10080] minutes")
        if self.time_limit_min is not None and not 0 < self.time_limit_min < float("inf"):
            raise ConfigError(f"time_limit_min={self.time_limit_min}: must be a finite number > 0 (or omitted)")
        if self.logprob_clamp is not None and not self.logprob_clamp > 0:
            raise ConfigError(f"logprob_clamp={self.logprob_clamp}: must be > 0")
        self._check_dsrl()

    def dsrl_x0_seed(self) -> int | None:
        """The seed of the x_0 a new dsrl actor's latent is centred at (``dsrl_init``), None: x_0 = 0."""
        fixed = self.dsrl_init == "fixed" or (self.dsrl_init == "auto" and self.initial_noise == "fixed")
        return self.initial_noise_seed if fixed else None

    def _check_dsrl(self) -> None:
        """The dsrl block's ranges (checked whatever the algorithm: a config file is valid or not)."""
        ranges = {"dsrl_components": (0, 1024), "dsrl_bound": (1e-3, 10.0), "dsrl_utd": (1e-3, 256.0),
                  "dsrl_batch_size": (1, 65536), "dsrl_buffer_size": (1, 10**8), "dsrl_warmup": (0, 10**8),
                  "dsrl_tau": (1e-6, 1.0), "dsrl_target_entropy": (-100.0, math.log(2.0)),
                  "dsrl_init_alpha": (1e-6, 1e3), "dsrl_reward_scale": (1e-6, 1e6)}
        for name, (lo, hi) in ranges.items():
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{name}={getattr(self, name)}: allowed range [{lo:g}, {hi:g}]")
        if self.algorithm == "dsrl":  # PPO's knobs would be silently ignored: refuse them, naming the way out
            # --initial-noise fixed is dsrl's too: with --dsrl-init auto it centres the latent at that draw.
            ppo_only = {"initial_noise": (("sample", "fixed"), "--initial-noise"), "bc_coef": ((0.0,), "--bc-coef")}
            for name, (allowed, flag) in ppo_only.items():
                if getattr(self, name) not in allowed:
                    raise ConfigError(f"{name}={getattr(self, name)!r}: a PPO setting (chain-ppo, residual-ppo); "
                                      f"--algorithm dsrl has no use for it: drop {flag}")
            if self.preset not in (None, "default"):
                raise ConfigError(f"preset={self.preset!r}: a PPO recipe; --algorithm dsrl takes its own --dsrl-* flags "
                                  "(drop --preset, or use --preset default)")
        from reinflow.policies.mlp import check_net_size  # the widths alone: the env's sizes add to it later
        check_net_size([[1, *self.dsrl_hidden, 1]] * 3, "the DSRL actor and twin critics", f"dsrl_hidden={self.dsrl_hidden}")
        ok, allowed = NAMED["hidden"]
        if not ok(self.dsrl_hidden):
            raise ConfigError(f"dsrl_hidden={self.dsrl_hidden}: {allowed}")
        if self.algorithm == "dsrl" and self.nproc > 1:
            raise ConfigError(f"nproc={self.nproc}: algorithm=dsrl runs in one process (its replay buffer and SAC "
                              "updates are not data-parallel); drop --nproc")

    def resolved(self) -> "TrainConfig":
        """This config with its 'auto' choices made (what a run records in config.json): the algorithm
        (residual when it starts from a pretrained --policy-path, else reinflow) and the actor lr that
        goes with it. Not done in __post_init__: the CLI builds a default instance before the flags."""
        algo = self.algorithm if self.algorithm != "auto" else "residual-ppo" if self.policy_path else "chain-ppo"
        lr = self.lr_actor if self.lr_actor is not None else LR_ACTOR[algo]
        return replace(self, algorithm=algo, lr_actor=lr)

    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.noise_schedule, self.sigma_min, self.sigma_max, self.sigma_max_final,
                             self.noise_hold_frac)
