"""What one dsrl SAC gradient step costs on this machine, against an iteration's env stepping.

The pick-lift recipe's shapes (features 160, latent 8 x 6 = 48, twin critics and actor [256, 256],
batch 256, UTD 2: 160 gradient steps per 80-decision iteration), random replay rows (the cost does
not depend on their values). Prints milliseconds per gradient step and per part (critic step, actor
and temperature step), and a checksum of the parameters after the steps so that a faster version can
be checked to give the same numbers (same seed: identical checksum), and the matmul MFLOP, aten calls and host reads
(``item()``) of one step. Times are CPU time of this
process (time.process_time), so other processes sharing the cores inflate them less than wall time.

``--baseline FILE``: another version of ``rl/sac.py`` (``git show REV:src/reinflow/rl/sac.py > FILE``)
timed against this one in alternating blocks of 10 full steps in this process, on the same batches,
so that load from other processes falls on both alike; prints each one's median per step, the median
ratio, and whether the parameters after the steps are bit-identical.
``--critics``: the twin critics' forward + backward as two MLPs (``rl.sac.TwinQ``) against one stacked
ensemble (weights [2, in, out], ``torch.baddbmm``, LayerNorm per member), the batched alternative.

python benchmarks/sac_step_cost.py --steps 100 --repeats 3
python benchmarks/sac_step_cost.py --steps 100 --repeats 3 --baseline /tmp/sac_old.py
python benchmarks/sac_step_cost.py --critics
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from reinflow.policies.dsrl import NoiseActor
from reinflow.rl import sac as sac_mod
from reinflow.rl.config import TrainConfig
from reinflow.rl.replay import ReplayBuffer


def build(mod, a):
    torch.manual_seed(0)
    actor = NoiseActor(a.feat, a.latent, [256, 256], 2.5)
    return mod.SAC(actor, a.feat, TrainConfig(algorithm="dsrl", lr_actor=3e-4))  # the dsrl defaults: tau 0.005, target -1/dim


def params(sac) -> list[torch.Tensor]:
    return [p.detach() for p in [*sac.actor.parameters(), *sac.q.parameters()]]


class CountOps(TorchDispatchMode):
    """aten calls of one step; ``_local_scalar_dense`` is a host read (an ``item()``: a device sync where
    the tensor is on a GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        self.host_reads += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


def paired(a, buf, path: str) -> dict:
    spec = importlib.util.spec_from_file_location("sac_baseline", path)
    base_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base_mod)
    sacs = {"baseline": build(base_mod, a), "this": build(sac_mod, a)}
    gens = {k: (torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)) for k in sacs}
    ms = {k: [] for k in sacs}
    for block in range(a.steps * a.repeats // 10):
        for k in (("this", "baseline") if block % 2 else ("baseline", "this")):
            t0 = time.process_time()
            for _ in range(10):
                sacs[k].update(buf.sample(a.batch, gens[k][0]), gens[k][1])
            ms[k].append(100 * (time.process_time() - t0))
    ratio = statistics.median(t / b for t, b in zip(ms["this"], ms["baseline"]))
    same = all(torch.equal(x, y) for x, y in zip(params(sacs["this"]), params(sacs["baseline"])))
    return {**{f"{k}_full_step_ms": round(statistics.median(v), 2) for k, v in ms.items()},
            "median_ratio": round(ratio, 3), "bit_identical_params": same, "steps_each": 10 * len(ms["this"])}


def critic_layouts(a) -> dict:
    """fwd + bwd of the twin critics on one batch: TwinQ (two MLPs) vs a stacked [2, in, out] ensemble."""
    q = sac_mod.TwinQ(a.feat, a.latent, [256, 256])
    lin = [[m for m in net if isinstance(m, nn.Linear)] for net in (q.q1, q.q2)]
    lns = [[m for m in net if isinstance(m, nn.LayerNorm)] for net in (q.q1, q.q2)]
    w = [torch.stack([n[i].weight.detach().t() for n in lin]).requires_grad_() for i in range(3)]
    b = [torch.stack([n[i].bias.detach() for n in lin]).unsqueeze(1).requires_grad_() for i in range(3)]
    g = [torch.stack([n[i].weight.detach() for n in lns]).unsqueeze(1).requires_grad_() for i in range(2)]
    s = [torch.stack([n[i].bias.detach() for n in lns]).unsqueeze(1).requires_grad_() for i in range(2)]

    def ensemble(feats, latent):
        x = torch.cat([feats, latent], -1).expand(2, -1, -1)
        for i in range(3):
            x = torch.baddbmm(b[i], x, w[i])
            x = F.relu(F.layer_norm(x, x.shape[-1:]) * g[i] + s[i]) if i < 2 else x
        return x.squeeze(-1)

    feats, latent = torch.randn(a.batch, a.feat), torch.randn(a.batch, a.latent)
    with torch.no_grad():
        err = max(float((e - t).abs().max()) for e, t in zip(ensemble(feats, latent), q(feats, latent)))
    runs = {"two_mlps": lambda: sum(v.square().mean() for v in q(feats, latent)).backward(),
            "stacked_ensemble": lambda: ensemble(feats, latent).square().mean(1).sum().backward()}
    ms = {k: [] for k in runs}
    for block in range(2 * a.repeats):
        for k, fn in runs.items():
            t0 = time.process_time()
            for _ in range(a.steps):
                fn()
            ms[k].append(1e3 * (time.process_time() - t0) / a.steps)
    return {**{f"{k}_fwd_bwd_ms": round(min(v), 2) for k, v in ms.items()}, "max_abs_difference": err}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--feat", type=int, default=160)
    ap.add_argument("--latent", type=int, default=48)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--baseline", default=None, help="another rl/sac.py to time against this one, in alternation")
    ap.add_argument("--critics", action="store_true", help="time two critic MLPs against one stacked ensemble")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.critics:
        print(json.dumps({**critic_layouts(a), "steps": a.steps, "torch": torch.__version__}))
        return
    buf = ReplayBuffer(10_000, {"feat": (a.feat,), "latent": (a.latent,), "reward": (), "next_feat": (a.feat,),
                                "done": ()}, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    buf.add(feat=torch.randn(5000, a.feat, generator=g), latent=torch.rand(5000, a.latent, generator=g) * 5 - 2.5,
            reward=torch.randn(5000, generator=g), next_feat=torch.randn(5000, a.feat, generator=g),
            done=(torch.rand(5000, generator=g) < 0.05).float())
    if a.baseline:
        print(json.dumps({**paired(a, buf, a.baseline), "torch": torch.__version__}))
        return
    sac = build(sac_mod, a)
    idx_gen, noise_gen = torch.Generator().manual_seed(2), torch.Generator().manual_seed(3)
    best = {}
    for _ in range(a.repeats):
        t_sample = t_critic = t_all = 0.0
        for _ in range(a.steps):
            t0 = time.process_time()
            b = buf.sample(a.batch, idx_gen)
            t1 = time.process_time()
            sac.update(b, noise_gen, actor_step=False)    # critics + Polyak only
            t2 = time.process_time()
            t_sample, t_critic = t_sample + t1 - t0, t_critic + t2 - t1
        for _ in range(a.steps):
            t0 = time.process_time()
            sac.update(buf.sample(a.batch, idx_gen), noise_gen)
            t_all += time.process_time() - t0
        row = {"sample_ms": 1e3 * t_sample / a.steps, "critic_step_ms": 1e3 * t_critic / a.steps,
               "full_step_ms": 1e3 * t_all / a.steps}
        best = {k: min(v, best.get(k, v)) for k, v in row.items()}
    checksum = sum(float(p.double().sum()) for p in params(sac))
    with CountOps() as count, FlopCounterMode(display=False) as flops:
        sac.update(buf.sample(a.batch, idx_gen), noise_gen)
    print(json.dumps({**{k: round(v, 2) for k, v in best.items()},
                      "actor_and_alpha_ms": round(best["full_step_ms"] - best["critic_step_ms"], 2),
                      "mflop_per_step": round(flops.get_total_flops() / 1e6), "aten_ops_per_step": count.ops,
                      "host_reads_per_step": count.host_reads,
                      "steps": a.steps, "repeats": a.repeats, "checksum": repr(checksum),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
