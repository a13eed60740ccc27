"""The doctor reads what a run logged: it refuses input that is not a run, derives the per-dimension
log-prob from a summed one (padded and unpadded readings, K > 1), survives huge integers, and does not
warn against a step size that the measured clip fraction shows is fine."""

import json

import pytest

from reinflow.commands.doctor import run as cli_main
from reinflow.rl.health import RunContext, diagnose


def doctor_json(tmp_path, rows, config=None):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    return cli_main([str(tmp_path), "--json"])


@pytest.mark.parametrize("k,padded", [(1, 32), (2, 32), (1, None)])
def test_per_dim_log_prob_is_derived_from_the_summed_one(k, padded):
    """A SmolVLA-like run logging only the summed log-prob: 1074 over D = K x 50 x 6 real dims is impossible
    at sigma_min 0.08 (bound 1.61); over K x 50 x 32 padded entries it fits, so the padding was summed."""
    ctx = RunContext(chunk_size=50, action_dim=6, padded_action_dim=padded, denoise_steps=k, sigma_min=0.08,
                     logprob_reduction="sum")
    diag = diagnose([{"logprob/new_mean": 1074.0 * k, "iteration": i} for i in range(3)], ctx)
    found = {f.code: f for f in diag.findings}
    f = found["LOGPROB_ABOVE_BOUND"]
    assert f.evidence["logprob/per_dimension"] == pytest.approx(1074.0 / 300)
    assert f.evidence["per_dim_if_padded"] == pytest.approx(1074.0 / 1600)
    assert "derived: logprob/new_mean / D = " + str(300 * k) in f.explanation
    assert "the sum most likely ran over the padded dims" in f.explanation
    assert not any(n.startswith("LOGPROB_ABOVE_BOUND") for n in diag.not_judged)


def test_a_healthy_summed_run_is_judged_not_skipped():
    ctx = RunContext(chunk_size=4, action_dim=1, denoise_steps=1, sigma_min=0.08, logprob_reduction="sum")
    diag = diagnose([{"logprob/new_mean": 4.0, "ppo/clip_fraction": 0.1}], ctx)
    assert "LOGPROB_ABOVE_BOUND" not in diag.codes() and diag.codes()[-1] == "HEALTHY"
    assert not any(n.startswith("LOGPROB_ABOVE_BOUND") for n in diag.not_judged)


def test_ratio_extremes_with_a_fine_clip_fraction_are_not_a_warning():
    """The quickstart's healthy run: clip fraction median 0.11, max 0.23, a few extreme ratios."""
    ctx = RunContext(clip_epsilon=0.1, logprob_reduction="per_step")
    rows = [{"iteration": i, "ppo/clip_fraction": c, "ppo/ratio_min": 0.55, "ppo/ratio_max": 1.9}
            for i, c in enumerate([0.11, 0.08, 0.23, 0.12, 0.11])]
    diag = diagnose(rows, ctx)
    assert "RATIO_SPREAD" not in diag.codes() and diag.codes()[-1] == "HEALTHY"
    rows[-1]["ppo/clip_fraction"] = 0.6              # the bulk is clipped too: then the spread is real
    assert "RATIO_SPREAD" in diagnose(rows, ctx).codes()


def test_huge_integers_in_metrics_are_non_finite_not_a_crash(tmp_path, capsys):
    assert doctor_json(tmp_path, [{"iteration": 0, "ppo/clip_fraction": 10**400}]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "NON_FINITE" in [f["code"] for f in json.loads(out)["findings"]]


@pytest.mark.parametrize("rows", [[{"a": 1}], [{"iteration": 0, "env_steps": 5}], [{"name": "x", "note": "y"}]])
def test_a_file_that_is_not_a_run_is_an_error_not_healthy(tmp_path, capsys, rows):
    assert doctor_json(tmp_path, rows) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a run it can judge" in err and "HEALTHY" not in err
