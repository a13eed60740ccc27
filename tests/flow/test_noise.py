import math

import pytest
import torch

from reinflow import ConfigError
from reinflow.flow.noise import NoiseHead, NoiseSchedule, bounded_sigma


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e3, 1e30])
def test_sigma_always_inside_bounds(scale):
    z = torch.randn(1000) * scale
    z = torch.cat([z, torch.tensor([float("inf"), -float("inf"), 1e38, -1e38])])
    s = bounded_sigma(z, 0.08, 0.16)
    # sigma is float32: compare with the float32 images of the bounds
    assert s.min() >= torch.tensor(0.08) and s.max() <= torch.tensor(0.16)


def test_sigma_formula_midpoint():
    s = bounded_sigma(torch.zeros(1), 0.08, 0.16)
    expected = math.exp(0.5 * (2 * math.log(0.08) + (2 * math.log(0.16) - 2 * math.log(0.08)) * 0.5))
    assert float(s) == pytest.approx(expected, rel=1e-6)


def test_head_extreme_weights_stay_bounded():
    head = NoiseHead(8, 4, 3, per_step=False, sigma_lo=0.1, sigma_hi=0.3)
    with torch.no_grad():
        for p in head.parameters():
            p.fill_(1e6)
    s = head(torch.randn(5, 8) * 1e6).detach()
    assert s.shape == (5, 4, 3) and s.min() >= torch.tensor(0.1) and s.max() <= torch.tensor(0.3)


def test_per_step_head_and_constant():
    head = NoiseHead(8, 4, 3, per_step=True, sigma_lo=0.1, sigma_hi=0.3)
    assert head(torch.randn(2, 4, 8)).shape == (2, 4, 3)
    const = NoiseHead(8, 4, 3, per_step=False, sigma_lo=0.2, sigma_hi=0.2, constant=True)
    assert torch.all(const(torch.randn(2, 8)) == 0.2)


def test_schedules():
    fixed = NoiseSchedule("learned", 0.08, 0.16)
    assert fixed.bounds_at(50, 100) == (0.08, 0.16)
    decay = NoiseSchedule("decay", 0.05, 0.4, sigma_max_final=0.1, hold_frac=0.5)
    assert decay.bounds_at(10, 101) == (0.05, 0.4)
    assert decay.bounds_at(100, 101)[1] == pytest.approx(0.1)
    his = [decay.bounds_at(i, 101)[1] for i in range(101)]
    assert all(a >= b for a, b in zip(his, his[1:]))
    assert NoiseSchedule("constant", 0.1, 0.3).bounds_at(3, 10) == (0.3, 0.3)


@pytest.mark.parametrize("kw,field", [
    (dict(sigma_min=0.2, sigma_max=0.1), "sigma_min=0.2"),
    (dict(sigma_min=0.0, sigma_max=0.1), "sigma_min=0.0"),
    (dict(sigma_min=-1.0, sigma_max=0.1), "sigma_min=-1.0"),
    (dict(kind="decay", sigma_min=0.1, sigma_max=0.3), "sigma_max_final=None"),
    (dict(kind="decay", sigma_min=0.1, sigma_max=0.3, sigma_max_final=0.05), "sigma_max_final=0.05"),
    (dict(kind="bogus"), "noise_schedule='bogus'"),
    (dict(hold_frac=1.5), "hold_frac=1.5"),
    (dict(hold_frac=-0.1), "hold_frac=-0.1"),
])
def test_bad_schedule_names_field(kw, field):
    with pytest.raises(ConfigError, match=field.replace("(", r"\(")):
        NoiseSchedule(**kw)


def test_hold_frac_accepts_both_ends_of_0_1():
    """hold_frac 1: sigma_max is held throughout; 0: the decay starts at once (cosine from sigma_max)."""
    held = NoiseSchedule("decay", 0.05, 0.4, sigma_max_final=0.1, hold_frac=1.0)
    assert [held.bounds_at(i, 11)[1] for i in (0, 5, 10)] == [0.4, 0.4, 0.4]
    now = NoiseSchedule("decay", 0.05, 0.4, sigma_max_final=0.1, hold_frac=0.0)
    assert now.bounds_at(5, 11)[1] == pytest.approx(0.1 + 0.5 * 0.3 * (1 + math.cos(math.pi * 0.5)))


def test_the_default_schedule_is_a_valid_learned_one():
    """NoiseSchedule() (every field defaulted) constructs: a learned schedule with sigma_min < sigma_max."""
    s = NoiseSchedule()
    lo, hi = s.bounds_at(0, 10)
    assert s.kind == "learned" and 0 < lo < hi and (lo, hi) == (s.sigma_min, s.sigma_max)


def test_a_two_iteration_decay_ends_at_its_final_sigma():
    """progress = iteration / (iterations - 1): with 2 iterations the last one (progress 1) is at the final
    sigma_max, the first (progress 0) at sigma_max."""
    decay = NoiseSchedule("decay", 0.05, 0.4, sigma_max_final=0.1, hold_frac=0.3)
    assert decay.bounds_at(0, 2) == (0.05, 0.4)
    assert decay.bounds_at(1, 2) == (0.05, pytest.approx(0.1))
