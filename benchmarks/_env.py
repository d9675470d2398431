"""The environment of the processes a benchmark times: bytecode compiled once, as installed.

A ``pip install floe-sink`` user has ``.pyc`` files; this checkout is installed editable and
the machine may set ``PYTHONDONTWRITEBYTECODE=1``, so every child process would compile the
~50 floe_sink modules again (50 to 80 ms). :func:`compiled_env` lets children write and read
their bytecode under ``cache_dir`` (``PYTHONPYCACHEPREFIX``: in the benchmark's temp dir, never
a ``__pycache__`` in the repository); the first process compiles, so each benchmark makes one
untimed warm-up run of every command it times, floe-sink's and the baselines' alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def compiled_env(cache_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) with bytecode written to and read from ``cache_dir``."""
    compiled = dict(os.environ if env is None else env)
    compiled.pop("PYTHONDONTWRITEBYTECODE", None)
    compiled["PYTHONPYCACHEPREFIX"] = str(cache_dir)
    return compiled
