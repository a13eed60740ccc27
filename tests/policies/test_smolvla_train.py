"""Two ReinFlow iterations of LeRobot's SmolVLA (tiny random VLM) on the built-in arm with
cameras, through the same trainer, checkpoint and eval as every other policy."""

import json

import pytest

pytest.importorskip("lerobot")

from reinflow.cli import main  # noqa: E402
from reinflow.report.logger import read_metrics  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    root = tmp_path_factory.mktemp("sv")
    vlm = write_tiny_vlm(root / "vlm")
    out = root / "run"
    assert main(["train", "--env", "reinflow/ArmReach-v0", "--policy", "smolvla", "--vlm-path", str(vlm),
                 "--parallel-envs", "2", "--iterations", "2", "--rollout-steps", "2", "--minibatch-size", "2",
                 "--update-epochs", "1", "--act-steps", "10", "--eval-episodes", "1", "--no-progress",
                 "--no-tensorboard", "--out", str(out)]) == 0
    return out


def test_two_iterations_with_cameras(run):
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    for r in rows:
        assert r["ppo/pre_update_ratio_max_dev"] == 0.0        # the rollout's own prefix cache: exact
        assert r["ppo/context_reused"] == 1.0                  # heads preset: the frozen prefix is not re-encoded
        assert r["logprob/num_dims"] == 4 * 6                  # smooth-noise coefficients x real dims (not x 32)
        assert 0.16 <= r["noise/sigma_mean"] <= 0.32
        assert r["logprob/per_dimension"] <= r["logprob/per_dimension_bound"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["derived"]["padded_action_dim"] == 32 and cfg["derived"]["action_dim"] == 6


def test_checkpoint_loads_in_lerobot_and_reinflow(run, capsys):
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    ck = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    SmolVLAPolicy.from_pretrained(str(ck / "lerobot"))
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "1", "--parallel-envs", "1"]) == 0
    out = capsys.readouterr().out  # LeRobot prints its own lines before reinflow's JSON
    assert json.loads(out[out.index("{"):])["episodes"] == 1
