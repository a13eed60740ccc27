"""MetaWorld end to end on the real simulator: scripted-expert demos chosen from the id, seeded task
variations, camera observations, eval's success and the quickstart. Skipped without the
``metaworld`` extra, except the install hint, which is checked exactly then."""

import importlib.util
import json

import numpy as np
import pytest

from reinflow.cli import main

HAS_METAWORLD = importlib.util.find_spec("metaworld") is not None
needs_metaworld = pytest.mark.skipif(not HAS_METAWORLD, reason='needs pip install -e ".[metaworld]"')
ENV = "metaworld:Meta-World/MT1"
REACH = '{"env_name": "reach-v3"}'


@pytest.mark.skipif(HAS_METAWORLD, reason="checks the message shown when MetaWorld is missing")
def test_missing_metaworld_says_how_to_install_it(tmp_path, capsys):
    rc = main(["demos", "--env", ENV, "--env-kwargs", REACH, "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: MetaWorld is not installed") and 'pip install -e ".[metaworld]"' in err


@needs_metaworld
def test_demos_use_metaworlds_scripted_policy_and_pretrain_eval_report_success(tmp_path, capsys):
    demos, ckpt = tmp_path / "demos", tmp_path / "bc"
    assert main(["demos", "--env", ENV, "--env-kwargs", REACH, "--episodes", "2", "--out", str(demos),
                 "--no-progress"]) == 0
    meta = json.loads((demos / "meta.json").read_text())
    assert meta["expert"] == "metaworld.policies.ENV_POLICY_MAP['reach-v3']" and meta["instruction"] == "reach"
    assert meta["episode_success"] == [True, True] and meta["obs_dim"] == 39 and meta["action_dim"] == 4
    assert meta["steps"] < 2 * 200                     # episodes end at the first success (~50 steps here)
    assert main(["pretrain", "--demos", str(demos), "--out", str(ckpt), "--chunk-size", "50", "--steps", "20",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(ckpt), "--episodes", "2", "--parallel-envs", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["env"] == ENV and res["success_rate"] in (0.0, 0.5, 1.0) and res["length_mean"] <= 500


@needs_metaworld
def test_reset_seed_picks_the_task_variation():
    from reinflow.envs.factory import build_env
    envs = [build_env(ENV, {"env_name": "pick-place-v3"}) for _ in range(2)]
    first = [e.reset(seed=7)[0] for e in envs]
    np.testing.assert_array_equal(first[0], first[1])          # same seed, same object and goal
    assert not np.allclose(envs[0].reset(seed=8)[0], first[0])
    for e in envs:
        e.close()


@needs_metaworld
def test_pixels_state_adds_named_cameras_in_the_smolvla_layout():
    from reinflow.envs.factory import build_env
    env = build_env(ENV, {"env_name": "reach-v3", "obs_mode": "pixels_state", "image_size": [32, 48],
                          "cameras": ["corner", "gripperPOV"]})
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"state", "corner", "gripperPOV"} == set(env.observation_space.spaces)
    assert obs["state"].shape == (39,) and obs["corner"].shape == (32, 48, 3) and obs["corner"].dtype == np.uint8
    assert obs["corner"].std() > 5                              # a rendered scene, not a blank frame
    obs2, *_ = env.step(np.ones(4, dtype=np.float32))
    assert not np.array_equal(obs2["gripperPOV"], obs["gripperPOV"])
    env.close()


@needs_metaworld
@pytest.mark.parametrize("kwargs, needle", [
    ({}, "env_name=None"), ({"env_name": "reach-v9"}, "in all)"), ({"env_name": "reach-v3", "obs_mode": "rgb"},
                                                                     "allowed state, pixels_state"),
    ({"env_name": "reach-v3", "obs_mode": "pixels_state", "cameras": ["top"]}, "allowed (one or more) topview, corner"),
])
def test_bad_env_kwargs_name_the_field(kwargs, needle):
    from reinflow import ConfigError
    from reinflow.envs.factory import build_env
    with pytest.raises(ConfigError, match="^env_kwargs ") as exc:
        build_env(ENV, kwargs)
    assert needle in str(exc.value)


@needs_metaworld
def test_a_bad_task_name_is_a_one_line_cli_error(tmp_path, capsys):
    rc = main(["demos", "--env", ENV, "--env-kwargs", '{"env_name": "reach"}', "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: env_kwargs env_name='reach'") and len(err.splitlines()) == 1


@needs_metaworld
def test_quickstart_on_a_metaworld_task(tmp_path):
    out = tmp_path / "qs"
    rc = main(["quickstart", "--env", ENV, "--env-kwargs", REACH, "--out", str(out), "--minutes", "3",
               "--demo-episodes", "1", "--bc-steps", "10", "--eval-episodes", "2", "--train-eval-episodes", "1",
               "--parallel-envs", "2", "--rollout-steps", "1", "--iterations", "1", "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["task"] == "reach-v3" and s["chain_dims"] == (s["noise_basis"] or 50) * 4 and s["success_before"] is not None
    assert s["demos"]["success_rate"] == 1.0 and s["iterations"] == 1


@needs_metaworld
def test_smolvla_trains_on_metaworld_cameras(tmp_path):
    pytest.importorskip("lerobot")
    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    vlm, out = write_tiny_vlm(tmp_path / "vlm"), tmp_path / "run"
    kw = {"env_name": "reach-v3", "max_episode_steps": 20, "image_size": [32, 32]}
    assert main(["train", "--env", ENV, "--env-kwargs", json.dumps(kw), "--policy", "smolvla", "--vlm-path", str(vlm),
                 "--parallel-envs", "2", "--iterations", "1", "--rollout-steps", "2", "--minibatch-size", "2",
                 "--update-epochs", "1", "--act-steps", "10", "--eval-episodes", "1", "--no-progress",
                 "--no-tensorboard", "--out", str(out)]) == 0
    ck = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    policy = json.loads((ck / "config.json").read_text())["policy"]
    assert policy["cameras"] == {"corner": [32, 32], "gripperPOV": [32, 32]} and policy["instruction"] == "reach"
    assert policy["action_dim"] == 4 and policy["state_dim"] == 39


@needs_metaworld
def test_episodes_end_at_the_first_success_with_the_arms_reward_convention():
    from reinflow.envs.factory import build_env
    from reinflow.envs.metaworld import policy_map

    def run(kwargs):
        env, expert = build_env(ENV, {"env_name": "reach-v3", **kwargs}), policy_map()["reach-v3"]()
        obs, _ = env.reset(seed=3)
        rewards, successes, ends = [], [], []
        for _ in range(500):
            obs, r, terminated, truncated, info = env.step(np.clip(expert.get_action(obs), -1, 1))
            rewards.append(r), successes.append(bool(info["success"])), ends.append((terminated, truncated))
            if terminated or truncated:
                break
        env.close()
        return np.array(rewards), successes, ends

    raw, raw_success, raw_ends = run({"terminate_on_success": False})
    assert len(raw) == 500 and raw_ends[-1] == (False, True) and raw.max() > 1      # MetaWorld's own episode
    first = raw_success.index(True)
    ended, success, ends = run({})                                                  # the default
    assert len(ended) == first + 1 and success[-1] and ends[-1][0]                  # ends at the first success
    np.testing.assert_allclose(ended, raw[:first + 1] / 10 - 1, rtol=1e-6)          # same dynamics, shifted reward
    assert ended.max() <= 0


@needs_metaworld
def test_terminate_on_success_must_be_a_bool():
    from reinflow import ConfigError
    from reinflow.envs.factory import build_env
    with pytest.raises(ConfigError, match="terminate_on_success='yes': allowed true, false"):
        build_env(ENV, {"env_name": "reach-v3", "terminate_on_success": "yes"})
