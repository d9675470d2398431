"""DuckDB through its Python API: a batch is registered as a relation (zero-copy Arrow scan)
and written with ``INSERT ... SELECT``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from floe_sink.errors import SinkConfigurationError
from floe_sink_dlt.sql.dialect import (
    MASKED,
    Dialect,
    first_line,
    mask_literals,
    mask_quoted_values,
)
from floe_sink_dlt.sql.evolution import ColumnInfo
from floe_sink_dlt.sql.target import TableName

__all__ = ["DuckDbDialect"]

_VIEW = "_floe_sink_batch"

# DuckDB words the refused values inline: 'Duplicate key "id: 5"', 'key "pid: 42" does not
# exist', 'Type INT64 with value 300 can't be cast' (strings are single-quoted: masked too).
_KEY = re.compile(r'\bkey "(?P<column>[^"]*?): (?P<values>.*?)"(?= violates| does not exist)')
_VALUE = re.compile(r"\bwith value (?:'(?:[^']|'')*'|.*?(?= can't be cast| is out of range|$))")


def _masked_key(match: re.Match[str]) -> str:
    # not re-quoted: mask_quoted_values would take the column for a value
    more = ", ..." if ", " in match.group("values") else ""
    return f"key ({match.group('column')}: {MASKED}{more})"


class DuckDbDialect(Dialect):
    """DuckDB 1.0+."""

    name: ClassVar[str] = "duckdb"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn: Any = None

    def connect(self) -> None:
        import duckdb

        if self._conn is not None:
            return
        try:
            self._conn = duckdb.connect(str(self.url.database_file()))
        except (duckdb.Error, OSError) as exc:
            raise self.connection_error(exc) from None

    def describe_error(self, exc: BaseException) -> str:
        """The first line, with the key values and the values that failed a cast masked.

        Of a key only the first column is kept: DuckDB lists ``column: value`` pairs, and
        where a value ends and the next column's name starts cannot be told apart.
        """
        message = _KEY.sub(_masked_key, first_line(self.url.scrub(str(exc))))
        message = _VALUE.sub(f"with value {MASKED}", message)
        return mask_literals(mask_quoted_values(message))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _c(self) -> Any:
        if self._conn is None:
            self.connect()
        return self._conn

    def begin(self) -> None:
        self._c().begin()

    def commit(self) -> None:
        self._c().commit()

    def rollback(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):  # no transaction open
            self._conn.rollback()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._c().execute(sql, list(params) if params else None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._c().execute(sql, list(params) if params else None).fetchall())

    def row_error(self, exc: BaseException) -> str | None:
        """Constraint violations and values that cannot be stored: the exception's name."""
        import duckdb

        refused = (
            duckdb.ConstraintException,
            duckdb.ConversionException,
            duckdb.OutOfRangeException,
        )
        if isinstance(exc, refused):
            return type(exc).__name__
        return None

    def is_transient(self, error: BaseException) -> bool:
        import duckdb

        # another process holding the file's lock, or a write-write conflict
        return isinstance(error, duckdb.IOException | duckdb.TransactionException) or (
            "conflict" in str(error).lower()
        )

    def columns(self, table: TableName) -> dict[str, str] | None:
        rows = self.query(
            "SELECT column_name, lower(data_type) FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            (table.schema or "main", table.name),
        )
        if not rows:
            return None
        return {str(name): str(type_) for name, type_ in rows}

    def column_details(self, table: TableName) -> dict[str, ColumnInfo] | None:
        rows = self.query(
            "SELECT column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            (table.schema or "main", table.name),
        )
        if not rows:
            return None
        return {
            str(name): ColumnInfo(
                str(type_), nullable=str(nullable) == "YES", has_default=default is not None
            )
            for name, type_, nullable, default in rows
        }

    def widen_column(self, table: TableName, name: str, sql_type: str) -> None:
        import duckdb

        def refuse(why: str) -> SinkConfigurationError:
            return SinkConfigurationError(
                f"column {name!r} of table {str(table)!r} must widen to {sql_type}, but {why}; "
                "widen it by hand (rebuild the table) or cast the column in the source",
                sink_type="sql_database",
            )

        if any(name in key for key in self.unique_keys(table)):
            raise refuse(
                "DuckDB cannot change the type of a column in a PRIMARY KEY or UNIQUE constraint"
            )
        try:
            super().widen_column(table, name, sql_type)
        except duckdb.DependencyException:
            raise refuse(
                "DuckDB cannot change a column's type while an index depends on the table"
            ) from None

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        rows = self.query(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? "
            "AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
            (table.schema or "main", table.name),
        )
        return [frozenset(str(name) for name in row[0]) for row in rows]

    def insert(self, table: TableName, batch: pa.RecordBatch) -> None:
        self.insert_staged(table, batch)

    def stage(self, batch: pa.RecordBatch) -> str:
        self._c().register(_VIEW, pa.Table.from_batches([batch]))
        return self.quote(_VIEW)

    def unstage(self) -> None:
        self._c().unregister(_VIEW)
