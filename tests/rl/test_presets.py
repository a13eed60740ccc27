"""Named recipes (``--preset``) and the shipped defaults they are compared against."""

from __future__ import annotations

from dataclasses import fields

import pytest

from reinflow import ConfigError
from reinflow.rl.config import TrainConfig
from reinflow.rl.presets import PRESETS, preset_overrides


def test_default_is_the_benchmark_winner():
    """docs/benchmarks.md ("Preset comparison on reach, push and pick-lift") reports the `default` rows
    with the runs of `reinflow-paper`: that is only true while the defaults equal its settings."""
    default = TrainConfig()
    for key, value in PRESETS["reinflow-paper"].items():
        assert getattr(default, key) == value, key
    assert PRESETS["default"] == {}


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
    with pytest.raises(ConfigError, match="preset='nope': allowed sum-unscaled, .*default"):
        preset_overrides("nope")
