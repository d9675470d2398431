"""The lakehouse source: an Iceberg table read through pyiceberg as a stream of Arrow batches.

The source belongs to the core, not to the plugins. :func:`source_config` turns the
``catalog:`` section of manifest.yaml (pyiceberg catalog properties) and a destination's
``source_table`` into a complete read config (``catalog_name``, ``catalog_properties``,
``table``); without a catalog, the embedded default is a pyiceberg SQL catalog on SQLite under
the state directory (``./.floe``), so a laptop needs no server, and ``type: rest`` is how a
Polaris catalog is reached. A plugin's ``get_source_config`` hook receives that config and may
return it unchanged, change it, or not be implemented at all.

:func:`open_table` loads the table a read config names; :func:`plan_scan` applies an optional
row filter (pyiceberg expression syntax, e.g. ``"country = 'FR' and lifetime_value > 100"``)
and column projection and plans the files; :meth:`SourceScan.reader` streams the result as a
``pyarrow.RecordBatchReader``.

Memory stays bounded by a few record batches, not by the table: the files of the scan are read
one after the other, each as a stream of batches. (pyiceberg's own ``to_arrow_batch_reader``
reads every file of the scan into memory at once in a thread pool before yielding its first
batch; we use it only as a fallback when its internals change.)

pyiceberg is imported on first use, so ``import floe_sink`` stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import attrs

from floe_sink.errors import ErrorCategory, SinkConfigurationError, SinkConnectionError, SinkError
from floe_sink.logs import get_logger
from floe_sink.state import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    import pyarrow as pa

_ARROW_TUNED = False


_JEMALLOC_DECAY_MS = 100
"""How long jemalloc keeps freed pages. 0 (give them back at once) made the first read of a
1M-row snapshot take 0.4 to 0.9 s instead of 0.2 s (a page fault for every new batch);
100 ms costs the peak RSS of a streamed run no more than what it frees in that time."""


def _tune_arrow() -> None:
    """pyarrow is imported when a table is opened, not with this module (``source_config``
    needs none of it: an unchanged table's run never imports it, see floe_sink.settled)."""
    global _ARROW_TUNED
    if _ARROW_TUNED:
        return
    import pyarrow as pa

    if pa.default_memory_pool().backend_name == "jemalloc":
        # return freed memory to the system soon, so the peak RSS of a long run follows what
        # is live (a few batches), not what was ever allocated (see floe_sink.cli)
        pa.jemalloc_set_decay_ms(_JEMALLOC_DECAY_MS)
    _ARROW_TUNED = True


if TYPE_CHECKING:
    from floe_sink.checksum import FileBoundaries

__all__ = [
    "DEFAULT_CATALOG_NAME",
    "SourceNotFoundError",
    "SourceReadError",
    "SourceScan",
    "conform",
    "embedded_catalog_properties",
    "load_catalog",
    "open_table",
    "parse_row_filter",
    "plan_scan",
    "quote_identifiers",
    "read_tasks",
    "source_config",
]

log = get_logger(__name__)


class SourceNotFoundError(SinkConfigurationError):
    """Raised when the source table (or its namespace) does not exist in the catalog."""


class SourceReadError(SinkError):
    """Raised when a data file of the source table cannot be read; names the file and table.

    The file may be missing, damaged, not Parquet, or on storage that cannot be reached.
    Permanent, except for an I/O error of the storage (which may pass).

    Attributes:
        path: The data file, as the table's metadata names it.
        table: The Iceberg table.
    """

    def __init__(self, path: str, table: str, error: BaseException) -> None:
        self.path = path
        self.table = table
        unreachable = isinstance(error, OSError) and not isinstance(error, FileNotFoundError)
        super().__init__(
            f"Cannot read data file {path!r} of Iceberg table {table!r}: "
            f"{type(error).__name__}: {str(error).rstrip('.')}. Restore the file (or roll the "
            "table back to a snapshot without it) and run again",
            category=ErrorCategory.TRANSIENT if unreachable else ErrorCategory.PERMANENT,
        )


DEFAULT_CATALOG_NAME = "floe"
"""The name of the embedded default catalog (and of a manifest catalog without ``name``)."""

# Keys of source_config's input that are ours, not pyiceberg catalog properties.
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
    """Return the complete Iceberg read config for a catalog and a table.

    This is what the command hands to a plugin's ``get_source_config`` (which may return it
    unchanged) and then to :func:`open_table`.

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


_SQLITE_URI = re.compile(r"sqlite(?:\+\w+)?:///(?P<path>[^?]*)(?:\?.*)?")


def _ensure_local_dirs(properties: Mapping[str, Any], *, create_catalog: bool) -> None:
    """Check (or, for the embedded catalog, create) the local files a catalog needs.

    SQLite creates a missing database file on connect, and pyiceberg then an empty catalog in
    it: a misspelt ``uri`` would read as "no such table" from a catalog that never existed.
    Only the embedded catalog (``create_catalog``) is created; its folder and a file://
    warehouse root are made too, as pyiceberg makes neither.

    Raises:
        SinkConfigurationError: A SQLite catalog file that does not exist, not to be created.
    """
    uri = str(properties.get("uri") or "")
    match = _SQLITE_URI.fullmatch(uri) if properties.get("type", "sql") == "sql" else None
    database = match.group("path") if match else ""
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        if create_catalog:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise SinkConfigurationError(
                f"catalog.uri {uri!r} in manifest.yaml names a SQLite catalog file that does "
                f"not exist: {str(path.absolute())!r}. Fix catalog.uri (floe-sink reads an "
                "existing catalog, it does not create one), or remove the catalog section to "
                "use the embedded catalog under the state directory (./.floe)"
            )
    warehouse = str(properties.get("warehouse") or "")
    if warehouse.startswith("file://"):
        Path(urlparse(warehouse).path).mkdir(parents=True, exist_ok=True)


def load_catalog(source_config: Mapping[str, Any]) -> Any:
    """Return the pyiceberg catalog named by a source config.

    Args:
        source_config: ``{"catalog_name": ..., "catalog_properties": {...}, ...}``, as
            returned by :func:`source_config` (and a plugin's ``get_source_config``).
            ``"create_catalog": True`` (the embedded
            default catalog) lets a missing SQLite catalog file be created.

    Raises:
        SinkConfigurationError: The config lacks catalog properties, names a SQLite catalog
            file that does not exist (and is not to be created), or pyiceberg refuses them.
        SinkConnectionError: The catalog (a REST/Polaris server) cannot be reached.
    """
    from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog

    properties = source_config.get("catalog_properties")
    if not isinstance(properties, Mapping):
        raise SinkConfigurationError(
            "The source config has no catalog_properties; a plugin's get_source_config "
            "must return the config it received (catalog_name, catalog_properties, table), "
            "changed or not"
        )
    name = str(source_config.get("catalog_name") or "floe")
    _ensure_local_dirs(properties, create_catalog=source_config.get("create_catalog") is True)
    try:
        return pyiceberg_load_catalog(name, **{str(k): v for k, v in properties.items()})
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise SinkConfigurationError(
            f"Cannot set up Iceberg catalog {name!r} from manifest.yaml catalog: {exc}"
        ) from exc
    except OSError as exc:
        raise SinkConnectionError(f"Cannot reach Iceberg catalog {name!r}: {exc}") from exc


def open_table(source_config: Mapping[str, Any]) -> Any:
    """Load the Iceberg table a source config names.

    Returns:
        A ``pyiceberg.table.Table``.

    Raises:
        SourceNotFoundError: The table or its namespace does not exist.
        SinkConfigurationError: The config is incomplete or the catalog is misconfigured.
        SinkConnectionError: The catalog cannot be reached.
    """
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    _tune_arrow()
    table_name = source_config.get("table")
    if not isinstance(table_name, str) or not table_name:
        raise SinkConfigurationError("The source config names no table")
    properties = source_config.get("catalog_properties")
    if isinstance(properties, Mapping):
        _ensure_local_dirs(properties, create_catalog=source_config.get("create_catalog") is True)
        name = str(source_config.get("catalog_name") or DEFAULT_CATALOG_NAME)
        table = _from_sqlite_catalog(name, properties, table_name)
        if table is not None:
            return table
    catalog = load_catalog(source_config)
    try:
        return catalog.load_table(table_name)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise SourceNotFoundError(
            f"Source table {table_name!r} does not exist in Iceberg catalog "
            f"{source_config.get('catalog_name')!r}; check source_table in floe.yaml "
            "(namespace.table) and the catalog in manifest.yaml"
        ) from exc
    except OSError as exc:
        raise SinkConnectionError(
            f"Cannot read table {table_name!r} from the Iceberg catalog: {exc}"
        ) from exc


def _from_sqlite_catalog(name: str, properties: Mapping[str, Any], table_name: str) -> Any:
    """The table of a SQL catalog on SQLite, read with ``sqlite3``; ``None`` when not that.

    pyiceberg's SQL catalog is built on SQLAlchemy: a third of a second to import and an
    engine per run, for what a reader needs of it, one row of the ``iceberg_tables`` table
    the Iceberg JDBC catalog specifies (the metadata file of the table). Anything unexpected
    (no such file, table or row; another layout) gives ``None``: pyiceberg's own catalog then
    reads it, and says what is wrong.
    """
    from floe_sink.settled import sqlite_metadata_location

    location = sqlite_metadata_location(name, properties, table_name)
    if location is None:
        return None
    namespace, _, table = table_name.rpartition(".")

    from pyiceberg.catalog.noop import NoopCatalog
    from pyiceberg.io import load_file_io
    from pyiceberg.serializers import FromInputFile
    from pyiceberg.table import Table

    settings = {str(key): str(value) for key, value in properties.items()}
    try:
        metadata = FromInputFile.table_metadata(
            load_file_io(settings, location).new_input(location)
        )
    except Exception:  # a missing or damaged metadata file: pyiceberg's catalog reports it
        return None
    return Table(
        identifier=(*namespace.split("."), table),
        metadata=metadata,
        metadata_location=location,
        io=load_file_io({**settings, **metadata.properties}, location),
        catalog=NoopCatalog(name),  # read only: nothing is committed through it
    )


@attrs.frozen(kw_only=True)
class SourceScan:
    """A planned scan of an Iceberg table: its schema, its files, and a way to stream it.

    Attributes:
        table_name: The Iceberg identifier read.
        schema: The Arrow schema of the batches (after projection).
        files: How many data files the scan reads.
        estimated_rows: Rows in those files; exact unless a row filter or deletes drop some
            (``None`` then).
        snapshot_id: The snapshot read (``None``: the table has none yet).
    """

    table_name: str
    schema: pa.Schema
    files: int
    estimated_rows: int | None
    snapshot_id: int | None = None
    row_filter: str | None = None
    """The row filter the scan applies (pyiceberg expression text), if any."""
    metadata_location: str | None = None
    """The table's metadata file when the scan reads its current snapshot (else ``None``)."""
    _scan: Any = attrs.field(alias="scan", repr=False)
    _tasks: tuple[Any, ...] = attrs.field(alias="tasks", repr=False)

    @property
    def file_paths(self) -> tuple[str, ...]:
        """The data files the scan reads, in reading order."""
        return tuple(str(task.file.file_path) for task in self._tasks)

    def only_files(self, paths: set[str]) -> SourceScan:
        """The same scan reading only the data files in ``paths`` (in the same order)."""
        tasks = tuple(task for task in self._tasks if str(task.file.file_path) in paths)
        exact = self.estimated_rows is not None
        return attrs.evolve(
            self,
            files=len(tasks),
            estimated_rows=sum(int(t.file.record_count) for t in tasks) if exact else None,
            tasks=tasks,
        )

    @property
    def tasks(self) -> tuple[Any, ...]:
        """The planned ``FileScanTask``s, in the order of their files' paths."""
        return self._tasks

    @property
    def table_scan(self) -> Any:
        """The pyiceberg ``DataScan`` (its metadata, projection and filter read the files)."""
        return self._scan

    def local_parquet_files(self) -> list[tuple[str, int]] | None:
        """The scan's data files as (local path, rows), in reading order, when each is a
        local Parquet file that :meth:`reader` streams as it is (no deletes, no row filter,
        the table's field ids under the same names): another reader (DuckDB's) then reads
        the same rows in the same order. ``None`` otherwise."""
        if not self._tasks:
            return None
        found = []
        for task in self._tasks:
            path = _local_path(str(task.file.file_path))
            if path is None or not _plain_file(self._scan, task, path):
                return None
            found.append((path, int(task.file.record_count)))
        return found

    def reader(self, *, files: FileBoundaries | None = None) -> pa.RecordBatchReader:
        """Stream the scan as a ``RecordBatchReader``, one file after the other.

        Args:
            files: Told where each data file ends (in rows), for a per-file checksum.
        """
        import pyarrow as pa

        batches = _stream_tasks(self._scan, self._tasks, self.table_name, files)
        if batches is None:
            reader = self._scan.to_arrow_batch_reader()
            return reader if reader.schema.equals(self.schema) else reader.cast(self.schema)
        return pa.RecordBatchReader.from_batches(self.schema, conform(batches, self.schema))


def appended_files(table: Any, base_snapshot_id: int, scan: SourceScan) -> set[str] | None:
    """The files ``scan`` reads beyond those of ``base_snapshot_id``, when the table only
    grew by appends since then; ``None`` when the history does not say so (the base is not
    an ancestor or was expired, a snapshot between deleted or overwrote rows)."""
    from pyiceberg.table.snapshots import Operation, ancestors_between

    base = table.snapshot_by_id(base_snapshot_id)
    current = table.snapshot_by_id(scan.snapshot_id) if scan.snapshot_id is not None else None
    if base is None or current is None:
        return None
    found_base = False
    for snapshot in ancestors_between(base, current, table.metadata):
        if snapshot.snapshot_id == base.snapshot_id:
            found_base = True
            break
        operation = snapshot.summary.operation if snapshot.summary is not None else None
        if operation != Operation.APPEND:
            return None
    if not found_base:
        return None
    old = plan_scan(
        table,
        row_filter=scan.row_filter,
        columns=list(scan.schema.names),
        snapshot_id=base_snapshot_id,
    )
    return set(scan.file_paths) - set(old.file_paths)


def read_tasks(
    scan: Any,
    tasks: Sequence[Any],
    schema: pa.Schema,
    *,
    table_name: str,
    files: FileBoundaries | None = None,
) -> pa.RecordBatchReader:
    """Stream some planned files of a scan, as :meth:`SourceScan.reader` streams them all.

    Args:
        scan: What the files are read with: an object with the ``DataScan`` attributes
            ``table_metadata``, ``io``, ``projection()``, ``row_filter``, ``case_sensitive``
            and ``limit`` (a Ray task rebuilds one from the driver's plan).
        tasks: ``FileScanTask``s of that scan, read in this order.
        schema: The Arrow schema of the scan (:attr:`SourceScan.schema`).
        table_name: The Iceberg table, for errors.
        files: Told where each data file ends (in rows).

    Raises:
        RuntimeError: pyiceberg's per-file reading moved (no file-by-file read possible).
    """
    import pyarrow as pa

    batches = _stream_tasks(scan, tasks, table_name, files)
    if batches is None:  # pragma: no cover - pyiceberg internals moved
        raise RuntimeError("this pyiceberg cannot read a scan's files one by one")
    return pa.RecordBatchReader.from_batches(schema, conform(batches, schema))


def conform(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``batches``, each cast to ``schema`` where it differs (types, tz spellings)."""
    for batch in batches:
        yield batch if batch.schema.equals(schema) else batch.cast(schema)


def _stream_tasks(
    scan: Any, tasks: Sequence[Any], table_name: str, files: FileBoundaries | None = None
) -> Iterator[pa.RecordBatch] | None:
    """Batches of ``tasks`` read lazily, file by file; ``None`` when pyiceberg changed.

    A file that cannot be read raises :class:`SourceReadError` naming it: pyarrow's own
    message ("Parquet magic bytes not found") says neither which file nor which table.
    ``files`` is told how many rows each file had, once it is read.
    """
    try:
        from pyiceberg.io.pyarrow import ArrowScan, _read_all_delete_files
    except ImportError:  # pragma: no cover - pyiceberg internals moved
        return None
    arrow_scan = ArrowScan(
        scan.table_metadata,
        scan.io,
        scan.projection(),
        scan.row_filter,
        scan.case_sensitive,
        scan.limit,
    )
    per_file = getattr(arrow_scan, "_record_batches_from_scan_tasks_and_deletes", None)
    if per_file is None:  # pragma: no cover - pyiceberg internals moved
        return None

    import pyarrow as pa

    def generate() -> Iterator[pa.RecordBatch]:
        deletes = _read_all_delete_files(scan.io, tasks)  # positional deletes: small
        for task in tasks:
            rows = 0
            try:
                plain = _plain_parquet_batches(scan, task)
                for batch in plain if plain is not None else per_file([task], deletes):
                    rows += batch.num_rows
                    yield batch
            except (pa.ArrowException, OSError, ValueError) as exc:  # ArrowInvalid: a ValueError
                raise SourceReadError(task.file.file_path, table_name, exc) from exc
            if files is not None:
                files.end_file(rows)

    return generate()


_PLAIN_BATCH_ROWS = 65_536
_FIELD_ID = b"PARQUET:field_id"


def _plain_parquet_batches(scan: Any, task: Any) -> Iterator[pa.RecordBatch] | None:
    """Batches of one data file read directly with pyarrow, or ``None`` when that is unsafe.

    The common case of a Gold table (a Parquet file with no deletes, read without a row
    filter, whose columns carry the table's field ids under the same names) needs none of
    pyiceberg's per-file machinery, and pyiceberg's dataset scanner pre-buffers and reads
    ahead: measured on a 5M-row table, ~100 MB less peak memory this way. Anything else
    (deletes, filters, renamed or missing columns, other formats) goes through pyiceberg.
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.manifest import FileFormat

    if task.delete_files or task.file.file_format != FileFormat.PARQUET:
        return None
    if not isinstance(scan.row_filter, AlwaysTrue):
        return None
    wanted = [(field.name, field.field_id) for field in scan.projection().fields]
    return _read_plain(scan.io, task.file.file_path, wanted)


def _local_path(location: str) -> str | None:
    """The local file system path of a data file's location; ``None`` for an object store."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(location)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)
    if not parsed.scheme and location.startswith("/"):
        return location
    return None


def _plain_file(scan: Any, task: Any, path: str) -> bool:
    """Whether :func:`_plain_parquet_batches` reads ``task``'s file as it is."""
    import pyarrow.parquet as pq
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.manifest import FileFormat

    if task.delete_files or task.file.file_format != FileFormat.PARQUET:
        return False
    if not isinstance(scan.row_filter, AlwaysTrue):
        return False
    try:
        file_schema = pq.read_schema(path)
    except (OSError, ValueError):
        return False  # the reader says what is wrong with it
    for field in scan.projection().fields:
        index = file_schema.get_field_index(field.name)
        metadata = file_schema.field(index).metadata if index >= 0 else None
        if not metadata or metadata.get(_FIELD_ID) != str(field.field_id).encode():
            return False
    return True


def _read_plain(
    io: Any, path: str, wanted: list[tuple[str, int]]
) -> Iterator[pa.RecordBatch] | None:
    import pyarrow.parquet as pq

    stream = io.new_input(path).open()
    try:
        parquet = pq.ParquetFile(stream, pre_buffer=False)
        file_schema = parquet.schema_arrow
        for name, field_id in wanted:
            index = file_schema.get_field_index(name)
            metadata = file_schema.field(index).metadata if index >= 0 else None
            if not metadata or metadata.get(_FIELD_ID) != str(field_id).encode():
                stream.close()  # renamed, added or re-typed since: pyiceberg maps it
                return None
    except Exception:
        stream.close()
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        with stream:
            yield from parquet.iter_batches(
                batch_size=_PLAIN_BATCH_ROWS,
                columns=[name for name, _ in wanted],
                use_threads=False,
            )

    return batches()


def plan_scan(
    table: Any,
    *,
    row_filter: str | None = None,
    columns: Sequence[str] | None = None,
    snapshot_id: int | None = None,
) -> SourceScan:
    """Plan a scan of ``table`` with an optional row filter and column projection.

    The files are read in the order of their paths, so that a snapshot always streams the same
    rows in the same order: a resumed delivery relies on it.

    Args:
        table: A ``pyiceberg.table.Table`` (see :func:`open_table`).
        row_filter: A pyiceberg expression, e.g. ``"status = 'active' and id > 10"``.
        columns: The source columns to read; ``None`` reads them all.
        snapshot_id: The snapshot to read; ``None`` reads the current one.

    Raises:
        SinkConfigurationError: The filter does not parse or names an unknown column, or a
            projected column does not exist.
    """
    from pyiceberg.expressions import AlwaysTrue, BooleanExpression
    from pyiceberg.expressions.visitors import bind
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    table_name = ".".join(table.name()) if hasattr(table, "name") else str(table)
    schema = table.schema()
    expression: BooleanExpression = AlwaysTrue()
    if row_filter:
        expression = _parse_filter(row_filter, table_name)
        try:
            bind(schema, expression, case_sensitive=True)
        except ValueError as exc:
            raise SinkConfigurationError(
                f"row_filter {row_filter!r} does not fit table {table_name!r}: {exc}; "
                f"columns: {', '.join(field.name for field in schema.fields)}"
            ) from exc
    selected: tuple[str, ...] = ("*",)
    if columns:
        known = {field.name for field in schema.fields}
        missing = [column for column in columns if column not in known]
        if missing:
            raise SinkConfigurationError(
                f"Column(s) {', '.join(map(repr, missing))} are not in source table "
                f"{table_name!r}; columns: {', '.join(field.name for field in schema.fields)}"
            )
        selected = tuple(dict.fromkeys(columns))
    current = table.current_snapshot()
    current_id = None if current is None else int(current.snapshot_id)
    # An explicit snapshot id makes pyiceberg read with that snapshot's schema; the current
    # snapshot is read with the table's current schema (a rename makes no new snapshot).
    pinned = snapshot_id if snapshot_id is not None and snapshot_id != current_id else None
    scan = table.scan(
        row_filter=expression,
        selected_fields=selected,
        case_sensitive=True,
        snapshot_id=pinned,
    )
    snapshot_id = current_id if pinned is None else pinned
    tasks = tuple(sorted(scan.plan_files(), key=lambda task: str(task.file.file_path)))
    exact = not row_filter and all(not task.delete_files for task in tasks)
    estimated = sum(int(task.file.record_count) for task in tasks) if exact else None
    arrow_schema = schema_to_pyarrow(scan.projection(), include_field_ids=False)
    log.debug(
        "source_planned",
        table=table_name,
        files=len(tasks),
        estimated_rows=estimated,
        columns=list(arrow_schema.names),
    )
    return SourceScan(
        table_name=table_name,
        schema=arrow_schema,
        files=len(tasks),
        estimated_rows=estimated,
        snapshot_id=snapshot_id,
        row_filter=row_filter or None,
        metadata_location=getattr(table, "metadata_location", None) if pinned is None else None,
        scan=scan,
        tasks=tasks,
    )


_FILTER_TOKEN = re.compile(
    r"(?P<string>'(?:[^']|'')*')"  # a string literal, '' inside
    r'|(?P<quoted>"(?:[^"\\]|\\.)*")'  # an identifier already quoted
    r"|(?P<word>(?:[\w$]|[^\x00-\x7f\s])+)"  # a name, a number or a keyword
)


def quote_identifiers(row_filter: str) -> str:
    """``row_filter`` with the names pyiceberg's parser cannot read bare double-quoted.

    pyiceberg reads an unquoted name only when it is ASCII (``[A-Za-z_][A-Za-z0-9_$]*``):
    ``größe > 3`` is refused, ``"größe" > 3`` is not. Every word with a character outside
    ASCII is quoted here (string literals and quoted names are left as they are), so that a
    column is written in ``row_filter`` as it is named.
    """

    def quote(match: re.Match[str]) -> str:
        word = match.group("word")
        if word is None or word.isascii():
            return match.group(0)
        return f'"{word}"'

    return _FILTER_TOKEN.sub(quote, row_filter)


def parse_row_filter(row_filter: str) -> Any:
    """Parse a ``row_filter`` into a pyiceberg expression, non-ASCII names accepted bare.

    Raises:
        Exception: pyparsing's ``ParseException`` family, for a filter that does not parse.
    """
    from pyiceberg.expressions.parser import parse

    return parse(quote_identifiers(row_filter))


def _parse_filter(row_filter: str, table_name: str) -> Any:
    try:
        return parse_row_filter(row_filter)
    except Exception as exc:  # pyparsing raises its own ParseException family
        # pyparsing's message lists its whole grammar; the column is what a user needs.
        column = getattr(exc, "col", None)
        exact = quote_identifiers(row_filter) == row_filter  # else the position moved
        where = f" near column {column}" if isinstance(column, int) and exact else ""
        raise SinkConfigurationError(
            f"row_filter {row_filter!r} for table {table_name!r} is not a valid pyiceberg "
            f"expression{where}; write e.g. \"status = 'active' and amount > 10\""
        ) from exc
