"""Feature detection across LeRobot versions (0.4.x on Python 3.11; 0.5-0.6 on Python >= 3.12).

What reinflow needs from LeRobot's ``VLAFlowMatching`` is three calls, whose signatures moved:

* the prefix forward that fills the KV cache: 0.4 calls
  ``vlm_with_expert.forward(..., inputs_embeds=[prefix, None], use_cache=True, fill_kv_cache=True)``
  and gets a ``dict[layer] -> {"key_states", "value_states"}`` back; later versions drop
  ``fill_kv_cache`` and may return a ``transformers`` ``DynamicCache`` (or a tuple of (k, v)).
* ``denoise_step(prefix_pad_masks, past_key_values, x_t, timestep)`` (argument names matched
  by signature, positional fallback).
* the Euler loop, inline in 0.4's ``sample_actions`` and a shared ``euler_integrate`` in later
  versions. reinflow never calls it: the chain sampler integrates (one function for every policy);
  ``euler_integrate_fn`` only locates it for diagnostics.

A ``DynamicCache`` is *mutated* by ``update`` (each denoising call would append its suffix keys).
The prefix cache is therefore snapshotted once as a list of (key, value) tensors and a fresh
cache object is rebuilt for every velocity call, so sampling and likelihood see the same prefix.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch


def _params(fn: Any) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return []


def fill_prefix_cache(model: Any, prefix_embs: torch.Tensor, att_2d: torch.Tensor,
                      position_ids: torch.Tensor) -> tuple[torch.Tensor | None, Any]:
    """Run the VLM over the prefix once. Returns (prefix hidden states or None, cache snapshot)."""
    vwe = model.vlm_with_expert
    names = _params(vwe.forward)
    kwargs: dict[str, Any] = dict(attention_mask=att_2d, position_ids=position_ids, past_key_values=None,
                                  inputs_embeds=[prefix_embs, None], use_cache=True)
    if "fill_kv_cache" in names:
        kwargs["fill_kv_cache"] = True
    kwargs = {k: v for k, v in kwargs.items() if k in names} if names else kwargs
    outputs, cache = vwe.forward(**kwargs)
    prefix_out = outputs[0] if isinstance(outputs, (list, tuple)) else None
    return prefix_out, snapshot_cache(cache)


def snapshot_cache(cache: Any) -> Any:
    """dict caches (0.4) are read-only in denoise_step: kept as is. Cache objects -> ("layers", [(k, v)])."""
    if cache is None:
        raise RuntimeError("LeRobot's prefix forward returned no KV cache (use_cache must be True)")
    if isinstance(cache, dict):
        return cache
    if isinstance(cache, (tuple, list)):
        return ("layers", [(kv[0], kv[1]) for kv in cache])
    layers = getattr(cache, "layers", None)
    if layers is not None and all(hasattr(layer, "keys") for layer in layers):
        return ("layers", [(layer.keys, layer.values) for layer in layers], type(cache))
    if hasattr(cache, "key_cache"):
        return ("layers", list(zip(cache.key_cache, cache.value_cache)), type(cache))
    if hasattr(cache, "to_legacy_cache"):
        return ("layers", [(k, v) for k, v in cache.to_legacy_cache()], type(cache))
    raise RuntimeError(f"unsupported LeRobot KV cache type {type(cache).__name__}")


def fresh_cache(snap: Any) -> Any:
    """A cache object equivalent to the snapshot, safe to hand to one denoise_step call."""
    if isinstance(snap, dict):
        return snap
    layers = snap[1]
    if len(snap) == 2:
        return tuple(layers)
    cls = snap[2]
    cache = cls()
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache


def slice_cache(snap: Any, idx: torch.Tensor) -> Any:
    """Rows ``idx`` of every cached tensor (batch dim 0)."""
    if isinstance(snap, dict):
        return {layer: {name: t[idx] for name, t in kv.items()} for layer, kv in snap.items()}
    return (snap[0], [(k[idx], v[idx]) for k, v in snap[1]], *snap[2:])


def denoise_step(model: Any, prefix_pad_masks: torch.Tensor, cache: Any, x_t: torch.Tensor,
                 timestep: torch.Tensor) -> torch.Tensor:
    """LeRobot's own ``VLAFlowMatching.denoise_step``, arguments matched by name."""
    names = _params(model.denoise_step)
    aliases = {"prefix_pad_masks": prefix_pad_masks, "past_key_values": cache, "kv_cache": cache,
               "x_t": x_t, "noisy_actions": x_t, "timestep": timestep, "time": timestep}
    if names and all(n in aliases for n in names if n not in ("self",)):
        return model.denoise_step(**{n: aliases[n] for n in names if n in aliases})
    return model.denoise_step(prefix_pad_masks, cache, x_t, timestep)


def euler_integrate_fn() -> Any:
    """LeRobot's shared Euler integrator where it exists (>= 0.5), else None (0.4: inline loop)."""
    for mod in ("lerobot.policies.utils", "lerobot.policies.flow_matching", "lerobot.utils.flow_matching",
                "lerobot.policies.common.flow_matching"):
        try:
            fn = getattr(importlib.import_module(mod), "euler_integrate", None)
        except ImportError:
            continue
        if fn is not None:
            return fn
    return None


def describe() -> dict[str, str]:
    """Versions and detected API flavour (for docs, doctor output and bug reports)."""
    import lerobot
    from lerobot.policies.smolvla.modeling_smolvla import VLAFlowMatching
    from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel

    fwd = _params(SmolVLMWithExpertModel.forward)
    return {
        "lerobot": getattr(lerobot, "__version__", "?"),
        "prefix_cache": "fill_kv_cache flag" if "fill_kv_cache" in fwd else "cache object",
        "denoise_step": ", ".join(n for n in _params(VLAFlowMatching.denoise_step) if n != "self"),
        "euler_integrate": "shared" if euler_integrate_fn() is not None else "inline in sample_actions",
    }
