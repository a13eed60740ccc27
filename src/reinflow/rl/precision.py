"""The numerics of a run, chosen and recorded (``--precision``), never inherited from PyTorch's defaults.

fp32: float32 networks, TF32 off (PyTorch leaves cuDNN convolutions in TF32 by default: SmolVLM's
patch embedding), deterministic algorithms requested. tf32: the same with TF32 matmuls and
convolutions on a CUDA device (no effect on a CPU). bf16: the policy's, noise head's and critic's
matmuls and convolutions run under ``torch.autocast(bfloat16)`` (the SmolVLA VLM and action expert,
the MLP flow policy); weights, optimizer state and gradients stay float32, and every Gaussian
log-density stays float64 (``flow.chain.gaussian_log_density``: autocast never casts float64).
``cudnn.benchmark`` is off in every mode: it picks kernels by timing, so the same shape could be
computed two ways in one run, which is what invariant 1 forbids.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

PRECISIONS = ("fp32", "tf32", "bf16")


def numerics(precision: str, device: Any) -> dict[str, Any]:
    """What ``use_numerics`` sets for this precision and device (recorded in config.json)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    return {"precision": precision, "device_type": dev.type, "autocast_dtype": "bfloat16" if precision == "bf16" else None,
            "tf32": precision == "tf32" and dev.type == "cuda", "cudnn_benchmark": False,
            "deterministic_algorithms": True, "logprob_dtype": "float64"}


@contextlib.contextmanager
def use_numerics(precision: str, device: Any) -> Iterator[dict[str, Any]]:
    """Set TF32, cudnn.benchmark and deterministic algorithms for the run; restored on exit (a
    process that runs several trainings, such as the tests, gets its own settings back)."""
    rec = numerics(precision, device)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = rec["tf32"]
    torch.backends.cudnn.benchmark = False
    if rec["device_type"] == "cuda":  # cuBLAS is deterministic only with a fixed workspace (read at its first call)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic kernel warns instead of stopping a long run
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield rec
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved[:3]
        torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])


def autocast(precision: str, device: Any) -> contextlib.AbstractContextManager:
    """The reduced-precision region of collection, update and evaluation (a no-op above bf16)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def weights_record(agent: torch.nn.Module) -> dict[str, Any]:
    """The dtypes of the agent's weights now and, where the policy says (SmolVLA), in the checkpoint it
    was built from: a conversion is recorded in config.json, never silent."""
    now = sorted({str(p.dtype).removeprefix("torch.") for p in agent.parameters()})
    source = getattr(getattr(agent, "policy", None), "source_dtypes", None)
    base = getattr(getattr(getattr(agent, "policy", None), "base", None), "source_dtypes", None)
    return {"dtype": now, "checkpoint_dtype": source or base or now}
