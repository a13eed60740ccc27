"""SAC over a latent action: the squashed log-density, the soft target, Polyak averaging and the
temperature against closed forms, a state round trip, and a bandit it must solve."""

import copy
import json
import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from reinflow import ConfigError
from reinflow.policies.dsrl import NoiseActor, tanh_gaussian_log_prob
from reinflow.rl.config import TrainConfig
from reinflow.rl.sac import SAC, soft_target
from reinflow.rl.trainer_state import STRUCTURE, TENSORS, _decode, write_trainer_state


def settings(**kw) -> TrainConfig:
    """SAC's settings as the dsrl run has them (one lr; the target entropy per latent dim)."""
    base = dict(gamma=0.9, dsrl_tau=0.1, lr_actor=1e-3, dsrl_target_entropy=0.0, dsrl_init_alpha=0.5, dsrl_hidden=[32, 32])
    return TrainConfig(**{**base, **kw})


def batch(n=64, f=4, latent=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"feat": torch.randn(n, f, generator=g), "latent": torch.rand(n, latent, generator=g) * 2 - 1,
            "reward": torch.randn(n, generator=g), "next_feat": torch.randn(n, f, generator=g),
            "done": (torch.rand(n, generator=g) < 0.3).float()}


def test_squashed_gaussian_log_density_is_torchs_tanh_transform():
    torch.manual_seed(0)
    mean, log_std = torch.randn(7, 5), torch.randn(7, 5).clamp(-2, 1)
    u = mean + log_std.exp() * torch.randn(7, 5)
    ref = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()]).log_prob(torch.tanh(u)).sum(-1)
    ours = tanh_gaussian_log_prob(u, mean, log_std)
    assert torch.allclose(ours, ref, atol=1e-4)
    big = torch.full((1, 1), 30.0)   # far in the tail tanh(u) == 1 in float32; the stable form stays finite
    assert torch.isfinite(tanh_gaussian_log_prob(big, torch.zeros(1, 1), torch.zeros(1, 1))).all()


def test_soft_target_by_hand():
    y = soft_target(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), 0.9, torch.tensor([3.0, 5.0]),
                    torch.tensor([4.0, -1.0]), torch.tensor([-2.0, 7.0]), 0.5)
    assert torch.allclose(y, torch.tensor([1.0 + 0.9 * (3.0 + 1.0), 2.0]))   # min(Q1, Q2) - alpha logp; done: r


def test_one_update_critic_loss_polyak_and_temperature_match_their_formulas():
    torch.manual_seed(0)
    actor = NoiseActor(4, 3, [16], bound=1.5)
    sac = SAC(actor, 4, settings())
    b = batch()
    q_before, qt_before = copy.deepcopy(sac.q), copy.deepcopy(sac.q_target)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():                                  # the same draws the update will make
        c2, lp2 = actor.sample(b["next_feat"], generator=torch.Generator().manual_seed(5))
        y = soft_target(b["reward"], b["done"], 0.9, *qt_before(b["next_feat"], c2), lp2, 0.5)
        q1, q2 = q_before(b["feat"], b["latent"])
        expected = 0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean()
    m = sac.update(b, gen)
    assert m["q_loss"] == pytest.approx(float(expected), rel=1e-5)
    for p0, pt0, p1, pt1 in zip(q_before.parameters(), qt_before.parameters(), sac.q.parameters(),
                                sac.q_target.parameters()):
        assert torch.allclose(pt1, 0.9 * pt0 + 0.1 * p1, atol=1e-6)       # Polyak with tau = 0.1
    # entropy above its target -> the temperature goes down (and below it -> up)
    assert (m["entropy"] > 0.0) == (sac.alpha < 0.5)


def test_reported_gradient_norms_are_the_critic_and_actor_gradients_by_hand():
    """critic_grad_norm: ||d q_loss / d theta_Q|| before the critic step; actor_grad_norm: ||d actor_loss /
    d theta_pi|| with the critics after their step and alpha = init_alpha (the update's order)."""
    torch.manual_seed(0)
    actor = NoiseActor(4, 3, [16], bound=1.5)
    sac = SAC(actor, 4, settings())
    b = batch()
    ref = copy.deepcopy(sac)                                # the same weights and optimizers, updated by hand
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        c2, lp2 = ref.actor.sample(b["next_feat"], generator=g)
        y = soft_target(b["reward"], b["done"], 0.9, *ref.q_target(b["next_feat"], c2), lp2, 0.5)
    q1, q2 = ref.q(b["feat"], b["latent"])
    q_params = list(ref.q.parameters())
    grads = torch.autograd.grad(0.5 * ((q1 - y) ** 2).mean() + 0.5 * ((q2 - y) ** 2).mean(), q_params)
    critic_norm = math.sqrt(sum(float((gr ** 2).sum()) for gr in grads))
    for p, gr in zip(q_params, grads):
        p.grad = gr
    ref.critic_opt.step()
    c, logp = ref.actor.sample(b["feat"], generator=g)
    actor_loss = (0.5 * logp - torch.minimum(*ref.q(b["feat"], c))).mean()
    a_grads = torch.autograd.grad(actor_loss, list(ref.actor.parameters()))
    actor_norm = math.sqrt(sum(float((gr ** 2).sum()) for gr in a_grads))
    m = sac.update(b, torch.Generator().manual_seed(5))
    assert critic_norm > 0 and actor_norm > 0
    assert m["critic_grad_norm"] == pytest.approx(critic_norm, rel=1e-4)
    assert m["actor_grad_norm"] == pytest.approx(actor_norm, rel=1e-4)
    assert m["actor_loss"] == pytest.approx(float(actor_loss.detach()), rel=1e-5)


def test_the_actor_step_moves_only_the_actor_and_leaves_the_critics_trainable():
    """The actor's loss reads the critics frozen (no weight gradients for them): they keep their values,
    get no gradient, and train again in the next critic step."""
    torch.manual_seed(0)
    actor = NoiseActor(4, 3, [16], bound=1.5)
    sac = SAC(actor, 4, settings())
    q0, a0 = copy.deepcopy(sac.q), copy.deepcopy(actor)
    sac._actor_step(batch()["feat"], torch.Generator().manual_seed(1), sac.log_alpha.detach().exp())
    assert all(torch.equal(p, p0) for p, p0 in zip(sac.q.parameters(), q0.parameters()))
    assert all(p.requires_grad and p.grad is None for p in sac.q.parameters())
    assert not all(torch.equal(p, p0) for p, p0 in zip(actor.parameters(), a0.parameters()))


def test_the_temperature_follows_the_entropy_target():
    actor = NoiseActor(4, 3, [16], bound=1.0)
    hi, lo = SAC(actor, 4, settings(dsrl_target_entropy=math.log(2))), \
        SAC(copy.deepcopy(actor), 4, settings(dsrl_target_entropy=-50.0))
    for sac in (hi, lo):
        sac.update(batch(), torch.Generator().manual_seed(0))
    assert hi.alpha > 0.5 > lo.alpha


def test_sac_solves_a_contextual_bandit():
    """reward = -|c - c*(o)|^2 with c*(o) = 0.8 sign(o): the deterministic actor must learn c*."""
    torch.manual_seed(0)
    actor = NoiseActor(1, 2, [32], bound=1.5)
    sac = SAC(actor, 1, settings(gamma=0.0, dsrl_tau=0.05, lr_actor=3e-3, dsrl_target_entropy=-1.0, dsrl_init_alpha=0.05))
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(64, 1, generator=g)
    for step in range(500):
        with torch.no_grad():
            c, _ = actor.sample(obs, generator=g)
        r = -((c - 0.8 * obs.sign()) ** 2).sum(-1)
        sac.update({"feat": obs, "latent": c, "reward": r, "next_feat": obs, "done": torch.ones(64)}, g)
    test = torch.tensor([[-1.0], [1.0]])
    with torch.no_grad():
        best, _ = actor.sample(test, deterministic=True)
    regret = ((best - 0.8 * test.sign()) ** 2).sum(-1)   # the untrained actor (c = 0) has 1.28
    assert bool((best.sign() == test.sign()).all()) and float(regret.max()) < 0.2, best


def test_state_round_trip_without_pickle_and_a_mismatch_is_refused(tmp_path):
    torch.manual_seed(0)
    actor = NoiseActor(4, 3, [16], bound=1.5)
    sac = SAC(actor, 4, settings())
    sac.update(batch(), torch.Generator().manual_seed(0))
    write_trainer_state(tmp_path, {"sac": sac.state_dict()})
    from safetensors.torch import load_file
    state = _decode(json.loads((tmp_path / STRUCTURE).read_text()), load_file(str(tmp_path / TENSORS)), "state")
    again = SAC(copy.deepcopy(actor), 4, settings())
    again.load_state_dict(state["sac"])
    assert again.alpha == pytest.approx(sac.alpha)
    for a, b in zip(again.q_target.parameters(), sac.q_target.parameters()):
        assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert again.update(batch(seed=1), g1)["q_loss"] == pytest.approx(sac.update(batch(seed=1), g2)["q_loss"])
    with pytest.raises(ConfigError, match="dsrl-hidden"):
        SAC(NoiseActor(4, 3, [16], 1.5), 4, settings(dsrl_hidden=[8])).load_state_dict(state["sac"])
    with pytest.raises(ConfigError, match="log_alpha"):
        again.load_state_dict({**state["sac"], "log_alpha": torch.tensor([math.inf])})


def test_the_actor_backward_computes_no_critic_weight_gradient():
    """The actor's and the temperature's one backward pass stops at the critics' inputs: no gradient of
    a critic weight is ever computed (the hook on each would see it)."""
    torch.manual_seed(0)
    sac = SAC(NoiseActor(4, 3, [16], bound=1.5), 4, settings())
    reached = []
    for p in sac.q.parameters():
        p.register_hook(lambda g: reached.append(g.shape))
    sac._actor_step(batch()["feat"], torch.Generator().manual_seed(1), sac.log_alpha.detach().exp())
    assert reached == []
    assert all(p.grad is not None for p in sac.actor.parameters()) and sac.log_alpha.grad is not None


def test_the_actor_and_temperature_steps_equal_two_plain_backward_passes_bit_for_bit():
    """Five actor + temperature steps against the textbook form (the actor's loss backward through the
    critics, then the temperature's loss on its own): the same parameters, bit for bit."""
    torch.manual_seed(0)
    sac = SAC(NoiseActor(4, 3, [16], bound=1.5), 4, settings())
    ref = copy.deepcopy(sac)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for step in range(5):
        feats = batch(seed=step)["feat"]
        sac._actor_step(feats, g1, sac.log_alpha.detach().exp())
        alpha = ref.log_alpha.detach().exp()
        c, logp = ref.actor.sample(feats, generator=g2)
        ref.actor_opt.zero_grad(set_to_none=True)
        (alpha * logp - torch.minimum(*ref.q(feats, c))).mean().backward()
        ref.actor_opt.step()
        ref.alpha_opt.zero_grad(set_to_none=True)
        (-(ref.log_alpha * (logp.detach() + ref.target_entropy)).mean()).backward()
        ref.alpha_opt.step()
    assert torch.equal(sac.log_alpha, ref.log_alpha) and float(sac.log_alpha.detach()) != math.log(0.5)
    assert all(torch.equal(a, b) for a, b in zip(sac.actor.parameters(), ref.actor.parameters()))


def test_an_optimizer_state_written_with_the_foreach_kernels_loads_and_continues_fused():
    """Checkpoints before the fused optimizers hold Adam states saved with foreach=True (the alpha
    one with neither flag): they load with their moments, and the kernel stays this code's."""
    torch.manual_seed(0)
    sac = SAC(NoiseActor(4, 3, [16], bound=1.5), 4, settings())
    state = sac.state_dict()
    for name, params in (("actor_opt", sac._actor_params), ("critic_opt", sac._q_params),
                         ("alpha_opt", [sac.log_alpha])):
        old = torch.optim.Adam(params, lr=1e-3, **({} if name == "alpha_opt" else {"foreach": True}))
        for p in params:
            p.grad = torch.randn_like(p)
        old.step()
        state[name] = old.state_dict()
        assert old.param_groups[0]["fused"] in (None, False)
    again = SAC(NoiseActor(4, 3, [16], bound=1.5), 4, settings())
    again.load_state_dict(state)
    for name in ("actor_opt", "critic_opt", "alpha_opt"):
        opt = getattr(again, name)
        assert [(g["fused"], g["foreach"]) for g in opt.param_groups] == [(True, None)]
        moments = [s["exp_avg_sq"] for s in opt.state.values()]
        assert len(moments) == len(state[name]["state"]) and all(float(m.sum()) > 0 for m in moments)
    assert math.isfinite(again.update(batch(), torch.Generator().manual_seed(0))["q_loss"])
