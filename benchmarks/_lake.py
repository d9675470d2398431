"""The benchmark table as an Iceberg table: `_data.build_table` written with pyiceberg.

The catalog is a pyiceberg SQL catalog on SQLite with a local ``file://`` warehouse, under a
directory of its own (never under a floe-sink ``--state-dir``, so that the state directory's
size is the delivery state alone). Data files hold ``file_rows`` rows each (500,000 by default,
as in ``bench_e2e.py``); pyiceberg's default row-group size (1,048,576 rows).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

__all__ = ["CATALOG_NAME", "TABLE", "catalog_properties", "iceberg_ready", "seed_lake"]

CATALOG_NAME = "bench"
"""The catalog's name (a SQL catalog keeps it in its rows: readers must use the same)."""

TABLE = "gold.bench"
"""The Iceberg identifier of the benchmark table."""


def catalog_properties(root: Path) -> dict[str, str]:
    """The pyiceberg catalog properties of the lake under ``root`` (absolute paths)."""
    root = root.resolve()
    return {
        "type": "sql",
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
    }


def iceberg_ready(table: pa.Table) -> pa.Table:
    """``table`` with the dictionary category as plain strings (Iceberg has no dictionaries)."""
    index = table.schema.get_field_index("category")
    return table.set_column(index, "category", table.column("category").cast(pa.string()))


def seed_lake(root: Path, rows: int, *, file_rows: int = 500_000) -> dict[str, str]:
    """Write the ``rows``-row benchmark table to a new catalog under ``root``.

    Returns:
        The catalog properties (:func:`catalog_properties`).
    """
    from _data import build_table
    from pyiceberg.catalog import load_catalog

    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    properties = catalog_properties(root)
    catalog = load_catalog(CATALOG_NAME, **properties)
    catalog.create_namespace_if_not_exists(TABLE.rpartition(".")[0])
    table = iceberg_ready(build_table(rows))
    iceberg_table = catalog.create_table(TABLE, schema=table.schema)
    for offset in range(0, rows, file_rows):
        iceberg_table.append(table.slice(offset, file_rows))
    return properties
