"""Named recipes for ``reinflow train --preset NAME``: TrainConfig overrides applied before the
command-line flags, so ``--preset reinflow-paper --sigma-max 0.3`` works as expected.

Only recipes a user may want are here; the ablations the benchmark compares them with live in
``benchmarks/recipes.py`` (``ABLATIONS``), built on ``white_noise`` below.
"""

from __future__ import annotations

from reinflow import ConfigError


def white_noise(**overrides: object) -> dict:
    """A white-noise recipe as benchmarked before smooth noise became the default: the settings it
    inherited from the defaults of the time are spelled out, so the default can move on."""
    return {"noise_basis": 0, "lr_actor": 1e-4, "target_kl": 0.1, "sigma_min": 0.08, "sigma_max": 0.16,
            "logprob_reduction": "mean", "logprob_clamp": 1.0, "clip_epsilon": 0.01, **overrides}


PRESETS: dict[str, dict] = {
    # What reinflow ships (TrainConfig's defaults): smooth noise, 4 DCT coefficients per joint over the
    # executed steps (D = 24 at K = 1), summed log-prob, clip 0.2, sigma [0.16, 0.32], target KL 0.05;
    # from a pretrained policy 'auto' picks residual-ppo with lr 1e-4 (docs/benchmarks.md §1, §3.1);
    # tests/rl/test_presets.py pins the equality.
    "default": dict(),
    # The default spelled out for each algorithm: PPO on the whole chain (the default from scratch) and
    # PPO on a zero-initialised offset over the frozen BC policy (the default from a checkpoint).
    "chain-ppo": dict(algorithm="chain-ppo"),
    "residual-ppo": dict(algorithm="residual-ppo", lr_actor=1e-4),
    # The default with the paper's noise bounds (half the default's): fewer failed grasps and pushes in
    # the rollout, less exploration on reach. Ablation in docs/benchmarks.md §3.3.
    "narrow-noise": dict(sigma_min=0.08, sigma_max=0.16),
    # ReinFlow as published: white noise on every chunk step, the reference code's per-element mean
    # log-prob clamped to [-1, 1], clip 0.01 (the default of reinflow until 2026-11-29).
    "reinflow-paper": white_noise(),
    # The configuration that failed (docs/design.md section 1): summed log-probs, paper sigma, clip 0.05;
    # `reinflow doctor` on such a run explains every symptom.
    "sum-unscaled": white_noise(logprob_reduction="sum", sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.05),
}
# names of reinflow <= 0.1, recorded in run folders and scripts
PRESET_ALIASES = {"reinflow": "chain-ppo", "residual": "residual-ppo", "white-noise": "reinflow-paper"}


def preset_overrides(name: str) -> dict:
    name = PRESET_ALIASES.get(name, name)
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r}: allowed {', '.join(PRESETS)} (the benchmark's ablations: "
                          "benchmarks/recipes.py)")
    return dict(PRESETS[name])
