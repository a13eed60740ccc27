"""The smooth (DCT) noise basis: closed-form checks of its sampler and likelihood."""

import math

import pytest
import torch

from reinflow import ConfigError
from reinflow.flow.chain import dct_basis, transition
from reinflow.rl.agent import SamplerConfig
from test_chain import make_agent as chain_agent
from test_chain import obs_batch, sample_and_check_ratio_one


def make_agent(**kw):
    """test_chain's agent with smooth noise (M = 4 of 8 executed steps of a 10-step chunk, 2 padded dims)."""
    return chain_agent(**{"chunk": 10, "act": 8, "pad": 2, "m": 4, **kw})


def test_dct_basis_is_orthonormal_and_zero_past_executed_steps():
    b = dct_basis(chunk_size=12, act_steps=9, components=4)
    assert b.shape == (12, 4)
    assert torch.allclose(b.T @ b, torch.eye(4, dtype=torch.float64), atol=1e-12)
    assert torch.all(b[9:] == 0)
    assert torch.allclose(b[:9, 0], torch.full((9,), 1 / 3, dtype=torch.float64))  # a constant offset
    with pytest.raises(ConfigError, match="noise_basis=10"):
        dct_basis(12, 9, 10)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ratio_is_one_before_update(k, reduction):
    agent = make_agent(k=k, reduction=reduction)
    sample_and_check_ratio_one(agent, obs_batch(agent))


def test_noise_is_smooth_and_only_on_executed_steps():
    agent = make_agent(act=8, m=2)
    obs = obs_batch(agent)
    with torch.no_grad():
        res = agent.act(obs)
        mu, _ = transition(agent.policy, agent.noise_head, res.chain[:, 0], 0, agent.policy.encode(obs),
                           agent.basis)
    noise = (res.chain[:, 1] - mu).double()
    assert noise[:, 8:].abs().max() < 1e-6                         # unexecuted steps: no noise
    b = agent.basis.double()
    residual = noise - torch.einsum("hm,bmp->bhp", b, torch.einsum("hm,bhp->bmp", b, noise))
    assert residual.abs().max() < 1e-5                             # inside span(basis)
    assert noise[:, :8].abs().max() > 1e-3


def test_log_prob_is_the_coefficient_density():
    """log pi = sum over K, M coefficients and the real action dims of log N(z; 0, sigma^2)."""
    agent = make_agent(k=2, chunk=6, act=5, a_dim=3, pad=2, m=3)
    obs = obs_batch(agent, 4)
    with torch.no_grad():
        res = agent.act(obs)
        ctx = agent.policy.encode(obs)
        expected = torch.zeros(4, dtype=torch.float64)
        for k in range(2):
            mu, sigma = transition(agent.policy, agent.noise_head, res.chain[:, k], k, ctx, agent.basis)
            assert sigma.shape == (4, 3, 5)                         # one sigma per coefficient
            z = torch.einsum("hm,bhp->bmp", agent.basis.double(), res.chain[:, k + 1].double() - mu.double())
            d = torch.distributions.Normal(torch.zeros_like(z), sigma.double()).log_prob(z)
            expected += d[:, :, :3].sum((-1, -2))                   # padded dims never count
    assert torch.allclose(res.logprob.total, expected, atol=1e-9)
    assert res.logprob.num_dims == agent.num_dims == 2 * 3 * 3
    assert float(res.logprob.per_dim.max()) <= -0.5 * math.log(2 * math.pi) - math.log(0.08)


def test_sigma_stays_inside_bounds_after_large_head_weights():
    agent = make_agent(lo=0.1, hi=0.3)
    with torch.no_grad():
        for p in agent.noise_head.parameters():
            p.mul_(0).add_(50.0)
        res = agent.act(obs_batch(agent))
    assert 0.1 - 1e-7 <= float(res.logprob.sigma_mean) <= 0.3 + 1e-7


def test_per_step_reduction_is_refused_with_a_basis():
    with pytest.raises(ConfigError, match="per_step"):
        SamplerConfig(act_steps=8, reduction="per_step", noise_basis=4,
                      mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                      constant_sigma=False, initial_noise="sample", initial_noise_seed=0)
    with pytest.raises(ConfigError, match="noise_basis=9"):
        SamplerConfig(act_steps=8, noise_basis=9,
                      reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                      constant_sigma=False, initial_noise="sample", initial_noise_seed=0)


def test_default_basis_fits_a_chunk_shorter_than_it(tmp_path):
    """The default M = 4 on a 2-step chunk: capped at the executed steps (a complete basis), not an error."""
    from reinflow.cli import main
    from reinflow.report.logger import read_metrics
    out = tmp_path / "short"
    assert main(["train", "--env", "Pendulum-v1", "--chunk-size", "2", "--iterations", "1", "--parallel-envs", "2",
                 "--rollout-steps", "4", "--hidden", "16", "--eval-episodes", "1", "--no-progress",
                 "--no-tensorboard", "--out", str(out)]) == 0
    assert read_metrics(out / "metrics.jsonl")[0]["logprob/num_dims"] == 2 * 1   # 2 coefficients x 1 joint


@pytest.mark.parametrize("initial", ["zero", "fixed"])
def test_zero_or_fixed_initial_noise_gives_one_x0_and_keeps_ratio_one(initial):
    """initial_noise zero / fixed: every chain starts at the same x_0 in rollout and evaluation, so
    the deterministic action no longer depends on the generator, and the stored chains still give
    ratio = 1. ``fixed`` is a seeded N(0, I) draw (in the training distribution; zero is not)."""
    from reinflow.rl.agent import Agent
    base = make_agent(k=2)
    sampler = SamplerConfig(**{**base.sampler_dict(), "initial_noise": initial, "initial_noise_seed": 5})
    agent = Agent(base.policy, sampler)
    obs = obs_batch(agent)
    det = [agent.act(obs, deterministic=True, generator=torch.Generator().manual_seed(s)).action for s in (1, 2)]
    assert torch.equal(det[0], det[1])
    res = sample_and_check_ratio_one(agent, obs, generator=torch.Generator().manual_seed(3))
    x0 = torch.zeros_like(res.chain[0, 0]) if initial == "zero" else \
        torch.randn(res.chain.shape[2:], generator=torch.Generator().manual_seed(5))
    assert torch.equal(res.chain[:, 0], x0.expand_as(res.chain[:, 0]))
    assert not torch.equal(res.action, det[0])          # the injected noise still explores
    acts = [base.act(obs, deterministic=True, generator=torch.Generator().manual_seed(s)).action for s in (1, 2)]
    assert not torch.equal(acts[0], acts[1])            # the default draws x_0: the ODE action varies with it
    with pytest.raises(ConfigError, match="initial_noise='mean'"):
        SamplerConfig(act_steps=4, initial_noise="mean",
                      reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                      constant_sigma=False, noise_basis=0, initial_noise_seed=0)


def test_train_flags_reach_the_sampler_and_a_bad_seed_is_refused():
    from reinflow.rl.build import sampler_config
    from reinflow.rl.config import TrainConfig
    s = sampler_config(TrainConfig(initial_noise="fixed", initial_noise_seed=3), chunk=10, lo=0.1, hi=0.2)
    assert (s.initial_noise, s.initial_noise_seed) == ("fixed", 3)
    with pytest.raises(ConfigError, match="initial_noise_seed=-1"):
        TrainConfig(initial_noise_seed=-1)
