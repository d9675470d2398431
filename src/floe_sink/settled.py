"""An unchanged snapshot known without reading it, nor importing pyiceberg, pyarrow or DuckDB.

Iceberg metadata files are immutable: a table whose catalog still names the metadata file
that a complete sync state was made from still has that state's snapshot as its current
one. For the embedded (SQLite) catalog the metadata location is one row read with
``sqlite3`` (:func:`sqlite_metadata_location`, which :mod:`floe_sink.source` uses too), so a
change-aware run of an unchanged table can finish without the lakehouse stack or the sink.

What makes it safe is a small sidecar beside the ``local`` store's sync state file
(``<state>.settled.json``), written by :meth:`floe_sink.sync.SyncDiff.save_state` only after
a *complete* state (every row of the snapshot acknowledged) was atomically in place, and
removed before any state file replaces that one (:func:`floe_sink.sync.write_state`). It
names the state file it describes by size, modification time and inode, so a sidecar that
outlived its state (a kill between the two writes, a ``reset``, a copied directory) is
ignored: the run then takes the ordinary path and diffs. It records the metadata location,
the snapshot, the plan (:func:`floe_sink.job.delivery_plan`), the key columns, the
snapshot's row count and the checksum of an empty delivery of the mapped schema (the
checksum an unchanged run reports).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "Settled",
    "clear_settled",
    "read_settled",
    "settled_path",
    "sqlite_metadata_location",
    "write_settled",
]

_SQLITE_URI = re.compile(r"sqlite(?:\+\w+)?:///(?P<path>[^?]*)(?:\?.*)?")
_JDBC_COLUMNS = frozenset({"catalog_name", "table_namespace", "table_name", "metadata_location"})
_SUFFIX = ".settled.json"


def sqlite_database(properties: Mapping[str, Any]) -> Path | None:
    """The SQLite file of a ``sql`` catalog's ``uri``; ``None`` for anything else."""
    if str(properties.get("type") or "sql") != "sql":
        return None
    match = _SQLITE_URI.fullmatch(str(properties.get("uri") or ""))
    database = match.group("path") if match else ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def sqlite_metadata_location(
    name: str, properties: Mapping[str, Any], table_name: str
) -> str | None:
    """The current metadata file of ``table_name`` in a SQL catalog on SQLite, read with
    ``sqlite3`` (the ``iceberg_tables`` row the Iceberg JDBC catalog specifies); ``None``
    when that is not the catalog, or anything is unexpected (no such file, table or row;
    another layout): pyiceberg's own catalog then reads it, and says what is wrong."""
    path = sqlite_database(properties)
    if path is None or not path.is_file():
        return None
    namespace, _, table = table_name.rpartition(".")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        ) as db:
            columns = {str(row[1]) for row in db.execute("PRAGMA table_info(iceberg_tables)")}
            if not _JDBC_COLUMNS.issubset(columns):
                return None
            query = (
                "SELECT metadata_location FROM iceberg_tables "
                "WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?"
            )
            if "iceberg_type" in columns:  # the v1 layout: views are rows too
                query += " AND (iceberg_type IS NULL OR iceberg_type = 'TABLE')"
            row = db.execute(query, (name, namespace, table)).fetchone()
    except sqlite3.Error:
        return None
    if row is None or not row[0]:
        return None
    return str(row[0])


@attrs.frozen(kw_only=True)
class Settled:
    """What the sidecar of a complete sync state says."""

    metadata_location: str
    snapshot_id: int
    plan: str
    keys: tuple[str, ...]
    source_rows: int
    delivery_id: str
    checksum: str
    """Of an empty delivery of the mapped schema: what an unchanged run reports."""


def settled_path(state_path: Path) -> Path:
    """The sidecar of the sync state at ``state_path``."""
    return state_path.with_name(state_path.stem + _SUFFIX)


def _identity(state_path: Path) -> list[int] | None:
    try:
        stat = state_path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def clear_settled(state_path: Path) -> None:
    """Remove the sidecar (before the state it describes is replaced)."""
    settled_path(state_path).unlink(missing_ok=True)


def write_settled(state_path: Path, settled: Settled) -> None:
    """Write the sidecar of the (complete, already written) state at ``state_path``,
    atomically. A crash before the rename leaves no sidecar: the next run diffs."""
    identity = _identity(state_path)
    if identity is None:
        return
    document = {**attrs.asdict(settled), "keys": list(settled.keys), "state": identity}
    target = settled_path(state_path)
    temporary = target.with_name(target.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def read_settled(state_path: Path) -> Settled | None:
    """The sidecar of the state at ``state_path``, when it describes that very file."""
    try:
        document = json.loads(settled_path(state_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("state") != _identity(state_path):
        return None
    try:
        return Settled(
            metadata_location=str(document["metadata_location"]),
            snapshot_id=int(document["snapshot_id"]),
            plan=str(document["plan"]),
            keys=tuple(str(key) for key in document["keys"]),
            source_rows=int(document["source_rows"]),
            delivery_id=str(document["delivery_id"]),
            checksum=str(document["checksum"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def settled_snapshot(
    *,
    state_path: Path,
    source_config: Mapping[str, Any],
    plan: str,
    keys: Sequence[str],
) -> Settled | None:
    """The sidecar of ``state_path`` when the catalog still names its metadata file and the
    destination's plan and key are the same: the run has nothing to read or send."""
    settled = read_settled(state_path)
    if settled is None or settled.plan != plan or settled.keys != tuple(keys):
        return None
    properties = source_config.get("catalog_properties")
    table = source_config.get("table")
    if not isinstance(properties, Mapping) or not isinstance(table, str):
        return None
    name = str(source_config.get("catalog_name") or "floe")
    location = sqlite_metadata_location(name, properties, table)
    return settled if location == settled.metadata_location else None
