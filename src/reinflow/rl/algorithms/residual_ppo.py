"""Residual PPO (``--algorithm residual-ppo``; the default from a pretrained policy): the same PPO
on the chain, over a policy whose BC weights are frozen and whose chain mean gets a trained,
zero-initialised offset r(o) (``reinflow.policies.residual``). Only the agent differs from
``ChainPPO``; the lr default is larger because a fresh offset net starts from zero
(``default_lr_actor``)."""

from __future__ import annotations

from typing import Any

from reinflow import ConfigError
from reinflow.policies.residual import ResidualFlowPolicy
from reinflow.rl.agent import Agent, BaseAgent
from reinflow.rl.algorithms.ppo import ChainPPO


class ResidualPPO(ChainPPO):
    name = "residual-ppo"
    default_lr_actor = 1e-4  # a fresh, zero-initialised offset net needs larger steps (docs/benchmarks.md §3.1)

    @classmethod
    def prepare_agent(cls, cfg: Any, agent: BaseAgent) -> Agent:
        if not (cfg.policy_path or cfg.vlm_path):
            raise ConfigError(f"algorithm={cls.name} corrects a pretrained policy: give --policy-path (a BC checkpoint)")
        agent = super().prepare_agent(cfg, agent)
        if isinstance(agent.policy, ResidualFlowPolicy):  # a resumed or residual checkpoint already is one
            return agent
        # the BC checkpoint's noise head and critic carry over to the agent around the wrapped policy
        return agent.around(ResidualFlowPolicy(agent.policy))
