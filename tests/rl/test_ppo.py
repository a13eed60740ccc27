"""PPO's maths against hand computations (``ppo_losses``, ``advantage_stats``, the KL early stop), and
the two invariants of docs/design.md §5 firing inside a real update: invariant 1 (ratio = 1 before any
optimizer step, ``pre_update_check``) and invariant 2 (the per-dimension log-prob bound)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from reinflow import InvariantError
from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.flow.chain import check_per_dim_bound, per_dim_bound
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.algorithms.ppo import (Batch, advantage_stats, cat_obs, explained_variance, index_obs, lr_factor,
                                        ppo_losses, ppo_update, pre_update_check)
from reinflow.rl.build import build_agent
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import DistInfo
from reinflow.rl.seeding import env_generators, seeded_reset

T = torch.tensor


def d(x):
    return torch.tensor(x, dtype=torch.float64)


# --- the loss, by hand ----------------------------------------------------------------------------------

def test_clipped_policy_loss_clip_fraction_and_kl_by_hand():
    """Four samples, eps = 0.2: ratio 1.5 with A > 0 is clipped at 1.2, ratio 0.5 with A > 0 is not
    (pessimistic min), ratio 0.5 with A < 0 is clipped at 0.8, ratio 1.1 is inside."""
    ratio = [1.5, 0.5, 0.5, 1.1]
    adv = [2.0, 1.0, -1.0, -3.0]
    old = d([[0.3], [-1.0], [2.0], [0.0]])
    new = old + torch.log(d(ratio))[:, None]
    w = T([1.0, 1.0, 1.0, 1.0])
    out = ppo_losses(new, old, T(adv), T([0.0] * 4), T([0.0] * 4), d([0.0] * 4), w, 0.2)
    # per sample: -min(r A, clip(r) A) = max(-r A, -clip(r) A)
    by_hand = [-min(1.5 * 2, 1.2 * 2), -min(0.5 * 1, 0.8 * 1), -min(0.5 * -1, 0.8 * -1), -min(1.1 * -3, 1.1 * -3)]
    assert float(out.pg_loss) == pytest.approx(sum(by_hand) / 4)              # (-2.4 - 0.5 + 0.8 + 3.3) / 4
    assert out.clip_fraction == pytest.approx(3 / 4)                           # |r - 1| > 0.2: 1.5, 0.5, 0.5
    kl = [(r - 1) - math.log(r) for r in ratio]
    assert out.approx_kl == pytest.approx(sum(kl) / 4)
    assert torch.allclose(out.ratio, d(ratio)[:, None])


def test_policy_gradient_points_up_the_advantage():
    """d loss / d logp = -A * r inside the clip range: minimising the loss raises logp where A > 0."""
    old = d([[0.0], [0.0]])
    new = old.clone().requires_grad_(True)
    out = ppo_losses(new, old, T([1.0, -2.0]), T([0.0, 0.0]), T([0.0, 0.0]), d([0.0, 0.0]), T([1.0, 1.0]), 0.2)
    out.pg_loss.backward()
    assert torch.allclose(new.grad, d([[-1.0 / 2], [2.0 / 2]]))


def test_value_loss_entropy_and_weights_by_hand():
    """Weight 0 (a dropped episode's decision) takes a sample out of every mean; the value loss is
    0.5 * weighted mean squared error and its gradient pulls V towards the return."""
    value = T([1.0, 2.0, 5.0]).requires_grad_(True)
    ret = T([0.0, 4.0, -100.0])
    w = T([1.0, 1.0, 0.0])
    z = d([[0.0], [0.0], [0.0]])
    out = ppo_losses(z, z, T([1.0, 1.0, 50.0]), value, ret, d([0.5, 1.5, 99.0]), w, 0.2)
    assert out.value_loss.item() == pytest.approx(0.5 * (1.0**2 + 2.0**2) / 2)
    assert float(out.entropy) == pytest.approx(1.0)
    assert float(out.pg_loss) == pytest.approx(-1.0)                           # ratio 1: -mean(A) of the kept two
    out.value_loss.backward()
    assert torch.allclose(value.grad, T([(1.0 - 0.0) / 2, (2.0 - 4.0) / 2, 0.0]))


def test_per_step_ratios_share_the_chunks_advantage():
    old = d([[0.0, 0.0]])
    new = d([[math.log(1.5), 0.0]])
    out = ppo_losses(new, old, T([1.0]), T([0.0]), T([0.0]), d([0.0]), T([1.0]), 0.2)
    assert float(out.pg_loss) == pytest.approx(-(1.2 + 1.0) / 2)
    assert out.clip_fraction == pytest.approx(0.5)


def test_advantage_stats_weighted_mean_and_unbiased_std():
    adv = T([1.0, 3.0, 8.0, 1000.0])
    mean, std = advantage_stats(adv, T([1.0, 1.0, 1.0, 0.0]), DistInfo())
    assert mean == pytest.approx(4.0)
    assert std == pytest.approx(float(np.std([1.0, 3.0, 8.0], ddof=1)))      # sqrt(13)
    assert advantage_stats(T([2.0]), T([1.0]), DistInfo()) == (pytest.approx(2.0), 0.0)


# --- a real update on Pendulum ----------------------------------------------------------------------------

ENV = "Pendulum-v1"


def setup(**kw):
    """A chain-ppo algorithm over a small MLP flow policy and one collected rollout."""
    cfg = TrainConfig(**{**dict(env=ENV, chunk_size=4, act_steps=2, denoise_steps=2, hidden=[16, 16], parallel_envs=2,
                                rollout_steps=4, minibatch_size=4, update_epochs=3, iterations=1, out="unused",
                                algorithm="chain-ppo", lr_actor=1e-2), **kw}).resolved()
    torch.manual_seed(0)
    cls = algorithm_class(cfg.algorithm)
    agent = cls.prepare_agent(cfg, build_agent(cfg, *env_spaces(ENV)))
    alg = cls(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap")
    envs = make_vector_env(ENV, cfg.parallel_envs, cfg.act_steps)
    alg.begin_iteration(0)
    exp, _ = alg.collect(envs, seeded_reset(envs, 0, 0, 0), 0, env_generators(0, 0, 0, cfg.parallel_envs))
    envs.close()
    return cfg, alg, exp


def test_a_real_update_passes_both_invariants():
    cfg, alg, exp = setup()
    m = alg.update(exp, 0)
    assert m["ppo/pre_update_ratio_max_dev"] <= 1e-5
    assert m["logprob/per_dimension_max"] <= per_dim_bound(cfg.sigma_min)
    assert m["ppo/epochs_run"] >= 1


def test_invariant_1_fires_when_sigma_bounds_change_between_rollout_and_update():
    _, alg, exp = setup()
    alg.agent.set_sigma_bounds(0.2, 0.3)                   # one of the causes the message names
    with pytest.raises(InvariantError, match=r"pre_update_ratio_max_dev = .* > 1e-05 before any optimizer step"):
        alg.update(exp, 0)


def test_invariant_1_tolerance_is_1e_5():
    _, alg, exp = setup()
    roll = exp.data
    obs, chain = roll.obs[0], roll.chains[0]
    assert pre_update_check(alg.agent, obs, chain, roll.logp[0]) <= 1e-9
    assert pre_update_check(alg.agent, obs, chain, roll.logp[0] - 5e-6) == pytest.approx(5e-6, rel=1e-3)
    with pytest.raises(InvariantError, match="pre_update_ratio_max_dev"):
        pre_update_check(alg.agent, obs, chain, roll.logp[0] - 2e-5)       # ratio 1 + 2e-5
    one_row = roll.logp[0].clone()
    one_row[1] -= 2e-5                                                      # a single env's chain shifted
    with pytest.raises(InvariantError, match="pre_update_ratio_max_dev"):
        pre_update_check(alg.agent, obs, chain, one_row)                    # the worst row decides, not the best


def test_invariant_2_fires_when_sigma_escapes_its_lower_bound():
    """A noise head whose upper bound fell below the lower one returns sigma = 0.01 < sigma_lo: the
    rollout's per-dimension log-prob then exceeds -0.5 log(2 pi) - log(sigma_lo)."""
    cfg = TrainConfig(env=ENV, chunk_size=4, act_steps=2, denoise_steps=2, hidden=[16, 16], parallel_envs=2,
                      rollout_steps=2, out="unused", algorithm="chain-ppo").resolved()
    torch.manual_seed(0)
    cls = algorithm_class("chain-ppo")
    agent = cls.prepare_agent(cfg, build_agent(cfg, *env_spaces(ENV)))
    alg = cls(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap")
    alg.begin_iteration(0)
    agent.noise_head.set_bounds(agent.noise_head.bounds[0], 0.01)   # hi below lo: sigma = 0.01 < sigma_lo
    envs = make_vector_env(ENV, 2, 2)
    with pytest.raises(InvariantError, match=r"logprob/per_dimension = .* \(rollout\) exceeds its bound"):
        alg.collect(envs, seeded_reset(envs, 0, 0, 0), 0, env_generators(0, 0, 0, 2))
    envs.close()


def test_check_per_dim_bound_by_hand():
    bound = per_dim_bound(0.16)
    assert bound == pytest.approx(-0.5 * math.log(2 * math.pi) - math.log(0.16))
    check_per_dim_bound(bound, bound, 0.16, "update")                       # at the bound: a Gaussian at its mean
    with pytest.raises(InvariantError, match=r"\(update\) exceeds its bound"):
        check_per_dim_bound(bound + 1e-6, bound, 0.16, "update")


def _batch(exp) -> Batch:
    roll = exp.data
    n = roll.chains.shape[0] * roll.chains.shape[1]
    g = torch.Generator().manual_seed(0)
    return Batch(obs=torch.cat(roll.obs), chains=roll.chains.flatten(0, 1), logp=roll.logp.flatten(0, 1),
                 advantages=torch.randn(n, generator=g), returns=torch.randn(n, generator=g),
                 values=roll.values.flatten(), weights=torch.ones(n))


def test_kl_early_stop_after_the_step_that_crosses_the_target():
    cfg, alg, exp = setup()
    batch = _batch(exp)                                     # 8 decisions, minibatch 4: 2 minibatches per epoch
    args = (alg.agent, alg.actor_opt, alg.critic_opt, batch)
    stopped = ppo_update(*args, replace(cfg, target_kl=1e-12), True, torch.Generator().manual_seed(0))
    assert stopped["ppo/kl_early_stop"] == 1.0 and stopped["ppo/epochs_run"] == 1.0
    assert stopped["ppo/post_update_kl"] > 1e-12
    # it stopped after the first minibatch: its KL after that step, by hand, is the one reported
    idx = torch.randperm(8, generator=torch.Generator().manual_seed(0))[:4]
    with torch.no_grad():
        lr = alg.agent.evaluate(batch.obs[idx], batch.chains[idx])[0].logp - batch.logp[idx]
    assert stopped["ppo/post_update_kl"] == pytest.approx(float(((lr.exp() - 1) - lr).mean()), rel=1e-6)
    assert stopped["ppo/ratio_max"] >= float(lr.exp().max()) and stopped["ppo/ratio_min"] <= float(lr.exp().min())
    assert stopped["ppo/post_update_clip_fraction"] == float(((lr.exp() - 1).abs() > cfg.clip_epsilon).double().mean())
    _, alg2, exp2 = setup()
    full = ppo_update(alg2.agent, alg2.actor_opt, alg2.critic_opt, _batch(exp2), replace(cfg, target_kl=None), True,
                      torch.Generator().manual_seed(0))
    assert full["ppo/kl_early_stop"] == 0.0 and full["ppo/epochs_run"] == 3.0
    _, alg3, exp3 = setup()
    loose = ppo_update(alg3.agent, alg3.actor_opt, alg3.critic_opt, _batch(exp3), replace(cfg, target_kl=1e6), True,
                       torch.Generator().manual_seed(0))
    assert loose["ppo/kl_early_stop"] == 0.0 and loose["ppo/epochs_run"] == 3.0 and loose["ppo/post_update_kl"] > 0


def test_critic_only_iterations_leave_the_actor_unchanged():
    cfg, alg, exp = setup()
    before = [p.detach().clone() for p in alg.agent.actor_parameters()]
    critic = [p.detach().clone() for p in alg.agent.critic_parameters()]
    m = ppo_update(alg.agent, alg.actor_opt, alg.critic_opt, _batch(exp), cfg, False, torch.Generator().manual_seed(0))
    assert m["gradients/policy_norm"] == 0.0 and m["gradients/critic_norm"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, alg.agent.actor_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic, alg.agent.critic_parameters()))


def test_reported_ratio_range_is_the_smallest_and_largest_ratio_of_every_minibatch():
    """A critic-only update leaves the policy as it is, so each row's ratio is exp(delta) for an old log-prob
    shifted by -delta (|delta| < 1e-5: invariant 1's bound on the first minibatch): the reported range
    is exp(min delta) .. exp(max delta) over all rows and epochs, to the ~2e-7 nats by which the update's
    minibatch shape moves a float32 log-prob."""
    cfg, alg, exp = setup()
    batch = _batch(exp)
    delta = torch.linspace(-8e-6, 8e-6, batch.logp.shape[0], dtype=batch.logp.dtype)[:, None]
    batch.logp = batch.logp - delta
    m = ppo_update(alg.agent, alg.actor_opt, alg.critic_opt, batch, cfg, False, torch.Generator().manual_seed(0))
    assert m["ppo/ratio_min"] == pytest.approx(math.exp(-8e-6), abs=1e-6)
    assert m["ppo/ratio_max"] == pytest.approx(math.exp(8e-6), abs=1e-6)


def test_the_w2_term_is_the_ode_action_distance_from_the_stored_x0_by_hand():
    """One minibatch of zero advantages and no entropy bonus: the actor's whole gradient is bc_coef times
    that of mean_b sum_masked (ODE(x_0) - ODE_ref(x_0))^2 / mask.sum(), x_0 the chain's first state."""
    import copy
    cfg, alg, exp = setup(bc_coef=0.5, target_kl=None, minibatch_size=8, update_epochs=1)
    with torch.no_grad():
        for p in alg.agent.policy.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    batch = _batch(exp)
    batch.advantages = torch.zeros_like(batch.advantages)
    with torch.no_grad():
        batch.logp = alg.agent.evaluate(batch.obs, batch.chains)[0].logp
    mine = copy.deepcopy(alg.agent)
    cur = mine.act(batch.obs, deterministic=True, x0=batch.chains[:, 0]).chain[:, -1]
    with torch.no_grad():
        ref = alg.ref.act(batch.obs, deterministic=True, x0=batch.chains[:, 0]).chain[:, -1]
    m = mine.mask.float()
    w2 = ((cur - ref) ** 2 * m).sum((-1, -2)).mean() / m.sum()
    grads = torch.autograd.grad(0.5 * w2, mine.actor_parameters(), allow_unused=True)
    by_hand = math.sqrt(sum(float((g ** 2).sum()) for g in grads if g is not None))
    out = ppo_update(alg.agent, alg.actor_opt, alg.critic_opt, batch, cfg, True, torch.Generator().manual_seed(0),
                     alg.ref)
    assert by_hand > 0 and out["gradients/policy_norm"] == pytest.approx(by_hand, rel=1e-4)


def test_collect_reports_the_mean_old_log_prob_of_a_decision():
    """logprob/old_mean: the mean over decisions (steps x envs) of each decision's log-prob summed over its
    ratio terms (per_step: one per executed chunk step)."""
    for reduction in ("sum", "per_step"):
        _, _, exp = setup(logprob_reduction=reduction, noise_basis=0)
        logp = exp.data.logp                                            # [T, N, S]
        rows = [float(logp[t, i].sum()) for t in range(logp.shape[0]) for i in range(logp.shape[1])]
        assert exp.metrics["logprob/old_mean"] == pytest.approx(sum(rows) / len(rows), rel=1e-9)


# --- schedules and diagnostics ------------------------------------------------------------------------------

def test_lr_factor_warmup_then_cosine_to_its_floor():
    cos = TrainConfig(iterations=11, lr_warmup_iters=0, lr_schedule="cosine", lr_min_frac=0.1)
    assert [round(lr_factor(cos, it), 6) for it in (0, 5, 10, 20)] == [1.0, 0.55, 0.1, 0.1]
    warm = replace(cos, lr_warmup_iters=2)                  # (it + 1) / (warmup + 1), then the cosine from 1
    assert [lr_factor(warm, it) for it in (0, 1, 2)] == [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    assert lr_factor(warm, 10) == pytest.approx(0.1)
    assert lr_factor(replace(warm, lr_schedule="constant"), 7) == 1.0


def test_explained_variance_by_hand():
    target = T([1.0, 2.0, 3.0, 6.0])
    assert explained_variance(target, target) == 1.0
    assert explained_variance(torch.full((4,), 3.0), target) == pytest.approx(0.0)
    assert explained_variance(target + 1.0, target) == pytest.approx(1.0)          # a constant offset is explained
    pred = T([0.0, 0.0, 0.0, 3.0])      # residuals 1, 2, 3, 3: var 11/12; var(target) 14/3 (both unbiased)
    assert explained_variance(pred, target) == pytest.approx(1 - (11 / 12) / (14 / 3))
    assert math.isnan(explained_variance(target, torch.ones(4)))


def test_begin_iteration_applies_the_schedules():
    cfg = TrainConfig(env=ENV, chunk_size=4, act_steps=2, hidden=[16], iterations=11, out="unused", algorithm="chain-ppo",
                      lr_actor=1e-3, lr_critic=2e-3, noise_schedule="decay", sigma_max_final=0.2, noise_hold_frac=0.0).resolved()
    cls = algorithm_class("chain-ppo")
    agent = cls.prepare_agent(cfg, build_agent(cfg, *env_spaces(ENV)))
    alg = cls(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap")
    m = alg.begin_iteration(5)
    lo, hi = cfg.schedule().bounds_at(5, 11)
    assert hi < 0.32 and (m["noise/sigma_lo"], m["noise/sigma_hi"]) == (lo, hi)
    assert (agent.sampler.sigma_lo, agent.sampler.sigma_hi) == (lo, hi) and float(agent.noise_head.sigma_hi) == pytest.approx(hi)
    assert m["lr/actor"] == pytest.approx(1e-3 * lr_factor(cfg, 5)) and m["lr/critic"] == pytest.approx(2e-3 * lr_factor(cfg, 5))


def test_cat_and_index_observations_of_every_kind():
    idx = torch.tensor([2, 0])
    assert torch.equal(index_obs(cat_obs([T([[1.0], [2.0]]), T([[3.0]])]), idx), T([[3.0], [1.0]]))
    assert torch.equal(cat_obs([T([[1.0]])]), T([[1.0]]))                          # one rollout step
    d2 = cat_obs([{"a": T([1.0]), "b": ["x"]}, {"a": T([2.0, 3.0]), "b": ["y", "z"]}])
    out = index_obs(d2, idx)
    assert torch.equal(out["a"], T([3.0, 1.0])) and out["b"] == ["z", "x"]


def _updated_params(advantages, **kw):
    cfg, alg, exp = setup(**kw)
    batch = _batch(exp)
    batch.advantages = advantages
    ppo_update(alg.agent, alg.actor_opt, alg.critic_opt, batch, cfg, True, torch.Generator().manual_seed(0))
    return alg


def test_normalised_advantages_make_the_update_blind_to_their_scale_and_shift():
    adv = torch.randn(8, generator=torch.Generator().manual_seed(3))
    a = _updated_params(adv, target_kl=None)
    b = _updated_params(10.0 * adv + 3.0, target_kl=None)
    for p, q in zip(a.agent.actor_parameters(), b.agent.actor_parameters()):
        assert torch.allclose(p, q, atol=1e-5)
    c = _updated_params(10.0 * adv + 3.0, target_kl=None, norm_adv=False)     # without it the update differs
    assert any(not torch.allclose(p, q, atol=1e-5) for p, q in zip(a.agent.actor_parameters(), c.agent.actor_parameters()))


def test_the_w2_regulariser_pulls_the_policy_back_to_its_start():
    """--bc-coef: with zero advantages only the W2 term moves the actor, towards the starting policy."""
    def distance(alg, obs, x0):
        cur = alg.agent.act(obs, deterministic=True, x0=x0).chain[:, -1]
        ref = alg.ref.act(obs, deterministic=True, x0=x0).chain[:, -1]
        return float((((cur - ref) ** 2) * alg.agent.mask).sum())           # the executed steps it covers
    cfg, alg, exp = setup(bc_coef=0.5, target_kl=None, lr_actor=2e-3)
    with torch.no_grad():
        for p in alg.agent.policy.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    batch = _batch(exp)
    batch.advantages = torch.zeros_like(batch.advantages)
    with torch.no_grad():   # the moved policy's own log-probs: invariant 1 holds before the update
        batch.logp = alg.agent.evaluate(batch.obs, batch.chains)[0].logp
    with torch.no_grad():
        before = distance(alg, batch.obs, batch.chains[:, 0])
    ppo_update(alg.agent, alg.actor_opt, alg.critic_opt, batch, cfg, True, torch.Generator().manual_seed(0), alg.ref)
    with torch.no_grad():
        after = distance(alg, batch.obs, batch.chains[:, 0])
    assert before > 0 and after < 0.5 * before, (before, after)
