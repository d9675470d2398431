"""The built-in state backends, ``local`` and ``sql``: a ``get_state_store`` plugin.

Registered like any other plugin, through the ``floe_sink`` entry-point group (as ``state``),
and marked ``trylast``: a platform plugin's ``get_state_store`` is asked first, so it can bring
a backend of its own or take over ``local`` or ``sql``. The built-in backends are part of the
core: :func:`floe_sink.state.open_state_store` falls back to them when no plugin answers, also
when ``$FLOE_SINK_LOAD_PLUGINS`` left this plugin out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floe_sink.hookspecs import hookimpl
from floe_sink.secrets import Secret
from floe_sink.state import LocalStateStore, StateStore

__all__ = ["get_state_store"]


@hookimpl(trylast=True)
def get_state_store(
    state_config: dict[str, Any], secrets: Mapping[str, Secret], state_dir: Path
) -> StateStore | None:
    """``backend: local`` (the default): files under ``state_dir``; ``backend: sql``: the
    database of the secret's ``url`` (:mod:`floe_sink.sqlstate`); any other backend: ``None``."""
    backend = state_config.get("backend") or "local"
    if backend == "local":
        return LocalStateStore(Path(state_dir))
    if backend == "sql":
        from floe_sink.sqlstate import open_sql_store

        return open_sql_store(state_config, secrets, Path(state_dir))
    return None
