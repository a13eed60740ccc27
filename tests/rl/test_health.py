"""The findings engine and the online monitor on synthetic metric sequences: a healthy run gets
no errors; the seed cascade is recognised step by step, each code at the iteration it starts."""

import json
import math
import random

import pytest

from reinflow import InvariantError
from reinflow.flow.chain import per_dim_bound
from reinflow.rl.health import (CODES, LOG_SQRT_2PI, HealthMonitor, RunContext, diagnose, format_finding,
                                normalize_keys)

GOOD = RunContext(chunk_size=50, action_dim=6, padded_action_dim=32, denoise_steps=1, act_steps=50,
                  sigma_min=0.26, sigma_max=0.52, clip_epsilon=0.1, logprob_reduction="sum", num_dims=300,
                  lr=3e-6, max_grad_norm=1.0, max_grad_norm_critic=10.0)
SEED = RunContext(chunk_size=50, action_dim=6, denoise_steps=1, sigma_min=0.08, sigma_max=0.16, clip_epsilon=0.05)


def healthy(it: int, rng: random.Random) -> dict:
    """One iteration of a run that learns: moderate clipping, critic improving, reward rising."""
    return {"iteration": it, "logprob/new_mean": -150 + rng.gauss(0, 5), "logprob/per_dimension": -0.5,
            "logprob/num_dims": 300, "ppo/clip_fraction": 0.15 + rng.gauss(0, 0.02),
            "ppo/ratio_min": 0.88, "ppo/ratio_max": 1.13, "ppo/pre_update_ratio_max_dev": 1e-9,
            "gradients/policy_norm": 0.7, "gradients/critic_norm": 4.0, "gradients/policy_clipped": 0.1,
            "gradients/critic_clipped": 0.0, "ppo/approx_kl": 0.01,
            "ppo/explained_variance": min(0.8, -0.3 + 0.1 * it), "ppo/value_loss": 1.0 / (1 + it),
            "noise/sigma_mean": 0.4, "noise/sigma_lo": 0.26, "noise/sigma_hi": 0.52, "ppo/entropy": 0.3,
            "rollout/reward_mean": -60 + 0.5 * it + rng.gauss(0, 0.5)}


def cascade(it: int, rng: random.Random) -> dict:
    """Healthy until 10; then clipping saturates (10), ratios spread (12), every gradient is
    clipped (14), the critic explodes (16), and the reward starts to fall (10 on)."""
    m = healthy(it, rng)
    if it >= 10:
        m["ppo/clip_fraction"] = 0.97
        m["rollout/reward_mean"] = -55 - 1.5 * (it - 10) + rng.gauss(0, 0.5)
    if it >= 12:
        m.update({"ppo/ratio_min": 0.2, "ppo/ratio_max": 2.5})
    if it >= 14:
        m.update({"gradients/policy_clipped": 1.0, "gradients/critic_clipped": 1.0, "gradients/policy_norm": 40.0})
    if it >= 16:
        m.update({"gradients/critic_norm": 5000.0 * (it - 15), "ppo/explained_variance": -0.5})
    return m


def run_monitor(make, ctx, n=30, mode="warn"):
    rng, printed = random.Random(0), []
    mon = HealthMonitor(ctx, mode, print_fn=printed.append)
    flags = [mon.update(make(it, rng), it) for it in range(n)]
    return mon, flags, printed


def test_healthy_run_has_no_errors_and_says_healthy():
    rng = random.Random(0)
    diag = diagnose([healthy(i, rng) for i in range(30)], GOOD)
    assert diag.codes() == ["HEALTHY"], [format_finding(f) for f in diag.findings]
    mon, flags, printed = run_monitor(healthy, GOOD)
    assert printed == [] and mon.first == {}
    assert all(f["health/HEALTHY"] == 1.0 for f in flags[10:])
    assert sum(v for k, v in flags[-1].items() if k != "health/HEALTHY") == 0.0
    assert set(flags[-1]) == {f"health/{c}" for c in CODES}
    assert "no problems" in mon.summary()


def test_monitor_recognises_the_cascade_step_by_step():
    mon, flags, printed = run_monitor(cascade, GOOD)
    assert mon.first["CLIP_SATURATED"] == 10 and mon.first["RATIO_SPREAD"] == 12
    assert mon.first["GRAD_CLIP_SATURATED"] == 14 and mon.first["CRITIC_DIVERGING"] == 16
    assert 16 <= mon.first["REWARD_DECLINING"] < 30
    assert all(flags[i]["health/CLIP_SATURATED"] == 0.0 for i in range(10))
    assert flags[-1]["health/CRITIC_DIVERGING"] == 1.0 and flags[-1]["health/HEALTHY"] == 0.0
    # each finding printed once, when it started, with its numbers
    started = [p.split(": ", 1)[1].split(" ")[0] for p in printed]
    assert started == ["CLIP_SATURATED", "RATIO_SPREAD", "GRAD_CLIP_SATURATED", "CRITIC_DIVERGING", "REWARD_DECLINING"]
    assert "iteration 10" in printed[0] and "ppo/clip_fraction = 0.97" in printed[0]
    summary = mon.summary()
    assert summary.index("CLIP_SATURATED: first at iteration 10") < summary.index("CRITIC_DIVERGING")
    # the downstream suggestion points back at its cause
    last = mon.last.findings
    assert [f.code for f in last] == sorted((f.code for f in last), key=CODES.index)
    assert "Fix CLIP_SATURATED" in next(f for f in last if f.code == "GRAD_CLIP_SATURATED").suggestion


def test_stop_mode_raises_on_the_first_error_with_the_finding():
    with pytest.raises(InvariantError, match=r"iteration 10.*CLIP_SATURATED \(error\)[\s\S]*0\.97"):
        run_monitor(cascade, GOOD, mode="stop")


def test_seed_like_run_fires_at_iteration_zero_in_causal_order():
    def seed(it, rng):
        m = cascade(it + 20, rng)
        m.update({"iteration": it, "logprob/new_mean": 1074.04, "logprob/per_dimension": 3.58})
        m.pop("logprob/num_dims")
        return m
    mon, _, _ = run_monitor(seed, SEED, n=3)
    assert mon.first["LOGPROB_ABOVE_BOUND"] == 0 and mon.first["DIMENSION_NOT_SCALED"] == 0
    codes = mon.last.codes()
    assert codes[:6] == ["LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED", "CLIP_SATURATED", "RATIO_SPREAD",
                         "GRAD_CLIP_SATURATED", "CRITIC_DIVERGING"]
    assert mon.summary().splitlines()[0].endswith("start with LOGPROB_ABOVE_BOUND (causal order, "
                                                  "`reinflow doctor RUN_DIR` explains each):")


def test_bound_is_the_chain_bound_and_padding_arithmetic():
    assert -LOG_SQRT_2PI - math.log(0.08) == pytest.approx(per_dim_bound(0.08))
    f = diagnose([{"logprob/new_mean": 1074.04, "logprob/per_dimension": 3.58}], SEED).findings[0]
    assert f.code == "LOGPROB_ABOVE_BOUND" and f.severity == "error"
    assert f.evidence["bound"] == pytest.approx(1.607, abs=1e-3)
    assert f.evidence["padded_entries"] == 1600 and f.evidence["per_dim_if_padded"] == pytest.approx(0.671, abs=1e-3)
    assert "assumed 32" in f.explanation and "1074 / 300 = 3.58" in f.explanation
    ok = diagnose([{"logprob/new_mean": 480.0, "logprob/per_dimension": 1.6}], SEED)
    assert "LOGPROB_ABOVE_BOUND" not in ok.codes()


def test_pre_update_ratio_and_mask_mismatch():
    diag = diagnose([{"iteration": 0, "ppo/pre_update_ratio_max_dev": 3e-3, "logprob/num_dims": 1600}], GOOD)
    assert diag.codes()[:2] == ["PRE_UPDATE_RATIO", "MASK_MISMATCH"]
    assert diag.findings[0].evidence["max_abs_ratio_minus_1"] == 3e-3 and "eval()" in diag.findings[0].suggestion
    assert "1600 = 1 x 50 x 32 padded dims" in diag.findings[1].explanation
    # whole-chunk mask (act_steps < chunk, mask_executed off) is not a mismatch
    ctx = RunContext(chunk_size=50, act_steps=10, action_dim=6, denoise_steps=1, num_dims=300)
    assert "MASK_MISMATCH" not in diagnose([{"logprob/num_dims": 300}], ctx).codes()


def test_noise_collapse_needs_the_floor_and_falling_entropy():
    rows = [{"iteration": i, "noise/sigma_mean": 0.261, "noise/sigma_lo": 0.26, "noise/sigma_hi": 0.52,
             "ppo/entropy": 0.5 - 0.02 * i} for i in range(8)]
    f = diagnose(rows, GOOD).findings[0]
    assert f.code == "NOISE_COLLAPSE" and f.severity == "warning" and f.evidence["entropy_change"] < 0
    for r in rows:
        r["ppo/entropy"] = 0.3
    assert "NOISE_COLLAPSE" not in diagnose(rows, GOOD).codes()
    const = [dict(r, **{"noise/sigma_hi": 0.26}) for r in rows]                  # constant-sigma schedule
    assert "NOISE_COLLAPSE" not in diagnose(const, GOOD).codes()


def test_dimension_not_scaled_is_info_when_the_run_is_fine_and_absent_when_scaled():
    rng = random.Random(0)
    rows = [healthy(i, rng) for i in range(12)]
    unscaled = RunContext(**{**GOOD.__dict__, "sigma_min": 0.08, "sigma_max": 0.16, "lr": 1e-4})
    diag = diagnose(rows, unscaled)
    f = next(f for f in diag.findings if f.code == "DIMENSION_NOT_SCALED")
    assert f.severity == "info" and f.evidence["sigma_min_scaled"] == pytest.approx(0.2619, abs=1e-4)
    assert "HEALTHY" in diag.codes() and not any(x.severity == "error" for x in diag.findings)
    mean = RunContext(**{**unscaled.__dict__, "logprob_reduction": "mean"})
    assert "DIMENSION_NOT_SCALED" not in diagnose(rows, mean).codes()
    lr_scaled = RunContext(**{**unscaled.__dict__, "scale_rule": "lr"})
    assert "DIMENSION_NOT_SCALED" not in diagnose(rows, lr_scaled).codes()


def test_key_variants_are_normalised():
    m = normalize_keys({"training.clip_fraction": 0.5, "ppo_ratio_min": 0.9, "charts/approx_kl": 0.01,
                        "_step": 7, "rollout/success_rate": 1.0, "success_rate": 0.3, "text": "x", "none": None})
    assert m["ppo/clip_fraction"] == 0.5 and m["ppo/ratio_min"] == 0.9 and m["ppo/approx_kl"] == 0.01
    assert m["iteration"] == 7 and m["rollout/success_rate"] == 1.0 and m["success_rate"] == 0.3   # ambiguous: kept
    assert "text" not in m and "none" not in m
    exact = normalize_keys({"ppo/clip_fraction": 0.2, "clip_fraction": 0.9})
    assert exact["ppo/clip_fraction"] == 0.2


def test_non_finite_and_not_judged_and_json_safe():
    diag = diagnose([{"iteration": 3, "ppo/value_loss": float("nan"), "gradients/critic_norm": float("inf")}],
                    RunContext())
    f = next(f for f in diag.findings if f.code == "NON_FINITE")
    assert f.severity == "error" and "ppo/value_loss:nan" in f.evidence
    json.dumps([x.as_dict() for x in diag.findings], allow_nan=False)
    empty = diagnose([], RunContext())
    assert empty.findings == [] and any(n.startswith("REWARD_DECLINING: needs >= 6") for n in empty.not_judged)
    assert len(empty.not_judged) == len(CODES) - 1


def test_clip_fraction_rising_toward_saturation_is_a_warning():
    rows = [{"iteration": i, "ppo/clip_fraction": 0.3 + 0.05 * i} for i in range(11)]       # 0.3 -> 0.8
    f = diagnose(rows, GOOD).findings[0]
    assert f.code == "CLIP_SATURATED" and f.severity == "warning" and f.evidence["slope_per_iteration"] > 0
    flat = [{"iteration": i, "ppo/clip_fraction": 0.6} for i in range(11)]
    assert "CLIP_SATURATED" not in diagnose(flat, GOOD).codes()


def test_monitor_escalation_from_warning_to_error_stops():
    printed = []
    mon = HealthMonitor(GOOD, "stop", print_fn=printed.append)
    for i in range(11):
        mon.update({"ppo/clip_fraction": 0.3 + 0.05 * i}, i)              # rising: warning, no stop
    assert mon.active == {"CLIP_SATURATED": "warning"} and len(printed) == 1
    with pytest.raises(InvariantError, match="iteration 11"):
        mon.update({"ppo/clip_fraction": 0.95}, 11)
    assert "now an error" in printed[-1]
