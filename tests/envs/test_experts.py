"""`--expert module:callable` on a plain gymnasium env: functions of the observation or of the env,
classes with get_action/act and reset, actions stored normalised; clear errors for bad specs."""

import json
import textwrap

import numpy as np
import pytest

from reinflow import ConfigError
from reinflow.cli import main
from reinflow.envs.demos import load_demos

EXPERTS = '''
import numpy as np

def swing(obs):  # Pendulum torque in [-2, 2]: the stored action is torque / 2
    return np.array([2.0 * np.sign(obs[2]) if obs[2] != 0 else 2.0])

def from_env(env):
    return np.array([-1.0])

class Teacher:
    resets = 0
    def __init__(self, env):
        self.env = env
    def reset(self):
        Teacher.resets += 1
    def get_action(self, obs):
        return np.array([0.5])

bad_size = lambda obs: np.zeros(3)
not_callable = 3
'''


@pytest.fixture()
def experts_module(tmp_path, monkeypatch):
    (tmp_path / "my_experts.py").write_text(textwrap.dedent(EXPERTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys
    sys.modules.pop("my_experts", None)
    return importlib.import_module("my_experts")


def _demos(tmp_path, expert, name):
    out = tmp_path / name
    rc = main(["demos", "--env", "Pendulum-v1", "--env-kwargs", '{"max_episode_steps": 20}', "--episodes", "2",
               "--expert", expert, "--out", str(out), "--no-progress"])
    assert rc == 0
    return load_demos(out)


def test_function_class_and_env_experts_record_normalised_actions(tmp_path, experts_module):
    d = _demos(tmp_path, "my_experts:swing", "fn")
    assert d.num_episodes == 2 and d.num_steps == 40      # no success signal: every episode is kept
    acts = np.concatenate(d.actions)
    assert set(np.round(np.abs(acts).ravel(), 3)) <= {1.0}   # +-2 N m stored as +-1
    assert d.meta["expert"] == "my_experts:swing" and d.meta["env_kwargs"] == {"max_episode_steps": 20}
    assert d.meta["action_noise"] > 0 and d.meta["obs_dim"] == 3
    np.testing.assert_allclose(np.concatenate(_demos(tmp_path, "my_experts:from_env", "env").actions), -0.5)
    np.testing.assert_allclose(np.concatenate(_demos(tmp_path, "my_experts:Teacher", "cls").actions), 0.25)
    assert experts_module.Teacher.resets == 2


@pytest.mark.parametrize("spec, needle", [
    ("my_experts", "expected module:callable"),
    ("no_such_module_xyz:f", "cannot import module"),
    ("my_experts:missing", "has no attribute"),
    ("my_experts:not_callable", "not a callable"),
    ("my_experts:bad_size", "needs 1 finite values"),
])
def test_bad_expert_specs_are_one_line_errors(tmp_path, experts_module, capsys, spec, needle):
    rc = main(["demos", "--env", "Pendulum-v1", "--episodes", "1", "--expert", spec,
               "--out", str(tmp_path / "d"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and needle in err, err


def test_env_without_a_builtin_expert_asks_for_one(tmp_path, capsys):
    rc = main(["demos", "--env", "Pendulum-v1", "--episodes", "1", "--out", str(tmp_path / "d")])
    assert rc == 2 and "--expert module:callable" in capsys.readouterr().err


def test_quickstart_runs_the_pipeline_on_any_env_with_an_expert(tmp_path, experts_module):
    out = tmp_path / "qs"
    rc = main(["quickstart", "--env", "Pendulum-v1", "--env-kwargs", '{"max_episode_steps": 24}',
               "--expert", "my_experts:swing", "--out", str(out), "--minutes", "2", "--demo-episodes", "2",
               "--bc-steps", "10", "--eval-episodes", "2", "--train-eval-episodes", "1", "--chunk-size", "8",
               "--parallel-envs", "2", "--rollout-steps", "2", "--iterations", "1", "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["env"] == "Pendulum-v1" and s["action_dim"] == 1 and s["chain_dims"] == (s["noise_basis"] or 8) * 1
    assert s["success_before"] is None and s["eval_after"]["length_mean"] == 24   # no success signal
    assert json.loads(s["config"]["train"]["env_kwargs"]) == {"max_episode_steps": 24}
    assert s["demos"]["episodes"] == 2 and (out / "summary.md").is_file()


def test_load_expert_checks_the_action_size(experts_module):
    import gymnasium as gym

    from reinflow.envs.experts import load_expert
    env = gym.make("Pendulum-v1")
    with pytest.raises(ConfigError, match="needs 1"):
        load_expert("my_experts:bad_size", env).act(env.reset(seed=0)[0])
