"""The one env loop: every decision of every algorithm, and of evaluation, is ``step_envs`` (prepare the
observation, ``agent.act``, post-process the executed steps of the chunk, step the vector env), so the
sampler evaluation runs is the one training collected with (docs/design.md §5, invariant 4).

``decisions`` is the training loop over it (a fixed number of decisions from where the last iteration
stopped); PPO's rollout buffer (``rl.rollout.collect_rollout``) and DSRL's replay buffer
(``rl.algorithms.dsrl.DSRL.collect``) are its two consumers. Evaluation (``rl.evaluate.run_episodes``)
calls ``step_envs`` from its own loop: it resets envs mid-loop on per-episode seeds and swaps their
noise generators, which a loop that only continues from the last observation cannot do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from reinflow.rl.agent import ActResult, BaseAgent

EPISODE_KEYS = ("return", "length", "success")


@dataclass
class Decision:
    """One decision in N envs. ``obs``: the prepared observation acted on [N, ...]; ``act``: what
    ``agent.act`` returned for it; ``raw_obs``: the env's next raw observation (same-step autoreset:
    a new episode's first where one ended); ``reward`` [N]; ``terminated``, ``truncated``: bool [N];
    ``infos``: the vector env's info dict; ``next_obs``, ``next_context``: ``raw_obs`` prepared and
    encoded (what the next decision acts on; set by ``decisions``, None from ``step_envs``)."""

    obs: Any
    act: ActResult
    raw_obs: Any
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: dict
    next_obs: Any = None
    next_context: Any = None

    @property
    def done(self) -> np.ndarray:
        """bool [N]: the env's episode ended at this decision (terminated or truncated)."""
        return self.terminated | self.truncated

    @property
    def env_steps(self) -> int:
        """Env steps this decision took over all envs (a chunk ends early where its episode does)."""
        return int(info_field(self.infos, "chunk_len", len(self.reward), 1).sum())

    def episode(self, i: int) -> dict[str, float]:
        """The finished episode of env ``i``: {"return", "length", "success"} (success NaN if not reported)."""
        n = len(self.reward)
        return {k: float(info_field(self.infos, f"episode_{k}", n, np.nan)[i]) for k in EPISODE_KEYS}


def step_envs(envs: Any, agent: BaseAgent, obs: Any, deterministic: bool = False, generator: Any = None,
              context: Any = None) -> Decision:
    """Act on the prepared ``obs`` [N, ...] and execute the chunk's first ``act_steps`` steps in every env.
    ``generator``: None, one, or one per env; ``context``: ``encode(obs)`` when already computed."""
    res = agent.act(obs, deterministic=deterministic, generator=generator, context=context)
    action = agent.policy.postprocess_action(res.action[:, : agent.sampler.act_steps])
    raw_obs, reward, term, trunc, infos = envs.step(action.cpu().numpy())
    return Decision(obs=obs, act=res, raw_obs=raw_obs, reward=reward, terminated=term, truncated=trunc, infos=infos)


def decisions(envs: Any, agent: BaseAgent, raw_obs: Any, steps: int, generator: Any) -> Iterator[Decision]:
    """``steps`` stochastic decisions in every env from ``raw_obs``. Each observation is encoded once:
    the next decision acts on the context its predecessor yielded as ``next_context``, which the
    consumer reads as the next state (GAE's last value, a transition's next features). The consumer
    handles decision t before decision t + 1 is sampled, so what it changes (a warm-up switch) applies."""
    policy = agent.policy
    obs = policy.prepare_obs(raw_obs)
    ctx = policy.encode(obs)
    for _ in range(steps):
        step = step_envs(envs, agent, obs, generator=generator, context=ctx)
        obs = step.next_obs = policy.prepare_obs(step.raw_obs)
        ctx = step.next_context = policy.encode(obs)
        yield step


def stack_obs(items: list[Any]) -> Any:
    """List of single-env observations -> batched (arrays stacked, dicts per key)."""
    if isinstance(items[0], dict):
        return {k: stack_obs([it[k] for it in items]) for k in items[0]}
    return np.stack([np.asarray(it) for it in items])


def info_field(infos: dict, key: str, n: int, default: float = 0.0) -> np.ndarray:
    """Per-env value of ``key``, taken from ``final_info`` for envs whose episode just ended
    (same-step autoreset moves the finishing step's info there)."""
    out = np.full(n, default, dtype=np.float64)
    for src in (infos, infos.get("final_info", {})):
        if key in src:
            mask = src.get(f"_{key}", np.ones(n, dtype=bool))
            out[mask] = np.asarray(src[key], dtype=np.float64)[mask]
    return out
