"""What the three SQL dialects share: quoting, DDL, the delivery ledger, merge and replace SQL.

A :class:`Dialect` wraps one connection. Subclasses provide the driver calls (connect,
execute, query, writing an Arrow batch) and the catalog queries; the SQL that is the same
everywhere lives here. Every identifier goes through :meth:`Dialect.quote`, which doubles
embedded quotes: a name is always a literal name, never SQL.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.errors import ErrorCategory, SinkConnectionError, SinkError, SinkWriteError
from floe_sink_dlt.sql.evolution import ColumnInfo
from floe_sink_dlt.sql.target import STAGING_SUFFIX, DatabaseUrl, TableName
from floe_sink_dlt.sql.types import arrow_to_sql

__all__ = [
    "COMPLETE_MARK",
    "LEDGER_TABLE",
    "MASKED",
    "NAME_WORDS",
    "REJECTS_TABLE",
    "STAGING_MARK",
    "STAGING_SUFFIX",
    "Dialect",
    "dedupe_last",
    "first_line",
    "last_rows",
    "mask_literals",
    "mask_quoted_values",
]

LEDGER_TABLE = "_floe_sink_batches"
"""The table (next to the target table) recording every batch committed, per delivery."""

REJECTS_TABLE = "_floe_sink_rejects"
"""The rows of committed batches that were refused, per delivery and batch (row, status and
message, never a value): a batch delivered again after a crash reports them again. Created
the first time a batch has a refused row."""

STAGING_MARK = "staging"
"""The ledger ``batch_key`` that says which delivery the staging table belongs to."""

COMPLETE_MARK = "complete"
"""The ledger ``batch_key`` that says a delivery's ``replace`` swap is done."""


MASKED = "***"
"""What stands in a driver message for a value that was removed."""

_SQL_STRING = re.compile(r"'(?:[^']|'')*'")
_DOUBLE_QUOTED = re.compile(r'(?:(?P<word>\w+)\s+)?"(?P<inner>(?:[^"]|"")*)"(?P<qualifies>\.)?')

NAME_WORDS = frozenset(
    {
        "column",
        "constraint",
        "database",
        "encoding",
        "extension",
        "function",
        "index",
        "name",
        "near",
        "relation",
        "role",
        "schema",
        "sequence",
        "table",
        "trigger",
        "type",
        "view",
    }
)
"""Words after which a double-quoted string in a driver message is a name, not a value."""


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (drivers put row details and SQL on the next)."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def mask_literals(text: str) -> str:
    """``text`` with every single-quoted SQL string literal replaced by ``'***'``."""
    return _SQL_STRING.sub(f"'{MASKED}'", text)


def mask_quoted_values(text: str) -> str:
    """``text`` with double-quoted values replaced by ``"***"``, double-quoted names kept.

    PostgreSQL and DuckDB double-quote names and values alike. A quoted string is a name
    when a word of :data:`NAME_WORDS` comes before it (``constraint "orders_pkey"``,
    ``column "email"``) or a dot after it (``"orders".email``); anything else (``integer:
    "abc"``, ``value "7" is out of range``) is masked.
    """

    def replace(match: re.Match[str]) -> str:
        word = match.group("word")
        if (word is not None and word.lower() in NAME_WORDS) or match.group("qualifies"):
            return match.group(0)
        before = text[match.start() : match.start("inner") - 1]
        return f'{before}"{MASKED}"'

    return _DOUBLE_QUOTED.sub(replace, text)


def last_rows(batch: pa.RecordBatch, key: Sequence[str]) -> pa.Array | None:
    """The rows (ascending) holding the last row of each ``key`` value, or ``None`` when the
    keys are already unique (the common case)."""
    if batch.num_rows < 2:
        return None
    table = pa.Table.from_batches([batch])
    if len(key) == 1:
        unique = pc.count_distinct(table.column(key[0]), mode="all").as_py()
        if unique == batch.num_rows:
            return None
    index = "__floe_row"
    numbered = table.select(list(key)).append_column(index, pa.array(range(batch.num_rows)))
    last = numbered.group_by(list(key), use_threads=False).aggregate([(index, "max")])
    if last.num_rows == batch.num_rows:
        return None
    keep = pc.sort_indices(last.column(f"{index}_max"))
    rows: pa.Array = pc.take(last.column(f"{index}_max"), keep)
    return rows


def dedupe_last(batch: pa.RecordBatch, key: Sequence[str]) -> pa.RecordBatch:
    """Keep the last row of each ``key`` value (input order), so an upsert touches a row once.

    Returns ``batch`` itself when its keys are already unique (the common case, no copy).
    """
    rows = last_rows(batch, key)
    if rows is None:
        return batch
    return pa.Table.from_batches([batch]).take(rows).combine_chunks().to_batches()[0]


class Dialect(abc.ABC):
    """One connection to one database, and the SQL to write batches to it.

    Args:
        url: The parsed database URL.
        timeout: Seconds to wait for a connection.
    """

    name: ClassVar[str]

    def __init__(self, url: DatabaseUrl, *, timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout

    # -- driver ---------------------------------------------------------------------------

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the connection (transactions are explicit: see :meth:`begin`)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection; never raises."""

    @abc.abstractmethod
    def begin(self) -> None:
        """Start a transaction."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Commit the transaction."""

    @abc.abstractmethod
    def rollback(self) -> None:
        """Roll the transaction back; never raises."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement; ``params`` fill :meth:`param` placeholders."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""

    def param(self, index: int) -> str:
        """The placeholder of the ``index``-th (1-based) parameter."""
        return "?"

    @abc.abstractmethod
    def is_transient(self, error: BaseException) -> bool:
        """True when ``error`` may go away on a retry (connection lost, deadlock, ...)."""

    # -- catalog --------------------------------------------------------------------------

    @abc.abstractmethod
    def columns(self, table: TableName) -> dict[str, str] | None:
        """The table's columns and their (lower-case) type names; ``None`` when it is missing."""

    @abc.abstractmethod
    def unique_keys(self, table: TableName) -> list[frozenset[str]]:
        """The column sets of the table's primary key and unique constraints/indexes."""

    def column_details(self, table: TableName) -> dict[str, ColumnInfo] | None:
        """The table's columns with their full types (``numeric(10,2)``), nullability and
        whether a default fills them; ``None`` when the table is missing.

        This fallback knows only :meth:`columns`' type names (all nullable, no default).
        """
        columns = self.columns(table)
        if columns is None:
            return None
        return {name: ColumnInfo(type_) for name, type_ in columns.items()}

    def ensure_schema(self, schema: str | None) -> None:
        """Create ``schema`` if it is missing (dialects with schemas)."""
        if schema is not None:
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}")

    # -- writing batches ------------------------------------------------------------------

    @abc.abstractmethod
    def insert(self, table: TableName, batch: pa.RecordBatch) -> None:
        """Append ``batch`` (columns named like the table's) to ``table``."""

    @abc.abstractmethod
    def stage(self, batch: pa.RecordBatch) -> str:
        """Put ``batch`` where SQL can read it for this transaction; return the relation."""

    def unstage(self) -> None:  # noqa: B027 - optional
        """Release what :meth:`stage` made (before commit)."""

    def insert_staged(self, table: TableName, batch: pa.RecordBatch) -> None:
        """Append ``batch`` to ``table`` through :meth:`stage` (``INSERT ... SELECT``)."""
        relation = self.stage(batch)
        columns = self.column_list(batch.schema.names)
        self.execute(
            f"INSERT INTO {self.qualified(table)} ({columns}) SELECT {columns} FROM {relation}"
        )
        self.unstage()

    # -- shared SQL -----------------------------------------------------------------------

    @staticmethod
    def quote(name: str) -> str:
        """``name`` as a quoted identifier (embedded double quotes doubled)."""
        return '"' + name.replace('"', '""') + '"'

    def qualified(self, table: TableName) -> str:
        """The quoted, schema-qualified table name."""
        if table.schema is None:
            return self.quote(table.name)
        return f"{self.quote(table.schema)}.{self.quote(table.name)}"

    def column_list(self, names: Sequence[str]) -> str:
        """Quoted, comma-separated column names."""
        return ", ".join(self.quote(name) for name in names)

    def create_table(
        self, table: TableName, schema: pa.Schema, primary_key: Sequence[str] | None
    ) -> None:
        """``CREATE TABLE`` from an Arrow schema (with a primary key when one is given)."""
        columns = [
            f"{self.quote(field.name)} {arrow_to_sql(field, self.name)}"
            + ("" if field.nullable or primary_key else " NOT NULL")
            for field in schema
        ]
        if primary_key:
            columns.append(f"PRIMARY KEY ({self.column_list(primary_key)})")
        self.execute(f"CREATE TABLE IF NOT EXISTS {self.qualified(table)} ({', '.join(columns)})")

    def add_column(self, table: TableName, name: str, sql_type: str) -> None:
        """``ALTER TABLE ... ADD COLUMN``: nullable, so the rows already there hold NULL.

        ``IF NOT EXISTS``: another run may have added it since this one read the catalog
        (PostgreSQL reads the catalog before the ALTER waits for the table's lock).
        """
        self.execute(
            f"ALTER TABLE {self.qualified(table)} ADD COLUMN IF NOT EXISTS "
            f"{self.quote(name)} {sql_type}"
        )

    def widen_column(self, table: TableName, name: str, sql_type: str) -> None:
        """``ALTER TABLE ... ALTER COLUMN ... TYPE``: a widening, so every value converts."""
        self.execute(
            f"ALTER TABLE {self.qualified(table)} ALTER COLUMN {self.quote(name)} TYPE {sql_type}"
        )

    def drop_table(self, table: TableName) -> None:
        """``DROP TABLE IF EXISTS``."""
        self.execute(f"DROP TABLE IF EXISTS {self.qualified(table)}")

    def ledger(self, schema: str | None) -> TableName:
        """The ledger table next to tables of ``schema``."""
        return TableName(name=LEDGER_TABLE, schema=schema)

    def ensure_ledger(self, schema: str | None) -> None:
        """Create the ledger table if it is missing."""
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {self.qualified(self.ledger(schema))} ("
            '"destination" TEXT NOT NULL, "load_id" TEXT NOT NULL, "batch_key" TEXT NOT NULL, '
            '"rows" BIGINT NOT NULL, "delivered_at" TEXT NOT NULL, '
            'PRIMARY KEY ("destination", "load_id", "batch_key"))'
        )

    def ledger_has(self, schema: str | None, destination: str, load_id: str, key: str) -> bool:
        """True when the ledger holds ``key`` for this destination and delivery."""
        rows = self.query(
            f"SELECT 1 FROM {self.qualified(self.ledger(schema))} WHERE "
            f'"destination" = {self.param(1)} AND "load_id" = {self.param(2)} '
            f'AND "batch_key" = {self.param(3)}',
            (destination, load_id, key),
        )
        return bool(rows)

    def ledger_load_of(self, schema: str | None, destination: str, key: str) -> str | None:
        """The delivery (load id) under which ``key`` was recorded last, if any."""
        rows = self.query(
            f'SELECT "load_id" FROM {self.qualified(self.ledger(schema))} WHERE '
            f'"destination" = {self.param(1)} AND "batch_key" = {self.param(2)}',
            (destination, key),
        )
        return str(rows[0][0]) if rows else None

    def ledger_add(
        self, schema: str | None, destination: str, load_id: str, key: str, rows: int, at: str
    ) -> None:
        """Record a committed batch (in the batch's own transaction)."""
        params = ", ".join(self.param(index) for index in range(1, 6))
        self.execute(
            f"INSERT INTO {self.qualified(self.ledger(schema))} "
            f'("destination", "load_id", "batch_key", "rows", "delivered_at") VALUES ({params})',
            (destination, load_id, key, rows, at),
        )

    def ledger_forget(self, schema: str | None, destination: str, *, keep_load: str) -> None:
        """Drop the destination's ledger rows of every delivery but ``keep_load``."""
        self.execute(
            f"DELETE FROM {self.qualified(self.ledger(schema))} WHERE "
            f'"destination" = {self.param(1)} AND "load_id" <> {self.param(2)}',
            (destination, keep_load),
        )

    def ledger_drop_key(self, schema: str | None, destination: str, key: str) -> None:
        """Remove one key of the destination, whatever the delivery."""
        self.execute(
            f"DELETE FROM {self.qualified(self.ledger(schema))} WHERE "
            f'"destination" = {self.param(1)} AND "batch_key" = {self.param(2)}',
            (destination, key),
        )

    def rejects(self, schema: str | None) -> TableName:
        """The table of refused rows next to tables of ``schema``."""
        return TableName(name=REJECTS_TABLE, schema=schema)

    def rejects_add(
        self,
        schema: str | None,
        destination: str,
        load_id: str,
        key: str,
        found: Sequence[tuple[int, str, str]],
    ) -> None:
        """Record the refused rows (row, status, message) of a batch, in its transaction."""
        table = self.qualified(self.rejects(schema))
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            '"destination" TEXT NOT NULL, "load_id" TEXT NOT NULL, "batch_key" TEXT NOT NULL, '
            '"row_index" BIGINT NOT NULL, "status" TEXT NOT NULL, "message" TEXT NOT NULL, '
            'PRIMARY KEY ("destination", "load_id", "batch_key", "row_index"))'
        )
        params = ", ".join(self.param(index) for index in range(1, 7))
        for row, status, message in found:
            self.execute(
                f'INSERT INTO {table} ("destination", "load_id", "batch_key", "row_index", '
                f'"status", "message") VALUES ({params})',
                (destination, load_id, key, row, status, message),
            )

    def rejects_of(
        self, schema: str | None, destination: str, load_id: str, key: str
    ) -> list[tuple[int, str, str]]:
        """The refused rows (row, status, message) recorded for a batch, by row."""
        if self.columns(self.rejects(schema)) is None:
            return []
        rows = self.query(
            f'SELECT "row_index", "status", "message" FROM '
            f"{self.qualified(self.rejects(schema))} WHERE "
            f'"destination" = {self.param(1)} AND "load_id" = {self.param(2)} '
            f'AND "batch_key" = {self.param(3)} ORDER BY "row_index"',
            (destination, load_id, key),
        )
        return [(int(row), str(status), str(message)) for row, status, message in rows]

    def rejects_forget(self, schema: str | None, destination: str, *, keep_load: str) -> None:
        """Drop the destination's refused rows of every delivery but ``keep_load``."""
        if self.columns(self.rejects(schema)) is None:
            return
        self.execute(
            f"DELETE FROM {self.qualified(self.rejects(schema))} WHERE "
            f'"destination" = {self.param(1)} AND "load_id" <> {self.param(2)}',
            (destination, keep_load),
        )

    def row_error(self, exc: BaseException) -> str | None:
        """The class of a driver error caused by a row's data (a constraint it violates, a
        value that cannot be stored): a SQLSTATE, an error name. ``None`` for any other
        error (a lost connection, a missing table): those fail the batch."""
        return None

    def upsert(
        self,
        table: TableName,
        batch: pa.RecordBatch,
        primary_key: Sequence[str],
        *,
        has_unique_key: bool,
    ) -> None:
        """Insert or update ``batch`` on ``primary_key`` (keys must be unique in the batch).

        With a unique constraint on the key: ``INSERT ... ON CONFLICT DO UPDATE`` that skips
        rows whose values did not change; without one, ``DELETE`` the matching rows and
        ``INSERT`` them, in the caller's transaction either way.
        """
        relation = self.stage(batch)
        names = batch.schema.names
        columns = self.column_list(names)
        target = self.qualified(table)
        if has_unique_key:
            others = [name for name in names if name not in primary_key]
            if others:
                updates = ", ".join(
                    f"{self.quote(name)} = excluded.{self.quote(name)}" for name in others
                )
                changed = " OR ".join(
                    f'"__t".{self.quote(name)} IS DISTINCT FROM excluded.{self.quote(name)}'
                    for name in others
                )
                action = f"DO UPDATE SET {updates} WHERE {changed}"
            else:
                action = "DO NOTHING"
            self.execute(
                f'INSERT INTO {target} AS "__t" ({columns}) SELECT {columns} FROM {relation} '
                f"WHERE true ON CONFLICT ({self.column_list(primary_key)}) {action}"
            )
        else:
            self._delete_matching(target, relation, primary_key)
            self.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {relation}")
        self.unstage()

    def _delete_matching(self, target: str, relation: str, key: Sequence[str]) -> None:
        match = " AND ".join(f'"__t".{self.quote(name)} = "__s".{self.quote(name)}' for name in key)
        self.execute(
            f'DELETE FROM {target} AS "__t" WHERE EXISTS '
            f'(SELECT 1 FROM {relation} AS "__s" WHERE {match})'
        )

    def delete_keys(self, table: TableName, keys: pa.RecordBatch) -> None:
        """Delete the rows of ``table`` whose key (the batch's columns) is in ``keys``."""
        relation = self.stage(keys)
        self._delete_matching(self.qualified(table), relation, keys.schema.names)
        self.unstage()

    def replace_contents(self, target: TableName, source: TableName, names: Sequence[str]) -> None:
        """Make ``target`` hold exactly ``source``'s rows; drop ``source`` (caller's transaction).

        The target table itself is kept (its constraints, indexes, grants and dependent
        views survive); only its rows are replaced.
        """
        columns = self.column_list(names)
        self.truncate(target)
        self.execute(
            f"INSERT INTO {self.qualified(target)} ({columns}) "
            f"SELECT {columns} FROM {self.qualified(source)}"
        )
        self.drop_table(source)

    def truncate(self, table: TableName) -> None:
        """Remove every row of ``table`` (transactionally)."""
        self.execute(f"DELETE FROM {self.qualified(table)}")

    # -- errors ---------------------------------------------------------------------------

    def error(self, exc: BaseException, *, doing: str, **context: Any) -> SinkError:
        """Turn a driver exception into a :class:`SinkError` with a message free of secrets
        and of row values (see :meth:`describe_error`)."""
        if isinstance(exc, SinkError):
            return exc
        message = f"{doing} failed: {type(exc).__name__}: {self.describe_error(exc)}".strip()
        transient = self.is_transient(exc)
        category = ErrorCategory.TRANSIENT if transient else ErrorCategory.PERMANENT
        return SinkWriteError(
            message,
            category=category,
            sink_type="sql_database",
            database=self.url.where,
            **context,
        )

    def describe_error(self, exc: BaseException) -> str:
        """The driver's message without the URL's secrets and without row values.

        Drivers quote the rows they refused (PostgreSQL's ``DETAIL:  Key (id)=(5) already
        exists``, DuckDB's ``Duplicate key "id: 5"``): customer data that must not reach a
        result, a log or a span. What is kept is the error kind and the names of the
        constraint, table and columns. This default keeps the first line and masks SQL
        string literals; dialects whose driver words values otherwise refine it.
        """
        return mask_literals(first_line(self.url.scrub(str(exc))))

    def connection_error(self, exc: BaseException) -> SinkConnectionError:
        """The error for a failed connect: names host/port (or file), never the password."""
        text = self.url.scrub(str(exc)).strip()
        lowered = text.lower()
        permanent = any(
            marker in lowered
            for marker in (
                "password authentication failed",
                "no password supplied",
                "does not exist",
                "permission denied",
                "role ",
            )
        )
        return SinkConnectionError(
            f"cannot connect to {self.name} at {self.url.where} as user "
            f"{self.url.user or '(default)'}: {text}",
            category=ErrorCategory.PERMANENT if permanent else ErrorCategory.TRANSIENT,
            sink_type="sql_database",
        )
