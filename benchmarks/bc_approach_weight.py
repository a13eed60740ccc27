"""SmolVLA BC with each episode's first frames counted more: an experiment on why the camera-only BC
of the SO-101 does not aim at the cube (docs/so101.md, "Why the camera-only BC fails here").

    python benchmarks/bc_approach_weight.py EARLY REPEAT PRETRAIN_ARGS...

runs ``reinflow pretrain PRETRAIN_ARGS`` (``--policy smolvla --demos DS ...``) with every frame whose
``frame_index`` is below EARLY repeated REPEAT more times in the training set (so at EARLY = 20,
REPEAT = 4 the approach, where the chunk depends on where the cube is, weighs 5 times its share of
LeRobot's flow loss). The frames are repeated in the loaded dataset, before BC draws its batches;
everything else is the package's BC. Not a package option: one measured screen, kept so its numbers
can be re-run.
"""

from __future__ import annotations

import sys

import torch

import reinflow.bc.smolvla_bc as smolvla_bc
from reinflow.cli import main

_load_chunked = smolvla_bc.load_chunked


def with_repeated_approach(early: int, repeat: int):
    def load(*args, **kwargs) -> dict:
        data = _load_chunked(*args, **kwargs)
        first = (data["frame_index"] < early).nonzero().flatten()
        idx = torch.cat([torch.arange(len(data["task"])), first.repeat(repeat)])
        print(f"frames {len(data['task'])} + {len(first) * repeat} repeated approach frames", flush=True)
        return {k: v[idx] if isinstance(v, torch.Tensor) else [v[i] for i in idx.tolist()] for k, v in data.items()}
    return load


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    smolvla_bc.load_chunked = with_repeated_approach(int(sys.argv[1]), int(sys.argv[2]))
    sys.exit(main(["pretrain", *sys.argv[3:]]))
