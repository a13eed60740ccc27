"""Make ``reinflow`` importable from the source tree when the package is not installed."""

import os
import sys

_SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "src"))
try:
    import reinflow.envs.arm  # noqa: F401
except ImportError:
    if _SRC not in sys.path:
        sys.path.insert(0, _SRC)
