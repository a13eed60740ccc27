"""The algorithms behind ``--algorithm``, one file each, behind the protocol in ``base.py``.

The registry names classes as ``module:Class`` strings: ``algorithm_class`` imports one on use (the
doctor imports none); ``rl.config`` imports each for its settings (``Algorithm.config``, a dataclass
declared in the algorithm's file), which ``TrainConfig`` derives from. A new algorithm is its file
and one line here.
"""

from __future__ import annotations

import importlib

ALGORITHMS = {
    "chain-ppo": "reinflow.rl.algorithms.ppo:ChainPPO",
    "residual-ppo": "reinflow.rl.algorithms.residual_ppo:ResidualPPO",
    "dsrl": "reinflow.rl.algorithms.dsrl:DSRL",
}
"""--algorithm name -> its class"""
ALIASES = {"reinflow": "chain-ppo", "residual": "residual-ppo"}
"""the names of reinflow <= 0.1 (run folders and scripts written before the seam keep working)"""


AGENTS = {"dsrl": "reinflow.rl.algorithms.dsrl:DSRLAgent"}
"""policy type (``FlowPolicy.policy_config()["type"]``) -> the agent class that acts with it, where that is
not PPO's ``rl.agent.Agent`` (what a checkpoint of that policy is loaded as)"""


def canonical(name: str) -> str:
    """The registry name of ``name`` (an alias is translated); unknown names are returned as they are."""
    return ALIASES.get(name, name)


def algorithm_class(name: str) -> type:
    module, _, attr = ALGORITHMS[canonical(name)].partition(":")
    return getattr(importlib.import_module(module), attr)


def agent_class(policy_type: str) -> type:
    """The agent class for a policy of type ``policy_type`` (``rl.agent.Agent`` unless ``AGENTS`` names one)."""
    if policy_type not in AGENTS:
        from reinflow.rl.agent import Agent
        return Agent
    module, _, attr = AGENTS[policy_type].partition(":")
    return getattr(importlib.import_module(module), attr)


def algorithm_configs() -> tuple[type, ...]:
    """Each registered algorithm's settings dataclass (``Algorithm.config``) once, in registry order."""
    return tuple(dict.fromkeys(algorithm_class(name).config for name in ALGORITHMS))
