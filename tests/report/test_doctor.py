"""``reinflow doctor`` on the real failed seed run, on reinflow / W&B / bare-summary inputs, and
on broken inputs (exit 2, one line naming the file, never a traceback)."""

import json
from pathlib import Path

import pytest

from reinflow.commands.doctor import run as cli_main

SHARED = Path(__file__).parents[2].parent / "shared"
SEED = SHARED / "fixtures" / "seed-run"
CASCADE = ["LOGPROB_ABOVE_BOUND", "DIMENSION_NOT_SCALED", "CLIP_SATURATED", "RATIO_SPREAD", "GRAD_CLIP_SATURATED",
           "CRITIC_DIVERGING"]
SEED_SUMMARY = {"logprob/new_mean": 1074.04, "logprob/per_dimension": 3.58, "ppo/clip_fraction": 1.0,
                "ppo/ratio_min": 0.03, "ppo/ratio_max": 2.63, "gradients/policy_norm": 234.10,
                "gradients/critic_norm": 12075.35, "gradients/policy_clipped": 1.0, "gradients/critic_clipped": 1.0}
SEED_FLAGS = ["--chunk-size", "50", "--action-dim", "6", "--denoise-steps", "1", "--sigma-min", "0.08",
              "--sigma-max", "0.16", "--clip-epsilon", "0.05"]


def doctor(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.skipif(not SEED.is_dir(), reason="shared/fixtures/seed-run not present")
def test_seed_run_plain_report_in_causal_order(capsys):
    code, out, _ = doctor(capsys, SEED)
    assert code == 0
    positions = [out.index(f". {c} (") for c in CASCADE]
    assert positions == sorted(positions)
    block = {c: out[p:] for c, p in zip(CASCADE, positions)}
    assert "3.58 > 1.61" in block["LOGPROB_ABOVE_BOUND"] and "1074 / 1600" in block["LOGPROB_ABOVE_BOUND"]
    assert "= 0.67 fits the bound" in block["LOGPROB_ABOVE_BOUND"] and "assumed 32" in out
    assert "sigma in [0.262, 0.524]" in block["DIMENSION_NOT_SCALED"] and "lr x0.306" in out and "never both" in out
    assert "ppo/clip_fraction = 1" in block["CLIP_SATURATED"]
    assert "0.03..2.63" in block["RATIO_SPREAD"] and "[0.95, 1.05]" in block["RATIO_SPREAD"]
    assert "gradients/critic_norm = 1.208e+04" in block["GRAD_CLIP_SATURATED"]
    assert "1.208e+04 > 1000" in block["CRITIC_DIVERGING"]
    for c in CASCADE:                                       # every block: numbers, why, what to change
        b = block[c].split("\n\n")[0]
        assert "seen:" in b and "why:" in b and "change:" in b
    assert "not judged:" in out and "REWARD_DECLINING" in out.split("not judged:")[1]


@pytest.mark.skipif(not SEED.is_dir(), reason="shared/fixtures/seed-run not present")
def test_seed_run_json_shape(capsys):
    code, out, _ = doctor(capsys, SEED, "--json")
    data = json.loads(out)
    assert code == 0 and set(data) == {"findings", "not_judged"}
    assert [f["code"] for f in data["findings"]] == CASCADE
    for f in data["findings"]:
        assert set(f) == {"code", "severity", "evidence", "explanation", "suggestion"}
        assert f["severity"] in ("error", "warning", "info") and f["evidence"] and f["suggestion"]
    assert data["findings"][0]["evidence"]["per_dim_if_padded"] == pytest.approx(1074.04 / 1600)
    assert all(isinstance(n, str) for n in data["not_judged"])


def test_bare_summary_with_flags_matches_the_seed(tmp_path, capsys):
    p = tmp_path / "summary.json"
    p.write_text(json.dumps(SEED_SUMMARY))
    code, out, _ = doctor(capsys, p, "--json", *SEED_FLAGS)
    assert code == 0 and [f["code"] for f in json.loads(out)["findings"]] == CASCADE
    _, out, _ = doctor(capsys, p, "--json", *SEED_FLAGS, "--sigma-min", "0.01", "--padded-action-dim", "6")
    assert "LOGPROB_ABOVE_BOUND" not in out                  # flags override: bound 3.69 > 3.58


def test_reinflow_run_folder_with_history(tmp_path, capsys):
    rows = [{"iteration": i, "env_steps": 500 * i, "logprob/new_mean": -150.0, "logprob/per_dimension": -0.5,
             "logprob/num_dims": 300, "ppo/clip_fraction": 0.15, "ppo/ratio_min": 0.9, "ppo/ratio_max": 1.1,
             "ppo/pre_update_ratio_max_dev": 0.0, "gradients/critic_norm": 3.0, "gradients/critic_clipped": 0.0,
             "rollout/reward_mean": -60.0 + i, "ppo/explained_variance": 0.5, "rollout/episode_return": None}
            for i in range(12)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 12, "lo')
    (tmp_path / "config.json").write_text(json.dumps({
        "train": {"chunk_size": None, "sigma_min": 0.26, "sigma_max": 0.52, "clip_epsilon": 0.1,
                  "logprob_reduction": "sum", "lr_actor": 3e-6, "max_grad_norm_actor": 1.0, "scale_rule": "sigma"},
        "derived": {"action_dim": 6, "padded_action_dim": 32, "chunk_size": 50, "denoise_steps": 1,
                    "act_steps": 50, "num_dims": 300, "auto_scale": None}}))
    code, out, err = doctor(capsys, tmp_path)
    assert code == 0 and "1. HEALTHY (info)" in out and "12 iterations" in out and "partial last line" in err
    assert "chunk 50 x 6 action dims (padded 32), K = 1, D = 300, sigma [0.26, 0.52]" in out


def test_wandb_folder_with_history_judges_the_reward_trend(tmp_path, capsys):
    files = tmp_path / "files"
    files.mkdir()
    (files / "wandb-summary.json").write_text("{}")
    (files / "config.yaml").write_text("chunk_size:\n  desc: null\n  value: 50\nsigma_min:\n  value: 0.08\n")
    (files / "wandb-history.jsonl").write_text("".join(
        json.dumps({"_step": i, "rollout/reward_mean": -52 - 2 * i + (i % 2)}) + "\n" for i in range(10)))
    code, out, _ = doctor(capsys, tmp_path, "--json")
    f = json.loads(out)["findings"]
    assert code == 0 and f[0]["code"] == "REWARD_DECLINING" and f[0]["evidence"]["best_iteration"] == 0


@pytest.mark.parametrize("setup,needle", [
    (lambda d: d / "missing", "no such file or folder"),
    (lambda d: d, "neither metrics.jsonl nor files/wandb-summary.json"),
    (lambda d: (d / "s.json").write_text("{not json") and d / "s.json", "malformed JSON at line 1"),
    (lambda d: (d / "s.json").write_text("[1, 2]") and d / "s.json", "expected a JSON object"),
    (lambda d: (d / "metrics.jsonl").write_text('{"a": 1}\nxx\n{"a": 2}\n') and d, "line 2 is not valid JSON"),
    (lambda d: (d / "metrics.jsonl").write_text("{}\n") and (d / "config.json").write_text('{"train": '
                                                 '{"chunk_size": "abc"}}') and d, "'chunk_size' = 'abc'"),
    (lambda d: (d / "files").mkdir() or (d / "files" / "wandb-summary.json").write_text("{}")
     and (d / "files" / "config.yaml").write_text("a: [1,\n b: {") and d, "malformed YAML"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, capsys, setup, needle):
    path = setup(tmp_path)
    code, out, err = doctor(capsys, path)
    assert code == 2 and out == ""
    assert needle in err and err.count("\n") == 1 and str(tmp_path) in err


@pytest.mark.parametrize("dev,severity", [(3e-2, "error"), (7e-6, "warning"), (1.3e-6, None)])
def test_first_minibatch_ratio_off_before_any_update_is_diagnosed(tmp_path, capsys, dev, severity):
    """A run (e.g. bf16 on a GPU) whose first minibatch, at the update's shape, disagrees with the rollout's
    log-probs before any step, while the rollout-shape check reads 0: the doctor names the cause and the fix."""
    rows = [{"iteration": i, "logprob/num_dims": 300, "ppo/clip_fraction": 0.15, "ppo/ratio_min": 0.9,
             "ppo/ratio_max": 1.1, "ppo/pre_update_ratio_max_dev": 0.0,
             "ppo/first_minibatch_ratio_max_dev": dev if i >= 2 else 0.0, "rollout/reward_mean": -60.0 + i}
            for i in range(8)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = doctor(capsys, tmp_path, "--json")
    found = {f["code"]: f for f in json.loads(out)["findings"]}
    assert code == 0 and "PRE_UPDATE_RATIO" not in found
    if severity is None:
        assert "FIRST_MINIBATCH_RATIO" not in found
        return
    f = found["FIRST_MINIBATCH_RATIO"]
    assert f["severity"] == severity and f["evidence"]["max_abs_ratio_minus_1"] == dev
    assert f["evidence"]["first_iteration"] == 2 and f["evidence"]["iterations_over"] == 6
    assert "kernel/precision nondeterminism" in f["explanation"] and "--old-logprob update" in f["suggestion"]


@pytest.mark.parametrize("ratio_max,frozen", [(1.0, True), (1.0 + 1e-9, False)])
def test_a_ratio_that_never_moves_while_the_actor_learns_is_diagnosed(tmp_path, capsys, ratio_max, frozen):
    """The SmolVLA bf16 quickstart before its fix: ratio exactly 1 after every step of 250 iterations with a
    policy gradient of 5-15 (bf16 rounded the residual away). Critic-only iterations (norm 0) do not count."""
    rows = [{"iteration": i, "ppo/clip_fraction": 0.0, "ppo/ratio_min": 1.0, "ppo/ratio_max": ratio_max,
             "gradients/policy_norm": 0.0 if i < 2 else 5.0, "rollout/reward_mean": -60.0} for i in range(12)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = doctor(capsys, tmp_path, "--json")
    found = {f["code"]: f for f in json.loads(out)["findings"]}
    assert code == 0 and ("RATIO_FROZEN" in found) == frozen
    if frozen:
        f = found["RATIO_FROZEN"]
        assert f["evidence"]["iterations"] == 10 and f["evidence"]["first_iteration"] == 2
        assert "bf16" in f["explanation"] and "--precision fp32" in f["suggestion"]
