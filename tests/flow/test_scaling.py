"""docs/design.md §4, measured: the log-ratio/KL formulas with torch Normals, and that each
scaling rule holds the measured ratio spread (and KL) at its reference value across D."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from reinflow import ConfigError
from reinflow.flow.chain import per_dim_bound
from reinflow.commands.scale import run as cli_main
from reinflow.flow.scaling import (ScaleReference, format_scale_table, predicted_clip_fraction,
                                   ratio_term_dims, scale_for_dimension)

N = 20_000                                    # samples per measurement: ~1 % standard error on a std


def log_ratio(dim: int, sigma: float, step: float, reduction: str = "sum", seed: int = 0, n: int = N) -> torch.Tensor:
    """[N] log pi_new - log pi_old of samples a = mu + sigma*eps when every mean moves by +-step."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(dim, generator=g, dtype=torch.float64)
    delta = step * torch.where(torch.rand(dim, generator=g) < 0.5, -1.0, 1.0).double()
    a = mu + sigma * torch.randn(n, dim, generator=g, dtype=torch.float64)
    lr = Normal(mu + delta, sigma).log_prob(a) - Normal(mu, sigma).log_prob(a)
    return lr.sum(-1) if reduction == "sum" else lr.mean(-1)


def test_var_and_kl_formulas():
    g = torch.Generator().manual_seed(1)
    dim, sigma = 300, 0.08
    mu = torch.randn(dim, generator=g, dtype=torch.float64)
    delta = 0.01 * torch.randn(dim, generator=g, dtype=torch.float64)
    a = mu + sigma * torch.randn(N, dim, generator=g, dtype=torch.float64)
    d = (Normal(mu + delta, sigma).log_prob(a) - Normal(mu, sigma).log_prob(a)).sum(-1)
    sq = float(delta.pow(2).sum())
    assert float(d.var()) == pytest.approx(sq / sigma**2, rel=0.04)           # Var ~ ||delta||^2 / sigma^2
    assert float(d.mean()) == pytest.approx(-sq / (2 * sigma**2), rel=0.1)    # E = -KL
    kl = float(kl_divergence(Normal(mu, sigma), Normal(mu + delta, sigma)).sum())
    assert kl == pytest.approx(sq / (2 * sigma**2), rel=1e-9)                  # KL = ||delta||^2 / (2 sigma^2)


def test_per_dim_bound_at_the_mean_and_expectation_half_lower():
    sigma = 0.08
    n = Normal(torch.tensor(0.0, dtype=torch.float64), sigma)
    assert float(n.log_prob(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(per_dim_bound(sigma))
    assert per_dim_bound(0.08) == pytest.approx(1.607, abs=1e-3)
    x = n.sample((N,))
    assert float(n.log_prob(x).mean()) == pytest.approx(per_dim_bound(sigma) - 0.5, abs=0.02)


def spread_under_rule(rule: str, dim: int, reduction: str = "sum") -> tuple[float, float]:
    """Measured (std of log-ratio, mean KL) with the rule's sigma and a per-dim step ~ lr (Adam)."""
    ref = ScaleReference()
    res = scale_for_dimension(ref, dim, reduction, rule)
    sigma = res.values["sigma_min"]
    step = 0.004 * res.values["lr"] / ref.lr                    # d proportional to lr, independent of D
    lr = log_ratio(dim, sigma, step, reduction, seed=dim, n=5000)   # std to ~1 %
    kl = dim * step**2 / (2 * sigma**2)
    return float(lr.std()), kl


@pytest.mark.parametrize("rule", ["sigma", "lr"])
def test_rule_keeps_measured_spread_and_kl_constant(rule):
    base_s, base_kl = spread_under_rule(rule, 28)
    for dim in (300, 1000):
        s, kl = spread_under_rule(rule, dim)
        assert s == pytest.approx(base_s, rel=0.05), dim
        assert kl == pytest.approx(base_kl, rel=1e-9), dim       # so target KL must NOT be rescaled too


def test_rule_none_spread_grows_sqrt_d_and_rules_never_combine():
    s28, _ = spread_under_rule("none", 28)
    s300, kl300 = spread_under_rule("none", 300)
    assert s300 / s28 == pytest.approx(math.sqrt(300 / 28), rel=0.05)
    ref = ScaleReference()
    sig, lr = scale_for_dimension(ref, 300, "sum", "sigma"), scale_for_dimension(ref, 300, "sum", "lr")
    assert sig.values["sigma_min"] == pytest.approx(0.08 * math.sqrt(300 / 28))
    assert sig.values["sigma_max"] == pytest.approx(0.5237, abs=1e-4)
    assert sig.values["lr"] == ref.lr and sig.values["target_kl"] == ref.target_kl
    assert lr.values["sigma_min"] == ref.sigma_min and lr.values["lr"] == pytest.approx(ref.lr * math.sqrt(28 / 300))
    assert lr.values["target_kl"] == ref.target_kl and lr.values["clip_epsilon"] == ref.clip_epsilon
    for res in (sig, lr):
        assert res.ratio_spread_new == pytest.approx(res.ratio_spread_ref)
        assert set(res.reasons) == set(res.values) and all("\n" not in r for r in res.reasons.values())


def test_mean_reduction_spread_shrinks_and_rescaled_eps_keeps_clip_fraction():
    ref = ScaleReference(reduction="mean", clip_epsilon=0.01)
    s28 = log_ratio(28, 0.08, 0.004, "mean", seed=3)
    s300 = log_ratio(300, 0.08, 0.004, "mean", seed=4)
    assert float(s300.std()) / float(s28.std()) == pytest.approx(math.sqrt(28 / 300), rel=0.05)
    res = scale_for_dimension(ref, 300, "mean", "sigma")
    assert res.values["sigma_min"] == ref.sigma_min and res.values["lr"] == ref.lr   # nothing explodes
    eps_new = res.values["clip_epsilon"]
    assert eps_new == pytest.approx(0.01 * math.sqrt(28 / 300))
    # the KL target follows the spread squared: x 28 / 300
    assert res.values["target_kl"] == pytest.approx(ref.target_kl * 28 / 300)
    # Centred: the mean -d^2/(2 sigma^2) of an averaged log-ratio does NOT shrink with D (second
    # order in d); the first-order spread is what eps is rescaled for.
    assert float(s300.mean()) == pytest.approx(float(s28.mean()), rel=0.1)
    clip28 = float(((s28 - s28.mean()).abs() > ref.clip_epsilon).double().mean())
    clip300 = float(((s300 - s300.mean()).abs() > eps_new).double().mean())
    assert clip300 == pytest.approx(clip28, abs=0.02)
    assert "ratio spread shrinks" in res.reasons["sigma_min"]


def test_per_step_uses_k_times_a_per_term_and_does_not_loosen():
    assert ratio_term_dims(50, 6, 1, "per_step") == 6 and ratio_term_dims(50, 6, 2, "sum") == 600
    res = scale_for_dimension(ScaleReference(), ratio_term_dims(50, 6, 1, "per_step"), "per_step", "sigma")
    assert res.values["sigma_min"] == 0.08                         # 6 < 28: sigma is not shrunk
    assert res.ratio_spread_new < res.ratio_spread_ref
    big = scale_for_dimension(ScaleReference(), ratio_term_dims(50, 14, 4, "per_step"), "per_step", "sigma")
    assert big.values["sigma_min"] == pytest.approx(0.08 * math.sqrt(56 / 28))


def test_predicted_clip_fraction_matches_gaussian_sampling():
    s = log_ratio(300, 0.08, 0.004)
    measured = float(((s - s.mean()).abs() > 0.05).double().mean())
    assert predicted_clip_fraction(float(s.std()), 0.05) == pytest.approx(measured, abs=0.02)


@pytest.mark.parametrize("kw,field", [({"dim": 0}, "dim"), ({"sigma_min": -1.0}, "sigma_min"),
                                      ({"sigma_max": 0.01}, "sigma_max"), ({"clip_epsilon": 1.5}, "clip_epsilon"),
                                      ({"reduction": "max"}, "reduction"), ({"lr": 0.0}, "lr")])
def test_reference_validation_names_field_and_range(kw, field):
    with pytest.raises(ConfigError, match=rf"ScaleReference\.{field}=.*allowed"):
        ScaleReference(**kw)
    with pytest.raises(ConfigError, match="rule"):
        scale_for_dimension(ScaleReference(), 300, "sum", "both")


def test_cli_prints_seed_values_and_reasons(capsys):
    assert cli_main(["--chunk-size", "50", "--action-dim", "6", "--denoise-steps", "1", "--act-steps", "50",
                     "--reduction", "sum", "--rule", "sigma", "--ref-dim", "28", "--ref-sigma-min", "0.08",
                     "--ref-sigma-max", "0.16", "--ref-lr", "1e-5", "--ref-target-kl", "0.01",
                     "--ref-clip-epsilon", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "0.2619" in out and "0.5237" in out and "x3.273" in out and "never both" in out
    assert cli_main(["--rule", "lr"]) == 0
    assert "3.055e-06" in capsys.readouterr().out
    assert cli_main(["--act-steps", "60"]) == 2
    assert "act_steps=60" in capsys.readouterr().err
    assert "clip fraction" in format_scale_table(scale_for_dimension(ScaleReference(), 300))


def test_one_gaussian_dim_is_the_smallest_valid_d_on_both_sides():
    """D = 1 (K = act_steps = A = 1) is a valid policy and a valid reference; D = 0 is refused. From a D = 1
    reference, D = 4 doubles the spread: rule sigma doubles sigma (x sqrt(4 / 1))."""
    assert ratio_term_dims(1, 1, 1, "sum") == 1
    same = scale_for_dimension(ScaleReference(), 1)             # below D_ref = 28: nothing loosened
    assert same.values["sigma_min"] == ScaleReference().sigma_min and same.num_dims == 1
    ref = ScaleReference(dim=1, sigma_min=0.1, sigma_max=0.2)
    out = scale_for_dimension(ref, 4, "sum", "sigma")
    assert (out.values["sigma_min"], out.values["sigma_max"]) == pytest.approx((0.2, 0.4))
    with pytest.raises(ConfigError, match="num_dims=0"):
        scale_for_dimension(ref, 0)


def test_reinflow_scale_without_ref_flags_uses_the_documented_reference():
    """The CLI's --ref-* defaults are ScaleReference's (ReinFlow's 4-step x 7-joint regime): one reference."""
    from dataclasses import fields

    from reinflow.flow.scaling import ScaleArgs
    args, ref = ScaleArgs(), ScaleReference()
    assert {f.name: getattr(ref, f.name) for f in fields(ref)} == \
        {f.name: getattr(args, "ref_" + f.name) for f in fields(ref)}


def test_a_bad_reference_reduction_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"ScaleReference\.reduction='max': allowed range one of sum, mean, per_step$"):
        ScaleReference(reduction="max")
