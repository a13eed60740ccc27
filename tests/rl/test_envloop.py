"""The one env loop and the agents built around what they train (issue 28): DSRL collects through its
agent's ``act`` (the transition's latent is what ``act`` drew, warm-up prior included), a dsrl agent holds
no PPO part and still loads a checkpoint written when it had them, and residual-ppo's agent is built
around the wrapped policy with the BC checkpoint's heads."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from reinflow import ConfigError
from reinflow.envs.factory import env_spaces, make_vector_env
from reinflow.policies.residual import ResidualFlowPolicy
from reinflow.rl.agent import Agent
from reinflow.rl.algorithms import algorithm_class
from reinflow.rl.algorithms.dsrl import DSRL, DSRLAgent
from reinflow.rl.build import build_agent, env_kwargs
from reinflow.rl.checkpoint import load_agent, save_agent
from reinflow.rl.config import TrainConfig
from reinflow.rl.dist import DistInfo
from reinflow.rl.seeding import env_generators, seeded_reset

SMALL = {"env": "Pendulum-v1", "chunk_size": 8, "act_steps": 4, "rollout_steps": 3, "parallel_envs": 2, "hidden": [16, 16],
         "dsrl_batch_size": 4, "dsrl_hidden": [16], "dsrl_components": 2, "progress": False, "tensorboard": False}


def dsrl_run(warmup: int) -> tuple[DSRL, object, object]:
    cfg = TrainConfig(out="unused", algorithm="dsrl", dsrl_warmup=warmup, **SMALL).resolved()
    torch.manual_seed(0)
    base = build_agent(cfg, *env_spaces(cfg.env, env_kwargs(cfg)))
    cfg = replace(cfg, policy_path="bc")  # dsrl only checks that a pretrained policy was named
    agent = DSRL.prepare_agent(cfg, base)
    envs = make_vector_env(cfg.env, cfg.parallel_envs, cfg.act_steps, "sync", env_kwargs(cfg))
    return DSRL(cfg, agent, DistInfo(), torch.device("cpu"), "bootstrap"), envs, cfg


@pytest.mark.parametrize("warmup", [0, 3])
def test_dsrl_stores_the_latent_its_agent_acted_with(warmup):
    """Replaying the env loop by hand with ``agent.act`` on the same per-env streams gives the stored latents
    and next features: collection has no sampler of its own. warmup 3 (< 2 envs x 2 decisions): the first
    two decisions draw from the prior, the third from the actor (the switch flips inside one collection)."""
    alg, envs, cfg = dsrl_run(warmup)
    try:
        raw = seeded_reset(envs, cfg.seed, 0, 0)
        exp, _ = alg.collect(envs, raw, 0, env_generators(cfg.seed, 0, 0, cfg.parallel_envs))
        agent, pol, gens = alg.agent, alg.policy, env_generators(cfg.seed, 0, 0, cfg.parallel_envs)
        raw = seeded_reset(envs, cfg.seed, 0, 0)
        latents, feats = [], []
        for t in range(cfg.rollout_steps):
            agent.from_prior = t * cfg.parallel_envs < warmup
            obs = pol.prepare_obs(raw)
            with torch.no_grad():
                res = agent.act(obs, generator=gens)
            latents.append(res.latent)
            feats.append(pol.value_features(res.context))
            act = pol.postprocess_action(res.action[:, :cfg.act_steps])
            raw = envs.step(act.numpy())[0]
        agent.from_prior = False
    finally:
        envs.close()
    rows = cfg.rollout_steps * cfg.parallel_envs
    assert exp.data.transitions == rows == len(alg.buffer)
    assert torch.equal(alg.buffer.data["latent"][:rows], torch.cat(latents))
    assert torch.equal(alg.buffer.data["feat"][:rows], torch.cat(feats))
    assert torch.equal(alg.buffer.data["next_feat"][:rows - 2], torch.cat(feats[1:]))  # Pendulum: no episode ends
    assert exp.metrics["sac/warmup_fraction"] == pytest.approx(2 / 3 if warmup else 0.0)


def test_a_dsrl_agent_has_no_ppo_part_and_loads_a_checkpoint_that_had_them(tmp_path):
    alg, envs, _ = dsrl_run(0)
    envs.close()
    agent = alg.agent
    assert not hasattr(agent, "noise_head") and not hasattr(agent, "critic")
    ck = save_agent(tmp_path / "ck", agent)
    state = load_file(str(ck / "model.safetensors"))
    assert {k.split(".")[0] for k in state} == {"policy", "mask"}
    # a dsrl checkpoint written by reinflow <= 0.1 also held PPO's (never trained) noise head and critic
    save_file({**state, "noise_head.net.weight": torch.zeros(2, 2), "critic.0.weight": torch.zeros(2, 2)},
              str(ck / "model.safetensors"))
    again = load_agent(ck)[0]
    assert isinstance(again, DSRLAgent)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())
    save_file({**state, "head.weight": torch.zeros(2, 2)}, str(ck / "model.safetensors"))
    with pytest.raises(ConfigError, match="unexpected"):   # only the named legacy parts are dropped
        load_agent(ck)


def test_chain_ppo_refuses_a_dsrl_agent():
    alg, envs, cfg = dsrl_run(0)
    envs.close()
    with pytest.raises(ConfigError, match="dsrl"):
        algorithm_class("chain-ppo").prepare_agent(cfg, alg.agent)


def test_residual_ppo_builds_its_agent_around_the_wrapped_policy():
    cfg = TrainConfig(out="unused", **SMALL).resolved()
    base = build_agent(cfg, *env_spaces(cfg.env, env_kwargs(cfg)))
    agent = algorithm_class("residual-ppo").prepare_agent(replace(cfg, policy_path="bc"), base)
    assert isinstance(agent, Agent) and agent is not base and isinstance(agent.policy, ResidualFlowPolicy)
    assert agent.policy.base is base.policy and agent.noise_head is base.noise_head and agent.critic is base.critic
    assert agent.sampler is base.sampler and torch.equal(agent.mask, base.mask)
    other = replace(cfg, chunk_size=4, act_steps=4)
    small = build_agent(other, *env_spaces(cfg.env, env_kwargs(cfg)))
    with pytest.raises(ConfigError, match="sizes"):
        base.around(small.policy)
