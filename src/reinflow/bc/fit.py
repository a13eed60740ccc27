"""The BC optimisation loop shared by flow-matching pretraining (``bc.pretrain``) and SmolVLA BC
(``bc.smolvla_bc``): each supplies its own loss, optimizer and schedule."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch


def fit(step_loss: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, sched: Any, steps: int, desc: str,
        progress: bool, clip: tuple[list[torch.nn.Parameter], float] | None = None) -> list[float]:
    """``steps`` optimizer steps on ``step_loss()`` (a fresh minibatch each call), with an optional
    gradient-norm clip ``(params, max_norm)``. Returns the losses."""
    from tqdm import tqdm
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss = step_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(*clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    bar.close()
    return losses
