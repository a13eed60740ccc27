"""Replay buffer for off-policy algorithms (``--algorithm dsrl``): a ring of transitions in torch tensors.

One row per decision (one chunk): ``feat`` [F] the frozen policy's observation features, ``latent``
[L] what the actor chose, ``reward`` [] the chunk's summed reward, ``next_feat`` [F], ``done`` []
1.0 where the target must not bootstrap. Features instead of raw observations: the base policy is
frozen, so its features are a fixed function of the observation, and storing them spares a
re-encoding per gradient step (a VLA's vision-language prefix) and the images' memory.

``state_dict()`` is a nested dict of tensors and ints (the trainer-state format, safetensors + JSON,
no pickle), so a resumed run continues with the buffer it had.
"""

from __future__ import annotations

from typing import Any

import torch

from reinflow import ConfigError


class ReplayBuffer:
    """``fields``: name -> per-row shape, e.g. {"feat": (F,), "latent": (L,), "reward": ()}."""

    def __init__(self, capacity: int, fields: dict[str, tuple[int, ...]], device: torch.device | str = "cpu"):
        if capacity < 1:
            raise ConfigError(f"dsrl_buffer_size={capacity}: must be >= 1")
        self.capacity, self.fields = int(capacity), {k: tuple(v) for k, v in fields.items()}
        self.device = torch.device(device)
        self.data = {k: torch.zeros((self.capacity, *shape), device=device) for k, shape in self.fields.items()}
        self.pos = 0       # next row to write
        self.size = 0      # rows filled
        self.added = 0     # rows ever added (the oldest are overwritten past capacity)

    def __len__(self) -> int:
        return self.size

    def add(self, **rows: torch.Tensor) -> None:
        """Append a batch: every field [B, *shape] (the same B); the oldest rows are overwritten."""
        if set(rows) != set(self.fields):
            raise ValueError(f"replay rows have fields {sorted(rows)}, the buffer {sorted(self.fields)}")
        n = next(iter(rows.values())).shape[0]
        idx = (self.pos + torch.arange(n, device=self.device)) % self.capacity
        for k, v in rows.items():
            if tuple(v.shape) != (n, *self.fields[k]):
                raise ValueError(f"replay field {k}: got shape {tuple(v.shape)}, expected {(n, *self.fields[k])}")
            self.data[k][idx] = v.detach().to(self.data[k].device, torch.float32)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def sample(self, batch: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``batch`` rows drawn uniformly with replacement; every field [batch, *shape]."""
        if self.size == 0:
            raise ValueError("sample from an empty replay buffer")
        # drawn on the generator's device (a CPU generator gives the same rows on any device), then moved
        idx = torch.randint(0, self.size, (batch,), generator=generator,
                            device=generator.device if generator is not None else self.device).to(self.device)
        return {k: v[idx] for k, v in self.data.items()}

    # --- resume: only the filled rows are written ---------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "pos": self.pos, "size": self.size, "added": self.added,
                "data": {k: v[: self.size].cpu() for k, v in self.data.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Raise ConfigError naming what does not fit this buffer (capacity, fields, shapes)."""
        try:
            cap, pos, size, added, data = (state[k] for k in ("capacity", "pos", "size", "added", "data"))
        except (KeyError, TypeError):
            raise ConfigError("replay buffer state: expected capacity, pos, size, added, data") from None
        ints = (cap, pos, size, added)
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in ints):
            raise ConfigError(f"replay buffer state: capacity/pos/size/added={ints}: expected integers >= 0")
        if cap != self.capacity:
            raise ConfigError(f"dsrl_buffer_size={self.capacity}: the checkpoint's replay buffer holds {cap} rows; "
                              "resume with the same --dsrl-buffer-size")
        if not (size <= cap and pos < max(cap, 1) and added >= size) or not isinstance(data, dict) \
                or set(data) != set(self.fields):
            raise ConfigError(f"replay buffer state: fields {sorted(data) if isinstance(data, dict) else data!r} "
                              f"(size {size}, pos {pos}) do not fit a buffer of {sorted(self.fields)}")
        for k, v in data.items():
            if not isinstance(v, torch.Tensor) or tuple(v.shape) != (size, *self.fields[k]) \
                    or not bool(torch.isfinite(v).all()):
                got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ConfigError(f"replay buffer state: field {k} is {got}, expected finite {(size, *self.fields[k])}")
        done = data.get("done")
        if isinstance(done, torch.Tensor) and not bool(((done == 0) | (done == 1)).all()):
            raise ConfigError(f"replay buffer state: field done holds {done[(done != 0) & (done != 1)][:1].tolist()}; "
                              "expected 0 or 1 (an episode ended or not)")
        for k, v in data.items():
            self.data[k].zero_()
            self.data[k][:size] = v.to(self.data[k].device, torch.float32)
        self.pos, self.size, self.added = pos, size, added
