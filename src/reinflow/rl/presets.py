"""Named recipes for ``reinflow train --preset NAME`` (compared in benchmarks/recipes.py).

Each is a set of TrainConfig overrides applied before the command-line flags, so
``--preset per-step --sigma-max 0.3`` works as expected.
"""

from __future__ import annotations

from reinflow import ConfigError


def _white(**overrides: object) -> dict:
    """A white-noise recipe as benchmarked before smooth noise became the default: the settings it
    inherited from the defaults of the time are spelled out, so the default can move on."""
    return {"noise_basis": 0, "lr_actor": 1e-4, "target_kl": 0.1, "sigma_min": 0.08, "sigma_max": 0.16,
            "logprob_reduction": "mean", "logprob_clamp": 1.0, "clip_epsilon": 0.01, **overrides}


PRESETS: dict[str, dict] = {
    # The configuration that failed (DESIGN section 1): summed log-probs, paper sigma, clip 0.05.
    "sum-unscaled": _white(logprob_reduction="sum", sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.05),
    # The fix that was applied to it: sigma x sqrt(300/28) ~ x3.27.
    "sum-sigma-scaled": _white(logprob_reduction="sum", sigma_min=0.25, sigma_max=0.50, clip_epsilon=0.05),
    # The ReinFlow reference code's normalisation: per-element mean clamped to [-1, 1], clip 0.01.
    "reinflow-paper": _white(),
    # Large-scale VLA-RL frameworks' default: chunk-level summed ratio, clip 0.2.
    "chunk-sum-0.2": _white(logprob_reduction="sum", sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.2),
    # Each executed action step its own PPO ratio term.
    "per-step": _white(logprob_reduction="per_step", sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.1),
    # What reinflow ships as its default (TrainConfig's defaults; from a pretrained policy 'auto' picks the
    # residual algorithm with lr 1e-4, as the "residual" preset spells out): smooth noise, 4 DCT coefficients per
    # joint over the executed steps (D = 24 at K = 1), summed log-prob, clip 0.2, sigma [0.16, 0.32],
    # lr 3e-5 cosine, target KL 0.05 -- the only recipe that raised pick-lift and push above their BC
    # (docs/benchmarks.md, "Smooth noise"); tests/rl/test_presets.py pins the equality.
    "default": dict(),
    # The default with the paper's noise bounds (half the default's): fewer failed grasps and pushes in
    # the rollout (smaller det - stoch gap), less exploration on reach. Ablation in docs/benchmarks.md.
    "narrow-noise": dict(sigma_min=0.08, sigma_max=0.16),
    # PPO on the whole chain with the smooth-noise recipe: what the default runs from scratch, and what it
    # ran from a pretrained policy until 2026-11-30 (the "default" rows of docs/benchmarks.md section 1).
    "reinflow": dict(algorithm="chain-ppo"),
    # The alternative algorithm (policies/residual.py): PPO on a zero-initialised offset over the frozen BC
    # policy, with the default's smooth noise; a fresh offset net takes a larger lr than fine-tuning does.
    "residual": dict(algorithm="residual-ppo", lr_actor=1e-4),
    # The default before smooth noise (until 2026-11-29): white noise, reinflow-paper's settings.
    "white-noise": _white(),
    # The recipe `reinflow quickstart` uses on reach (docs/benchmarks.md): per-step ratios, wide noise
    # so a larger lr stays inside the clip range, one full-batch minibatch of 160 chunks, critic
    # warm-up. Fast on reach; the same noise wrecks push and pick-lift (measured), so not the default.
    "arm-d300": _white(logprob_reduction="per_step", clip_epsilon=0.1, lr_schedule="constant", parallel_envs=40,
                     rollout_steps=4, minibatch_size=160, critic_warmup_iters=3, sigma_min=0.4, sigma_max=0.8,
                     lr_actor=2e-4),
    # arm-d300 with half the noise and half the lr (same lr / sigma, so the same ratio spread):
    # DESIGN section 4 warns that sigma = 0.5 can ruin a grasping task.
    "per-step-mid-sigma": _white(logprob_reduction="per_step", clip_epsilon=0.1, lr_schedule="constant", parallel_envs=40,
                               rollout_steps=4, minibatch_size=160, critic_warmup_iters=3, sigma_min=0.2,
                               sigma_max=0.4, lr_actor=1e-4),
    # ... and with a quarter: the noise the paper's sigma_min gives, for tasks that need precision.
    "per-step-low-sigma": _white(logprob_reduction="per_step", clip_epsilon=0.1, lr_schedule="constant", parallel_envs=40,
                               rollout_steps=4, minibatch_size=160, critic_warmup_iters=3, sigma_min=0.1,
                               sigma_max=0.2, lr_actor=5e-5),
}


def preset_overrides(name: str) -> dict:
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r}: allowed {', '.join(PRESETS)}")
    return dict(PRESETS[name])
