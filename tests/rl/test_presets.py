"""Named recipes (``--preset``) and the shipped defaults they are compared against."""

from __future__ import annotations

from dataclasses import fields

import pytest

from reinflow import ConfigError
from reinflow.rl.config import TrainConfig
from reinflow.rl.presets import PRESETS, preset_overrides


def test_default_is_the_benchmark_winner():
    """docs/benchmarks.md (§1, §3) reports today's defaults with these settings: the test
    pins them, so a changed default needs a new benchmark, not a silent edit."""
    default = TrainConfig().resolved()                  # from scratch: PPO on the whole chain
    assert (default.noise_basis, default.logprob_reduction, default.sigma_min, default.sigma_max) == (4, "sum", 0.16, 0.32)
    assert (default.lr_actor, default.clip_epsilon, default.target_kl, default.lr_schedule) == (3e-5, 0.2, 0.05, "cosine")
    assert default.algorithm == "chain-ppo"
    assert PRESETS["default"] == {}
    tuned = TrainConfig(policy_path="BC").resolved()     # from a pretrained policy: the residual, lr 1e-4
    assert (tuned.algorithm, tuned.lr_actor, tuned.noise_basis, tuned.clip_epsilon) == ("residual-ppo", 1e-4, 4, 0.2)
    explicit = TrainConfig(policy_path="BC", algorithm="chain-ppo", lr_actor=2e-5).resolved()
    assert (explicit.algorithm, explicit.lr_actor) == ("chain-ppo", 2e-5)  # flags win over 'auto'
    assert TrainConfig(policy_path="BC", preset="residual-ppo", **PRESETS["residual-ppo"]).resolved() == tuned.__class__(
        **{**tuned.__dict__, "preset": "residual-ppo"})  # the preset spells out what auto picks


def test_white_noise_presets_do_not_inherit_the_smooth_default():
    """Every white-noise preset spells out what it inherited from the defaults of its benchmark."""
    for name, over in PRESETS.items():
        if "noise_basis" in over:
            assert over["noise_basis"] == 0 and "lr_actor" in over and "target_kl" in over, name
    # the smooth-noise recipes change only what they name
    assert {n for n, o in PRESETS.items() if "noise_basis" not in o} == {"default", "narrow-noise", "chain-ppo",
                                                                          "residual-ppo"}
    assert PRESETS["narrow-noise"] == {"sigma_min": 0.08, "sigma_max": 0.16}
    old = TrainConfig(**preset_overrides("white-noise"))   # the old name of reinflow-paper
    assert (old.logprob_reduction, old.logprob_clamp, old.clip_epsilon, old.lr_actor) == ("mean", 1.0, 0.01, 1e-4)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config_that_changes_what_it_names(name):
    over = preset_overrides(name)
    cfg = TrainConfig(preset=name, **over)
    names = {f.name for f in fields(TrainConfig)}
    assert set(over) <= names
    for key, value in over.items():
        assert getattr(cfg, key) == value
    if cfg.logprob_reduction != "mean":
        # clip 0.01 is read on the geometric-mean ratio; per-step / summed ratios need their own
        assert cfg.clip_epsilon >= 0.05, name


def test_unknown_preset_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="preset='nope': allowed default, .*sum-unscaled"):
        preset_overrides("nope")


def test_the_benchmarks_ablations_are_valid_configs_of_white_noise():
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "recipes", pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    assert not set(recipes.ABLATIONS) & set(PRESETS)
    for name, over in recipes.ABLATIONS.items():
        cfg = TrainConfig(**over)
        assert cfg.noise_basis == 0 and cfg.clip_epsilon >= 0.05, name
