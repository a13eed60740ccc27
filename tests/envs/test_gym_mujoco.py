"""gymnasium's own MuJoCo envs train from the plain install: the main dependencies declare
gymnasium[mujoco] (imageio and friends), and one short iteration runs on several of them."""

import importlib.metadata as md
import json

import pytest
from packaging.requirements import Requirement

from reinflow.cli import main

ENVS = ["Hopper-v5", "Reacher-v5", "HalfCheetah-v5", "InvertedPendulum-v5", "Walker2d-v5", "Swimmer-v5"]


def test_main_dependencies_declare_what_gymnasium_mujoco_envs_need():
    reqs = [Requirement(r) for r in md.requires("reinflow") or []]
    main_reqs = {r.name: r for r in reqs if r.marker is None}  # not behind an extra
    assert "mujoco" in main_reqs["gymnasium"].extras
    # What gymnasium's mujoco extra pulls in is installed (the test venv's extras must not hide it).
    for r in (Requirement(x) for x in md.requires("gymnasium") or []):
        if r.marker is not None and r.marker.evaluate({"extra": "mujoco"}):
            assert md.version(r.name), r.name
    # mujoco stays below 4.0: its split packages cannot be downgraded to MetaWorld's 3.3.0 (docs/metaworld.md)
    assert not main_reqs["mujoco"].specifier.contains("4.0.0")


@pytest.mark.parametrize("env", ENVS)
def test_one_training_iteration(tmp_path, capsys, env):
    out = tmp_path / "run"
    rc = main(["train", "--env", env, "--env-kwargs", json.dumps({"max_episode_steps": 40}), "--iterations", "1",
               "--parallel-envs", "2", "--rollout-steps", "2", "--chunk-size", "4", "--minibatch-size", "4",
               "--eval-episodes", "1", "--out", str(out), "--no-progress", "--no-tensorboard"])
    assert rc == 0
    assert "done: 1 iterations" in capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] > 0
