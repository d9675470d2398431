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

A row the database refuses (a CHECK, NOT NULL, unique or foreign-key constraint, a value it
cannot store) does not fail its batch: once the batch's transaction has failed on such a row,
the bad rows are found with trial transactions that are always rolled back (DuckDB has no
savepoints, so the same way for all three), each a prefix of the batch: a binary search for
the first prefix that fails names the row that makes it fail, which is then set aside, and so
on. Then the good rows, the ledger row and the refused rows' statuses go in one transaction,
and the refused rows are returned as :class:`~floe_sink.delivery.Rejection` (status the
SQLSTATE or error name, message the driver's without row values). At most
``max_rejects_per_batch`` rows (default 10) are set aside a batch, and at most
``max_rejects_per_batch * (ceil(log2 rows) + 1)`` trials run: beyond, the batch fails as
before. A crash while isolating leaves nothing (every trial is rolled back); a crash after the
commit re-delivers the batch, which the ledger skips, reporting its refused rows again.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from floe_sink import SinkConfig
from floe_sink.delivery import Delivery, Rejection
from floe_sink.errors import ErrorCategory, SinkConfigurationError, SinkError, SinkWriteError
from floe_sink.logs import get_logger
from floe_sink_dlt.base import BatchReceipt, BatchSink, SinkSettings
from floe_sink_dlt.sql.options import SCHEMA_EVOLUTIONS, WRITE_DISPOSITIONS, SqlDatabaseOptions
from floe_sink_dlt.sql.target import STAGING_SUFFIX, DatabaseUrl, TableName

if TYPE_CHECKING:
    import pyarrow as pa

    from floe_sink_dlt.sql.dialect import Dialect
    from floe_sink_dlt.sql.evolution import EvolutionPlan

__all__ = ["DEFAULT_BATCH_SIZE", "WRITE_DISPOSITIONS", "SqlDatabaseSink"]

log = get_logger(__name__)

DEFAULT_BATCH_SIZE = 100_000
"""Rows per batch (and per transaction) unless ``batch_size`` says otherwise."""

DEFAULT_MAX_REJECTS = 10
"""Rows a batch may have refused and still be written without them."""

# pyarrow, the dialects (and their drivers) and the schema evolution are imported where a
# write needs them: create_sink (floe-sink validate) checks the options and loads none of them.


class _RowRefused(SinkWriteError):
    """A batch's transaction failed on a row's data: the rows can be isolated.

    Attributes:
        failure: The error to report when they cannot (the batch then fails, as it would).
        status: The SQLSTATE or error name.
        reason: The driver's message, without row values.
    """

    default_category = ErrorCategory.PERMANENT

    def __init__(self, failure: SinkError, *, status: str, reason: str) -> None:
        super().__init__(str(failure), category=ErrorCategory.PERMANENT)
        self.failure = failure
        self.status = status
        self.reason = reason


def _dialect_for(url: DatabaseUrl, timeout: float) -> Dialect:
    if url.dialect == "postgresql":
        from floe_sink_dlt.sql.postgres import PostgresDialect

        return PostgresDialect(url, timeout=timeout)
    if url.dialect == "sqlite":
        from floe_sink_dlt.sql.sqlite import SqliteDialect

        return SqliteDialect(url, timeout=timeout)
    from floe_sink_dlt.sql.duckdb import DuckDbDialect

    return DuckDbDialect(url, timeout=timeout)


class SqlDatabaseSink(BatchSink):
    """Writes to a table of a PostgreSQL, SQLite or DuckDB database (``sql_database``).

    Build it with :meth:`from_config`; see ``docs/sinks/sql_database.md`` for the keys.
    """

    sink_type: ClassVar[str] = "sql_database"
    default_batch_size: ClassVar[int] = DEFAULT_BATCH_SIZE

    schema_evolution: str = SCHEMA_EVOLUTIONS[0]
    """``evolve`` (add and widen an existing table's columns) or ``freeze`` (refuse any
    difference); set by :meth:`from_config` from the ``schema_evolution`` key."""

    max_rejects_per_batch: int = DEFAULT_MAX_REJECTS
    """Rows of a batch the database may refuse and the batch still be written without them
    (``0``: the first refused row fails the batch); the ``max_rejects_per_batch`` key."""

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
        self._dialect: Dialect | None = None
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
                ``primary_key``; the key is named and the URL's password never shown (see
                :class:`~floe_sink_dlt.sql.options.SqlDatabaseOptions`).
        """
        options = SqlDatabaseOptions.from_config(config)
        sink = cls(
            SinkSettings.from_config(config, default_batch_size=cls.default_batch_size),
            url=options.url,
            table=options.table,
            write_disposition=options.write_disposition,
            primary_key=options.primary_key,
        )
        sink.schema_evolution = options.schema_evolution
        sink.max_rejects_per_batch = options.max_rejects_per_batch
        return sink

    @property
    def dialect(self) -> Dialect:
        """The database's dialect, made (and its driver imported) on first use."""
        if self._dialect is None:
            self._dialect = _dialect_for(self.url, self.settings.retry.timeout)
        return self._dialect

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
        from floe_sink_dlt.sql.types import arrow_to_sql, writable_schema

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
        from floe_sink_dlt.sql.evolution import evolve_staging, evolve_table, log_evolution

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
        from floe_sink_dlt.sql.dialect import COMPLETE_MARK, STAGING_MARK

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
            dialect.rejects_forget(schema, destination, keep_load=delivery_id)
            dialect.commit()
        except BaseException as exc:
            dialect.rollback()
            raise dialect.error(exc, doing=f"completing the write to {str(self.table)!r}") from None

    # -- batches --------------------------------------------------------------------------

    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Write one batch and its ledger row in one transaction (skipped if already there).

        Rows the database refuses are isolated and left out (see the module docstring):
        the receipt lists them, by row of ``batch``.

        Raises:
            SinkWriteError: The batch was refused (permanent) or kept failing (transient).
        """
        import pyarrow as pa

        from floe_sink_dlt.sql.dialect import last_rows

        load_id = self._delivery_id()
        if self._writable is not None and not batch.schema.equals(self._writable):
            batch = batch.cast(self._writable)
        rows = batch.num_rows  # all of them reach the table (the last of a repeated key wins)
        kept: list[int] | None = None  # the row of ``batch`` of each row written (merge)
        if self.write_disposition == "merge":
            assert self.primary_key is not None
            last = last_rows(batch, self.primary_key)
            if last is not None:
                kept = last.to_pylist()
                batch = pa.Table.from_batches([batch]).take(last).combine_chunks().to_batches()[0]
        attempts = 0
        started = time.perf_counter()
        outcome: tuple[bool, list[Rejection]] = (False, [])

        def attempt() -> tuple[bool, list[Rejection]]:
            nonlocal attempts
            attempts += 1
            try:
                return self._write_batch(batch, key=key, load_id=load_id, attempt=attempts)
            except _RowRefused as refused:
                return self._isolate(batch, refused, key=key, load_id=load_id, attempt=attempts)

        status = "failed"
        try:
            outcome = self.with_retries(attempt, what="write_batch", key=key)
            status = "written" if outcome[0] else "skipped"
        finally:
            log.info(
                "sql_batch",
                destination=self.settings.destination,
                table=str(self.table),
                write_disposition=self.write_disposition,
                rows=batch.num_rows,
                rejected=len(outcome[1]),
                attempt=attempts,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                key=key,
            )
        written, rejected = outcome
        if kept is not None:
            rejected = [attrs_evolve_index(r, kept[r.index]) for r in rejected]
        self._delivered += 1
        return BatchReceipt(
            rows=rows - len(rejected),
            bytes=batch.nbytes if written else 0,
            skipped=not written,
            rejected=tuple(rejected),
        )

    def _write_rows(self, batch: pa.RecordBatch, *, load_id: str) -> None:
        """Write ``batch`` as the disposition says, in the open transaction."""
        dialect = self.dialect
        if self.write_disposition == "replace":
            self._ensure_staging(load_id)
            dialect.insert(self.staging, batch)
        elif self.write_disposition == "merge":
            assert self.primary_key is not None
            dialect.upsert(self.table, batch, self.primary_key, has_unique_key=self._has_unique_key)
        else:
            dialect.insert(self.table, batch)

    def _refusal(self, exc: BaseException, *, doing: str, attempt: int) -> SinkError:
        """The error of a failed write: :class:`_RowRefused` when a row's data caused it."""
        error = self.dialect.error(exc, doing=doing, attempt=attempt)
        status = None if isinstance(exc, SinkError) else self.dialect.row_error(exc)
        if status is None or self.max_rejects_per_batch == 0:
            return error
        reason = f"{type(exc).__name__}: {self.dialect.describe_error(exc)}".strip()
        return _RowRefused(error, status=status, reason=reason)

    def _write_batch(
        self,
        batch: pa.RecordBatch,
        *,
        key: str,
        load_id: str,
        attempt: int,
        rows: list[int] | None = None,
        rejected: list[Rejection] | None = None,
    ) -> tuple[bool, list[Rejection]]:
        """Write ``batch`` (or only its ``rows``) with the ledger row and the ``rejected``
        rows' statuses, in one transaction; or skip it when the ledger has it.

        Returns:
            Whether it was written, and the refused rows (those recorded with the batch when
            it is skipped).
        """
        import pyarrow as pa

        dialect = self.dialect
        destination = self.settings.destination
        schema = self.table.schema
        staging_ready = self._staging_ready
        part = batch if rows is None else batch.take(pa.array(rows, pa.int64()))
        try:
            dialect.begin()
            if dialect.ledger_has(schema, destination, load_id, key):
                found = dialect.rejects_of(schema, destination, load_id, key)
                dialect.rollback()
                return False, [
                    Rejection(index=row, status=status, message=message)
                    for row, status, message in found
                ]
            if part.num_rows:
                self._write_rows(part, load_id=load_id)
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            dialect.ledger_add(schema, destination, load_id, key, part.num_rows, now)
            if rejected:
                dialect.rejects_add(
                    schema,
                    destination,
                    load_id,
                    key,
                    [(r.index, r.status, r.message) for r in rejected],
                )
            dialect.commit()
        except BaseException as exc:
            dialect.rollback()
            self._staging_ready = staging_ready  # what the rolled-back transaction made is gone
            raise self._refusal(
                exc,
                doing=f"writing a batch of {part.num_rows} rows to {str(self.table)!r}",
                attempt=attempt,
            ) from None
        return True, list(rejected or [])

    def _trial(
        self, batch: pa.RecordBatch, rows: list[int], *, load_id: str, attempt: int
    ) -> _RowRefused | None:
        """Write ``rows`` of ``batch`` in a transaction that is rolled back: the refusal, or
        ``None`` when they go in together."""
        import pyarrow as pa

        dialect = self.dialect
        staging_ready = self._staging_ready
        part = batch.take(pa.array(rows, pa.int64()))
        try:
            dialect.begin()
            self._write_rows(part, load_id=load_id)
        except BaseException as exc:
            error = self._refusal(
                exc, doing=f"trying {part.num_rows} rows in {str(self.table)!r}", attempt=attempt
            )
            if isinstance(error, _RowRefused):
                return error
            raise error from None
        finally:
            dialect.rollback()
            self._staging_ready = staging_ready
        return None

    def _isolate(
        self,
        batch: pa.RecordBatch,
        first: _RowRefused,
        *,
        key: str,
        load_id: str,
        attempt: int,
    ) -> tuple[bool, list[Rejection]]:
        """Find the rows the database refuses, then write the others (module docstring).

        Raises:
            SinkWriteError: More rows are refused than ``max_rejects_per_batch``, or the
                trials run out: the batch fails with the first refusal.
        """
        limit = self.max_rejects_per_batch
        budget = limit * (math.ceil(math.log2(max(batch.num_rows, 2))) + 1)
        candidates = list(range(batch.num_rows))
        good = 0  # candidates[:good] go in together
        rejected: list[Rejection] = []
        refusal = first
        trials = 0
        started = time.perf_counter()
        while True:
            low, high = good, len(candidates)  # prefix low goes in, prefix high is refused
            while high - low > 1:
                if trials >= budget:
                    raise self._unisolated(first, rejected, trials)
                middle = (low + high) // 2
                trials += 1
                found = self._trial(batch, candidates[:middle], load_id=load_id, attempt=attempt)
                if found is None:
                    low = middle
                else:
                    high, refusal = middle, found
            rejected.append(
                Rejection(index=candidates.pop(low), status=refusal.status, message=refusal.reason)
            )
            good = low
            if len(rejected) > limit or trials >= budget:
                raise self._unisolated(first, rejected, trials)
            trials += 1
            try:
                written, kept = self._write_batch(
                    batch,
                    key=key,
                    load_id=load_id,
                    attempt=attempt,
                    rows=candidates,
                    rejected=sorted(rejected, key=lambda r: r.index),
                )
            except _RowRefused as again:
                refusal = again
                continue
            log.info(
                "sql_rows_isolated",
                destination=self.settings.destination,
                table=str(self.table),
                rows=batch.num_rows,
                rejected=len(kept),
                trials=trials,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                key=key,
            )
            return written, kept

    def _unisolated(self, first: _RowRefused, rejected: list[Rejection], trials: int) -> SinkError:
        log.warning(
            "sql_rows_not_isolated",
            destination=self.settings.destination,
            table=str(self.table),
            rejected=len(rejected),
            max_rejects_per_batch=self.max_rejects_per_batch,
            trials=trials,
        )
        return first.failure

    def _ensure_staging(self, load_id: str) -> None:
        """Make sure the staging table belongs to this delivery (inside the batch's txn).

        A delivery that is resumed finds its own mark in the ledger and keeps filling the
        staging table; a new delivery starts it afresh.
        """
        from floe_sink_dlt.sql.dialect import STAGING_MARK

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


def attrs_evolve_index(rejection: Rejection, index: int) -> Rejection:
    """``rejection`` of another row (the row of the batch before duplicate keys were merged)."""
    import attrs

    return attrs.evolve(rejection, index=index)
