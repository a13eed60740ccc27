"""The SO-101 of PyPI lerobot-env-so101 with no adapter: the package's controller is the expert
(stateful, reads the sim), its Dict observation arrives flattened, ``info["succeed"]`` counts as
success and its recommended kwargs are defaults. Skipped without the ``so101`` extra, except the
install hint, which is checked exactly then."""

import importlib.util
import json

import pytest

from reinflow.cli import main

HAS_SO101 = importlib.util.find_spec("lerobot_env_so101") is not None
needs_so101 = pytest.mark.skipif(not HAS_SO101, reason='needs pip install -e ".[so101]"')
ENV = "lerobot_env_so101/SO101PickPlace-v0"


@pytest.mark.skipif(HAS_SO101, reason="checks the message shown when the package is missing")
def test_missing_package_says_how_to_install_it(tmp_path, capsys):
    rc = main(["demos", "--env", ENV, "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: lerobot-env-so101 is not installed") and '".[so101]"' in err


@needs_so101
def test_demos_use_the_packages_controller_with_its_recommended_kwargs(tmp_path):
    out = tmp_path / "d"
    assert main(["demos", "--env", ENV, "--episodes", "3", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["expert"] == "reinflow.envs.so101.PickPlaceExpert"
    assert meta["env_kwargs"] == {"action_scale": 0.025, "random_block_position": True}
    assert meta["episode_success"] == [True] * 3 and meta["attempts"] == 3     # succeed read as success
    assert meta["obs_keys"] == ["agent_pos", "environment_state"] and meta["obs_dim"] == 20
    assert meta["action_dim"] == 4 and meta["steps"] < 3 * 80                  # the episode ends at success
    # a user's kwargs win over the defaults; a 4x larger step needs fewer steps than 0.025 for the same moves
    out2 = tmp_path / "d2"
    assert main(["demos", "--env", ENV, "--env-kwargs", '{"action_scale": 0.05}', "--episodes", "1",
                 "--out", str(out2), "--no-progress"]) == 0
    assert json.loads((out2 / "meta.json").read_text())["env_kwargs"]["action_scale"] == 0.05


@needs_so101
@pytest.mark.parametrize("argv, needle", [
    (["demos", "--env", "lerobot_env_so101/SO101PickCube-v0"], "never lifts the cube"),
    (["demos", "--env", ENV, "--env-kwargs", '{"image_obs": true}'], '{"obs_mode": "pixels_state"} instead'),
    (["train", "--env", ENV, "--env-kwargs", '{"obs_mode": "pixels_state"}', "--iterations", "1"], "use --policy smolvla"),
    (["train", "--env", "lerobot_env_so101/SO101Pick-v0", "--iterations", "1"], "did you mean: lerobot_env_so101/"),
    (["train", "--env", ENV, "--env-kwargs", '{"action_scale": -1}', "--iterations", "1"], "action_scale must be positive"),
    (["demos", "--env", ENV, "--env-kwargs", '{"max_episode_steps": 20}', "--episodes", "1"], "--no-only-success"),
])
def test_so101_mistakes_are_one_error_line(tmp_path, capsys, argv, needle):
    rc = main([*argv, "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1, err


@needs_so101
def test_quickstart_runs_with_the_registry_defaults(tmp_path):
    out = tmp_path / "qs"
    # Small sizes and short episodes keep this to seconds; the defaults' numbers are in docs/so101.md.
    assert main(["quickstart", "--env", ENV, "--env-kwargs", '{"max_episode_steps": 60}', "--out", str(out),
                 "--demo-episodes", "2", "--bc-steps", "5", "--eval-episodes", "2", "--train-eval-episodes", "1",
                 "--parallel-envs", "2", "--rollout-steps", "1", "--iterations", "1", "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["chunk_size"] == 16 and s["action_dim"] == 4 and s["budget_s"] == 30 * 60    # the SO-101 defaults
    assert s["env_kwargs"] == {"action_scale": 0.025, "random_block_position": True, "max_episode_steps": 60}
    assert s["config"]["train"]["vector"] == "async" and s["stopped_by_minutes"] is False
    assert s["success_before"] is not None and s["eval_after"]["length_mean"] <= 60
