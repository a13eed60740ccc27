"""The algorithm seam. The trainer (``reinflow.rl.trainer``) owns the run: config, run folder, envs
and their seeding, the iteration loop, stopping, evaluation and keep-best, health, logging and
checkpoints. An algorithm owns how experience is collected and how the agent learns from it, behind
the small protocol below; each algorithm is one file in this package, registered in ``ALGORITHMS``.

The split follows Stable-Baselines3's ``collect_rollouts``/``train`` and LeRobot's policy/trainer
division: the loop never branches on the algorithm, so a new one is a file, not an edit of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import torch

from reinflow.rl.agent import BaseAgent
from reinflow.rl.dist import DistInfo


D = TypeVar("D")
"""what one algorithm's ``collect`` hands its ``update``: PPO's ``rl.rollout.Rollout``, DSRL's ``Added``"""


@dataclass
class Experience(Generic[D]):
    """What ``Algorithm.collect`` returns. ``env_steps``: env steps this rank took; ``data``: the payload
    ``update`` reads, one type per algorithm (``Algorithm[D]``); ``episodes``: the episodes that finished,
    each ``{"return", "length", "success"}`` (success NaN when the env reports none); ``metrics``: what
    collection measured (``rollout/*``, ``logprob/*`` ...)."""

    env_steps: int
    data: D
    episodes: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class Algorithm(Generic[D]):
    """One learning algorithm over the shared agent, sampler and envs; ``D``: its ``Experience.data``.

    ``self.agent`` is what the trainer evaluates, keeps in ``best/`` and checkpoints
    (``model.safetensors``): everything needed to *act* lives in it. What only training needs
    (optimizers, a replay buffer, Q networks, a reward scaler) is ``state_dict()``, written to the
    checkpoint's trainer state without pickle (``reinflow.rl.trainer_state``).
    """

    name: ClassVar[str]
    """the ``--algorithm`` value"""
    health: ClassVar[str] = "ppo"
    """which health checks apply to its metrics (``reinflow.rl.health``)"""
    config: ClassVar[type]
    """its settings: a dataclass declared in its file, with ``RANGES``, ``FROZEN_ON_RESUME`` and ``check()``;
    ``TrainConfig`` derives from every registered one, so their fields are top-level flags"""
    default_lr_actor: ClassVar[float]
    """``--lr-actor`` when not given"""
    family: ClassVar[str] = "PPO"
    """what its update is, in reports ("PPO iterations")"""
    budget_in_env_steps: ClassVar[bool] = False
    """the quickstart plans it by an env-step budget (``Settings.dsrl_env_steps``), not by iterations"""

    @classmethod
    def describe(cls, cfg: Any, act_steps: int, action_dim: int) -> dict[str, str]:
        """Report text (the quickstart's): 'space' (what it explores, a few words), 'chain' (how the chain
        runs), 'recipe' (its settings in one line), 'settings' (the recipe bullet of summary.md)."""
        raise NotImplementedError

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Refuse what ``cfg`` (a TrainConfig naming this algorithm) sets that this algorithm has no use for."""

    def __init__(self, cfg: Any, agent: BaseAgent, info: DistInfo, device: torch.device, truncation: str):
        self.cfg, self.agent, self.info, self.device, self.truncation = cfg, agent, info, device, truncation

    @classmethod
    def resolve(cls, cfg: Any, act_space: Any, verbose: bool) -> tuple[Any, dict | None]:
        """``cfg`` (resolved: no 'auto' left) with this algorithm's own choices made, before anything is built;
        and what it chose, for config.json's ``derived`` (None: nothing)."""
        return cfg, None

    @classmethod
    def prepare_agent(cls, cfg: Any, agent: BaseAgent) -> BaseAgent:
        """The agent this algorithm trains, from the one ``rl.build`` made or loaded: a new agent built around
        the algorithm's own policy (a wrapper of that agent's policy), holding only the parts it uses (the
        loaded ones carried over), never an agent whose policy is swapped after its parts were built."""
        return agent

    def begin_iteration(self, it: int) -> dict[str, float]:
        """Apply the schedules of iteration ``it`` (learning rates, noise bounds); returns their metrics."""
        return {}

    def collect(self, envs: Any, raw_obs: Any, it: int, generators: list[torch.Generator]) -> tuple[Experience[D], Any]:
        """Step the envs from ``raw_obs``; returns (experience, the raw observation to continue from).
        ``generators``: one per env, seeded by (seed, iteration, global env index)."""
        raise NotImplementedError

    def update(self, exp: Experience[D], it: int) -> dict[str, float]:
        """Learn from ``exp``; returns the update's metrics."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Nested dict of tensors, str-keyed dicts, lists, tuples and plain values (no objects)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``; raise ConfigError naming what does not fit this run."""
