"""Data-parallel training under ``torchrun`` (PyTorch's launcher; gloo on CPU, nccl on GPUs).

Each rank steps its own ``parallel_envs`` (global env index = rank * parallel_envs + i, which
fixes its seeds), gradients are averaged with an all-reduce, advantage statistics, the reward
scaler, the KL early-stop decision and the logged statistics are reduced over ranks, and only
rank 0 logs, evaluates and writes checkpoints. Without torchrun every helper is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from reinflow import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def backend_for(device: str, cuda_available: bool) -> str:
    """The collective backend of ``--device`` (not of CUDA merely existing: a CPU model with nccl would
    copy every collective to a GPU): nccl for a CUDA device (or auto on a machine with one), else gloo."""
    if device == "auto":
        return "nccl" if cuda_available else "gloo"
    return "nccl" if _parse(device).type == "cuda" else "gloo"


def rank_device(device: str, local_rank: int, local_world: int, gpu_count: int) -> str:
    """This rank's device: one GPU per local rank (a bare ``cuda``, or ``auto`` with GPUs, is
    ``cuda:LOCAL_RANK``), checked against the GPU count; ConfigError names the fix."""
    dev = _parse(device) if device != "auto" else torch.device("cuda" if gpu_count else "cpu")
    if dev.type != "cuda":
        return str(dev)
    if dev.index is not None and local_world > 1:
        raise ConfigError(f"device={device!r}: with nproc={local_world} every rank would run on GPU {dev.index}; "
                          "give --device cuda (each rank takes the GPU of its LOCAL_RANK)")
    index = dev.index if dev.index is not None else local_rank
    if local_world > gpu_count or index >= gpu_count:
        raise ConfigError(f"nproc={local_world}: this machine has {gpu_count} CUDA GPU(s) and each rank needs its own "
                          f"(rank {local_rank} would take cuda:{index}); use --nproc {max(gpu_count, 1)} or fewer, "
                          "or --device cpu")
    return f"cuda:{index}"


def _parse(device: str) -> torch.device:
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device={device!r}: not a torch device; use cpu, cuda, cuda:N or auto") from None


def init_distributed(device: str = "cpu", timeout_min: float = 60.0) -> DistInfo:
    """Join the process group torchrun set up (RANK/WORLD_SIZE/LOCAL_RANK in the environment), with the
    backend of ``device`` and a collective timeout of ``timeout_min`` (the other ranks wait in one while
    rank 0 evaluates and checkpoints; NCCL's watchdog default, 10 min, kills a long evaluation)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    backend = backend_for(device, torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":  # before the group: NCCL binds each rank to the current device
        torch.cuda.set_device(torch.device(resolve_device(device, local)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=timeout_min))
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, backend=backend)


def shutdown(info: DistInfo, clean: bool = False) -> None:
    """Leave the process group. ``clean`` (every rank finished normally): meet at a barrier first,
    since gloo aborts a process ("terminate called without an active exception") when its peer
    tears the group down while it is still finishing (rank 0 writes the last checkpoint and report)."""
    if info.enabled and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def _dev(info: DistInfo) -> torch.device:
    return torch.device("cuda", info.local_rank) if info.backend == "nccl" else torch.device("cpu")


def all_reduce(values: torch.Tensor, info: DistInfo, op: str = "sum") -> torch.Tensor:
    """Reduced copy of a tensor (sum, max or min); identity on one process."""
    if not info.enabled:
        return values
    t = values.detach().to(_dev(info), torch.float64).clone()
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.to(values.device)


def all_gather_1d(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate equal-length 1-D tensors from every rank in rank order."""
    if not info.enabled:
        return values
    t = values.detach().to(_dev(info), torch.float64).contiguous()
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t)
    return torch.cat(out).to(values.device)


def average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Mean of the gradients over ranks, in one flat all-reduce (what DDP does, without its wrapper)."""
    if not info.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_dev(info))
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(p.device, p.dtype)
        offset += n


def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's parameters and buffers everywhere (same start on every rank)."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        buf = t.data.to(_dev(info))
        dist.broadcast(buf, src=0)
        t.data.copy_(buf.to(t.device))


def param_max_abs_diff(module: torch.nn.Module, info: DistInfo) -> float:
    """max over parameters of (max over ranks - min over ranks): 0 when ranks are in sync."""
    if not info.enabled:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in module.parameters()])
    return float((all_reduce(flat, info, "max") - all_reduce(flat, info, "min")).abs().max())


def reduce_metrics(metrics: dict, info: DistInfo) -> dict:
    """Mean over ranks of every numeric metric; min/max for extremes. Non-numeric values and
    None (e.g. no finished episode on a rank) are taken from ranks that have them."""
    if not info.enabled:
        return metrics
    keys = sorted(metrics)
    vals = torch.tensor([float(metrics[k]) if isinstance(metrics[k], (int, float)) and metrics[k] is not None
                         else float("nan") for k in keys], dtype=torch.float64, device="cpu")  # host numbers
    present = (~torch.isnan(vals)).double()
    total = all_reduce(torch.nan_to_num(vals), info)
    count = all_reduce(present, info)
    vmax = all_reduce(torch.nan_to_num(vals, nan=-float("inf")), info, "max")
    vmin = all_reduce(torch.nan_to_num(vals, nan=float("inf")), info, "min")
    out = dict(metrics)
    for i, k in enumerate(keys):
        if count[i] == 0:
            continue
        if k.endswith("_max") or k == "ppo/ratio_max":
            out[k] = float(vmax[i])
        elif k.endswith("_min") or k == "ppo/ratio_min":
            out[k] = float(vmin[i])
        elif k.startswith("time/") and k.endswith("_per_s"):
            out[k] = float(total[i])  # throughput adds up over ranks
        else:
            out[k] = float(total[i] / count[i])
    return out


def resolve_device(name: str, local_rank: int = 0) -> Any:
    """The torch device of ``--device`` (auto or a bare cuda: this rank's GPU), checked to exist here."""
    if name == "auto":
        return torch.device(rank_device(name, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                        torch.cuda.device_count() if torch.cuda.is_available() else 0))
    dev = _parse(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine (torch {torch.__version__}, "
                          f"{'built with CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}); "
                          "use --device cpu or auto")
    if dev.type == "cuda":
        return torch.device(rank_device(name, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                        torch.cuda.device_count()))
    return dev
