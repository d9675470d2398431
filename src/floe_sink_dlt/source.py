"""The read config of the lakehouse source: which Iceberg catalog, which table.

:func:`source_config` backs the plugin's ``get_source_config`` hook. It turns the ``catalog:``
section of manifest.yaml (pyiceberg catalog properties) plus the destination's ``table`` into
the dict that :func:`floe_sink.source.open_table` reads from. Without a catalog, the embedded
default is a pyiceberg SQL catalog on SQLite under the state directory (``./.floe``), so a
laptop needs no server; ``type: rest`` is how a Polaris catalog is reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floe_sink.errors import SinkConfigurationError

__all__ = [
    "DEFAULT_CATALOG_NAME",
    "DEFAULT_STATE_DIR",
    "embedded_catalog_properties",
    "source_config",
]

DEFAULT_CATALOG_NAME = "floe"
DEFAULT_STATE_DIR = ".floe"

# Keys of the hook's input that are ours, not pyiceberg catalog properties.
_CONTROL_KEYS = frozenset({"name", "table", "state_dir"})
_CATALOG_TYPES = ("sql", "rest")


def embedded_catalog_properties(state_dir: str | Path = DEFAULT_STATE_DIR) -> dict[str, str]:
    """The properties of the embedded default catalog: SQLite + local files under ``state_dir``.

    Paths are made absolute, so the catalog stays the same whatever the working directory of
    a later reader is.
    """
    root = Path(state_dir).expanduser().resolve()
    return {
        "type": "sql",
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
    }


def source_config(catalog_config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the Iceberg read config for ``catalog_config``.

    Args:
        catalog_config: The manifest's ``catalog:`` properties (``name``, ``type``, ``uri``,
            ``warehouse``, ``credential``, ...; all optional) plus ``table`` (the Iceberg
            identifier ``namespace.table`` to read) and optionally ``state_dir`` (where the
            embedded catalog lives; default ``./.floe``).

    Returns:
        ``{"catalog_name": str, "catalog_properties": dict, "table": str}``, plus
        ``"create_catalog": True`` when the uri is the embedded default's (the catalog is
        created on first use). The properties are handed to
        ``pyiceberg.catalog.load_catalog`` as they are.

    Raises:
        SinkConfigurationError: ``table`` is missing or not ``namespace.table``, the catalog
            type is not ``sql`` or ``rest``, or a ``rest`` catalog has no ``uri``.
    """
    table = catalog_config.get("table")
    if not isinstance(table, str) or not table.strip():
        raise SinkConfigurationError(
            "The source config needs 'table' (the Iceberg table to read, as namespace.table); "
            "set source_table on the destination in floe.yaml"
        )
    table = table.strip()
    namespace, _, name = table.rpartition(".")
    if not namespace or not name:
        raise SinkConfigurationError(
            f"source_table {table!r} is not an Iceberg identifier: write it as namespace.table"
        )
    catalog_name = str(catalog_config.get("name") or DEFAULT_CATALOG_NAME)
    properties = {
        str(key): value
        for key, value in catalog_config.items()
        if key not in _CONTROL_KEYS and value is not None  # an unset manifest field
    }
    catalog_type = str(properties.get("type") or "sql")
    if catalog_type not in _CATALOG_TYPES:
        raise SinkConfigurationError(
            f"catalog.type {catalog_type!r} in manifest.yaml is not supported; use "
            f"{' or '.join(map(repr, _CATALOG_TYPES))} (rest reaches Polaris)"
        )
    properties["type"] = catalog_type
    config: dict[str, Any] = {"catalog_name": catalog_name, "catalog_properties": properties}
    if catalog_type == "sql":
        embedded = embedded_catalog_properties(catalog_config.get("state_dir") or DEFAULT_STATE_DIR)
        if "uri" not in properties:
            # only the embedded catalog is created on first use; a uri from the manifest
            # must name an existing catalog (a misspelt path is an error, not a new catalog)
            properties["uri"] = embedded["uri"]
            config["create_catalog"] = True
        properties.setdefault("warehouse", embedded["warehouse"])
    elif not properties.get("uri"):
        raise SinkConfigurationError(
            "catalog.uri in manifest.yaml is required for a rest catalog "
            "(the Polaris or Iceberg REST endpoint, e.g. https://polaris.example.com/api/catalog)"
        )
    return {**config, "table": table}
