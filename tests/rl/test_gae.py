"""GAE against hand-computed values, with a termination and a truncation inside the batch."""

import torch

import pytest

from reinflow.rl.gae import gae, time_limit_as


def hand_gae(r, v, term, trunc, final_v, last_v, gamma, lam):
    T = len(r)
    adv = [0.0] * T
    running = 0.0
    for t in reversed(range(T)):
        if term[t]:
            nv = 0.0
        elif trunc[t]:
            nv = final_v[t]
        else:
            nv = last_v if t == T - 1 else v[t + 1]
        delta = r[t] + gamma * nv - v[t]
        running = delta + gamma * lam * (0.0 if (term[t] or trunc[t]) else 1.0) * running
        adv[t] = running
    return adv


def test_gae_matches_hand_computed_and_never_crosses_envs():
    gamma, lam = 0.9, 0.8
    r = torch.tensor([[1.0, 0.5], [2.0, -1.0], [0.0, 3.0], [1.0, 1.0]])
    v = torch.tensor([[0.5, 0.1], [1.0, 0.2], [0.3, 0.4], [0.2, 0.9]])
    term = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    trunc = torch.tensor([[False, False], [False, False], [False, True], [False, False]])
    final_v = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 7.0], [0.0, 0.0]])
    last_v = torch.tensor([0.6, -0.3])
    res = gae(r, v, term, trunc, final_v, last_v, gamma, lam)
    for i in range(2):
        exp = hand_gae(r[:, i].tolist(), v[:, i].tolist(), term[:, i].tolist(), trunc[:, i].tolist(),
                       final_v[:, i].tolist(), float(last_v[i]), gamma, lam)
        assert torch.allclose(res.advantages[:, i], torch.tensor(exp), atol=1e-6)
    assert torch.allclose(res.returns, res.advantages + v)
    # Hand-check the two boundary rows explicitly.
    assert abs(float(res.advantages[1, 0]) - (2.0 - 1.0)) < 1e-6             # termination: no bootstrap
    assert abs(float(res.advantages[2, 1]) - (3.0 + 0.9 * 7.0 - 0.4)) < 1e-6  # truncation: V(final obs)


def test_changing_one_env_leaves_the_other_untouched():
    torch.manual_seed(0)
    args = [torch.randn(6, 3), torch.randn(6, 3), torch.zeros(6, 3, dtype=torch.bool),
            torch.zeros(6, 3, dtype=torch.bool), torch.zeros(6, 3), torch.randn(3)]
    base = gae(*args, 0.99, 0.95).advantages
    args[0] = args[0].clone()
    args[0][:, 1] += 100.0
    args[5] = args[5].clone()
    args[5][1] = 50.0
    changed = gae(*args, 0.99, 0.95).advantages
    assert torch.equal(base[:, 0], changed[:, 0]) and torch.equal(base[:, 2], changed[:, 2])
    assert not torch.equal(base[:, 1], changed[:, 1])


def test_gamma_lambda_one_gives_monte_carlo_returns():
    r = torch.tensor([[1.0], [2.0], [3.0]])
    v = torch.zeros(3, 1)
    z = torch.zeros(3, 1, dtype=torch.bool)
    res = gae(r, v, z, z, torch.zeros(3, 1), torch.zeros(1), 1.0, 1.0)
    assert torch.allclose(res.returns[:, 0], torch.tensor([6.0, 5.0, 3.0]))


def test_time_limit_as_terminal_ends_the_episode_with_no_bootstrap():
    """The arm tasks' limit is part of the task: at a truncation the return is the reward alone."""
    r = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[0.5], [0.25]])
    term = torch.tensor([[False], [False]])
    trunc = torch.tensor([[False], [True]])
    final_v = torch.tensor([[0.0], [-150.0]])                                  # an endless -1.5/decision tail
    boot = gae(r, v, *time_limit_as(term, trunc, "bootstrap"), final_v, torch.zeros(1), 0.99, 1.0)
    ended = gae(r, v, *time_limit_as(term, trunc, "terminal"), final_v, torch.zeros(1), 0.99, 1.0)
    assert float(boot.returns[1, 0]) == pytest.approx(2.0 + 0.99 * -150.0)
    assert float(ended.returns[1, 0]) == pytest.approx(2.0)
    assert float(ended.returns[0, 0]) == pytest.approx(1.0 + 0.99 * 2.0)
    with pytest.raises(ValueError, match="allowed bootstrap, terminal"):
        time_limit_as(term, trunc, "auto")
