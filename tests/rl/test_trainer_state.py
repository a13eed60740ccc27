"""The trainer state is stored without pickle: it round-trips exactly, and a crafted file cannot run code."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from reinflow import ConfigError
from reinflow.cli import main
from reinflow.rl.rollout import RewardScaler
from reinflow.rl.trainer_state import load_optimizer, read_trainer_state, write_trainer_state


def trained_state():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
    scaler = RewardScaler(2, 0.99)
    scaler(np.array([1.0, -2.0]), np.array([False, True]))
    return net, opt, scaler, {"iteration": 4, "env_steps": 96, "torch_rng": torch.get_rng_state(),
                              "algorithm": {"actor_opt": opt.state_dict(), "critic_opt": opt.state_dict(),
                                            "scaler": scaler.state_dict()}}


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and (type(a) is type(b) or isinstance(a, float) and isinstance(b, float))  # np.float64 -> float


def test_round_trip_is_exact_and_training_continues_identically(tmp_path):
    net, opt, scaler, state = trained_state()
    write_trainer_state(tmp_path, state)
    assert not (tmp_path / "trainer_state.pt").exists()
    back = read_trainer_state(tmp_path)
    assert same(state, back)                      # int keys, Adam's betas tuple, 0-dim step tensors, RNG bytes
    net2 = torch.nn.Linear(3, 2)
    net2.load_state_dict(net.state_dict())
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3, weight_decay=0.0)
    scaler2 = RewardScaler(2, 0.99)
    load_optimizer(opt2, back["algorithm"]["actor_opt"], "actor_opt")
    scaler2.load_state_dict(back["algorithm"]["scaler"])
    assert scaler2.state_dict() == scaler.state_dict()
    x = torch.randn(5, 3)
    for o, n in ((opt, net), (opt2, net2)):
        o.zero_grad()
        n(x).pow(2).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net2.parameters()))


def test_a_state_written_before_the_algorithm_seam_is_read_in_todays_layout(tmp_path):
    _, opt, _, state = trained_state()
    old = {k: v for k, v in state.items() if k != "algorithm"} | state["algorithm"]  # optimizers at the top level
    write_trainer_state(tmp_path, old)
    assert same(read_trainer_state(tmp_path), state)


def test_an_optimizer_state_of_another_shape_is_refused_before_any_step():
    _, opt, _, state = trained_state()
    other = torch.optim.AdamW(torch.nn.Linear(4, 2).parameters(), lr=1e-3)
    with pytest.raises(ConfigError, match=r"actor_opt: exp_avg of parameter 0 has shape \(2, 3\)"):
        load_optimizer(other, state["algorithm"]["actor_opt"], "actor_opt")


class Payload:
    """Unpickling this creates a file: the proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ts") / "run"
    assert main(["train", "--env", "Pendulum-v1", "--chunk-size", "4", "--parallel-envs", "1", "--rollout-steps", "2",
                 "--hidden", "8", "--iterations", "1", "--no-progress", "--no-tensorboard", "--eval-episodes", "1",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("where", ["legacy-pt", "safetensors", "json"])
def test_a_crafted_trainer_state_cannot_run_code(run, tmp_path, capsys, where):
    import shutil
    d = tmp_path / "run"
    shutil.copytree(run, d)
    ck = d / "checkpoints" / "iter_000000"
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"iteration": Payload(marker)})
    if where == "legacy-pt":
        for f in ck.glob("trainer_state.*"):
            f.unlink()
        torch.save({"iteration": Payload(marker)}, ck / "trainer_state.pt")
    else:
        (ck / f"trainer_state.{where}").write_bytes(evil)
    assert main(["train", "--resume", "--out", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.parametrize("text,needle", [
    ('{"iteration": {"__tensor__": "nope"}}', "refers to a tensor 'nope'"),
    ('{"iteration": -1, "env_steps": 0}', "iteration=-1"),
    ('[1, 2]', "top level is not an object"),
    ('{"iteration": 1, "env_steps": 2, "actor_opt": {}, "critic_opt": {}, "torch_rng": 5}', "torch_rng"),
])
def test_a_damaged_trainer_state_is_a_clear_error(tmp_path, text, needle):
    _, _, _, state = trained_state()
    write_trainer_state(tmp_path, state)
    (tmp_path / "trainer_state.json").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        read_trainer_state(tmp_path)


def test_nothing_in_the_package_unpickles():
    src = Path(__file__).resolve().parents[2] / "src" / "reinflow"
    offenders = [str(p) for p in src.rglob("*.py")
                 if re.search(r"torch\.load\(|pickle\.loads?\(|weights_only\s*=\s*False", p.read_text())]
    assert offenders == []
