"""Demo recording/loading round trip and validation of broken files."""

import json

import numpy as np
import pytest

from reinflow.envs.arm import STATE_DIM, ArmEnv
from reinflow.envs.demos import DEMOS_FILE, META_FILE, load_demos, record_demos


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    summary = record_demos("reinflow/ArmPickLift-v0", 3, out, seed=11, progress=False)
    return out, summary


def test_record_summary_and_files(demo_dir):
    out, summary = demo_dir
    assert summary["episodes"] == 3 and summary["steps"] > 0
    assert summary["success_rate"] > 0 and summary["attempts"] >= 3
    meta = json.loads((out / META_FILE).read_text())
    assert meta["env_id"] == "reinflow/ArmPickLift-v0"
    assert meta["obs_dim"] == STATE_DIM and meta["action_dim"] == 6
    assert meta["format_version"] == 1 and meta["episodes"] == 3
    assert meta["instruction"] == "pick up the red cube and lift it"
    assert all(meta["episode_success"])


def test_round_trip_matches_file_and_replays(demo_dir):
    out, summary = demo_dir
    demos = load_demos(out)
    assert demos.num_episodes == 3 and demos.num_steps == summary["steps"]
    raw = np.load(out / DEMOS_FILE)
    flat = demos.concatenated()
    for key in ("observations", "actions", "rewards", "successes"):
        np.testing.assert_array_equal(flat[key], raw[key])
    assert all(a.dtype == np.float32 and a.shape[1] == 6 for a in demos.actions)
    assert demos.episode_success.all()
    # replaying the executed actions from the recorded seed reproduces the observations
    executed = raw["executed_actions"][: len(demos.actions[0])]
    assert 0.005 < np.abs(executed - demos.actions[0]).mean() < 0.1  # noisy execution,
    env = ArmEnv("pick_lift")  # clean expert labels
    obs, _ = env.reset(seed=demos.meta["episode_seeds"][0])
    for t, action in enumerate(executed):
        np.testing.assert_allclose(obs, demos.observations[0][t], atol=1e-5)
        obs, *_ = env.step(action)
    assert demos.successes[0][-1]


def test_noise_free_demos_replay_exactly(tmp_path):
    record_demos("reinflow/ArmPush-v0", 1, tmp_path, seed=3, progress=False, action_noise=0.0)
    demos = load_demos(tmp_path)
    assert "executed_actions" not in np.load(tmp_path / DEMOS_FILE).files
    env = ArmEnv("push")
    obs, _ = env.reset(seed=demos.meta["episode_seeds"][0])
    for t, action in enumerate(demos.actions[0]):
        np.testing.assert_allclose(obs, demos.observations[0][t], atol=1e-5)
        obs, _, terminated, _, info = env.step(action)
    assert terminated and info["success"]


def test_pixel_demos_round_trip(tmp_path):
    record_demos("reinflow/ArmReach-v0", 2, tmp_path, seed=0, progress=False,
                 obs_mode="pixels_state", image_size=(24, 32))
    demos = load_demos(tmp_path / DEMOS_FILE)
    assert set(demos.images) == {"top", "wrist"}
    for cam in ("top", "wrist"):
        for ep, imgs in enumerate(demos.images[cam]):
            assert imgs.shape == (len(demos.actions[ep]), 24, 32, 3) and imgs.dtype == np.uint8


def _rewrite(src, dst, **changes):
    dst.mkdir()
    (dst / META_FILE).write_text((src / META_FILE).read_text())
    arrays = dict(np.load(src / DEMOS_FILE))
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(dst / DEMOS_FILE, **arrays)
    return dst


def test_missing_key_raises(demo_dir, tmp_path):
    bad = _rewrite(demo_dir[0], tmp_path / "bad", actions=None)
    with pytest.raises(ValueError, match=r"demos\.npz: field 'actions': expected an array"):
        load_demos(bad)


def test_wrong_shape_raises(demo_dir, tmp_path):
    actions = np.load(demo_dir[0] / DEMOS_FILE)["actions"][:, :5]
    bad = _rewrite(demo_dir[0], tmp_path / "bad", actions=actions)
    with pytest.raises(ValueError, match=r"field 'actions': expected shape \[\d+, 6\]"):
        load_demos(bad)


def test_nan_action_raises(demo_dir, tmp_path):
    actions = np.load(demo_dir[0] / DEMOS_FILE)["actions"].copy()
    actions[4, 2] = np.nan
    bad = _rewrite(demo_dir[0], tmp_path / "bad", actions=actions)
    with pytest.raises(ValueError, match=r"field 'actions': expected finite .* step 4"):
        load_demos(bad)


def test_out_of_range_action_raises(demo_dir, tmp_path):
    actions = np.load(demo_dir[0] / DEMOS_FILE)["actions"].copy()
    actions[0, 0] = 3.0
    bad = _rewrite(demo_dir[0], tmp_path / "bad", actions=actions)
    with pytest.raises(ValueError, match=r"field 'actions': expected values in \[-1, 1\]"):
        load_demos(bad)


def test_empty_raises(demo_dir, tmp_path):
    bad = _rewrite(
        demo_dir[0], tmp_path / "bad",
        observations=np.zeros((0, STATE_DIM), np.float32), actions=np.zeros((0, 6), np.float32),
        rewards=np.zeros(0, np.float32), successes=np.zeros(0, bool),
        episode_lengths=np.zeros(0, np.int64),
    )
    with pytest.raises(ValueError, match=r"field 'episode_lengths': expected a non-empty"):
        load_demos(bad)


def test_missing_meta_and_missing_file(tmp_path, demo_dir):
    d = tmp_path / "nometa"
    d.mkdir()
    (d / DEMOS_FILE).write_bytes((demo_dir[0] / DEMOS_FILE).read_bytes())
    with pytest.raises(ValueError, match=r"meta\.json: missing"):
        load_demos(d)
    with pytest.raises(FileNotFoundError):
        load_demos(tmp_path / "does-not-exist")
