"""How much the critic's input differs between observations: a checkpoint's ``value_features`` (what the
critic, the residual offset net and dsrl read) on the first observations of N episodes.

    python benchmarks/feature_spread.py RUN/best --env lerobot_env_so101/SO101PickPlace-v0 \\
        --env-kwargs '{"block_in_state": true, "max_episode_steps": 100, "obs_mode": "pixels_state"}'

Prints the mean |feature| and the spread (standard deviation over the observations, averaged over the
dimensions). docs/smolvla.md "The critic reads a layer-normalised prefix" has the numbers.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", default="{}")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--seed", type=int, default=1000)
    a = p.parse_args()
    torch.set_num_threads(1)
    from reinflow.envs.factory import make_vector_env, set_headless_gl
    from reinflow.rl.checkpoint import load_agent
    set_headless_gl()
    agent = load_agent(a.checkpoint)[0]
    pol = agent.policy
    envs = make_vector_env(a.env, a.episodes, agent.sampler.act_steps, "sync", json.loads(a.env_kwargs))
    try:
        obs, _ = envs.reset(seed=list(range(a.seed, a.seed + a.episodes)))
        with torch.no_grad():
            f = pol.value_features(pol.encode(pol.prepare_obs(obs))).float()
    finally:
        envs.close()
    print(json.dumps({"checkpoint": a.checkpoint, "dims": f.shape[1], "observations": f.shape[0],
                      "mean_abs": round(float(f.abs().mean()), 4), "spread": round(float(f.std(0).mean()), 4)}))


if __name__ == "__main__":
    main()
