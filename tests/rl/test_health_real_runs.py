"""The health monitor and ``reinflow doctor`` on runs this test actually trains (not hand-written JSON).

Broken: the seed failure rebuilt on Pusher-v5 (7 joints x chunk 40 = D 280, log-probs summed, sigma in
[0.08, 0.16], clip 0.05, Adam lr 1e-3 held constant, 4 epochs of 32 minibatches, no KL early stop). Its
findings must be DIMENSION_NOT_SCALED (the cause) then CLIP_SATURATED / RATIO_SPREAD (the symptoms),
with the run's own numbers, and nothing blamed on the chain (bound, mask, pre-update ratio).
Healthy (no error and no warning): small D with a sane lr; today's defaults on the same Pusher chunk (smooth
noise, 4 DCT coefficients x 7 joints = D 28, summed log-prob, clip 0.2, sigma [0.16, 0.32], target KL 0.05,
chain-ppo's lr 3e-5 with its cosine decay); ReinFlow as published (``--preset reinflow-paper``: white noise at
D = 280, the per-dimension mean log-prob clamped to [-1, 1], clip 0.01, lr 1e-4); and the broken run's D = 280
with one ratio per executed step.
Each run takes 1-4 s on 2 loaded cores; runs are seeded (same machine, same numbers).
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from reinflow.cli import main
from reinflow.commands.doctor import run as doctor_main
from reinflow.report.logger import read_metrics
from reinflow.rl.health import CODES

QUIET = ["--no-tensorboard", "--no-progress", "--eval-episodes", "1", "--eval-every", "0", "--seed", "0",
         "--hidden", "64", "64"]
# The seed regime: D = 40 x 7 = 280 summed entries, paper sigma, clip 0.05, a large constant lr, no target KL.
BROKEN = ["--env", "Pusher-v5", "--chunk-size", "40", "--parallel-envs", "2", "--rollout-steps", "8",
          "--logprob-reduction", "sum", "--sigma-min", "0.08", "--sigma-max", "0.16", "--clip-epsilon", "0.05",
          "--lr-actor", "1e-3", "--lr-schedule", "constant", "--update-epochs", "4", "--minibatch-size", "2",
          "--target-kl", "None", "--noise-basis", "0"]
HEALTHY = {
    # D = 4 executed steps x 1 action dim x K=1 = 4 summed entries; lr 3e-5 held constant
    # (a cosine decay would make the last iterations look healthy whatever the start was).
    "pendulum-sum-D4": ["--env", "Pendulum-v1", "--chunk-size", "8", "--act-steps", "4", "--parallel-envs", "4",
                        "--rollout-steps", "16", "--iterations", "8", "--lr-actor", "3e-5", "--lr-schedule",
                        "constant", "--reset-each-iteration", "--logprob-reduction", "sum", "--clip-epsilon", "0.1"],
    # What reinflow ships (TrainConfig's defaults, checked below): smooth noise, D = 4 coefficients x 7 joints
    # = 28, summed log-prob, clip 0.2, sigma [0.16, 0.32], target KL 0.05, lr 3e-5 (chain-ppo from scratch).
    "pusher-default-D28": ["--env", "Pusher-v5", "--chunk-size", "40", "--parallel-envs", "2", "--rollout-steps",
                           "8", "--iterations", "6"],
    # ReinFlow as published (the default until 2026-11-29): white noise on the broken run's D = 280, the
    # per-dimension mean log-prob clamped to [-1, 1], clip 0.01, lr 1e-4.
    "pusher-reinflow-paper-D280": ["--env", "Pusher-v5", "--chunk-size", "40", "--parallel-envs", "2",
                                   "--rollout-steps", "8", "--iterations", "6", "--preset", "reinflow-paper"],
    # The broken run's D = 280, but one ratio per executed step (7 entries each), standard clip 0.2.
    "pusher-per-step-D280": ["--env", "Pusher-v5", "--chunk-size", "40", "--parallel-envs", "2", "--rollout-steps",
                             "8", "--iterations", "6", "--logprob-reduction", "per_step", "--minibatch-size", "4",
                             "--lr-actor", "3e-5", "--lr-schedule", "constant", "--clip-epsilon", "0.2",
                             "--noise-basis", "0"],
}


SHIPPED = {"algorithm": "chain-ppo", "noise_basis": 4, "logprob_reduction": "sum", "clip_epsilon": 0.2,
           "sigma_min": 0.16, "sigma_max": 0.32, "target_kl": 0.05, "lr_actor": 3e-5, "lr_schedule": "cosine"}


def train(out, *argv) -> tuple[int, str, str]:
    """``reinflow train`` in-process; returns (exit code, stdout, stderr)."""
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        code = main(["train", *argv, *QUIET, "--out", str(out)])
    return code, o.getvalue(), e.getvalue()


def doctor(path, *flags) -> tuple[int, str]:
    o = io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(io.StringIO()):
        code = doctor_main([str(path), *flags])
    return code, o.getvalue()


def doctor_json(path) -> dict:
    code, out = doctor(path, "--json")
    assert code == 0
    return json.loads(out)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    out = tmp_path_factory.mktemp("broken")
    code, stdout, stderr = train(out, *BROKEN, "--iterations", "2")
    assert code == 0, stderr                      # warn mode: the run goes on, the monitor reports
    return out, stdout, read_metrics(out / "metrics.jsonl")


def test_broken_run_metrics_flag_the_cascade(broken):
    out, _, rows = broken
    assert json.loads((out / "config.json").read_text())["derived"]["num_dims"] == 280
    assert len(rows) == 2
    for r in rows:
        assert r["logprob/num_dims"] == 280 and r["ppo/pre_update_ratio_max_dev"] <= 1e-5
        assert r["logprob/per_dimension"] <= r["logprob/per_dimension_bound"]   # the chain itself is right
        assert r["health/DIMENSION_NOT_SCALED"] == 1.0
        assert r["health/RATIO_SPREAD"] == 1.0
        assert r["ppo/clip_fraction"] > 0.8                                # ~0.9-0.97 measured
        assert r["health/CLIP_SATURATED"] == float(r["ppo/clip_fraction"] >= 0.9)
        assert r["health/HEALTHY"] == 0.0
        for code in ("PRE_UPDATE_RATIO", "MASK_MISMATCH", "LOGPROB_ABOVE_BOUND", "NON_FINITE"):
            assert r[f"health/{code}"] == 0.0, code


def test_broken_run_monitor_prints_cause_first_with_numbers(broken):
    _, stdout, _ = broken
    lines = [ln for ln in stdout.splitlines() if ln.startswith("[reinflow health] iteration 0: ")]
    started = [ln.split(": ", 1)[1].split(" ")[0] for ln in lines]
    assert started[0] == "DIMENSION_NOT_SCALED" and "RATIO_SPREAD" in started
    assert started == sorted(started, key=CODES.index)
    assert "RATIO_SPREAD (error)" in stdout and "D = 280, D_ref = 28" in stdout


def test_doctor_names_the_broken_runs_codes_in_causal_order_with_its_numbers(broken):
    out, _, rows = broken
    data = doctor_json(out)
    found = {f["code"]: f for f in data["findings"]}
    codes = [f["code"] for f in data["findings"]]
    assert codes == sorted(codes, key=CODES.index)
    assert codes[0] == "DIMENSION_NOT_SCALED" and "RATIO_SPREAD" in codes and "HEALTHY" not in codes
    assert not {"PRE_UPDATE_RATIO", "MASK_MISMATCH", "LOGPROB_ABOVE_BOUND"} & set(codes)
    last = rows[-1]
    dim = found["DIMENSION_NOT_SCALED"]
    assert dim["severity"] == "warning"
    assert dim["evidence"]["D"] == 280 and dim["evidence"]["sqrt_D_over_D_ref"] == pytest.approx(math.sqrt(10))
    assert dim["evidence"]["sigma_min_scaled"] == pytest.approx(0.08 * math.sqrt(10))
    # the observed spread (read off the ratio extremes: the KL estimate is ~1e17 here) dwarfs the prediction
    assert dim["evidence"]["observed_logratio_std"] > 10 * dim["evidence"]["predicted_logratio_std"]
    assert "lr x0.316 = 0.000316" in dim["suggestion"] and "never both" in dim["suggestion"]
    spread = found["RATIO_SPREAD"]
    assert spread["severity"] == "error"
    assert spread["evidence"]["ppo/ratio_max"] == pytest.approx(last["ppo/ratio_max"])
    assert spread["evidence"]["ppo/ratio_min"] == pytest.approx(last["ppo/ratio_min"])
    assert spread["evidence"]["clip_range_lo"] == pytest.approx(0.95)
    assert spread["evidence"]["max_abs_log_ratio_over_eps"] > 100
    assert spread["suggestion"].startswith("Fix DIMENSION_NOT_SCALED (above) first")
    if last["ppo/clip_fraction"] >= 0.9:
        clip = found["CLIP_SATURATED"]
        assert clip["severity"] == "error"
        assert clip["evidence"]["ppo/clip_fraction"] == pytest.approx(last["ppo/clip_fraction"])
        assert clip["evidence"]["since_iteration"] == 0 and clip["evidence"]["clip_epsilon"] == 0.05
    # the plain report: same order, every block with numbers, a reason and a change
    code, text = doctor(out)
    assert code == 0 and "D = 280" in text and "reduction sum" in text
    pos = [text.index(f". {c} (") for c in codes]
    assert pos == sorted(pos)


def test_on_unhealthy_stop_exits_2_naming_the_finding(tmp_path):
    code, _, stderr = train(tmp_path / "stop", *BROKEN, "--iterations", "3", "--on-unhealthy", "stop")
    assert code == 2
    msg = stderr.strip()
    assert msg.startswith("error: ") and "stopped at iteration 0 (--on-unhealthy stop)" in msg
    assert "CLIP_SATURATED (error)" in msg or "RATIO_SPREAD (error)" in msg
    assert "seen:" in msg and "change:" in msg and "Fix DIMENSION_NOT_SCALED" in msg
    assert "Traceback" not in msg


def test_stopped_run_keeps_the_stopping_iterations_metrics(tmp_path):
    out = tmp_path / "stop"
    assert train(out, *BROKEN, "--iterations", "3", "--on-unhealthy", "stop")[0] == 2
    rows = read_metrics(out / "metrics.jsonl")
    assert rows and rows[-1]["iteration"] == 0 and rows[-1]["health/RATIO_SPREAD"] == 1.0
    assert "RATIO_SPREAD" in [f["code"] for f in doctor_json(out)["findings"]]


def test_clamp_that_cuts_every_sample_is_reported(tmp_path):
    """sigma in [0.04, 0.05] puts the expected per-dim log-prob at 1.58-1.80, above the default clamp of 1: the
    'mean' ratio of such a sample is exactly 1 and it carries no gradient. The run must say so."""
    out = tmp_path / "clamped"
    code, stdout, stderr = train(out, "--env", "Pendulum-v1", "--chunk-size", "8", "--parallel-envs", "2",
                                 "--rollout-steps", "4", "--iterations", "2", "--sigma-min", "0.04",
                                 "--sigma-max", "0.05", "--noise-basis", "0", "--logprob-reduction", "mean")
    assert code == 0, stderr
    rows = read_metrics(out / "metrics.jsonl")
    assert all(r["logprob/clamped_fraction"] > 0.9 and r["health/LOGPROB_CLAMPED"] == 1.0 for r in rows)
    assert all(r["ppo/ratio_min"] == r["ppo/ratio_max"] == 1.0 for r in rows)     # no sample moved
    found = {f["code"]: f for f in doctor_json(out)["findings"]}
    assert found["LOGPROB_CLAMPED"]["severity"] == "warning"
    why = found["LOGPROB_CLAMPED"]["explanation"]
    assert "sigma_min = 0.04" in why and "1.8" in why


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_run_gets_no_error_and_no_warning(tmp_path, name):
    out = tmp_path / name
    code, stdout, stderr = train(out, *HEALTHY[name])
    assert code == 0, stderr
    assert "(error)" not in stdout and "(warning)" not in stdout and "now an error" not in stdout, stdout
    assert "[reinflow health]" not in stdout, stdout
    rows = read_metrics(out / "metrics.jsonl")
    for r in rows:
        assert r["logprob/clamped_fraction"] == 0.0
        raised = [c for c in CODES if c != "HEALTHY" and r[f"health/{c}"]]
        assert not raised and r["health/HEALTHY"] == 1.0, (r["iteration"], raised)
        assert r["ppo/clip_fraction"] < 0.5
    if name.startswith("pusher"):   # smooth noise: 4 coefficients x 7 joints; white: the broken run's D
        assert rows[0]["logprob/num_dims"] == (28 if "default" in name else 280)
    if name == "pusher-default-D28":  # the comment above describes what ships
        train_cfg = json.loads((out / "config.json").read_text())["train"]
        assert {k: train_cfg[k] for k in SHIPPED} == SHIPPED
    data = doctor_json(out)
    sev = {f["code"]: f["severity"] for f in data["findings"]}
    # Allowed info: GRAD_CLIP_SATURATED (max_grad_norm 1 clips every policy step at norms ~3-9 here; with Adam
    # a steady clip factor cancels, so with no upstream cause it is not a problem).
    assert list(sev)[-1] == "HEALTHY" and set(sev) <= {"GRAD_CLIP_SATURATED", "DIMENSION_NOT_SCALED", "HEALTHY"}
    assert all(s == "info" for s in sev.values()), sev
    judged = {c for c in CODES[:-1]} - {n.split(":")[0] for n in data["not_judged"]}
    assert {"DIMENSION_NOT_SCALED", "CLIP_SATURATED", "RATIO_SPREAD", "GRAD_CLIP_SATURATED", "CRITIC_DIVERGING",
            "LOGPROB_ABOVE_BOUND", "MASK_MISMATCH", "PRE_UPDATE_RATIO", "REWARD_DECLINING"} <= judged
