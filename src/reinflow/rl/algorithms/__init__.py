"""The algorithms behind ``--algorithm``, one file each, behind the protocol in ``base.py``.

The registry names classes as ``module:Class`` strings so that reading a config (``rl.config``,
the doctor) never imports torch-heavy modules; ``algorithm_class`` imports the one a run uses.
"""

from __future__ import annotations

import importlib

ALGORITHMS = {
    "chain-ppo": "reinflow.rl.algorithms.ppo:ChainPPO",
    "residual-ppo": "reinflow.rl.algorithms.residual_ppo:ResidualPPO",
}
"""--algorithm name -> its class"""
ALIASES = {"reinflow": "chain-ppo", "residual": "residual-ppo"}
"""the names of reinflow <= 0.1 (run folders and scripts written before the seam keep working)"""


def canonical(name: str) -> str:
    """The registry name of ``name`` (an alias is translated); unknown names are returned as they are."""
    return ALIASES.get(name, name)


def algorithm_class(name: str) -> type:
    module, _, attr = ALGORITHMS[canonical(name)].partition(":")
    return getattr(importlib.import_module(module), attr)
