"""``--auto-scale``: a run's sigma / lr / KL / clip, given as settings valid at D_ref, rescaled to the
chain dimension D of its agent (the rules of ``reinflow.flow.scaling``, docs/design.md §4). D is read
from the flags and the checkpoint's config (``rl.build.policy_dims``), so the config is settled before
the agent is built (``ChainPPO.resolve``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym

from reinflow.rl.build import policy_dims


def apply_auto_scale(cfg: Any, act_space: gym.Space, verbose: bool = True) -> tuple[Any, dict | None]:
    """--auto-scale: read the given sigma/lr/KL/clip as settings valid at D_ref and rescale them
    to this run's D (reinflow.flow.scaling). The saved config holds the applied values with
    auto_scale off, so a resumed run does not scale twice."""
    if not cfg.auto_scale:
        return cfg, None
    from reinflow.flow.scaling import ScaleReference, format_scale_table, ratio_term_dims, scale_for_dimension
    ref = ScaleReference(dim=cfg.scale_ref_dim, sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, lr=cfg.lr_actor,
                         target_kl=cfg.target_kl or 0.01, clip_epsilon=cfg.clip_epsilon)
    chunk, action_dim, denoise_steps = policy_dims(cfg, act_space)
    dims = ratio_term_dims((cfg.act_steps or chunk) if cfg.mask_executed else chunk, action_dim, denoise_steps,
                           cfg.logprob_reduction)
    res = scale_for_dimension(ref, dims, cfg.logprob_reduction, cfg.scale_rule)
    v = res.values
    k = v["sigma_max"] / cfg.sigma_max
    new = replace(cfg, sigma_min=v["sigma_min"], sigma_max=v["sigma_max"], lr_actor=v["lr"],
                  clip_epsilon=v["clip_epsilon"], target_kl=v["target_kl"] if cfg.target_kl else None,
                  sigma_max_final=cfg.sigma_max_final * k if cfg.sigma_max_final else None, auto_scale=False)
    if verbose:
        print(f"--auto-scale ({cfg.scale_rule}) for D = {dims}:\n{format_scale_table(res)}")
    return new, {"rule": cfg.scale_rule, "num_dims": dims, "values": v, "reasons": res.reasons}
