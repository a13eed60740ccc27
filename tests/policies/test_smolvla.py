"""SmolVLA adapter (LeRobot's own SmolVLAPolicy) on a tiny random SmolVLM, offline and CPU-only.

Skipped when the ``smolvla`` extra (LeRobot) is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lerobot")
smolvla = pytest.importorskip("reinflow.policies.smolvla")

import gymnasium as gym  # noqa: E402

from reinflow import ConfigError  # noqa: E402
from reinflow.flow.chain import build_mask, chain_log_prob, sample_chain  # noqa: E402
from reinflow.flow.noise import NoiseHead  # noqa: E402
from reinflow.policies.smolvla import compat  # noqa: E402
from reinflow.commands.smolvla_tiny import run as cli_main  # noqa: E402
from reinflow.policies.smolvla.tiny import write_tiny_vlm  # noqa: E402

STATE, IMG, B, ACT_STEPS = 34, 64, 3, 10
LO, HI = 0.08, 0.16
INSTRUCTION = "pick up the red cube and lift it"


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return str(write_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm")))


def spaces():
    img = gym.spaces.Box(0, 255, (IMG, IMG, 3), np.uint8)
    obs = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (STATE,), np.float32), "top": img, "wrist": img})
    return obs, gym.spaces.Box(-1.0, 1.0, (6,), np.float32)


def raw_obs(seed=0, batch=B):
    rng = np.random.default_rng(seed)
    return {"state": rng.normal(size=(batch, STATE)).astype(np.float32),
            "top": rng.integers(0, 256, (batch, IMG, IMG, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (batch, IMG, IMG, 3), dtype=np.uint8)}


def make(vlm_dir, k=1, trainable="heads"):
    torch.manual_seed(0)
    return smolvla.build_smolvla_policy(*spaces(), vlm_path=vlm_dir, denoise_steps=k, trainable=trainable,
                                        instruction=INSTRUCTION)


def head_for(policy):
    torch.manual_seed(1)
    return NoiseHead(policy.noise_feature_dim, policy.chunk_size, policy.padded_action_dim, per_step=True,
                     sigma_lo=LO, sigma_hi=HI)


@pytest.mark.parametrize("k", [1, 2])
def test_ratio_is_one_mask_and_sigma_bounds(vlm_dir, k):
    policy = make(vlm_dir, k)
    head, mask = head_for(policy), build_mask(policy, ACT_STEPS)
    obs = policy.prepare_obs(raw_obs())
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        s = sample_chain(policy, head, policy.encode(obs), B, mask, generator=g)
        lp = chain_log_prob(policy, head, policy.encode(obs), s.chain, mask)
    assert float((torch.exp(lp.logp - s.logprob.logp) - 1).abs().max()) <= 1e-5
    assert lp.num_dims == k * ACT_STEPS * 6  # executed steps x 6 real dims (not 32, not 50) per transition
    assert s.chain.shape == (B, k + 1, 50, 32) and s.action.shape == (B, 50, 6)
    assert policy.time_grid() == ([1.0 - i / k for i in range(k)], [-1.0 / k] * k)
    assert float(lp.per_dim.max()) <= lp.bound
    with torch.no_grad():
        out = policy.velocity(s.chain[:, 0], torch.ones(B), policy.encode(obs))
        sigma = head(out.noise_features)
    assert out.velocity.shape == (B, 50, 32) and out.noise_features.shape == (B, 50, policy.noise_feature_dim)
    assert LO <= float(sigma.min()) and float(sigma.max()) <= HI


@pytest.mark.parametrize("preset", ["heads", "expert", "all"])
def test_gradients_reach_exactly_the_preset(vlm_dir, preset):
    policy = make(vlm_dir, 1, preset)
    head, mask = head_for(policy), build_mask(policy, ACT_STEPS)
    obs = policy.prepare_obs(raw_obs())
    with torch.no_grad():
        s = sample_chain(policy, head, policy.encode(obs), B, mask)
    lp = chain_log_prob(policy, head, policy.encode(obs), s.chain, mask)
    lp.logp.sum().backward()
    expected = policy.preset_parameter_names()
    got = {n for n, p in policy.named_parameters() if p.grad is not None and float(p.grad.abs().sum()) > 0}
    assert got == expected
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == expected
    assert all(p.grad is not None for p in head.parameters())
    frozen_vlm = [n for n, p in policy.named_parameters() if ".vlm." in n and n not in expected]
    assert frozen_vlm and all(dict(policy.named_parameters())[n].grad is None for n in frozen_vlm)
    sizes = {n: p.numel() for n, p in policy.named_parameters()}
    assert sum(sizes[n] for n in expected) == policy.num_parameters()["trainable"]
    if preset == "heads":
        assert all(".action_" in n for n in expected)


def test_eval_mode_is_kept(vlm_dir):
    policy = make(vlm_dir)
    wrapper = torch.nn.ModuleDict({"policy": policy, "critic": torch.nn.Linear(2, 1)})
    wrapper.train()
    policy.set_train_mode()
    assert not any(m.training for m in policy.modules())
    assert wrapper["critic"].training


def test_save_extra_loads_in_lerobot_with_identical_actions(vlm_dir, tmp_path):
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    policy = make(vlm_dir, k=2, trainable="expert")
    with torch.no_grad():  # move the weights away from any fresh init, as PPO would
        for p in policy.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    policy.save_extra(str(tmp_path))
    head = head_for(policy)
    raw = raw_obs(5)
    x0 = torch.randn(B, 50, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ours = sample_chain(policy, head, policy.encode(policy.prepare_obs(raw)), B,
                            build_mask(policy, ACT_STEPS), deterministic=True, x0=x0.clone()).action
    loaded = SmolVLAPolicy.from_pretrained(tmp_path / "lerobot")
    pre, post = make_pre_post_processors(loaded.config, pretrained_path=str(tmp_path / "lerobot"))
    batch = {"observation.state": torch.as_tensor(raw["state"]), "task": [INSTRUCTION] * B}
    for cam in ("top", "wrist"):
        batch[f"observation.images.{cam}"] = torch.as_tensor(raw[cam]).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        theirs = loaded.predict_action_chunk(pre(batch), noise=x0.clone())
    assert theirs.shape == ours.shape
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    torch.testing.assert_close(post(theirs), post(ours), rtol=0, atol=1e-5)
    # and reinflow reloads the exported folder with the same weights
    again = smolvla.load_smolvla_policy(str(tmp_path))
    with torch.no_grad():
        back = sample_chain(again, head, again.encode(again.prepare_obs(raw)), B, build_mask(again, ACT_STEPS),
                            deterministic=True, x0=x0.clone()).action
    torch.testing.assert_close(back, ours, rtol=0, atol=1e-6)


def test_policy_config_rebuilds_same_architecture(vlm_dir):
    policy = make(vlm_dir, k=2)
    cfg = policy.policy_config()
    assert cfg["type"] == "smolvla" and cfg["denoise_steps"] == 2
    import json
    rebuilt = smolvla.load_smolvla_policy(json.loads(json.dumps(cfg)))
    assert [(n, p.shape) for n, p in rebuilt.named_parameters()] == [(n, p.shape) for n, p in policy.named_parameters()]
    rebuilt.load_state_dict(policy.state_dict())
    obs = policy.prepare_obs(raw_obs())
    x = torch.randn(B, 50, 32)
    with torch.no_grad():
        a = policy.velocity(x, torch.ones(B), policy.encode(obs)).velocity
        b = rebuilt.velocity(x, torch.ones(B), rebuilt.encode(rebuilt.prepare_obs(raw_obs()))).velocity
    torch.testing.assert_close(a, b)


def test_critic_features_are_layer_normalised_and_old_configs_read_them_raw(vlm_dir):
    """The pooled prefix the critic, the residual and dsrl read: layer-normalised (mean 0, variance 1 per
    sample); a policy config written before the setting existed rebuilds with the raw pool its heads
    were trained on, the same numbers before the normalisation."""
    import json
    policy = make(vlm_dir)
    with torch.no_grad():
        f = policy.value_features(policy.encode(policy.prepare_obs(raw_obs())))
    assert f.shape == (B, policy.value_feature_dim)
    torch.testing.assert_close(f.mean(-1), torch.zeros(B), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.var(-1, unbiased=False), torch.ones(B), atol=1e-3, rtol=0)
    old = {k: v for k, v in json.loads(json.dumps(policy.policy_config())).items() if k != "feature_norm"}
    raw = smolvla.load_smolvla_policy(old)
    assert raw.settings.feature_norm is False and policy.settings.feature_norm is True
    raw.load_state_dict(policy.state_dict())
    with torch.no_grad():
        g = raw.value_features(raw.encode(raw.prepare_obs(raw_obs())))
    assert float(g.std(-1).mean()) < 0.5   # the raw pool is small (why it is normalised)
    torch.testing.assert_close(torch.nn.functional.layer_norm(g, g.shape[-1:]), f)


def test_obs_frame_warning_and_obs_layout(vlm_dir):
    policy = make(vlm_dir)
    raw = raw_obs()
    obs = policy.prepare_obs(raw)
    assert obs["observation.images.top"].dtype == torch.uint8
    assert obs["observation.images.top"].shape == (B, 3, IMG, IMG)
    assert obs["observation.language.tokens"].shape == (B, 48)
    assert policy.check_obs_frame(raw) == []
    warns = policy.check_obs_frame({**raw, "state": raw["state"] * 57.3 + 100})  # degrees + offset
    assert len(warns) == 1 and "observation.state" in warns[0] and "frame" in warns[0]
    torch.testing.assert_close(policy.postprocess_action(torch.ones(B, 50, 6) * 0.3), torch.ones(B, 50, 6) * 0.3)
    with pytest.raises(Exception, match="image"):
        policy.prepare_obs(raw["state"])


def test_cache_snapshot_survives_dynamic_cache_mutation():
    from transformers import DynamicCache

    cache = DynamicCache()
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    cache.update(k, v, 0)
    snap = compat.snapshot_cache(cache)
    first = compat.fresh_cache(snap)
    first.update(torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 4), 0)  # a denoise step appends
    second = compat.fresh_cache(snap)
    assert second.get_seq_length(0) == 5
    assert compat.describe()["lerobot"]


def test_torchvision_shim_and_cli(tmp_path):
    from reinflow.policies.smolvla.tv_shim import ensure_torchvision

    assert ensure_torchvision() in ("native", "shimmed", "imported")
    keep = torch.ops.torchvision.nms(torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1.1], [2, 2, 3, 3.0]]),
                                     torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    assert cli_main([str(tmp_path / "vlm")]) == 0
    assert (tmp_path / "vlm" / "config.json").exists() and (tmp_path / "vlm" / "tokenizer.json").exists()


def test_patch_size_sets_the_image_tokens_per_frame(tmp_path):
    """--patch-size 8: 64 patches of a 64x64 frame, 2x2 pixel shuffle -> 16 tokens (16 px: 4)."""
    frame = torch.rand(2, 3, IMG, IMG)
    tokens = {}
    for patch in (None, 8):
        argv = [str(tmp_path / f"vlm{patch}")] + (["--patch-size", str(patch)] if patch else [])
        assert cli_main(argv) == 0
        torch.manual_seed(0)
        policy = smolvla.build_smolvla_policy(*spaces(), vlm_path=argv[0], instruction=INSTRUCTION)
        with torch.no_grad():
            tokens[patch] = policy.model.vlm_with_expert.embed_image(frame).shape[1]
    assert tokens == {None: 4, 8: 16}
    with pytest.raises(ConfigError, match=r"--patch-size=7: must divide image_size / 2 = 32"):
        cli_main([str(tmp_path / "bad"), "--patch-size", "7"])
    assert not (tmp_path / "bad").exists()  # checked before anything is written


def test_with_the_arm_env_pixels(vlm_dir):
    arm = pytest.importorskip("reinflow.envs.arm")
    try:
        env = gym.make("reinflow/ArmReach-v0", obs_mode="pixels_state")
        ob, _ = env.reset(seed=0)
    except Exception as exc:  # noqa: BLE001 - no GL context on this machine
        pytest.skip(f"arm env pixels unavailable: {exc}")
    assert arm is not None
    policy = smolvla.build_smolvla_policy(env.observation_space, env.action_space, vlm_path=vlm_dir,
                                          instruction=env.unwrapped.instruction)
    raw = {k: np.stack([v, v]) for k, v in ob.items()}
    assert policy.check_obs_frame(raw) == []
    head = head_for(policy)
    with torch.no_grad():
        s = sample_chain(policy, head, policy.encode(policy.prepare_obs(raw)), 2, build_mask(policy, ACT_STEPS))
    env.step(np.clip(s.action[0, 0].numpy(), -1, 1))
    env.close()
