"""PostgreSQL through ADBC (``adbc-driver-postgresql``): Arrow batches go over binary COPY.

ADBC writes an Arrow batch with ``COPY ... FROM STDIN (FORMAT binary)`` inside the open
transaction, with no per-row Python work and no text formatting, which is what lets the sink
beat a CSV ``COPY``. Appending writes straight into the target table when its column types
are the ones the batch carries; otherwise (and for merge) the batch goes to a temporary
table first and ``INSERT ... SELECT`` lets PostgreSQL cast it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa

from floe_sink.errors import SinkError
from floe_sink_dlt.sql.dialect import (
    MASKED,
    Dialect,
    first_line,
    mask_literals,
    mask_quoted_values,
)
from floe_sink_dlt.sql.evolution import ColumnInfo
from floe_sink_dlt.sql.target import TableName

__all__ = ["PostgresDialect"]

# sqlstate classes worth a retry: connection exceptions, serialization failure, deadlock,
# insufficient resources, operator intervention (server shutting down), system errors
_TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "53", "57P", "58", "55P03")

# Arrow type -> PostgreSQL type names a binary COPY of that type can write into directly
_DIRECT = {
    "int16": {"int2"},
    "int32": {"int4"},
    "int64": {"int8"},
    "float": {"float4"},
    "double": {"float8"},
    "string": {"text", "varchar", "bpchar"},
    "large_string": {"text", "varchar", "bpchar"},
    "bool": {"bool"},
    "date32[day]": {"date"},
    "binary": {"bytea"},
    "large_binary": {"bytea"},
}

_STAGE = "_floe_sink_stage"
_TABLE_COLUMNS = (
    "FROM pg_catalog.pg_attribute a "
    "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace {join}"
    "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 "
    "AND NOT a.attisdropped ORDER BY a.attnum"
)
"""The live columns of the table ``$1.$2``, in order (``{join}``: another catalog to join)."""

# The server's own message ("ERROR:  <primary>"; DETAIL, CONTEXT and the SQL follow it) and
# its SQLSTATE, in the text of an ADBC error.
_PRIMARY = re.compile(r"\bERROR:\s+(?P<message>[^\n]*)")
_SQLSTATE = re.compile(r"\bSQLSTATE: (?P<code>[0-9A-Z]{5})\b")
# 'invalid input syntax for type integer: "..."': after ': "' comes a value, to the end (a
# quote inside the value is not escaped)
_TRAILING_VALUE = re.compile(r': ".*$')
_BYTES = re.compile(r"0x[0-9a-fA-F]{2}(?:\s+0x[0-9a-fA-F]{2})*")  # invalid byte sequence: 0xe9


def _direct_types(type_: pa.DataType) -> set[str]:
    if pa.types.is_timestamp(type_):
        return {"timestamptz"} if type_.tz is not None else {"timestamp"}
    if pa.types.is_decimal(type_):
        return {"numeric"}
    return _DIRECT.get(str(type_), set())


class PostgresDialect(Dialect):
    """PostgreSQL 12+ (``MERGE``-free: upserts use ``ON CONFLICT``)."""

    name: ClassVar[str] = "postgresql"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn: Any = None
        self._cursor: Any = None
        self._direct: dict[TableName, bool] = {}

    def connect(self) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        if self._conn is not None:
            return
        uri = self.url.reveal()
        separator = "&" if "?" in uri else "?"
        if "connect_timeout=" not in uri:
            uri = f"{uri}{separator}connect_timeout={max(1, int(self.timeout))}"
        try:
            self._conn = adbc.connect(uri, autocommit=False)
        except Exception as exc:
            raise self.connection_error(exc) from None
        self._cursor = self._conn.cursor()

    def close(self) -> None:
        conn, cursor = self._conn, self._cursor
        self._conn = self._cursor = None
        # the cursor first: ADBC refuses to close a connection with an open statement
        for resource in (cursor, conn):
            if resource is not None:
                with contextlib.suppress(Exception):  # a broken connection may fail to close
                    resource.close()

    def begin(self) -> None:
        # ADBC opens a transaction implicitly when autocommit is off
        if self._conn is None:
            self.connect()

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except Exception:
            self.close()  # a dead connection: reconnect on the next attempt

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(sql, tuple(params) if params else None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(sql, tuple(params) if params else None)
        return list(self._cursor.fetchall())

    def param(self, index: int) -> str:
        return f"${index}"

    def describe_error(self, exc: BaseException) -> str:
        """The server's primary message and SQLSTATE; DETAIL (the refused row, the duplicate
        key), CONTEXT (the COPY line) and quoted values are dropped."""
        text = self.url.scrub(str(exc))
        primary = _PRIMARY.search(text)
        message = primary.group("message").strip() if primary else first_line(text)
        message = mask_quoted_values(_TRAILING_VALUE.sub(f': "{MASKED}"', message))
        message = mask_literals(_BYTES.sub(MASKED, message))
        sqlstate = getattr(exc, "sqlstate", None)
        if not sqlstate and (found := _SQLSTATE.search(text)):
            sqlstate = found.group("code")
        return f"{message} (SQLSTATE {sqlstate})" if sqlstate else message

    def row_error(self, exc: BaseException) -> str | None:
        """Integrity constraint violations (SQLSTATE class 23) and data exceptions (22)."""
        if isinstance(exc, SinkError):
            return None
        sqlstate = getattr(exc, "sqlstate", None)
        if not sqlstate and (found := _SQLSTATE.search(str(exc))):
            sqlstate = found.group("code")
        if sqlstate and str(sqlstate).startswith(("22", "23")):
            return str(sqlstate)
        return None

    def is_transient(self, error: BaseException) -> bool:
        if isinstance(error, SinkError):
            return error.retryable
        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate:
            return str(sqlstate).startswith(_TRANSIENT_SQLSTATES)
        text = str(error).lower()
        # ADBC reports lost connections as IO errors without a sqlstate
        return any(
            marker in text
            for marker in ("io:", "connection", "server closed", "terminating", "timeout")
        )

    # -- catalog --------------------------------------------------------------------------

    def _schema_of(self, table: TableName) -> str:
        return table.schema if table.schema is not None else "public"

    def columns(self, table: TableName) -> dict[str, str] | None:
        rows = self.query(
            "SELECT a.attname, t.typname "
            + _TABLE_COLUMNS.format(join="JOIN pg_catalog.pg_type t ON t.oid = a.atttypid "),
            (self._schema_of(table), table.name),
        )
        if not rows:
            exists = self.query(
                "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                (self._schema_of(table), table.name),
            )
            return {} if exists else None
        return {str(name): str(type_) for name, type_ in rows}

    def column_details(self, table: TableName) -> dict[str, ColumnInfo] | None:
        # format_type spells the type with its modifiers: numeric(10,2), character varying(20)
        rows = self.query(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
            + _TABLE_COLUMNS.format(join=""),
            (self._schema_of(table), table.name),
        )
        if not rows:
            return None if self.columns(table) is None else {}
        return {
            str(name): ColumnInfo(str(type_), nullable=not not_null, has_default=bool(default))
            for name, type_, not_null, default in rows
        }

    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        rows = self.query(
            "SELECT i.indexrelid::text, a.attname FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique "
            "AND i.indpred IS NULL AND i.indexprs IS NULL",
            (self._schema_of(table), table.name),
        )
        keys: dict[str, set[str]] = {}
        for index, column in rows:
            keys.setdefault(str(index), set()).add(str(column))
        return [frozenset(columns) for columns in keys.values()]

    def check_direct(self, table: TableName, schema: pa.Schema, columns: dict[str, str]) -> None:
        """Remember whether ``schema``'s batches can be COPied straight into ``table``."""
        self._direct[table] = all(
            columns.get(field.name) in _direct_types(field.type) for field in schema
        )

    # -- writing --------------------------------------------------------------------------

    def insert(self, table: TableName, batch: pa.RecordBatch) -> None:
        if self._direct.get(table, False):
            self._cursor.adbc_ingest(table.name, batch, mode="append", db_schema_name=table.schema)
            return
        self.insert_staged(table, batch)

    def stage(self, batch: pa.RecordBatch) -> str:
        self._cursor.adbc_ingest(_STAGE, batch, mode="replace", temporary=True)
        return f"pg_temp.{self.quote(_STAGE)}"

    def unstage(self) -> None:
        self.execute(f"DROP TABLE IF EXISTS pg_temp.{self.quote(_STAGE)}")

    def truncate(self, table: TableName) -> None:
        self.execute(f"TRUNCATE {self.qualified(table)}")
