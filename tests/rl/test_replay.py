"""The replay buffer: ring order, uniform sampling, and a save/load round trip through the
trainer-state files (safetensors + JSON, nothing pickled)."""

import json

import pytest
import torch

from reinflow import ConfigError
from reinflow.rl.replay import ReplayBuffer
from reinflow.rl.trainer_state import STRUCTURE, TENSORS, _decode, write_trainer_state

FIELDS = {"feat": (3,), "latent": (2,), "reward": (), "next_feat": (3,), "done": ()}


def rows(start: int, n: int) -> dict[str, torch.Tensor]:
    v = torch.arange(start, start + n, dtype=torch.float32)
    return {"feat": v[:, None].expand(n, 3), "latent": -v[:, None].expand(n, 2), "reward": v,
            "next_feat": v[:, None].expand(n, 3) + 1, "done": (v % 2 == 0).float()}


def test_the_ring_keeps_the_newest_rows_and_samples_only_filled_ones():
    buf = ReplayBuffer(5, FIELDS)
    buf.add(**rows(0, 3))
    assert len(buf) == 3 and buf.pos == 3
    drawn = buf.sample(200, torch.Generator().manual_seed(0))
    assert set(drawn["reward"].tolist()) == {0.0, 1.0, 2.0}          # never an empty row
    assert torch.equal(drawn["latent"][:, 0], -drawn["reward"])       # a row's fields stay together
    buf.add(**rows(3, 4))                                              # 7 rows into 5: 0 and 1 are gone
    assert len(buf) == 5 and buf.pos == 2 and buf.added == 7
    assert sorted(buf.data["reward"].tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="latent"):
        buf.add(**{**rows(0, 2), "latent": torch.zeros(2, 3)})


def test_save_and_load_round_trip_without_pickle(tmp_path):
    buf = ReplayBuffer(8, FIELDS)
    buf.add(**rows(0, 11))
    write_trainer_state(tmp_path, {"replay": buf.state_dict()})
    assert {p.name for p in tmp_path.iterdir()} == {STRUCTURE, TENSORS}
    from safetensors.torch import load_file
    state = _decode(json.loads((tmp_path / STRUCTURE).read_text()), load_file(str(tmp_path / TENSORS)), "state")
    again = ReplayBuffer(8, FIELDS)
    again.load_state_dict(state["replay"])
    assert (again.pos, again.size, again.added) == (buf.pos, buf.size, buf.added)
    for k in FIELDS:
        assert torch.equal(again.data[k], buf.data[k])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(again.sample(16, g1)["reward"], buf.sample(16, g2)["reward"])


def test_a_state_that_does_not_fit_is_refused_by_name():
    buf = ReplayBuffer(4, FIELDS)
    buf.add(**rows(0, 2))
    state = buf.state_dict()
    with pytest.raises(ConfigError, match="dsrl_buffer_size=6"):
        ReplayBuffer(6, FIELDS).load_state_dict(state)
    with pytest.raises(ConfigError, match="field feat"):
        ReplayBuffer(4, {**FIELDS, "feat": (4,), "next_feat": (4,)}).load_state_dict(state)
    bad = {**state, "data": {**state["data"], "reward": torch.tensor([0.0, float("nan")])}}
    with pytest.raises(ConfigError, match="finite"):
        ReplayBuffer(4, FIELDS).load_state_dict(bad)
    with pytest.raises(ConfigError, match="integers"):
        ReplayBuffer(4, FIELDS).load_state_dict({**state, "size": -1})
