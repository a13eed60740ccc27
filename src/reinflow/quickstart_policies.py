"""What ``reinflow quickstart`` does differently per policy kind (``--policy mlp|smolvla``), and the
settings it runs with when no flag says otherwise: one table each, read by the one pipeline in
``reinflow.quickstart``.

A kind says where its demos go and in which format, which BC trains it (``reinflow pretrain`` with
``policy=<kind>``), what it adds to the env and the fine-tuning config, and the notes of its report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reinflow import ConfigError
from reinflow.envs.families import strip_module
from reinflow.rl.presets import PRESETS

TASKS = {
    "reach": "reinflow/ArmReach-v0",
    "push": "reinflow/ArmPush-v0",
    "pick-lift": "reinflow/ArmPickLift-v0",
}


@dataclass(frozen=True)
class Settings:
    """What the quickstart runs on one env when no flag says otherwise. A fixed iteration count decides
    the result; ``minutes`` only caps the wall time of the whole command (evaluations included)."""

    demo_episodes: int
    """expert demos recorded (``--demo-episodes``)"""
    bc_episodes: int
    """demo episodes BC trains on (``--bc-episodes``; fewer = a weaker starting policy)"""
    bc_steps: int
    """BC gradient steps (``--bc-steps``)"""
    chunk_size: int
    """actions per chunk H (``--chunk-size``), executed open loop"""
    iterations: int
    """PPO iterations (``--iterations``)"""
    minutes: float = 15.0
    """cap on the whole command's wall time (``--minutes``)"""
    train: dict = field(default_factory=dict)
    """other TrainConfig fields (flags and --preset win)"""
    image_size: int = 32
    """camera side in pixels (policies that read cameras: ``--image-size``)"""
    env: dict = field(default_factory=dict)
    """env kwargs the quickstart adds (``--env-kwargs`` wins key by key)"""
    source: str = ""
    """where the numbers were measured"""
    dsrl_env_steps: int = 300_000
    """--algorithm dsrl: the env-step budget; the iterations are the most that fit in it (``iterations``
    is PPO's count)"""
    dsrl_minutes: float = 30.0
    """--algorithm dsrl: cap on the whole command's wall time (SAC's gradient steps cost CPU per sample)"""


# MLP flow policy. Built-in tasks: per-task BC imperfection, chosen so the pretrained policy succeeds
# sometimes but clearly not always (deterministic, 100 episodes): reach 10 x 100 -> 21 %, push 20 x 400 ->
# 28 % (20 x 200 gave 5 %), pick-lift 20 x 200 -> 32 %; 300 iterations, where the benchmark's success
# curves flatten (docs/benchmarks.md; these are also the benchmark's starting checkpoints).
# --algorithm dsrl: issue 23's env-step budgets per task (pick-lift 37 -> 95 % in 163k, docs/benchmarks.md).
MLP_TASKS = {
    "reinflow/ArmReach-v0": Settings(10, 10, 100, 50, 300, source="docs/benchmarks.md", dsrl_env_steps=100_000),
    "reinflow/ArmPush-v0": Settings(20, 20, 400, 50, 300, source="docs/benchmarks.md", dsrl_env_steps=300_000),
    "reinflow/ArmPickLift-v0": Settings(20, 20, 200, 50, 300, source="docs/benchmarks.md", dsrl_env_steps=200_000),
    # SO-101 (lerobot-env-so101, envs/families.py): 150 demos x 3000 BC steps at chunk 16 give 40-52 %, then
    # 70 iterations with the narrow-noise preset's sigma in [0.08, 0.16] reach 91 / 90 / 92 % (3 seeds; the
    # default [0.16, 0.32] gave 86 / 93 / 92, and 96 / 89 / 38 at 100 iterations; 50 demos plateaued near
    # 80 %); evaluations every 20 (every 10 were ~45 % of the train phase); async workers (its MuJoCo model
    # makes stepping the bottleneck).
    "lerobot_env_so101/SO101PickPlace-v0": Settings(
        150, 150, 3000, 16, 70, minutes=30.0, source="docs/so101.md",
        train={"vector": "async", "eval_every": 20, **PRESETS["narrow-noise"]}),  # sigma in [0.08, 0.16]
}
# Any other env with an expert: 10 demos x 1000 BC steps at chunk 50, 250 iterations (<= 1 M env steps):
# on MetaWorld, with episodes that end at success, BC 49 % (pick-place-v3) and 59 % (push-v3), then
# 49 -> 78 % and 59 -> 90 % in ~9 min (docs/metaworld.md).
MLP_ANY_ENV = Settings(10, 10, 1000, 50, 250, source="docs/metaworld.md")

# Episodes capped at 100 steps (the package's 300 is ~6 times what its expert needs, 44-56 steps): every
# SmolVLA SO-101 measurement in docs/so101.md ran so, and an evaluation of a failing policy costs a third.
SO101_SMOLVLA = Settings(50, 50, 1500, 16, 100, minutes=180.0, image_size=64, source="docs/so101.md",
                         train={"vector": "async", "eval_every": 20}, env={"max_episode_steps": 100})
# SmolVLA (tiny offline backbone, 32x32 cameras): measured in docs/smolvla.md (3 seeds, commands there).
# Reach's dsrl latent is centred at x_0 = 0, not at the fixed draw the BC is measured at: on 3 seeds 32 latents
# solve 77-87 % of the states around 0 against 40-63 % around the draw, and the runs gained +14 +- 10 against
# +8 +- 7 (docs/benchmarks.md §5); PPO ignores the field.
SMOLVLA_TASKS = {
    "reinflow/ArmReach-v0": Settings(4, 4, 1000, 50, 250, minutes=30.0, source="docs/smolvla.md", dsrl_env_steps=100_000,
                                     train={"dsrl_init": "zero"}),
    "reinflow/ArmPush-v0": Settings(10, 10, 1000, 50, 200, minutes=30.0, source="not measured"),
    "reinflow/ArmPickLift-v0": Settings(10, 10, 1000, 50, 250, minutes=30.0, source="docs/smolvla.md"),
    # SO-101 from its front camera (64x64: the cube is ~4 px at 32) with the end-effector control the
    # state-MLP quickstart learns with; chunk 16 as there; 10 async envs (docs/so101.md, issue 27)
    "lerobot_env_so101/SO101PickPlace-v0": SO101_SMOLVLA,
}


# Why --algorithm auto (residual-ppo from the BC) is the quickstarts' choice on every task, as measured
# (docs/benchmarks.md §5, docs/so101.md); summary.md prints it so a user knows what ran and why.
AUTO_ALGORITHM_WHY = (
    "the measured best per minute on this CPU: residual-ppo takes pick-lift 31 -> 92 % (1.07M env steps, 4.7 min), "
    "tiny SmolVLA reach +43 to +75 and the SO-101 +38 to +51; dsrl needs fewer env steps (pick-lift 90 +- 5 % within "
    "60k) but SAC's gradient steps make it slower per minute, it gained +5 / +12 on tiny SmolVLA reach, and on the "
    "SO-101's sparse reward it stayed at its BC's level for 59k env steps (docs/benchmarks.md section 5). Pass "
    "--algorithm dsrl when env steps or policy forwards are the cost")


def algorithm_choice(asked: str | None, used: str) -> str:
    """One line for the report: which algorithm ran and why (``asked``: the quickstart's ``--algorithm``)."""
    if asked not in (None, "auto"):
        return f"{used} (asked with --algorithm)"
    return f"{used} (--algorithm auto: {AUTO_ALGORITHM_WHY})"


class PolicyKind:
    """The MLP flow policy (``reinflow pretrain``'s flow-matching BC on ``demos.npz``)."""

    name = "mlp"
    label = "MLP flow policy"
    title = "reinflow quickstart"
    demo_dir, bc_dir = "demos", "pretrain"   # folders under --out; also the summary's keys for their stages
    cameras = False                          # whether it reads camera images (--image-size)
    bc_batch_size = 256
    loss_keys = ("loss_first_100", "loss_last_100")

    def settings(self, env_id: str) -> Settings:
        return MLP_TASKS.get(strip_module(env_id), MLP_ANY_ENV)

    def env_kwargs(self, env_kw: dict, image_size: list[int]) -> dict:
        """``env_kw`` plus what the policy needs from the env."""
        return env_kw

    def record_demos(self, env_id: str, episodes: int, out: Path, env_kw: dict, **kw: Any) -> dict:
        from reinflow.envs.demos import record_demos
        return record_demos(env_id, episodes, out, **kw, **env_kw)

    def prepare(self, out: Path) -> dict:
        """What BC needs besides the demos (PretrainConfig fields)."""
        return {}

    def train_fields(self, cfg: Any) -> dict:
        """TrainConfig fields this kind always sets (before the preset and the flags)."""
        return {}

    def notes(self, s: dict) -> list[str]:
        """Extra lines of summary.md."""
        return []


class SmolVLAKind(PolicyKind):
    """LeRobot's SmolVLA on a tiny offline backbone: pixel demos in a LeRobotDataset, LeRobot's BC loss,
    PPO with every chain started at one fixed x_0 (docs/smolvla.md explains why)."""

    name = "smolvla"
    label = "smolvla (LeRobot SmolVLAPolicy, tiny offline backbone)"
    title = "reinflow quickstart --policy smolvla"
    demo_dir, bc_dir = "dataset", "bc"
    cameras = True
    bc_batch_size = 32
    loss_keys = ("loss_first", "loss_last")

    def settings(self, env_id: str) -> Settings:
        return SMOLVLA_TASKS.get(strip_module(env_id), SMOLVLA_TASKS["reinflow/ArmPickLift-v0"])

    def env_kwargs(self, env_kw: dict, image_size: list[int]) -> dict:
        if env_kw.get("obs_mode") == "pixels_state":  # the cameras the VLA reads (resolve_env_kwargs asks for them)
            return {"image_size": list(image_size), **env_kw}
        return env_kw

    def record_demos(self, env_id: str, episodes: int, out: Path, env_kw: dict, **kw: Any) -> dict:
        from reinflow.bc.lerobot_data import record_lerobot_demos
        return record_lerobot_demos(env_id, episodes, out, **kw, **env_kw)

    def prepare(self, out: Path) -> dict:
        try:
            from reinflow.policies.smolvla.tiny import write_tiny_vlm
        except ImportError as exc:
            raise ConfigError(f"quickstart --policy smolvla needs the extra: pip install -e '.[smolvla]' && pip "
                              f"install --no-deps lerobot==0.4.4 torchvision==0.28.0 (docs/smolvla.md) [{exc}]") from None
        return {"vlm_path": str(write_tiny_vlm(out / "vlm"))}

    def train_fields(self, cfg: Any) -> dict:
        # constant lr: the recipe measured on reach (docs/smolvla.md); the prefix stays frozen and is reused
        return {"policy": "smolvla", "trainable": cfg.trainable or "expert", "initial_noise": "fixed",
                "initial_noise_seed": cfg.seed, "lr_schedule": "constant"}

    def notes(self, s: dict) -> list[str]:
        d, bc = s[self.demo_dir], s[self.bc_dir]
        return [
            "", "## SmolVLA pipeline", "",
            f"* dataset: LeRobotDataset (v3.0) at `{d['path']}`, {d['episodes']} episodes, {d['steps']} frames "
            "(`LeRobotDataset(repo_id, root=...)` loads it offline)",
            f"* BC: LeRobot's `SmolVLAPolicy.forward`, loss {bc['loss_first']:.3f} -> {bc['loss_last']:.3f}; "
            f"LeRobot folder `{bc['lerobot_folder']}`",
            f"* prefix reused from the rollout in every update: {bool(s['context_reused'])}; pre-update max "
            f"abs(ratio - 1): {s['pre_update_ratio_max_dev']:.3g}" if s["pre_update_ratio_max_dev"] is not None else
            "* dsrl: SAC's actor and critics read the frozen policy's observation features (no PPO ratio)",
            f"* mean seconds per iteration: rollout {s['rollout_s_mean']:.1f}, update {s['update_s_mean']:.1f}", ""]


KINDS: dict[str, PolicyKind] = {k.name: k for k in (PolicyKind(), SmolVLAKind())}
"""--policy value -> what the quickstart does for it"""
