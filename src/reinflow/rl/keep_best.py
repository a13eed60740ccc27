"""Keep the best policy a run has seen (``--keep-best``, on by default).

PPO on a precise task can peak and then slide (measured on the arm: pick-lift 95 % -> 88 %). A
user wants the peak. Every periodic evaluation is a *selection* evaluation (episodes seeded from
``10_000 + seed``); a policy that beats every earlier one (success rate first, mean return on a
tie) is written to ``<out>/best`` (an ordinary
checkpoint folder: ``reinflow eval``, ``--policy-path`` and ``--checkpoint`` take it). Because the
best of many noisy evaluations is biased upward, the run ends by re-measuring the kept policy on
*held-out* episodes (seeded from ``20_000 + seed``, never used for selection); that is the number
to report, and ``best/config.json`` says which evaluation chose it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reinflow import ConfigError
from reinflow.untrusted import read_json

SELECTION_SEED = 10_000
HELDOUT_SEED = 20_000
BEST_DIR = "best"


def selection_seed(seed: int) -> int:
    return SELECTION_SEED + seed


def heldout_seed(seed: int) -> int:
    return HELDOUT_SEED + seed


class BestKeeper:
    """Tracks the best selection evaluation of a run and writes its policy to ``<out>/best``."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.dir = Path(out) / BEST_DIR
        self.enabled = enabled
        self.info: dict | None = None
        if enabled and (self.dir / "config.json").is_file():  # a resumed run keeps its earlier best
            try:
                saved = read_json(self.dir / "config.json")
            except ConfigError:
                saved = None                                  # unreadable: the next evaluation replaces it
            info = saved.get("best") if isinstance(saved, dict) else None
            if isinstance(info, dict) and isinstance(info.get("success_rate"), (int, float)):
                self.info = info

    @property
    def best_rate(self) -> float | None:
        return None if self.info is None else float(self.info["success_rate"])

    def _score(self, info: dict) -> tuple[float, float]:
        # Ties in success rate are common (10 episodes on a plateau score 0.8 again and again); the
        # mean return breaks them: on the arm and MetaWorld every step before success costs, so a
        # higher return is a sooner, more reliable success. A best saved without it loses ties.
        ret = info.get("return_mean")
        return float(info["success_rate"]), float(ret) if isinstance(ret, (int, float)) else float("-inf")

    def offer(self, agent: Any, evaluation: dict, seed: int, iteration: int, env_steps: int,
              run_config: dict) -> bool:
        """Write ``agent`` to ``<out>/best`` if ``evaluation`` (run from episode seed ``seed``) beats
        every earlier one: a higher success rate, or the same with a higher mean return (an exact tie
        keeps the earlier policy). Returns whether it was written."""
        from reinflow.rl.checkpoint import save_agent
        rate = evaluation.get("success_rate")
        if not self.enabled or rate is None:
            return False
        info = {"iteration": iteration, "env_steps": env_steps, "success_rate": rate,
                "return_mean": evaluation.get("return_mean"), "episodes": evaluation["episodes"],
                "chosen_by": f"selection evaluation, episode seed {seed}", "heldout": None}
        if self.info is not None and self._score(info) <= self._score(self.info):
            return False
        self.info = info
        save_agent(self.dir, agent, {**run_config, "best": self.info})
        return True

    def measure_heldout(self, eval_envs: Any, episodes: int, seed: int, device: Any) -> dict:
        """Evaluate the kept policy on held-out episodes (seed ``seed``), record the result in
        ``best/config.json`` and return the best summary (iteration, success_rate, heldout)."""
        from reinflow.rl.checkpoint import load_agent
        from reinflow.rl.evaluate import run_episodes
        assert self.info is not None
        agent = load_agent(self.dir)[0].to(device)
        evaluation = run_episodes(agent, eval_envs, episodes, seed=seed)
        self.info["heldout"] = {**{k: evaluation[k] for k in ("success_rate", "return_mean", "episodes")},
                                "seed": seed}
        path = self.dir / "config.json"
        cfg = read_json(path)
        cfg["best"] = self.info
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(cfg, indent=2, default=str))
        tmp.replace(path)
        return dict(self.info)


class Evaluator:
    """The trainer's periodic evaluations: every ``eval_every`` iterations and at the last one, a
    selection evaluation (``selection_seed``) offered to the ``BestKeeper``; at the end, the kept
    policy re-measured on held-out episodes. ``step`` returns the ``eval/*`` metrics of an
    iteration (carried forward between evaluations: ``eval/iteration`` says when) and the
    stochastic-deterministic gap ``rollout/success_gap``."""

    def __init__(self, out: Path, cfg: Any, eval_envs: Any, run_config: dict, device: Any) -> None:
        self.cfg, self.envs, self.run_config, self.device = cfg, eval_envs, run_config, device
        self.keeper = BestKeeper(out, cfg.keep_best)
        self.last: dict | None = None   # the latest selection evaluation
        self.best: dict | None = None   # the kept policy, with its held-out result (set at the end)

    def step(self, agent: Any, it: int, last: bool, env_steps: int, rollout_success: float | None) -> dict:
        from reinflow.rl.evaluate import run_episodes
        cfg, out = self.cfg, {}
        if last or (cfg.eval_every and it % cfg.eval_every == 0):
            self.last = {**run_episodes(agent, self.envs, cfg.eval_episodes, seed=selection_seed(cfg.seed)),
                         "iteration": it}
            self.keeper.offer(agent, self.last, selection_seed(cfg.seed), it, env_steps, self.run_config)
            if last and self.keeper.info is not None:  # the number to report: unbiased by selection
                self.best = self.keeper.measure_heldout(self.envs, cfg.eval_episodes, heldout_seed(cfg.seed), self.device)
                out.update({"eval/best_iteration": self.best["iteration"], "eval/best_success_rate": self.best["success_rate"],
                            "eval/heldout_success_rate": self.best["heldout"]["success_rate"]})
        if self.last is not None:
            out.update({"eval/success_rate": self.last["success_rate"], "eval/return_mean": self.last["return_mean"],
                        "eval/iteration": self.last["iteration"]})
            if self.last["success_rate"] is not None and rollout_success is not None:
                # How much exploration costs: few successes in the batch means little advantage signal.
                out["rollout/success_gap"] = self.last["success_rate"] - rollout_success
        return out
