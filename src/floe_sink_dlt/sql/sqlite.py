"""SQLite through the standard library's ``sqlite3``.

SQLite has no bulk Arrow path, so each batch is converted column by column (Arrow casts for
dates, timestamps and decimals, which SQLite stores as exact ISO-8601 / decimal text) and
written with one ``executemany`` per batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.errors import SinkConfigurationError
from floe_sink_dlt.sql.dialect import Dialect
from floe_sink_dlt.sql.evolution import ColumnInfo
from floe_sink_dlt.sql.target import TableName

__all__ = ["SqliteDialect", "sqlite_values"]

_STAGE = "_floe_sink_stage"
_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error", "busy")


def _python_column(column: pa.Array) -> list[Any]:
    type_ = column.type
    if pa.types.is_dictionary(type_):
        column = column.dictionary_decode()
        type_ = column.type
    if pa.types.is_timestamp(type_):
        # ISO-8601 text; with a time zone, normalised to UTC and marked +00:00
        column = column.cast(pa.timestamp(type_.unit)).cast(pa.string())
        if type_.tz is not None:
            column = pc.binary_join_element_wise(column, "+00:00", "")
    elif (
        pa.types.is_date(type_)
        or pa.types.is_time(type_)
        or pa.types.is_decimal(type_)
        or (pa.types.is_unsigned_integer(type_) and type_.bit_width == 64)
    ):
        column = column.cast(pa.string())
    values: list[Any] = column.to_pylist()
    return values


def sqlite_values(batch: pa.RecordBatch) -> Iterator[tuple[Any, ...]]:
    """The rows of ``batch`` as tuples of values SQLite stores faithfully."""
    return zip(*(_python_column(column) for column in batch.columns), strict=True)


class SqliteDialect(Dialect):
    """SQLite 3.35+ (upserts with ``ON CONFLICT``)."""

    name: ClassVar[str] = "sqlite"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn: sqlite3.Connection | None = None

    def connect(self) -> None:
        if self._conn is not None:
            return
        try:
            # isolation_level=None: transactions are ours (BEGIN/COMMIT), DDL included
            self._conn = sqlite3.connect(
                self.url.database_file(),
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except (sqlite3.Error, OSError) as exc:
            raise self.connection_error(exc) from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            self.connect()
        assert self._conn is not None
        return self._conn

    def begin(self) -> None:
        self._c().execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._c().execute("COMMIT")

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                self.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._c().execute(sql, tuple(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._c().execute(sql, tuple(params)).fetchall())

    def row_error(self, exc: BaseException) -> str | None:
        """Constraint violations (``sqlite3.IntegrityError``): their extended error name."""
        if isinstance(exc, sqlite3.IntegrityError):
            return str(getattr(exc, "sqlite_errorname", None) or "SQLITE_CONSTRAINT")
        return None

    def is_transient(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and any(
            marker in str(error).lower() for marker in _TRANSIENT
        )

    def ensure_schema(self, schema: str | None) -> None:
        if schema not in (None, "main"):
            raise SinkConfigurationError(
                f"invalid 'table': SQLite has no schema {schema!r} (attach databases are not "
                "supported); name the table without a schema",
                sink_type="sql_database",
            )

    def qualified(self, table: TableName) -> str:
        return self.quote(table.name)

    def columns(self, table: TableName) -> dict[str, str] | None:
        rows = self.query("SELECT name, type FROM pragma_table_info(?) ORDER BY cid", (table.name,))
        if not rows:
            return None
        return {str(name): str(type_).lower() for name, type_ in rows}

    def column_details(self, table: TableName) -> dict[str, ColumnInfo] | None:
        rows = self.query(
            'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid',
            (table.name,),
        )
        if not rows:
            return None
        keys = [row for row in rows if row[4]]
        # a one-column INTEGER PRIMARY KEY is the rowid: SQLite fills it when left out
        rowid = str(keys[0][0]) if len(keys) == 1 and str(keys[0][1]).upper() == "INTEGER" else None
        return {
            str(name): ColumnInfo(
                str(type_),
                nullable=not not_null,
                has_default=default is not None or name == rowid,
            )
            for name, type_, not_null, default, _pk in rows
        }

    def add_column(self, table: TableName, name: str, sql_type: str) -> None:
        # no IF NOT EXISTS in SQLite, and none needed: BEGIN IMMEDIATE holds the write lock
        # from before the catalog is read, so no other run adds the column in between
        self.execute(
            f"ALTER TABLE {self.qualified(table)} ADD COLUMN {self.quote(name)} {sql_type}"
        )

    def widen_column(self, table: TableName, name: str, sql_type: str) -> None:
        # Never needed, and SQLite has no ALTER COLUMN ... TYPE: a column's declared type is
        # only an affinity. INTEGER stores any 64-bit integer, REAL is always an 8-byte float
        # and DECIMAL_TEXT holds exact decimal text of any precision, so int32 -> int64,
        # float32 -> float64 and decimal(P,S) -> decimal(P',S) fit the existing column as it
        # is (parse_sql_type gives SQLite types no width, and no widening is ever planned).
        raise AssertionError(f"SQLite columns are never widened (column {name!r})")

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        keys: list[frozenset[str]] = []
        pk = self.query(
            "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (table.name,)
        )
        if pk:
            keys.append(frozenset(str(row[0]) for row in pk))
        for _seq, index, unique, _origin, partial in self.query(
            "SELECT * FROM pragma_index_list(?)", (table.name,)
        ):
            if unique and not partial:
                names = self.query("SELECT name FROM pragma_index_info(?)", (index,))
                if all(name[0] is not None for name in names):
                    keys.append(frozenset(str(name[0]) for name in names))
        return keys

    def insert(self, table: TableName, batch: pa.RecordBatch) -> None:
        placeholders = ", ".join("?" for _ in batch.schema.names)
        self._c().executemany(
            f"INSERT INTO {self.qualified(table)} ({self.column_list(batch.schema.names)}) "
            f"VALUES ({placeholders})",
            sqlite_values(batch),
        )

    def stage(self, batch: pa.RecordBatch) -> str:
        stage = f"temp.{self.quote(_STAGE)}"
        columns = ", ".join(self.quote(name) for name in batch.schema.names)
        self.execute(f"DROP TABLE IF EXISTS {stage}")
        self.execute(f"CREATE TEMP TABLE {self.quote(_STAGE)} ({columns})")
        placeholders = ", ".join("?" for _ in batch.schema.names)
        self._c().executemany(f"INSERT INTO {stage} VALUES ({placeholders})", sqlite_values(batch))
        return stage

    def unstage(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS temp.{self.quote(_STAGE)}")
