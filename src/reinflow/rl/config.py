"""``reinflow train`` configuration: one flat dataclass, so the flags users already type
(``--chunk-size``, ``--sigma-min``, ``--parallel-envs`` ...) are top-level. The run's own fields
(env, policy, chain, loop, logging) are ``RunFields``' and the ``SharedFields`` the quickstart declares
too; each algorithm declares its settings in its own file (``Algorithm.config``: ``PPOConfig`` in
algorithms/ppo.py, ``DSRLConfig`` in algorithms/dsrl.py) and ``TrainConfig`` derives from all of them.
Validated in ``__post_init__``: a bad value ends with one line naming the field and the allowed range."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from reinflow import ConfigError
from reinflow.flow.noise import SCHEDULE_ALIASES, NoiseSchedule
from reinflow.rl.algorithms import ALGORITHMS, ALIASES, algorithm_class, algorithm_configs, canonical
from reinflow.validate import check_fields

# field -> {name of reinflow <= 0.1: today's name}: run folders and config files keep working
LEGACY_VALUES = {"algorithm": ALIASES, "noise_schedule": SCHEDULE_ALIASES}


def upgrade_legacy(train: dict) -> dict:
    """A saved ``train`` config with the values of reinflow <= 0.1 renamed (what a resume compares)."""
    return {k: LEGACY_VALUES[k].get(v, v) if k in LEGACY_VALUES and isinstance(v, str) else v
            for k, v in train.items()}

# decisions one rank collects per iteration (parallel_envs x rollout_steps): each field is bounded
# on its own (validate.RANGES), the rollout buffer holds their product (the recipes use 80)
DECISIONS_MAX = 2**17
ALGORITHM_CONFIGS = algorithm_configs()
"""the registered algorithms' settings dataclasses, each once"""


def check_act_steps(act_steps: int, chunk: int) -> None:
    """The one rule tying the executed steps to the chunk (>= 1: ``validate.RANGES``)."""
    if act_steps > chunk:
        raise ConfigError(f"act_steps={act_steps}: must be <= chunk_size={chunk}")


@dataclass
class SharedFields:
    """The fields ``reinflow train`` and ``reinflow quickstart`` share: the same flag, type, default and
    meaning in both (the quickstart hands them to its run), declared once."""

    env_kwargs: str = ""
    """JSON object of extra gymnasium.make kwargs, e.g. '{"obs_mode": "pixels_state"}'"""
    algorithm: str = "auto"
    """chain-ppo: PPO on the whole chain; residual-ppo: PPO on a zero-init offset over the frozen policy; dsrl: SAC on
    the chain's x_0 over the frozen policy; auto: residual-ppo from --policy-path (the quickstart's BC), else chain-ppo"""
    chunk_size: int | None = None
    """actions per chunk H (default: the checkpoint's, else 8; the quickstart's BC: per env, 50)"""
    act_steps: int | None = None
    """chunk steps executed per decision (default: the whole chunk)"""
    seed: int = 0
    """seed of envs, sampler and torch (the quickstart's: of its demos and BC too)"""
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    """numerics (rl/precision.py): fp32; tf32 matmuls/convs on CUDA; bf16 autocast (log-densities stay float64; BC stays fp32)"""
    progress: bool = True
    """show progress bars"""
    overwrite: bool = False
    """a non-empty --out (an earlier run or report) is moved aside to <out>.old-N instead of being refused"""

    def check_shared(self) -> None:
        """Their rules beyond their types and ``validate.RANGES`` (act_steps <= chunk_size: TrainConfig's, once
        the quickstart has its per-env chunk)."""
        if canonical(self.algorithm) not in ("auto", *ALGORITHMS):
            raise ConfigError(f"algorithm={self.algorithm!r}: allowed auto, {', '.join(ALGORITHMS)}")


@dataclass
class RunFields:
    """What every run has, whatever its algorithm, besides ``SharedFields`` (``TrainConfig`` adds both and
    the algorithms' settings)."""

    env: str = "reinflow/ArmReach-v0"
    """gymnasium env id with a Box action space (e.g. Pendulum-v1, Hopper-v5, reinflow/ArmPickLift-v0)"""
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
    gamma: float = 0.99
    """discount per decision"""
    lr_actor: float | None = None
    """actor (policy or offset net + noise head) learning rate (default: 3e-5 chain-ppo, 1e-4 residual-ppo; dsrl:
    3e-4 for actor, critics and temperature, constant)"""
    truncation: Literal["auto", "bootstrap", "terminal"] = "auto"
    """time limit: bootstrap V(final obs) or terminal (V=0); auto: env.metadata['reinflow_truncation'] or bootstrap"""
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
    device: str = "cpu"
    """torch device (cpu, cuda, cuda:N, auto); under torchrun a bare cuda is each rank's LOCAL_RANK GPU"""
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
    resume: bool = False
    """continue the run in --out from its latest checkpoint"""
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


# TrainConfig fields that define the model, the denoising chain, the env (and the batch layout the
# reward scaler's state is shaped by); a resume that changes one of them, or one of an algorithm's
# FROZEN_ON_RESUME, is refused (runfolder.resume_changes)
RUN_FROZEN_ON_RESUME = ("env", "algorithm", "env_kwargs", "policy", "policy_path", "vlm_path", "trainable", "chunk_size",
                        "act_steps", "denoise_steps", "hidden", "noise_basis", "sigma_min", "sigma_max", "noise_schedule",
                        "sigma_max_final", "noise_hold_frac", "initial_noise", "initial_noise_seed", "logprob_reduction",
                        "logprob_clamp", "mask_executed", "parallel_envs", "nproc", "precision")
FROZEN_ON_RESUME = RUN_FROZEN_ON_RESUME + tuple(n for c in ALGORITHM_CONFIGS for n in c.FROZEN_ON_RESUME)


@dataclass
class TrainConfig(*reversed(ALGORITHM_CONFIGS), SharedFields, RunFields):  # fields (and flags) in reverse order
    """Fine-tune a flow policy with ReinFlow + PPO on a gymnasium env."""

    def __post_init__(self) -> None:
        for name, value in upgrade_legacy({k: getattr(self, k) for k in LEGACY_VALUES}).items():
            setattr(self, name, value)
        check_fields(self)  # types, finite floats, seed range, hidden widths, validate.RANGES
        self.check_shared()
        if self.chunk_size and self.act_steps:
            check_act_steps(self.act_steps, self.chunk_size)  # (a checkpoint's or the default chunk: rl.build)
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every}: must be >= 1")
        if self.parallel_envs * self.rollout_steps > DECISIONS_MAX:
            raise ConfigError(f"parallel_envs={self.parallel_envs} x rollout_steps={self.rollout_steps}: "
                              f"{self.parallel_envs * self.rollout_steps} decisions per iteration; at most {DECISIONS_MAX}")
        if self.render:
            raise ConfigError("render=True: recording evaluation frames is not implemented; drop --render")
        self.schedule()  # validates the sigma fields
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma={self.gamma}: allowed range [0, 1]")
        if self.lr_actor is not None and not self.lr_actor > 0:
            raise ConfigError(f"lr_actor={self.lr_actor}: must be > 0")
        if self.eval_every < 0:
            raise ConfigError(f"eval_every={self.eval_every}: must be >= 0")
        if not 1.0 <= self.dist_timeout_min <= 10080.0:
            raise ConfigError(f"dist_timeout_min={self.dist_timeout_min}: allowed range [1, 10080] minutes")
        if self.time_limit_min is not None and not 0 < self.time_limit_min < float("inf"):
            raise ConfigError(f"time_limit_min={self.time_limit_min}: must be a finite number > 0 (or omitted)")
        if self.logprob_clamp is not None and not self.logprob_clamp > 0:
            raise ConfigError(f"logprob_clamp={self.logprob_clamp}: must be > 0")
        for conf in ALGORITHM_CONFIGS:  # every algorithm's fields, whatever the algorithm: a config file is valid or not
            conf.check(self)
        if self.algorithm != "auto":
            algorithm_class(self.algorithm).check_config(self)

    def resolved(self, saved: dict | None = None) -> "TrainConfig":
        """This config with its 'auto' choices made (what a run records in config.json): the algorithm
        (residual when it starts from a pretrained --policy-path, else chain-ppo; a resumed run's, from its
        ``saved`` train config: runs written before the choice existed were PPO on the chain) and the actor
        lr that goes with it. Not done in __post_init__: the CLI builds a default instance before the flags."""
        algo = self.algorithm
        if algo == "auto":
            algo = canonical(str(saved.get("algorithm", "chain-ppo"))) if saved is not None else \
                "residual-ppo" if self.policy_path else "chain-ppo"
        lr = self.lr_actor if self.lr_actor is not None else algorithm_class(algo).default_lr_actor
        return replace(self, algorithm=algo, lr_actor=lr)

    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.noise_schedule, self.sigma_min, self.sigma_max, self.sigma_max_final,
                             self.noise_hold_frac)
