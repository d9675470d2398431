"""Moved to the core: the read config of the source is :mod:`floe_sink.source`'s job.

The reference plugin no longer implements ``get_source_config``: like every plugin without it,
it reads the catalog the core configured. These names stay importable from here.
"""

from __future__ import annotations

from floe_sink.source import DEFAULT_CATALOG_NAME, embedded_catalog_properties, source_config
from floe_sink.state import DEFAULT_STATE_DIR

__all__ = [
    "DEFAULT_CATALOG_NAME",
    "DEFAULT_STATE_DIR",
    "embedded_catalog_properties",
    "source_config",
]
