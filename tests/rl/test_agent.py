"""``Agent``'s public surface beyond act/evaluate's shapes: the Gaussian dims its likelihood sums over,
the x_0 each ``initial_noise`` mode starts the chain from, and the checkpoint's sampler section."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from reinflow import ConfigError
from reinflow.flow.chain import seeded_x0
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig
from reinflow.rl.agent import Agent, SamplerConfig

A, PAD, H, K = 2, 3, 4, 2          # real action dims, padded dims P, chunk, denoise steps


def sampler(**kw) -> SamplerConfig:
    base = dict(act_steps=3, reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.1, sigma_hi=0.2,
                constant_sigma=False, noise_basis=0, initial_noise="sample", initial_noise_seed=0)
    return SamplerConfig(**{**base, **kw})


def agent(**kw) -> Agent:
    torch.manual_seed(0)
    pol = MLPFlowPolicy(MLPPolicyConfig(obs_dim=5, action_dim=A, chunk_size=H, denoise_steps=K, hidden=[16],
                                        pad_action_dim=PAD))
    return Agent(pol, sampler(**kw), critic_hidden=16)


def obs(batch: int, ag: Agent) -> torch.Tensor:
    return ag.policy.prepare_obs(np.random.default_rng(0).normal(size=(batch, 5)).astype(np.float32))


def test_num_dims_counts_real_dims_times_executed_steps_or_coefficients_times_k():
    """White noise: K x act_steps x A masked entries (padding and unexecuted steps excluded); a DCT basis
    of M coefficients: K x M x A. The likelihood act returns sums over the same number."""
    white, smooth = agent(), agent(noise_basis=2)
    assert white.num_dims == K * 3 * A == 12
    assert smooth.num_dims == K * 2 * A == 8
    for ag in (white, smooth):
        assert ag.act(obs(2, ag)).logprob.num_dims == ag.num_dims


def test_initial_noise_modes_start_every_chain_where_they_say():
    """fixed: every chain of every call starts at seeded_x0(H, P, seed); zero: at 0; sample: fresh draws."""
    fixed = agent(initial_noise="fixed", initial_noise_seed=7)
    x0 = seeded_x0(H, A + PAD, 7)
    for seed in (0, 1):
        res = fixed.act(obs(3, fixed), generator=torch.Generator().manual_seed(seed))
        assert res.chain.shape == (3, K + 1, H, A + PAD)
        assert all(torch.equal(res.chain[b, 0], x0) for b in range(3))
    zero = agent(initial_noise="zero")
    assert torch.equal(zero.act(obs(3, zero)).chain[:, 0], torch.zeros(3, H, A + PAD))
    drawn = agent().act(obs(3, fixed), generator=torch.Generator().manual_seed(0)).chain[:, 0]
    assert not torch.equal(drawn[0], drawn[1])


def test_sampler_section_round_trips_and_names_missing_and_unknown_fields():
    s = sampler(noise_basis=2, initial_noise="fixed", initial_noise_seed=3)
    assert SamplerConfig.from_dict(asdict(s), "ck/config.json") == s
    bad = {**asdict(s), "bogus": 1}
    del bad["sigma_lo"]
    with pytest.raises(ConfigError, match=r"^ck/config.json: sampler section lacks sigma_lo; has unknown bogus "
                                          r"\(every field the sampler needs is stored; none is guessed\)$"):
        SamplerConfig.from_dict(bad, "ck/config.json")
    with pytest.raises(ConfigError, match="has unknown bogus"):
        SamplerConfig.from_dict({**asdict(s), "bogus": 1}, "ck/config.json")


def test_an_explicit_x0_is_where_the_chain_starts_whatever_the_mode():
    for ag in (agent(), agent(initial_noise="fixed", initial_noise_seed=7), agent(initial_noise="zero")):
        x0 = torch.randn(2, H, A + PAD, generator=torch.Generator().manual_seed(3))
        assert torch.equal(ag.act(obs(2, ag), x0=x0).chain[:, 0], x0)


def test_the_critic_reads_detached_features_unless_it_shares_them():
    """By default the value's gradient stops at the policy's features (critic updates never move the actor);
    critic_shares_features=True lets it reach the encoder."""
    ag = agent()
    ag.value(ag.policy.encode(obs(3, ag))).sum().backward()
    assert all(p.grad is None for p in ag.policy.parameters())
    assert all(p.grad is not None for p in ag.critic.parameters())
    torch.manual_seed(0)
    shared = Agent(ag.policy, ag.sampler, critic_hidden=16, critic_shares_features=True)
    shared.value(shared.policy.encode(obs(3, shared))).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shared.policy.parameters())


def test_a_chain_ppo_update_trains_the_noise_head_with_the_policy_but_not_through_the_critic():
    """The actor's parameters are the policy's trainable ones and the learned noise head's: one iteration of
    chain-ppo (a real rollout, GAE, the update) moves both; the critic's are not among them."""
    from reinflow.envs.factory import env_spaces, make_vector_env
    from reinflow.rl.algorithms import algorithm_class
    from reinflow.rl.build import build_agent
    from reinflow.rl.config import TrainConfig
    from reinflow.rl.dist import DistInfo
    from reinflow.rl.seeding import env_generators, seeded_reset
    cfg = TrainConfig(env="Pendulum-v1", chunk_size=4, act_steps=2, denoise_steps=2, hidden=[16], parallel_envs=2,
                      rollout_steps=4, minibatch_size=4, update_epochs=2, iterations=1, out="unused",
                      algorithm="chain-ppo", lr_actor=1e-2, target_kl=None).resolved()
    torch.manual_seed(0)
    cls = algorithm_class(cfg.algorithm)
    ag = cls.prepare_agent(cfg, build_agent(cfg, *env_spaces(cfg.env)))
    alg = cls(cfg, ag, DistInfo(), torch.device("cpu"), "bootstrap")
    assert not {id(p) for p in ag.critic.parameters()} & {id(p) for p in ag.actor_parameters()}
    head = [p.detach().clone() for p in ag.noise_head.parameters()]
    policy = [p.detach().clone() for p in ag.policy.parameters()]
    envs = make_vector_env(cfg.env, cfg.parallel_envs, cfg.act_steps)
    try:
        alg.begin_iteration(0)
        exp, _ = alg.collect(envs, seeded_reset(envs, 0, 0, 0), 0, env_generators(0, 0, 0, cfg.parallel_envs))
        alg.update(exp, 0)
    finally:
        envs.close()
    assert any(not torch.equal(a, p) for a, p in zip(head, ag.noise_head.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(policy, ag.policy.parameters()))


def test_the_fixed_x0_is_derived_not_saved_and_train_puts_only_the_heads_in_training_mode():
    """fixed_x0 (like the DCT basis) follows the sampler config, so a checkpoint does not carry it; train()
    switches the noise head and critic to training mode while the base policy stays in eval mode."""
    ag = agent(initial_noise="fixed", initial_noise_seed=7)
    assert "fixed_x0" not in ag.state_dict() and "basis" not in agent(noise_basis=2).state_dict()
    ag.eval()
    assert ag.train() is ag and ag.noise_head.training and ag.critic.training and not ag.policy.training
