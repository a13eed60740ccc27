"""Evaluation with the sampler the algorithm trained (docs/design.md §5, invariant 4): the env loop's
``step_envs`` (``agent.act``) in deterministic (ODE, no injected noise) or stochastic mode, on fixed
seeds so before/after compare like for like.

Episode ``k`` of an evaluation is the same whatever the batch layout: it starts from
``reset(seed=seed + k)`` and draws its chain noise (x_0, and the injected noise when stochastic) from
its own generator seeded by ``(seed, k)``. So ``--parallel-envs`` changes only the speed, never the
result (one generator for the whole batch made x_0 depend on which envs happened to be stepping).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reinflow import ConfigError
from reinflow.rl.agent import BaseAgent
from reinflow.rl.envloop import step_envs

RESULT_KEYS = ("success_rate", "return_mean", "episodes", "checkpoint", "mode")


def episode_generator(seed: int, episode: int) -> torch.Generator:
    """The noise stream of evaluation episode ``episode``: a function of (seed, episode) only."""
    state = np.random.SeedSequence([int(seed), int(episode)]).generate_state(2, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


@torch.no_grad()
def run_episodes(agent: BaseAgent, envs: Any, episodes: int, seed: int, deterministic: bool = True,
                 progress: Any = None) -> dict[str, float]:
    """Play episodes 0 .. episodes-1 on the N envs (each env takes the next episode when its current
    one ends; envs with nothing left play unscored episodes until the last scored one ends).
    Returns success_rate (None when the env reports no success), return_mean, length_mean, episodes."""
    n = envs.num_envs
    playing: list[int | None] = [i if i < episodes else None for i in range(n)]
    gens = [episode_generator(seed, i) for i in range(n)]
    raw_obs, _ = envs.reset(seed=[seed + i for i in range(n)])
    results: dict[int, tuple[float, float, float]] = {}
    upcoming = n
    was_training = agent.training
    agent.eval()
    while len(results) < episodes:
        step = step_envs(envs, agent, agent.policy.prepare_obs(raw_obs), deterministic, gens)
        raw_obs = step.raw_obs
        reset = np.zeros(n, dtype=bool)
        seeds: list[int | None] = [None] * n
        for i in np.nonzero(step.done)[0]:
            k = playing[i]
            if k is not None:
                results[k] = tuple(step.episode(i).values())
                if progress is not None:
                    progress.update(1)
            playing[i] = None
            if upcoming < episodes:               # this env takes the next episode, from its own seed
                playing[i], gens[i], seeds[i], reset[i] = upcoming, episode_generator(seed, upcoming), seed + upcoming, True
                upcoming += 1
        if reset.any():
            raw_obs, _ = envs.reset(seed=seeds, options={"reset_mask": reset})
    agent.train(was_training)
    arr = np.asarray([results[k] for k in range(episodes)])
    succ = arr[:, 2][~np.isnan(arr[:, 2])]
    return {"success_rate": float(succ.mean()) if succ.size else None, "return_mean": float(arr[:, 0].mean()),
            "length_mean": float(arr[:, 1].mean()), "episodes": episodes}


def check_json_out(path: str | Path) -> None:
    """``reinflow eval --json-out PATH`` writes a new file or replaces an earlier eval result, nothing
    else (``--json-out RUN/checkpoints/.../model.safetensors`` once replaced the weights)."""
    from reinflow.untrusted import read_json
    p = Path(path)
    if p.is_symlink():
        raise ConfigError(f"json_out={path}: is a symlink; give the path of the file itself")
    if p.exists():
        try:
            data = read_json(p, 1 << 20)
        except ConfigError:
            data = None
        if not (isinstance(data, dict) and all(k in data for k in RESULT_KEYS)):
            raise ConfigError(f"json_out={path}: exists and is not an earlier `reinflow eval` result; nothing is "
                              "written over it: choose a new file")
    elif p.parent.exists() and not p.parent.is_dir():
        raise ConfigError(f"json_out={path}: {p.parent} is not a folder (Not a directory)")
    elif not p.parent.exists():
        raise ConfigError(f"json_out={path}: the folder {p.parent} does not exist")


def write_json_out(path: str | Path, result: dict) -> None:
    from reinflow.rl.runfolder import write_json_atomic
    check_json_out(path)
    write_json_atomic(path, result)
