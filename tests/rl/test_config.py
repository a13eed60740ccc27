"""TrainConfig from the algorithms' own settings (``Algorithm.config``): every registered config's
fields are top-level fields and flags, its frozen fields are frozen on resume, its default lr is the
one 'auto' picks, a fourth algorithm is one file plus a registry line, and a config.json written
before the split resumes unchanged."""

import json
import os
import subprocess
import sys
from dataclasses import MISSING, asdict, fields

import pytest

from reinflow import ConfigError
from reinflow.cli_args import parse_with_defaults
from reinflow.commands.train import _resume_defaults
from reinflow.rl.algorithms import ALGORITHMS, algorithm_class
from reinflow.rl.config import FROZEN_ON_RESUME, TrainConfig
from reinflow.rl.runfolder import resume_changes

OLD_CONFIG = __file__.rsplit("/", 1)[0] + "/data/config_before_algorithm_configs.json"


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_each_algorithm_config_is_part_of_train_config(name):
    algo = algorithm_class(name)
    own = {f.name: f for f in fields(TrainConfig)}
    assert algo.config in TrainConfig.__mro__
    for f in fields(algo.config):
        assert f.name in own and _default(own[f.name]) == _default(f)
    assert set(algo.config.FROZEN_ON_RESUME) <= set(FROZEN_ON_RESUME)
    assert TrainConfig(algorithm=name, policy_path="BC").resolved().lr_actor == algo.default_lr_actor
    for bad in algo.config.RANGES.items():    # each range is enforced, naming the field
        with pytest.raises(ConfigError, match=f"^{bad[0]}="):
            TrainConfig(**{bad[0]: bad[1][0] - 1})


def test_a_config_json_written_before_the_split_resumes_unchanged(tmp_path):
    saved = json.loads(open(OLD_CONFIG).read())
    run = tmp_path / "run"
    run.mkdir()
    saved["train"]["out"] = str(run)
    (run / "config.json").write_text(json.dumps(saved))
    point, source, argv = _resume_defaults(["--resume", "--out", str(run), "--clip-epsilon", "0.3"])
    assert point == (None, saved)  # no checkpoint yet: it starts over with its saved config
    cfg = parse_with_defaults(TrainConfig, argv + ["--resume"], "reinflow train", None, point[1]["train"], source)
    new = asdict(cfg)
    assert {k: v for k, v in new.items() if k not in ("resume", "clip_epsilon")} == \
        {k: v for k, v in saved["train"].items() if k not in ("resume", "clip_epsilon")}
    assert resume_changes(new, saved["train"], saved["derived"], str(run)) == \
        {"clip_epsilon": {"from": 0.1, "to": 0.3}}
    for frozen in ({"dsrl_buffer_size": 5}, {"critic_shares_features": True}, {"chunk_size": 8}):
        with pytest.raises(ConfigError, match=f"--resume: {next(iter(frozen))}="):
            resume_changes({**new, **frozen}, saved["train"], saved["derived"], str(run))


TOY = '''
from dataclasses import dataclass
from typing import ClassVar
from reinflow import ConfigError
from reinflow.rl.algorithms.ppo import ChainPPO

@dataclass
class ToyConfig:
    toy_knob: int = 3
    """a toy setting"""
    RANGES: ClassVar[dict] = {}
    FROZEN_ON_RESUME: ClassVar[tuple] = ("toy_knob",)

    def check(self):
        if self.toy_knob < 0:
            raise ConfigError(f"toy_knob={self.toy_knob}: must be >= 0")

class Toy(ChainPPO):
    name = "toy"
    config = ToyConfig
    default_lr_actor = 0.5
'''

PROBE = '''
import reinflow.rl.algorithms as registry
registry.ALGORITHMS["toy"] = "toy_algorithm:Toy"
from reinflow import ConfigError
from reinflow.cli_args import parse_with_defaults
from reinflow.rl.config import FROZEN_ON_RESUME, TrainConfig
cfg = parse_with_defaults(TrainConfig, ["--algorithm", "toy", "--toy-knob", "7", "--clip-epsilon", "0.1"], "train")
try:
    TrainConfig(toy_knob=-1)
except ConfigError as exc:
    refused = str(exc)
print(cfg.toy_knob, cfg.clip_epsilon, cfg.resolved().lr_actor, "toy_knob" in FROZEN_ON_RESUME, refused)
'''


def test_a_fourth_algorithm_is_one_file_and_a_registry_line(tmp_path):
    (tmp_path / "toy_algorithm.py").write_text(TOY)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7", "0.1", "0.5", "True", "toy_knob=-1:", "must", "be", ">=", "0"]


@pytest.mark.parametrize("from_checkpoint", [False, True])
def test_auto_scale_is_settled_before_the_agent_is_built(tmp_path, from_checkpoint):
    """--auto-scale reads the chain dimension D from the flags and the checkpoint's config (rl.build.policy_dims):
    the D it scales for is the built agent's, and the config it returns is final (auto_scale off)."""
    from reinflow.envs.factory import env_spaces
    from reinflow.rl.algorithms.ppo import ChainPPO
    from reinflow.rl.build import build_agent
    from reinflow.rl.checkpoint import save_agent
    spaces = env_spaces("reinflow/ArmReach-v0")
    kw = dict(chunk_size=4, denoise_steps=2, hidden=[16])
    if from_checkpoint:  # its chunk and K come from the checkpoint, not from flags
        save_agent(tmp_path / "bc", build_agent(TrainConfig(**kw), *spaces))
        kw = dict(policy_path=str(tmp_path / "bc"), algorithm="chain-ppo")
    cfg = TrainConfig(auto_scale=True, act_steps=3, noise_basis=0, **kw).resolved()
    new, info = ChainPPO.resolve(cfg, spaces[1], verbose=False)
    agent = build_agent(new, *spaces)
    assert info["num_dims"] == agent.num_dims == 3 * agent.policy.action_dim * 2    # act_steps x A x K
    assert not new.auto_scale and new.sigma_max == pytest.approx(cfg.sigma_max * (agent.num_dims / 28) ** 0.5)
    assert ChainPPO.resolve(new, spaces[1], verbose=False) == (new, None)             # settled: nothing more
