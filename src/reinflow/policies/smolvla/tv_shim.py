"""Make ``import torchvision`` work next to a CPU-only torch (applied on the SmolVLA path only).

PyPI's Linux torchvision wheels are linked against CUDA torch (``libtorch_cuda.so``). Next to
the CPU torch wheel their ``_C.so`` cannot load, and ``torchvision/_meta_registrations.py``
then fails at import with ``operator torchvision::nms does not exist`` because it registers
fake kernels for ``nms``/``qnms`` unconditionally. LeRobot imports torchvision at module level
(``lerobot.datasets.utils``), although SmolVLA itself never calls a torchvision operator.

``ensure_torchvision()`` first tries to load the real ``_C.so``; only if that fails does it
define the two operator schemas with ``torch.library`` (plus a pure-torch CPU ``nms`` so the op
is usable, not just declared). With a matching torchvision build this is a no-op. It is never
imported by reinflow's core path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import torch

_STATE: dict[str, str] = {}
_LIB: list = []  # keep the torch.library.Library alive


def _nms_cpu(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (boxes x1, y1, x2, y2), indices sorted by score."""
    order = scores.argsort(descending=True)
    keep = []
    x1, y1, x2, y2 = dets.unbind(1)
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2, x2[i]) - torch.maximum(x1, x1[i])).clamp(min=0)
        h = (torch.minimum(y2, y2[i]) - torch.maximum(y1, y1[i])).clamp(min=0)
        inter = w * h
        iou = inter / (area + area[i] - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long, device=dets.device)


def ensure_torchvision() -> str:
    """Returns "native" (real ops load), "shimmed" (schemas defined here), "absent" or "imported"."""
    if "state" in _STATE:
        return _STATE["state"]
    if "torchvision" in sys.modules:
        _STATE["state"] = "imported"
        return "imported"
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        _STATE["state"] = "absent"
        return "absent"
    pkg_dir = list(spec.submodule_search_locations)[0]
    lib = next((os.path.join(pkg_dir, f) for f in sorted(os.listdir(pkg_dir))
                if f.startswith("_C") and f.endswith((".so", ".pyd"))), None)
    try:
        if lib is None:
            raise OSError("no _C extension")
        torch.ops.load_library(lib)
        state = "native"
    except (OSError, RuntimeError):
        state = "shimmed"
        defs = torch.library.Library("torchvision", "FRAGMENT")  # noqa: TOR901
        for name in ("nms", "qnms"):
            defs.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        defs.impl("nms", _nms_cpu, "CPU")
        _LIB.append(defs)
    with warnings.catch_warnings():
        # torchvision.io warns that its (CUDA-linked) image.so failed to load: irrelevant here.
        warnings.filterwarnings("ignore", message=".*image.*extension.*")
        import torchvision  # noqa: F401
    _STATE["state"] = state
    return state
