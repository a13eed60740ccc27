"""Closed-form checks of the one chain sampler / log-prob."""

import math

import pytest
import torch

from reinflow.flow.chain import chain_log_prob, per_dim_bound, sample_chain, transition
from reinflow.flow.noise import NoiseHead
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.agent import Agent, SamplerConfig


def make_agent(k=1, chunk=6, act=6, a_dim=3, pad=0, reduction="sum", direction="forward", lo=0.08, hi=0.16, m=0):
    torch.manual_seed(0)
    pol = MLPFlowPolicy(MLPPolicyConfig(obs_dim=5, action_dim=a_dim, chunk_size=chunk, denoise_steps=k,
                                        pad_action_dim=pad, hidden=[32, 32], time_direction=direction))
    return Agent(pol, SamplerConfig(act_steps=act, reduction=reduction, sigma_lo=lo, sigma_hi=hi, noise_basis=m,
                                    mask_executed=True, logprob_clamp=None,
                                    constant_sigma=False, initial_noise="sample", initial_noise_seed=0))


def obs_batch(agent, b=7):
    return agent.policy.prepare_obs(torch.randn(b, 5, generator=torch.Generator().manual_seed(1)).numpy())


def sample_and_check_ratio_one(agent, obs, **act_kwargs):
    """One sampled chain batch; asserts its log-prob recomputed on the same batch is bitwise the
    sampler's (ratio = 1 before an update). Returns the ActResult."""
    with torch.no_grad():
        res = agent.act(obs, **act_kwargs)
        lp, _ = agent.evaluate(obs, res.chain)
    assert torch.equal(lp.logp, res.logp)  # same batch -> bitwise identical
    return res


@pytest.mark.parametrize("k", [1, 2, 4, 10])
@pytest.mark.parametrize("reduction", ["sum", "mean", "per_step"])
def test_ratio_is_one_before_update(k, reduction):
    agent = make_agent(k=k, chunk=5, act=3, reduction=reduction, pad=2)
    obs = obs_batch(agent)
    with torch.no_grad():
        res = agent.act(obs)
        lp, _ = agent.evaluate(obs, res.chain)
    assert res.logp.shape == (7, 3 if reduction == "per_step" else 1)
    assert torch.equal(lp.logp, res.logp)  # same batch -> bitwise identical
    assert float((torch.exp(lp.logp - res.logp) - 1).abs().max()) <= 1e-5


def test_log_prob_matches_torch_normal_over_mask():
    agent = make_agent(k=3, chunk=4, act=2, a_dim=3, pad=2)
    obs = obs_batch(agent, 4)
    with torch.no_grad():
        res = agent.act(obs)
        ctx = agent.policy.encode(obs)
        expected = torch.zeros(4, dtype=torch.float64)
        for k in range(3):
            mu, sigma = transition(agent.policy, agent.noise_head, res.chain[:, k], k, ctx)
            d = torch.distributions.Normal(mu.double(), sigma.double()).log_prob(res.chain[:, k + 1].double())
            expected += d[:, :2, :3].sum((-1, -2))  # 2 executed steps x 3 real dims
    assert torch.allclose(res.logprob.total, expected, atol=1e-9)
    assert res.logprob.num_dims == 3 * 2 * 3
    # The initial-noise term is reported apart and never part of the ratio's log-prob.
    init = torch.distributions.Normal(0.0, 1.0).log_prob(res.chain[:, 0, :2, :3].double()).sum((-1, -2))
    assert torch.allclose(res.logprob.init_logp, init, atol=1e-9)


def test_padded_dims_excluded_change_num_dims():
    a = make_agent(chunk=5, act=5, a_dim=6, pad=0)
    b = make_agent(chunk=5, act=5, a_dim=6, pad=26)
    obs = obs_batch(a)
    with torch.no_grad():
        ra, rb = a.act(obs), b.act(obs)
    assert ra.logprob.num_dims == rb.logprob.num_dims == 5 * 6
    assert b.mask.shape == (5, 32) and int(b.mask.sum()) == 30
    c = make_agent(chunk=5, act=2, a_dim=6, pad=26)
    with torch.no_grad():
        assert c.act(obs).logprob.num_dims == 2 * 6


def test_per_step_terms_sum_to_total():
    agent = make_agent(k=2, chunk=6, act=4, reduction="per_step")
    with torch.no_grad():
        res = agent.act(obs_batch(agent))
    assert torch.allclose(res.logp.sum(-1), res.logprob.total, atol=1e-9)


def test_mean_reduction_and_clamp():
    agent = make_agent(reduction="mean")
    agent.sampler.logprob_clamp = 0.5
    with torch.no_grad():
        res = agent.act(obs_batch(agent))
    assert torch.allclose(res.logp[:, 0], res.logprob.per_dim.clamp(-0.5, 0.5))


@pytest.mark.parametrize("lo,hi", [(0.08, 0.16), (0.01, 1.0)])
def test_per_dim_logprob_never_exceeds_bound(lo, hi):
    agent = make_agent(k=2, lo=lo, hi=hi)
    with torch.no_grad():
        for p in agent.noise_head.parameters():
            p.fill_(50.0)  # drive sigma to a bound
        res = agent.act(obs_batch(agent, 32))
    assert res.logprob.bound == pytest.approx(-0.5 * math.log(2 * math.pi) - math.log(lo))
    assert float(res.logprob.per_dim.max()) <= per_dim_bound(lo)


def test_time_grid_is_the_policys_own():
    fwd, rev = make_agent(k=4), make_agent(k=4, direction="reverse")
    assert fwd.policy.time_grid() == ([0.0, 0.25, 0.5, 0.75], [0.25] * 4)
    assert rev.policy.time_grid() == ([1.0, 0.75, 0.5, 0.25], [-0.25] * 4)
    sample_and_check_ratio_one(rev, obs_batch(rev))


def test_deterministic_mode_is_the_ode():
    agent = make_agent(k=3)
    obs = obs_batch(agent)
    x0 = torch.randn(7, 6, 3)
    with torch.no_grad():
        a = agent.act(obs, deterministic=True, x0=x0)
        b = agent.act(obs, deterministic=True, x0=x0)
        ctx = agent.policy.encode(obs)
        x = x0
        for k in range(3):
            x, _ = transition(agent.policy, agent.noise_head, x, k, ctx)
    assert a.logprob is None and torch.equal(a.action, b.action) and torch.allclose(a.chain[:, -1], x)


def test_sampled_chain_has_the_learned_spread():
    """x_{k+1} - mu_k divided by sigma_k is standard normal."""
    agent = make_agent(k=1, chunk=50, act=50, a_dim=6)
    obs = obs_batch(agent, 64)
    with torch.no_grad():
        res = agent.act(obs)
        mu, sigma = transition(agent.policy, agent.noise_head, res.chain[:, 0], 0, agent.policy.encode(obs))
    z = (res.chain[:, 1] - mu) / sigma
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02


def test_agent_rejects_act_steps_beyond_chunk():
    """The Agent is where a sampler meets its policy (build_mask's one caller): it refuses the pair."""
    from dataclasses import replace

    from reinflow import ConfigError
    from reinflow.rl.agent import Agent
    agent = make_agent()
    with pytest.raises(ConfigError, match="act_steps=9: must be <= chunk_size=6"):
        Agent(agent.policy, replace(agent.sampler, act_steps=9, noise_basis=0))


def test_sample_chain_and_log_prob_share_head_bounds():
    agent = make_agent()
    head = NoiseHead(agent.policy.noise_feature_dim, 6, 3, per_step=False, sigma_lo=0.2, sigma_hi=0.4)
    obs = obs_batch(agent)
    with torch.no_grad():
        ctx = agent.policy.encode(obs)
        s = sample_chain(agent.policy, head, ctx, 7, agent.mask)
        lp = chain_log_prob(agent.policy, head, ctx, s.chain, agent.mask)
    assert torch.equal(s.logprob.logp, lp.logp) and s.logprob.bound == pytest.approx(per_dim_bound(0.2))


@pytest.mark.parametrize("m", [0, 2])
def test_entropy_and_sigma_mean_are_the_gaussians(m):
    """Entropy per dim = mean over the masked dims of log sigma + 1/2 + 1/2 log(2 pi); sigma_mean their sigma,
    with white noise (m = 0) and with a noise basis (m = 2 coefficients)."""
    agent = make_agent(k=2, chunk=5, act=3, pad=1, m=m)
    obs = obs_batch(agent)
    with torch.no_grad():
        res = agent.act(obs, generator=torch.Generator().manual_seed(0))
        ctx = agent.policy.encode(obs)
        rows = m if m else 3                                  # coefficients, or executed steps
        log_s, sig = [], []
        for k in range(2):
            _, sigma = transition(agent.policy, agent.noise_head, res.chain[:, k], k, ctx, agent.basis)
            s = sigma[:, :rows, :3].double()                  # the real action dims
            log_s.append(s.log().mean((-1, -2)))
            sig.append(s.mean())
    expected = torch.stack(log_s).mean(0) + 0.5 + 0.5 * math.log(2 * math.pi)
    assert torch.allclose(res.logprob.entropy, expected)
    assert float(res.logprob.sigma_mean) == pytest.approx(float(torch.stack(sig).mean()))
