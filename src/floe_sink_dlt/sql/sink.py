"""The ``sql_database`` sink: batches into a PostgreSQL, SQLite or DuckDB table.

Each batch is written in one transaction together with a row in the delivery ledger
(``_floe_sink_batches``: destination, delivery, batch key), and a batch whose key the ledger
already holds for the same delivery is skipped. The command's journal records a batch only
after :meth:`SqlDatabaseSink.deliver` returns, so a process killed between the commit and that
record re-delivers the batch on resume: the ledger makes it a no-op. Deliveries are told apart
by the journal's delivery id, which a resumed delivery keeps and a new run changes: a resumed
delivery is exactly-once, a new run of the same data is a new delivery.

``replace`` fills a staging table and swaps it in when the last batch is in; the swap writes
the ledger's completion mark in the same transaction, so a delivery resumed after the swap (a
kill between the swap and the journal's record) does nothing more.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import ClassVar

import pyarrow as pa

from floe_sink import SinkConfig
from floe_sink.delivery import Delivery
from floe_sink.errors import SinkConfigurationError, SinkError
from floe_sink.logs import get_logger
from floe_sink.secrets import secret_keys
from floe_sink_dlt.base import BatchReceipt, BatchSink, SinkSettings
from floe_sink_dlt.sql.dialect import (
    COMPLETE_MARK,
    STAGING_MARK,
    STAGING_SUFFIX,
    Dialect,
    dedupe_last,
)
from floe_sink_dlt.sql.evolution import (
    SCHEMA_EVOLUTIONS,
    EvolutionPlan,
    evolve_staging,
    evolve_table,
    log_evolution,
)
from floe_sink_dlt.sql.target import DatabaseUrl, TableName
from floe_sink_dlt.sql.types import arrow_to_sql, writable_schema

__all__ = ["DEFAULT_BATCH_SIZE", "WRITE_DISPOSITIONS", "SqlDatabaseSink"]

log = get_logger(__name__)

DEFAULT_BATCH_SIZE = 100_000
"""Rows per batch (and per transaction) unless ``batch_size`` says otherwise."""

WRITE_DISPOSITIONS = ("append", "merge", "replace")

_OWN_KEYS = {"url", "table", "schema", "schema_evolution"}


def _dialect_for(url: DatabaseUrl, timeout: float) -> Dialect:
    if url.dialect == "postgresql":
        from floe_sink_dlt.sql.postgres import PostgresDialect

        return PostgresDialect(url, timeout=timeout)
    if url.dialect == "sqlite":
        from floe_sink_dlt.sql.sqlite import SqliteDialect

        return SqliteDialect(url, timeout=timeout)
    from floe_sink_dlt.sql.duckdb import DuckDbDialect

    return DuckDbDialect(url, timeout=timeout)


def _primary_key(config: SinkConfig, disposition: str, destination: str) -> list[str] | None:
    def fail(problem: str) -> SinkConfigurationError:
        return SinkConfigurationError(
            f"invalid 'primary_key': {problem}", sink_type="sql_database", destination=destination
        )

    raw = config.primary_key
    if raw is None or raw == []:
        if disposition == "merge":
            raise fail("required for write_disposition 'merge' (the columns to upsert on)")
        return None
    columns = [raw] if isinstance(raw, str) else raw
    if not isinstance(columns, list | tuple) or not all(
        isinstance(column, str) and column for column in columns
    ):
        raise fail("expected a list of source column names")
    if len(set(columns)) != len(columns):
        raise fail("a column is named twice")
    mapping = config.field_mapping
    if not mapping:
        return list(columns)
    unmapped = [column for column in columns if column not in mapping]
    if unmapped:
        raise fail(
            f"column(s) {', '.join(map(repr, unmapped))} are not in field_mapping, so they "
            "would not reach the destination"
        )
    return [mapping[column] for column in columns]


class SqlDatabaseSink(BatchSink):
    """Writes to a table of a PostgreSQL, SQLite or DuckDB database (``sql_database``).

    Build it with :meth:`from_config`; see ``docs/sinks/sql_database.md`` for the keys.
    """

    sink_type: ClassVar[str] = "sql_database"
    default_batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE

    schema_evolution: str = SCHEMA_EVOLUTIONS[0]
    """``evolve`` (add and widen an existing table's columns) or ``freeze`` (refuse any
    difference); set by :meth:`from_config` from the ``schema_evolution`` key."""

    def __init__(
        self,
        settings: SinkSettings,
        *,
        url: DatabaseUrl,
        table: TableName,
        write_disposition: str,
        primary_key: list[str] | None,
    ) -> None:
        super().__init__(settings)
        self.url = url
        self.table = table
        self.write_disposition = write_disposition
        self.primary_key = primary_key
        self.dialect = _dialect_for(url, settings.retry.timeout)
        self.staging = table.sibling(table.name + STAGING_SUFFIX)
        self._target_schema: pa.Schema | None = None
        self._writable: pa.Schema | None = None
        self._has_unique_key = False
        self._staging_ready = False
        self._delivered = 0

    @classmethod
    def from_config(cls, config: SinkConfig) -> SqlDatabaseSink:
        """Validate ``config`` and build the sink (no connection is opened yet).

        Raises:
            SinkConfigurationError: An unknown key, a missing/invalid ``url`` or ``table``, an
                unknown ``write_disposition`` or ``schema_evolution``, or ``merge`` without
                ``primary_key``; the key is named and the URL's password never shown.
        """
        cls.refuse_unknown_keys(config, _OWN_KEYS)
        connection = config.connection_config
        settings = SinkSettings.from_config(config, default_batch_size=cls.default_batch_size)
        destination = settings.destination
        url = DatabaseUrl.parse(
            connection.get("url"), destination=destination, secret_keys=secret_keys(connection)
        )
        table = TableName.parse(
            connection.get("table"), connection.get("schema"), destination=destination
        )
        if url.dialect == "sqlite" and table.schema not in (None, "main"):
            raise SinkConfigurationError(
                f"invalid 'table': SQLite databases have no schema {table.schema!r}; "
                "name the table without one",
                sink_type=cls.sink_type,
                destination=destination,
            )
        disposition = config.write_disposition or "append"
        if disposition not in WRITE_DISPOSITIONS:
            raise SinkConfigurationError(
                f"invalid 'write_disposition': {disposition!r}; expected one of "
                f"{', '.join(WRITE_DISPOSITIONS)}",
                sink_type=cls.sink_type,
                destination=destination,
            )
        primary_key = _primary_key(config, disposition, destination)
        evolution = connection.get("schema_evolution")
        if evolution is None:
            evolution = SCHEMA_EVOLUTIONS[0]
        if not isinstance(evolution, str) or evolution not in SCHEMA_EVOLUTIONS:
            shown = repr(evolution) if isinstance(evolution, str) else type(evolution).__name__
            raise SinkConfigurationError(
                f"invalid 'schema_evolution': {shown}; expected one of "
                f"{', '.join(SCHEMA_EVOLUTIONS)}",
                sink_type=cls.sink_type,
                destination=destination,
            )
        sink = cls(
            settings,
            url=url,
            table=table,
            write_disposition=disposition,
            primary_key=primary_key,
        )
        sink.schema_evolution = evolution
        return sink

    def describe(self) -> str:
        """Destination name, dialect, where, table: no secret."""
        return (
            f"{self.settings.destination} ({self.url.dialect} {self.url.where}, table {self.table})"
        )

    def __repr__(self) -> str:
        return f"SqlDatabaseSink({self.describe()}, {self.write_disposition})"

    # -- life cycle -----------------------------------------------------------------------

    def prepare(self, schema: pa.Schema) -> None:
        """Connect, create the schema, ledger and table if missing, evolve an existing table.

        Raises:
            SinkConfigurationError: A column type cannot be stored, the primary key is not
                a column, or the existing table cannot take the data (``freeze`` and a
                difference, a type that cannot be widened, a NOT NULL column the data lacks).
            SinkConnectionError: The database cannot be reached (after retries).
        """
        self._target_schema = None
        self._staging_ready = False
        self._delivered = 0
        if len(schema) == 0:
            return  # no columns, nothing to create or write
        for field in schema:
            arrow_to_sql(field, self.url.dialect)  # refuse unstorable types before connecting
        missing_key = [c for c in self.primary_key or [] if schema.get_field_index(c) < 0]
        if missing_key:
            raise self._config_error(
                f"invalid 'primary_key': column(s) {', '.join(map(repr, missing_key))} are not "
                f"in the data (columns: {', '.join(schema.names)})"
            )
        self._target_schema = schema
        self._writable = writable_schema(schema, self.url.dialect)
        try:
            self.with_retries(self.dialect.connect, what="connect", database=self.url.where)
            self.with_retries(self._prepare_tables, what="prepare_table", table=str(self.table))
        except BaseException:
            self.dialect.close()  # finish() is not called when prepare() fails
            raise

    def _prepare_tables(self) -> None:
        schema = self._target_schema
        assert schema is not None
        dialect = self.dialect
        evolved: list[tuple[TableName, EvolutionPlan]] = []
        dialect.begin()
        try:
            dialect.ensure_schema(self.table.schema)
            dialect.ensure_ledger(self.table.schema)
            if dialect.columns(self.table) is None:
                # a primary key only where it is the contract: merge upserts on it
                key = self.primary_key if self.write_disposition == "merge" else None
                dialect.create_table(self.table, schema, key)
            else:
                # in this transaction: a failure or a crash leaves the table as it was
                mode, destination = self.schema_evolution, self.settings.destination
                plan = evolve_table(dialect, self.table, schema, mode=mode, destination=destination)
                evolved.append((self.table, plan))
                if self.write_disposition == "replace" and mode == "evolve":
                    evolved.append((self.staging, evolve_staging(dialect, self.staging, schema)))
            columns = dialect.columns(self.table) or {}
            keys = dialect.unique_keys(self.table)
            self._has_unique_key = (
                bool(self.primary_key) and frozenset(self.primary_key or ()) in keys
            )
            check_direct = getattr(dialect, "check_direct", None)
            if check_direct is not None:
                check_direct(self.table, self._writable, columns)
            dialect.commit()
        except BaseException as exc:
            dialect.rollback()
            if isinstance(exc, SinkError):
                raise
            raise dialect.error(exc, doing=f"preparing table {str(self.table)!r}") from None
        for table, plan in evolved:
            if plan.changes:
                log_evolution(plan, table=table, destination=self.settings.destination)

    def finish(self, *, success: bool) -> None:
        """Swap the staged rows in (``replace``), forget older deliveries, close.

        The swap and the ledger clean-up run in one transaction: when it fails, the table
        keeps its old rows and the staged ones stay for the next run.

        Raises:
            SinkWriteError: The swap failed (the old rows are untouched).
        """
        try:
            if success and self._target_schema is not None:
                self.with_retries(self._complete, what="complete", table=str(self.table))
        finally:
            self.dialect.close()

    def begin_units(self, schema: pa.Schema, delivery: Delivery) -> None:
        """Create or evolve the table (and a replace's staging table) before the units run.

        Units of one delivery write at once from several processes: the tables they share
        are made here, once, so that none of them races another to create or drop them. A
        resumed delivery keeps its staging table and the rows its units staged.
        """
        self.delivery = delivery
        try:
            self.prepare(schema)
            try:
                if self.write_disposition == "replace" and self._target_schema is not None:
                    self.with_retries(
                        self._begin_staging, what="prepare_staging", table=str(self.staging)
                    )
            finally:
                self.finish(success=False)
        finally:
            self.delivery = None

    def _begin_staging(self) -> None:
        dialect = self.dialect
        dialect.begin()
        try:
            self._ensure_staging(self._delivery_id())
            dialect.commit()
        except BaseException as exc:
            dialect.rollback()
            self._staging_ready = False
            if isinstance(exc, SinkError):
                raise
            raise dialect.error(exc, doing=f"preparing {str(self.staging)!r}") from None

    def _delivery_id(self) -> str:
        if self.delivery is None:  # deliver() called directly, outside write()
            self.delivery = Delivery(self.settings.destination)
        return self.delivery.delivery_id

    def _complete(self) -> None:
        dialect = self.dialect
        schema = self.table.schema
        destination = self.settings.destination
        delivery_id = self._delivery_id()
        dialect.begin()
        try:
            if self.write_disposition == "replace" and not dialect.ledger_has(
                schema, destination, delivery_id, COMPLETE_MARK
            ):
                staged = dialect.columns(self.staging) is not None
                ours = dialect.ledger_load_of(schema, destination, STAGING_MARK) == delivery_id
                if staged and ours:
                    assert self._target_schema is not None
                    dialect.replace_contents(self.table, self.staging, self._target_schema.names)
                else:
                    # a replace with no rows leaves the table empty
                    dialect.truncate(self.table)
                    dialect.drop_table(self.staging)
                dialect.ledger_drop_key(schema, destination, STAGING_MARK)
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                dialect.ledger_add(schema, destination, delivery_id, COMPLETE_MARK, 0, now)
            dialect.ledger_forget(schema, destination, keep_load=delivery_id)
            dialect.commit()
        except BaseException as exc:
            dialect.rollback()
            raise dialect.error(exc, doing=f"completing the write to {str(self.table)!r}") from None

    # -- batches --------------------------------------------------------------------------

    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Write one batch and its ledger row in one transaction (skipped if already there).

        Raises:
            SinkWriteError: The batch was refused (permanent) or kept failing (transient).
        """
        load_id = self._delivery_id()
        if self._writable is not None and not batch.schema.equals(self._writable):
            batch = batch.cast(self._writable)
        rows = batch.num_rows  # all of them reach the table (the last of a repeated key wins)
        if self.write_disposition == "merge":
            assert self.primary_key is not None
            batch = dedupe_last(batch, self.primary_key)
        attempts = 0
        started = time.perf_counter()

        def attempt() -> bool:
            nonlocal attempts
            attempts += 1
            return self._write_batch(batch, key=key, load_id=load_id, attempt=attempts)

        status = "failed"
        try:
            written = self.with_retries(attempt, what="write_batch", key=key)
            status = "written" if written else "skipped"
        finally:
            log.info(
                "sql_batch",
                destination=self.settings.destination,
                table=str(self.table),
                write_disposition=self.write_disposition,
                rows=batch.num_rows,
                attempt=attempts,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                key=key,
            )
        self._delivered += 1
        return BatchReceipt(
            rows=rows,
            bytes=batch.nbytes if written else 0,
            skipped=not written,
        )

    def _write_batch(self, batch: pa.RecordBatch, *, key: str, load_id: str, attempt: int) -> bool:
        dialect = self.dialect
        destination = self.settings.destination
        schema = self.table.schema
        try:
            dialect.begin()
            if dialect.ledger_has(schema, destination, load_id, key):
                dialect.rollback()
                return False
            if self.write_disposition == "replace":
                self._ensure_staging(load_id)
                dialect.insert(self.staging, batch)
            elif self.write_disposition == "merge":
                assert self.primary_key is not None
                dialect.upsert(
                    self.table, batch, self.primary_key, has_unique_key=self._has_unique_key
                )
            else:
                dialect.insert(self.table, batch)
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            dialect.ledger_add(schema, destination, load_id, key, batch.num_rows, now)
            dialect.commit()
        except BaseException as exc:
            dialect.rollback()
            raise dialect.error(
                exc,
                doing=f"writing a batch of {batch.num_rows} rows to {str(self.table)!r}",
                attempt=attempt,
            ) from None
        return True

    def _ensure_staging(self, load_id: str) -> None:
        """Make sure the staging table belongs to this delivery (inside the batch's txn).

        A delivery that is resumed finds its own mark in the ledger and keeps filling the
        staging table; a new delivery starts it afresh.
        """
        if self._staging_ready:
            return
        dialect = self.dialect
        schema = self.table.schema
        destination = self.settings.destination
        owner = dialect.ledger_load_of(schema, destination, STAGING_MARK)
        if owner != load_id or dialect.columns(self.staging) is None:
            assert self._target_schema is not None
            dialect.drop_table(self.staging)
            dialect.create_table(self.staging, self._target_schema, None)
            dialect.ledger_drop_key(schema, destination, STAGING_MARK)
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            dialect.ledger_add(schema, destination, load_id, STAGING_MARK, 0, now)
        check_direct = getattr(dialect, "check_direct", None)
        if check_direct is not None and self._writable is not None:
            check_direct(self.staging, self._writable, dialect.columns(self.staging) or {})
        self._staging_ready = True

    # -- deletes (sync: mirror) -----------------------------------------------------------

    supports_deletes = True

    def open_deletes(self) -> None:
        """Connect for a delivery's deletes."""
        self.with_retries(self.dialect.connect, what="connect", database=self.url.where)

    def close_deletes(self) -> None:
        """Close the connection of the deletes."""
        self.dialect.close()

    def delete_keys(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Delete the rows with the batch's keys, with its ledger row, in one transaction.

        Raises:
            SinkWriteError: The delete failed (permanent) or kept failing (transient).
        """
        delivery_id = self._delivery_id()
        dialect = self.dialect
        schema = self.table.schema
        destination = self.settings.destination

        def attempt() -> bool:
            try:
                dialect.begin()
                if dialect.ledger_has(schema, destination, delivery_id, key):
                    dialect.rollback()
                    return False
                if dialect.columns(self.table) is not None:
                    dialect.delete_keys(self.table, batch)
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                dialect.ledger_add(schema, destination, delivery_id, key, batch.num_rows, now)
                dialect.commit()
            except BaseException as exc:
                dialect.rollback()
                raise dialect.error(
                    exc, doing=f"deleting {batch.num_rows} rows from {str(self.table)!r}"
                ) from None
            return True

        deleted = self.with_retries(attempt, what="delete_batch", key=key)
        log.info(
            "sql_delete_batch",
            destination=destination,
            table=str(self.table),
            rows=batch.num_rows,
            status="deleted" if deleted else "skipped",
            key=key,
        )
        return BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes if deleted else 0)

    def _config_error(self, message: str) -> SinkConfigurationError:
        return SinkConfigurationError(
            message, sink_type=self.sink_type, destination=self.settings.destination
        )
