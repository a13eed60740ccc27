"""Rollout-context reuse: tree ops (core, no LeRobot) and, on LeRobot's real SmolVLA (tiny random
backbone), bit-identical log-probs and an exact ratio of 1 with the kept prefix cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reinflow.rl.context import cat_contexts, context_budget_bytes, context_nbytes, index_context


def test_tree_ops_keep_structure_and_tags():
    a = {"cache": {0: {"k": torch.arange(6.0).reshape(3, 2)}},
         "tag": ("layers", [(torch.ones(3, 1), torch.zeros(3, 1))], int)}
    b = {"cache": {0: {"k": -torch.arange(4.0).reshape(2, 2)}},
         "tag": ("layers", [(2 * torch.ones(2, 1), torch.ones(2, 1))], int)}
    both = cat_contexts([a, b])
    assert both["cache"][0]["k"].shape == (5, 2) and both["tag"][0] == "layers" and both["tag"][2] is int
    rows = index_context(both, torch.tensor([4, 0]))
    assert rows["cache"][0]["k"].tolist() == [[-2.0, -3.0], [0.0, 1.0]]
    assert rows["tag"][1][0][0].flatten().tolist() == [2.0, 1.0]
    assert context_nbytes(a) == (6 + 3 + 3) * 4


def test_budget_only_for_frozen_encoders():
    class Frozen:
        frozen_encoder = True
    assert context_budget_bytes(Frozen(), 1.5) == int(1.5 * 2**30)
    assert context_budget_bytes(Frozen(), 0.0) == 0
    assert context_budget_bytes(object(), 4.0) == 0   # MLP policy: re-encodes as before


def _smolvla_agent(tmp_path_factory, trainable):
    pytest.importorskip("lerobot")
    smolvla = pytest.importorskip("reinflow.policies.smolvla")
    import gymnasium as gym

    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    from reinflow.rl.agent import Agent, SamplerConfig
    vlm = write_tiny_vlm(tmp_path_factory.mktemp("vlm"))
    img = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    obs_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (8,), np.float32), "top": img, "wrist": img})
    torch.manual_seed(0)
    policy = smolvla.build_smolvla_policy(obs_space, gym.spaces.Box(-1.0, 1.0, (6,), np.float32), vlm_path=str(vlm),
                                          trainable=trainable, instruction="move the gripper to the green target")
    return Agent(policy, SamplerConfig(act_steps=10,
                                       reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                                       constant_sigma=False, noise_basis=0, initial_noise="sample", initial_noise_seed=0))


def _raw(batch, seed):
    rng = np.random.default_rng(seed)
    return {"state": rng.normal(size=(batch, 8)).astype(np.float32),
            "top": rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)}


@pytest.mark.parametrize("trainable", ["heads", "expert"])
def test_kept_prefix_gives_bit_identical_logprobs(tmp_path_factory, trainable):
    from reinflow.rl.algorithms.ppo import pre_update_check
    agent = _smolvla_agent(tmp_path_factory, trainable)
    assert agent.policy.frozen_encoder
    obs = [agent.policy.prepare_obs(_raw(3, s)) for s in (0, 1)]
    with torch.no_grad():
        acts = [agent.act(o, generator=torch.Generator().manual_seed(i)) for i, o in enumerate(obs)]
        ctx = cat_contexts([a.context for a in acts])
        # the pre-update check on the kept context is exact, not merely within 1e-5
        assert pre_update_check(agent, obs[0], acts[0].chain, acts[0].logp, acts[0].context) == 0.0
        # same rows, same batch composition: re-encoding and reusing give the same bits
        lp_new, v_new = agent.evaluate(obs[1], acts[1].chain)
        lp_kept, v_kept = agent.evaluate(obs[1], acts[1].chain, index_context(ctx, torch.arange(3, 6)))
    assert torch.equal(lp_new.logp, lp_kept.logp) and torch.equal(v_new, v_kept)
    assert torch.equal(lp_kept.logp, acts[1].logp)
    # gradients still reach the preset's parameters through the kept (detached) prefix
    lp, _ = agent.evaluate(obs[0], acts[0].chain, acts[0].context)
    lp.logp.sum().backward()
    got = {n for n, p in agent.policy.named_parameters() if p.grad is not None and float(p.grad.abs().sum()) > 0}
    assert got == agent.policy.preset_parameter_names()


def test_all_preset_reencodes(tmp_path_factory):
    agent = _smolvla_agent(tmp_path_factory, "all")
    assert not agent.policy.frozen_encoder
    assert context_budget_bytes(agent.policy, 4.0) == 0


def test_rollout_keeps_contexts_only_within_the_budget(tmp_path_factory):
    pytest.importorskip("lerobot")
    smolvla = pytest.importorskip("reinflow.policies.smolvla")
    from reinflow.envs.factory import env_spaces, make_vector_env
    from reinflow.policies.smolvla.tiny import write_tiny_vlm
    from reinflow.rl.agent import Agent, SamplerConfig
    from reinflow.rl.rollout import collect_rollout
    kw = {"obs_mode": "pixels_state", "image_size": (32, 32)}
    try:
        envs = make_vector_env("reinflow/ArmReach-v0", 2, 10, "sync", kw)
    except Exception as exc:  # noqa: BLE001 - no GL context on this machine
        pytest.skip(f"arm env pixels unavailable: {exc}")
    policy = smolvla.build_smolvla_policy(*env_spaces("reinflow/ArmReach-v0", kw),
                                          vlm_path=str(write_tiny_vlm(tmp_path_factory.mktemp("vlm"))))
    agent = Agent(policy, SamplerConfig(act_steps=10,
                                        reduction="sum", mask_executed=True, logprob_clamp=None, sigma_lo=0.08, sigma_hi=0.16,
                                        constant_sigma=False, noise_basis=0, initial_noise="sample", initial_noise_seed=0))
    raw = envs.reset(seed=0)[0]
    per_step = context_nbytes(agent.act(policy.prepare_obs(raw)).context)
    roll, raw = collect_rollout(envs, agent, raw, 2, None, torch.Generator().manual_seed(0),
                                keep_context_bytes=2 * per_step)
    assert len(roll.contexts) == 2 and context_nbytes(cat_contexts(roll.contexts)) == 2 * per_step
    roll, _ = collect_rollout(envs, agent, raw, 2, None, torch.Generator().manual_seed(0),
                              keep_context_bytes=per_step + 1)
    assert roll.contexts is None       # over the budget: the update re-encodes every step
    envs.close()
