"""Environments: the built-in arm tasks (registered on import), the gymnasium factory and the
chunk-execution wrapper."""

import importlib.util

if importlib.util.find_spec("reinflow.envs.arm") is not None:  # registers reinflow/Arm*-v0
    from reinflow.envs import arm  # noqa: F401
