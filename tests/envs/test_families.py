"""The env registry and the generic paths any third-party env takes: a ``namespace/Id`` whose module
registers it is imported, a Dict of Box observations is flattened in a fixed key order (recorded and
checked), success is read from ``success``/``succeed``/``is_success``, and every failure is one
``error:`` line naming the fix. The envs are gymnasium's Pendulum with its observation split into a
Dict by gymnasium's own ``TransformObservation``."""

import json
import textwrap

import numpy as np
import pytest

from reinflow.cli import main
from reinflow.envs.families import family_of

NS = '''
import gymnasium as gym
import numpy as np
from gymnasium.spaces import Box, Dict, Discrete

def _split(keys, extra=None):
    def make(max_episode_steps=20):
        env = gym.make("Pendulum-v1", max_episode_steps=max_episode_steps)
        parts = {keys[0]: Box(-8, 8, (2,), np.float32), keys[1]: Box(-8, 8, (1,), np.float32), **(extra or {})}
        def obs(o):
            out = {keys[0]: o[:2].astype(np.float32), keys[1]: o[2:].astype(np.float32)}
            return {**out, **{k: s.sample() for k, s in (extra or {}).items()}}
        env = gym.wrappers.TransformObservation(env, obs, Dict(parts))
        return Succeed(env)
    return make

class Succeed(gym.Wrapper):  # success under SB3's key: upright pendulum
    def step(self, a):
        obs, r, term, trunc, info = self.env.step(a)
        return obs, r, term, trunc, {**info, "is_success": bool(self.env.unwrapped.state[0] ** 2 < 0.01)}

make_ab = _split(("b", "a"))
make_ac = _split(("c", "a"))
make_discrete = _split(("b", "a"), {"mode": Discrete(3)})
make_image = _split(("b", "a"), {"cam": Box(0, 255, (8, 8, 3), np.uint8)})
for name, fn in [("DictPendulum", "make_ab"), ("DictPendulumC", "make_ac"),
                 ("DiscretePendulum", "make_discrete"), ("ImagePendulum", "make_image")]:
    gym.register(f"rf_dict_ns/{name}-v0", entry_point=f"rf_dict_ns:{fn}")

def expert(obs):  # flattened: sorted keys, so obs[0] is key "a" (the angular velocity)
    return np.array([-np.clip(obs[0], -2, 2)])
'''


@pytest.fixture()
def ns(tmp_path, monkeypatch):
    import sys
    (tmp_path / "rf_dict_ns.py").write_text(textwrap.dedent(NS))
    (tmp_path / "rf_broken_ns.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("rf_dict_ns", None)
    yield tmp_path
    import gymnasium as gym
    for k in [k for k in gym.registry if k.startswith("rf_dict_ns/")]:
        del gym.registry[k]


def test_each_id_belongs_to_one_family():
    assert family_of("reinflow/ArmPickLift-v0").name == "arm"
    assert family_of("metaworld:Meta-World/MT1").name == family_of("Meta-World/MT1").name == "metaworld"
    assert family_of("lerobot_env_so101/SO101PickPlace-v0").name == "so101"
    assert family_of("lerobot_env_so101:lerobot_env_so101/SO101PickPlace-v0").name == "so101"
    assert family_of("Pendulum-v1").name == family_of("reinflowx/Arm-v0").name == "gymnasium"
    assert family_of("lerobot_env_so101/SO101PickPlace-v0").default_kwargs("")["action_scale"] == 0.025
    from reinflow.quickstart_policies import KINDS
    so101 = KINDS["mlp"].settings("lerobot_env_so101:lerobot_env_so101/SO101PickPlace-v0")
    assert (so101.chunk_size, so101.iterations, so101.train["eval_every"]) == (16, 70, 20)
    assert (so101.demo_episodes, so101.bc_episodes) == (150, 150)  # docs/so101.md: 92-93 % on 3 seeds
    assert KINDS["mlp"].settings("Pendulum-v1").chunk_size == 50


def test_namespace_module_is_imported_and_dict_obs_flattened_in_key_order(ns, tmp_path, capsys):
    demos, bc = tmp_path / "d", tmp_path / "bc"
    assert main(["demos", "--env", "rf_dict_ns/DictPendulum-v0", "--episodes", "2", "--expert", "rf_dict_ns:expert",
                 "--no-only-success", "--out", str(demos), "--no-progress"]) == 0
    meta = json.loads((demos / "meta.json").read_text())
    assert meta["obs_keys"] == ["a", "b"] and meta["obs_layout"] == [["a", 1], ["b", 2]] and meta["obs_dim"] == 3
    obs = np.load(demos / "demos.npz")["observations"]
    assert np.abs(obs[:, 1:] ** 2).sum(1) == pytest.approx(np.ones(len(obs)), abs=1e-5)  # "b" = (cos, sin)
    assert main(["pretrain", "--demos", str(demos), "--out", str(bc), "--chunk-size", "4", "--steps", "5",
                 "--no-progress"]) == 0
    assert json.loads((bc / "config.json").read_text())["policy"]["obs_keys"] == ["a", "b"]
    capsys.readouterr()
    assert main(["eval", str(bc), "--episodes", "2", "--parallel-envs", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["success_rate"] is not None and res["length_mean"] == 20       # is_success read, not NaN
    # same sizes, other keys: the recorded layout refuses the checkpoint
    rc = main(["train", "--env", "rf_dict_ns/DictPendulumC-v0", "--policy-path", str(bc), "--iterations", "1",
               "--out", str(tmp_path / "t"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "keys ['a', 'b']" in err and "['a', 'c']" in err, err


@pytest.mark.parametrize("env, needle", [
    ("rf_dict_ns/DiscretePendulum-v0", "'mode' is a Discrete space"),
    ("rf_dict_ns/ImagePendulum-v0", "'cam' is an image uint8[8, 8, 3]"),
    ("rf_dict_ns/NoSuch-v0", "module:EnvId"),
    ("rf_broken_ns/Env-v0", "importing its namespace module 'rf_broken_ns' failed"),
])
def test_a_user_env_that_cannot_run_is_one_error_line(ns, tmp_path, capsys, env, needle):
    rc = main(["train", "--env", env, "--iterations", "1", "--out", str(tmp_path / "t"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1, err
    assert "bug in reinflow" not in err


def test_an_id_read_from_a_file_imports_nothing(ns):
    """``allow_import=False`` (a config.json, a checkpoint): neither a ``module:`` part nor a ``namespace/``
    is imported; the same id typed on the command line imports its namespace."""
    import sys

    from reinflow import ConfigError
    from reinflow.envs.factory import check_env_id
    for env in ("rf_dict_ns/DictPendulum-v0", "rf_dict_ns:rf_dict_ns/DictPendulum-v0"):
        with pytest.raises(ConfigError, match="config.json" if ":" in env else "not a registered"):
            check_env_id(env, allow_import=False, source="config.json")
        assert "rf_dict_ns" not in sys.modules
    check_env_id("rf_dict_ns/DictPendulum-v0")
    assert "rf_dict_ns" in sys.modules
