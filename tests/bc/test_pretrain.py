"""Flow-matching BC on real recorded demos: the loss falls, the checkpoint is what train loads."""

import json

import pytest
import torch

from reinflow.bc.pretrain import PretrainConfig, chunk_dataset, flow_matching_loss, pretrain
from reinflow.envs.demos import load_demos, record_demos
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.checkpoint import load_agent


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    record_demos("reinflow/ArmReach-v0", 6, out, seed=0, progress=False)
    return out


def test_pretraining_lowers_the_loss_and_writes_a_loadable_checkpoint(demos, tmp_path):
    res = pretrain(PretrainConfig(demos=str(demos), out=str(tmp_path / "ck"), chunk_size=10, steps=200,
                                  batch_size=64, hidden=[64, 64], progress=False))
    assert res["loss_last_100"] < 0.5 * res["loss_first_100"]
    agent, cfg, _ = load_agent(tmp_path / "ck")
    assert cfg["train"]["env"] == "reinflow/ArmReach-v0" and cfg["policy"]["parametrization"] == "action"
    assert (tmp_path / "ck" / "loss_curve.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "ck" / "loss.json").read_text())) == 200
    assert not torch.all(agent.policy.obs_std == 1)  # normalisation stats travel in the checkpoint


def test_chunks_repeat_the_last_action_past_the_episode_end(demos):
    d = load_demos(demos)
    obs, chunks = chunk_dataset(d.observations[:1], d.actions[:1], 50)
    last = d.actions[0][-1]
    assert chunks.shape == (len(d.actions[0]), 50, 6)
    assert torch.allclose(torch.as_tensor(chunks[-1]), torch.as_tensor(last).expand(50, 6))


@pytest.mark.parametrize("param", ["action", "velocity"])
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_loss_is_zero_for_the_exact_flow(param, direction):
    """A policy whose network outputs the exact target has zero loss: the two parametrizations
    and both time conventions regress the same straight path."""
    torch.manual_seed(0)
    pol = MLPFlowPolicy(MLPPolicyConfig(obs_dim=3, action_dim=2, chunk_size=4, hidden=[8],
                                        parametrization=param, time_direction=direction))
    data = torch.randn(5, 4, 2)
    gen = torch.Generator().manual_seed(1)
    base = flow_matching_loss(pol, torch.zeros(5, 3), data, gen)
    assert base > 0
    # Replace the network by the oracle for the same draws of noise and time.
    g2 = torch.Generator().manual_seed(1)
    noise, tau = torch.randn(data.shape, generator=g2), torch.rand(5, generator=g2)
    t = tau[:, None, None]
    x_t = (1 - t) * noise + t * data if direction == "forward" else t * noise + (1 - t) * data
    oracle = data if param == "action" else (data - noise if direction == "forward" else noise - data)
    pol._net = lambda x, tt, ctx: (oracle, torch.zeros(5, 8))
    assert torch.allclose(pol._net(x_t, tau, None)[0], oracle)
    assert float(flow_matching_loss(pol, torch.zeros(5, 3), data, torch.Generator().manual_seed(1))) < 1e-10
