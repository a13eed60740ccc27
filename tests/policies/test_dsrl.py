"""The DSRL policy: a frozen base whose x_0 comes from a noise actor over smooth (DCT) coefficients."""

import pytest
import torch

from reinflow import ConfigError
from reinflow.flow.chain import dct_basis, seeded_x0
from reinflow.policies import base_policy_config, build_policy_from_config
from reinflow.policies.dsrl import DSRLFlowPolicy
from reinflow.policies.mlp import MLPFlowPolicy, MLPPolicyConfig


def base_policy(pad=0):
    torch.manual_seed(0)
    return MLPFlowPolicy(MLPPolicyConfig(obs_dim=5, action_dim=3, chunk_size=6, hidden=[32], pad_action_dim=pad))


def test_the_latent_is_the_in_span_part_of_x0_and_padded_dims_stay_zero():
    pol = DSRLFlowPolicy(base_policy(pad=2), latent_steps=4, components=2, hidden=[16])
    assert pol.latent_dim == 2 * 3
    c = torch.randn(7, 6)
    x0 = pol.latent_to_x0(c)
    assert x0.shape == (7, 6, 5) and torch.equal(x0[..., 3:], torch.zeros(7, 6, 2))
    basis = dct_basis(6, 4, 2).float()
    assert torch.allclose(x0[..., :3], torch.einsum("hm,bma->bha", basis, c.reshape(7, 2, 3)), atol=1e-6)
    assert torch.allclose(torch.einsum("hm,bha->bma", basis, x0[..., :3]).reshape(7, 6), c, atol=1e-5)  # B^T B = I
    assert torch.equal(x0[:, 4:], torch.zeros(7, 2, 5))            # unexecuted steps: no steering
    full = DSRLFlowPolicy(base_policy(), latent_steps=6, components=0, hidden=[16])
    assert full.latent_dim == 18 and torch.equal(full.latent_to_x0(c.repeat(1, 3)), c.repeat(1, 3).reshape(7, 6, 3))


def test_an_untrained_actor_starts_at_zero_and_samples_within_the_bound():
    pol = DSRLFlowPolicy(base_policy(), latent_steps=6, components=3, bound=1.5, hidden=[16])
    ctx = pol.encode(pol.prepare_obs(torch.randn(64, 5).numpy()))
    assert torch.equal(pol.latent_to_x0(pol.sample_latent(ctx, deterministic=True)[0]), torch.zeros(64, 6, 3))
    c, logp, feats = pol.sample_latent(ctx, generator=torch.Generator().manual_seed(0))
    c = c.detach()
    assert c.abs().max() < 1.5 and 0.7 < float(c.std()) < 1.2 and logp.shape == (64,)
    assert feats.shape == (64, pol.value_feature_dim) and not feats.requires_grad
    assert [p for p in pol.trainable_parameters()] == list(pol.actor.parameters())
    assert all(not p.requires_grad for p in pol.base.parameters())


def test_a_seeded_centre_makes_the_untrained_actor_play_that_x0_exactly():
    pol = DSRLFlowPolicy(base_policy(pad=2), latent_steps=4, components=2, hidden=[16], x0_seed=7)
    centre = seeded_x0(6, 5, 7)
    ctx = pol.encode(pol.prepare_obs(torch.randn(9, 5).numpy()))
    x0 = pol.latent_to_x0(pol.sample_latent(ctx, deterministic=True)[0])
    assert torch.equal(x0, centre.expand(9, -1, -1))  # c = 0: the BC's x_0
    c = torch.randn(9, 6)
    plain = DSRLFlowPolicy(base_policy(pad=2), latent_steps=4, components=2, hidden=[16])
    assert torch.allclose(pol.latent_to_x0(c), plain.latent_to_x0(c) + centre, atol=1e-6)  # steering: deviations from it
    again = build_policy_from_config(pol.policy_config())
    assert again.x0_seed == 7 and torch.equal(again.x0_centre, centre)       # re-derived from the seed on load
    for bad in (-1, 2**32, 1.5, "7", True):
        with pytest.raises(ConfigError, match="x0_seed"):
            build_policy_from_config({**pol.policy_config(), "x0_seed": bad})


def test_config_round_trip_and_bad_configs():
    pol = DSRLFlowPolicy(base_policy(), latent_steps=5, components=2, bound=1.2, hidden=[16, 8])
    cfg = pol.policy_config()
    again = build_policy_from_config(cfg)
    assert isinstance(again, DSRLFlowPolicy) and again.policy_config() == cfg
    assert base_policy_config(cfg)["type"] == "mlp"
    assert build_policy_from_config({**cfg, "denoise_steps": 3}).base.denoise_steps == 3  # overrides reach the base
    for bad, field in [({"bound": float("inf")}, "dsrl_bound"), ({"components": 9}, "dsrl_components"),
                       ({"hidden": [0]}, "dsrl_hidden"), ({"hidden": 5}, "dsrl"), ({"latent_steps": 99}, "act_steps")]:
        with pytest.raises(ConfigError, match=field):
            build_policy_from_config({**cfg, **bad})
    with pytest.raises(ConfigError, match="latent_steps"):
        build_policy_from_config({k: v for k, v in cfg.items() if k != "latent_steps"})
