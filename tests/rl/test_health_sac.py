"""The SAC check set (--algorithm dsrl) on synthetic histories: each finding fires on its cause,
a healthy run is HEALTHY, and no PPO check judges (or alarms on) a SAC run."""

import pytest

from reinflow.report.doctor import health_kind
from reinflow.rl.health import HealthMonitor, RunContext, diagnose
from reinflow.rl.health_checks import CHECK_SETS


def row(it, **kw):
    base = {"iteration": it, "sac/q_mean": -40.0, "sac/q_loss": 10.0, "sac/reward_abs_max": 50.0, "sac/gamma": 0.99,
            "sac/alpha": 0.5, "sac/entropy": 12.0, "sac/entropy_per_dim": 0.5, "sac/entropy_target_per_dim": 0.0,
            "sac/buffer_size": 1000.0 + 80 * it, "sac/buffer_capacity": 100000.0, "sac/batch_size": 256.0,
            "sac/updates": 160.0, "rollout/reward_mean": -40.0 + it * 0.5}
    return {**base, **kw}


def codes(hist):
    return [f.code for f in diagnose(hist, RunContext(), "sac").findings]


def test_a_healthy_sac_run_is_judged_by_the_sac_checks_only():
    d = diagnose([row(i) for i in range(12)], RunContext(), "sac")
    assert [f.code for f in d.findings] == ["HEALTHY"] and d.not_judged == []
    assert set(CHECK_SETS["sac"]) & {"CLIP_SATURATED", "RATIO_SPREAD", "LOGPROB_ABOVE_BOUND", "CRITIC_DIVERGING"} == set()
    flags = HealthMonitor(RunContext(), kind="sac", print_fn=lambda s: None).update(row(0), 0)
    assert set(flags) == {f"health/{c}" for c in (*CHECK_SETS["sac"], "HEALTHY")}


def test_q_beyond_the_soft_return_bound_is_an_error():
    # bound = (50 + 0.5 * 12) / (1 - 0.99) = 5600; -2e4 is 3.6 x it
    hist = [row(i) for i in range(5)] + [row(5, **{"sac/q_mean": -2e4})]
    f = diagnose(hist, RunContext(), "sac").findings[0]
    assert f.code == "Q_DIVERGING" and f.severity == "error" and f.evidence["soft_return_bound"] == pytest.approx(5600)
    assert "Q_DIVERGING" not in codes(hist[:-1] + [row(5, **{"sac/q_mean": -5000.0})])


def test_a_critic_loss_that_keeps_growing_is_a_warning():
    hist = [row(i, **{"sac/q_loss": 10.0 * 1.8 ** i}) for i in range(12)]
    f = diagnose(hist, RunContext(), "sac").findings[0]
    assert (f.code, f.severity) == ("Q_DIVERGING", "warning") and f.evidence["q_loss_growth"] > 10


def test_entropy_collapse_needs_a_sustained_gap_in_updated_iterations():
    collapsed = {"sac/entropy_per_dim": -2.5}
    assert "ENTROPY_COLLAPSE" in codes([row(i) for i in range(5)] + [row(i, **collapsed) for i in range(5, 10)])
    assert "ENTROPY_COLLAPSE" not in codes([row(i) for i in range(6)] + [row(i, **collapsed) for i in range(6, 10)])
    warm = [row(i, **collapsed, **{"sac/updates": 0.0}) for i in range(6)]  # warm-up: no actor yet, not judged
    assert "ENTROPY_COLLAPSE" not in codes(warm + [row(6)])


def test_a_buffer_too_small_for_its_batch():
    short = [row(0, **{"sac/buffer_size": 100.0})] + [row(i) for i in range(1, 8)]
    f = diagnose(short, RunContext(), "sac").findings[0]
    assert f.code == "BUFFER_TOO_SMALL" and f.evidence["first_short_iteration"] == 0
    full = [row(i, **{"sac/buffer_size": 2000.0, "sac/buffer_capacity": 2000.0}) for i in range(8)]
    assert codes(full)[0] == "BUFFER_TOO_SMALL"
    big = [row(i, **{"sac/buffer_size": 8000.0, "sac/buffer_capacity": 8000.0}) for i in range(8)]
    assert codes(big) == ["HEALTHY"]      # full, but 31 batches: a long run's normal state


def test_the_doctor_picks_the_check_set_from_the_metrics():
    assert health_kind([row(0)]) == "sac"
    assert health_kind([{"ppo/clip_fraction": 0.1, "rollout/reward_mean": -3.0}]) == "ppo"
