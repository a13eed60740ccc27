"""--algorithm residual: a frozen base policy plus a zero-initialised offset, on the shared chain."""

import pytest
import torch
from safetensors.torch import load_file

from reinflow import ConfigError
from reinflow.cli import main
from reinflow.report.logger import read_metrics
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.agent import Agent, SamplerConfig
from reinflow.rl.checkpoint import load_agent
from reinflow.policies.residual import ResidualFlowPolicy

FAST = ["--env", "Pendulum-v1", "--chunk-size", "8", "--act-steps", "4", "--rollout-steps", "4",
        "--parallel-envs", "2", "--hidden", "32", "32", "--eval-episodes", "2", "--no-progress", "--no-tensorboard"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("res")
    assert main(["train", *FAST, "--iterations", "1", "--out", str(root / "base")]) == 0
    assert main(["train", *FAST, "--iterations", "3", "--algorithm", "residual", "--lr-actor", "1e-3",
                 "--policy-path", str(root / "base"), "--out", str(root / "res")]) == 0
    return root


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("k", [1, 3])
def test_zero_offset_is_the_base_policy_and_an_offset_shifts_the_mean_by_itself(direction, k):
    torch.manual_seed(0)
    pol = MLPFlowPolicy(MLPPolicyConfig(obs_dim=5, action_dim=3, chunk_size=6, denoise_steps=k, hidden=[32, 32],
                                        time_direction=direction))
    base = Agent(pol, SamplerConfig(act_steps=4, noise_basis=2, sigma_lo=0.1, sigma_hi=0.2,
                                    reduction="sum", mask_executed=True, logprob_clamp=None,
                                    constant_sigma=False, initial_noise="sample", initial_noise_seed=0))
    res = Agent(ResidualFlowPolicy(base.policy), base.sampler)
    res.noise_head.load_state_dict(base.noise_head.state_dict())
    obs = base.policy.prepare_obs(torch.randn(5, 5, generator=torch.Generator().manual_seed(1)).numpy())
    x0 = torch.randn(5, base.policy.chunk_size, base.policy.padded_action_dim)
    a_base = base.act(obs, deterministic=True, x0=x0).action
    assert torch.equal(res.act(obs, deterministic=True, x0=x0).action, a_base)
    with torch.no_grad():
        res.policy.residual[-1].bias.fill_(0.25)
    shifted = res.act(obs, deterministic=True, x0=x0).action
    assert torch.allclose(shifted - a_base, torch.full_like(a_base, 0.25), atol=1e-5)
    one = res.act(obs[:1], deterministic=True, x0=x0[:1]).action               # a batch of one (evaluation)
    assert torch.allclose(one - a_base[:1], torch.full_like(one, 0.25), atol=1e-5)
    with torch.no_grad():
        s = res.act(obs, generator=torch.Generator().manual_seed(2))
        lp, _ = res.evaluate(obs, s.chain)
    assert torch.equal(lp.logp, s.logp)                      # ratio = 1 before an update


def test_training_moves_only_the_offset_and_the_noise_head(runs):
    base = load_file(str(load_agent(runs / "base")[2] / "model.safetensors"))
    agent, cfg, ck = load_agent(runs / "res")
    assert cfg["policy"]["type"] == "residual" and isinstance(agent.policy, ResidualFlowPolicy)
    trained = load_file(str(ck / "model.safetensors"))
    frozen = [k for k in base if k.startswith("policy.")]
    assert frozen and all(torch.equal(trained[k.replace("policy.", "policy.base.", 1)], base[k]) for k in frozen)
    assert trained["policy.residual.4.weight"].abs().sum() > 0  # zero at the start, trained since
    for row in read_metrics(runs / "res" / "metrics.jsonl"):
        assert row["ppo/pre_update_ratio_max_dev"] <= 1e-5
    assert main(["eval", str(runs / "res"), "--episodes", "2", "--parallel-envs", "2"]) == 0


def test_residual_needs_a_pretrained_policy_and_resumes_as_residual_only(runs, tmp_path):
    with pytest.raises(ConfigError, match="algorithm=residual-ppo"):
        from reinflow.rl.config import TrainConfig
        from reinflow.rl.trainer import train
        train(TrainConfig(env="Pendulum-v1", algorithm="residual", out=str(tmp_path / "x"), progress=False))
    assert main(["train", "--out", str(runs / "res"), "--resume", "--iterations", "4", "--algorithm", "chain-ppo",
                 "--no-progress"]) == 2
    assert main(["train", "--out", str(runs / "res"), "--resume", "--iterations", "4", "--no-progress"]) == 0
    agent, cfg, ck = load_agent(runs / "res")
    assert ck.name == "iter_000003" and isinstance(agent.policy, ResidualFlowPolicy)
    assert cfg["train"]["algorithm"] == "residual-ppo" and cfg["train"]["lr_actor"] == 1e-3


def _mlp_base() -> MLPFlowPolicy:
    torch.manual_seed(0)
    return MLPFlowPolicy(MLPPolicyConfig(obs_dim=5, action_dim=3, chunk_size=6, hidden=[16]))


@pytest.mark.parametrize("hidden", [[0], [True], [8, 0]])
def test_offset_net_widths_are_integers_from_1(hidden):
    with pytest.raises(ConfigError, match=r"residual hidden=\[.*\]: each width in \[1, "):
        ResidualFlowPolicy(_mlp_base(), hidden)


def test_a_one_unit_offset_net_is_accepted():
    res = ResidualFlowPolicy(_mlp_base(), [1])
    assert res.hidden == [1] and res.residual[0].out_features == 1


def test_the_offset_is_float32_in_a_float32_run_and_under_bf16_autocast():
    """The offset is computed in float32 whatever autocast is around it (docs/smolvla.md: in bf16 it
    rounded away next to the base's velocity); under bf16 it equals the float32 computation exactly."""
    from reinflow.rl.precision import autocast
    res = ResidualFlowPolicy(_mlp_base())
    with torch.no_grad():
        res.residual[-1].bias.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(0))
        res.residual[-1].weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(1))
        ctx = res.encode(res.prepare_obs(torch.randn(4, 5, generator=torch.Generator().manual_seed(2)).numpy()))
        plain = res.offset(ctx)
        with autocast("bf16", "cpu"):
            under = res.offset(ctx)
    assert plain.dtype == under.dtype == torch.float32 and plain.shape == (4, 6, 3)
    assert torch.equal(plain, under) and plain.abs().max() > 0
