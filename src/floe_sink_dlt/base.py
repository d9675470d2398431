"""What the reference sinks share: settings, the life cycle of a write, and the result.

A sink subclasses :class:`BatchSink` and implements :meth:`BatchSink.deliver` for one batch.
:meth:`BatchSink.write` does the rest with the core's delivery loop
(:func:`floe_sink.delivery.deliver_batches`): field mapping, batches of ``batch_size`` rows,
idempotency keys, the journal of acknowledged batches (a resumed delivery skips them), bounded
concurrency and interrupts; then it returns a complete :class:`floe_sink.EgressResult`.

Why no dlt load package here: dlt's custom destination first writes every row to a load
package on disk and keeps it there until every batch is acknowledged; that copy is what made
resumes possible in round 1, and what grew the state directory by ~38 MB per 1M-row run. An
Iceberg snapshot is immutable, so the copy buys nothing: a resumed delivery re-reads its
snapshot and skips the batches the journal holds. The delivery loop is the core's, so every
plugin gets the same guarantees; see ``docs/concepts.md``.
"""

from __future__ import annotations

import abc
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from floe_sink import EgressResult, SinkConfig
from floe_sink.delivery import BatchReceipt, Delivery, DeliveryTotals, deliver_batches
from floe_sink.errors import SinkConfigurationError, SinkError
from floe_sink.idempotency import idempotency_key
from floe_sink.logs import get_logger
from floe_sink.retry import RetryPolicy, retrying

if TYPE_CHECKING:
    import pyarrow as pa

    from floe_sink.checksum import Checksum, DeliveryChecksum

__all__ = ["BatchReceipt", "BatchSink", "SinkSettings"]

log = get_logger(__name__)


@attrs.frozen(kw_only=True)
class SinkSettings:
    """The settings every reference sink shares, read from a :class:`floe_sink.SinkConfig`."""

    destination: str
    batch_size: int
    field_mapping: dict[str, str] | None
    retry: RetryPolicy

    @classmethod
    def from_config(cls, config: SinkConfig, *, default_batch_size: int) -> SinkSettings:
        """Read the shared settings; ``destination`` defaults to the sink type."""
        return cls(
            destination=config.destination or config.sink_type,
            batch_size=config.batch_size or default_batch_size,
            field_mapping=dict(config.field_mapping) if config.field_mapping else None,
            retry=RetryPolicy.from_config(config.retry_config),
        )


class BatchSink(abc.ABC):
    """Base class of the reference sinks.

    Subclasses set :attr:`sink_type` and :attr:`default_batch_size`, build themselves in
    ``from_config`` and implement :meth:`deliver`; they may override :meth:`prepare`
    (before any batch: create tables, open clients) and :meth:`finish` (after the last batch:
    swap a replaced table, close clients).
    """

    sink_type: ClassVar[str]
    default_batch_size: ClassVar[int]

    concurrency: int = 1
    """Batches in flight at once; above 1, :meth:`deliver` is called from several threads."""

    supports_deletes: bool = False
    """True for a sink that implements :meth:`delete_keys` (``sync: mirror``)."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.delivery: Delivery | None = None
        """The delivery of the write under way (set from ``prepare`` to ``finish``)."""

    # -- what a subclass implements ---------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: SinkConfig) -> BatchSink:
        """Validate ``config`` and build the sink, without connecting.

        Raises:
            SinkConfigurationError: A key is missing or invalid (it is named).
        """

    @abc.abstractmethod
    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Deliver one batch (mapped names, at most ``batch_size`` rows) under ``key``.

        Retry transient failures here (see :meth:`with_retries`) and raise a
        :class:`floe_sink.SinkError` when the batch cannot be delivered; the write then stops
        and reports it. The same batch may be delivered again after a crash (same ``key``).
        """

    def prepare(self, schema: pa.Schema) -> None:  # noqa: B027 - optional hook
        """Called once before the first batch with the mapped schema."""

    def finish(self, *, success: bool) -> None:  # noqa: B027 - optional hook
        """Called once after the last batch (also after a failure or an interrupt).

        ``success`` is true only when the whole delivery is in: a unit of a delivery cut
        into units (``delivery.unit``) finishes with ``False``, and the engine completes the
        delivery once, after its last unit (:meth:`complete_units`).
        """

    @property
    def rate_limit(self) -> float | None:
        """Requests per second this sink may send, across every process of a delivery.

        The Ray engine shares it between its tasks (``Delivery.pacer``); ``None``: no limit.
        """
        return None

    # -- a delivery cut into units (the Ray engine) -----------------------------------------

    def begin_units(self, schema: pa.Schema, delivery: Delivery) -> None:
        """Before the units of ``delivery`` are delivered elsewhere: what they share.

        The engine calls it once, in its own process, with the mapped schema; the default
        runs :meth:`prepare` (create or evolve the table, ...) and closes again, so that
        units running at once find everything made and never race to make it.
        """
        self._prepare_and_finish(schema, delivery, success=False)

    def complete_units(self, schema: pa.Schema, delivery: Delivery) -> None:
        """After every unit of ``delivery`` is in: what :meth:`finish` does for a whole one.

        The default runs :meth:`prepare` and ``finish(success=True)`` (a replace's swap,
        forgetting older deliveries' ledger rows), once, in the engine's process.

        Raises:
            SinkError: Completing failed; the delivery stays unfinished, to be resumed.
        """
        self._prepare_and_finish(schema, delivery, success=True)

    def _prepare_and_finish(self, schema: pa.Schema, delivery: Delivery, *, success: bool) -> None:
        self.delivery = delivery
        try:
            self.prepare(schema)
            self.finish(success=success)
        finally:
            self.delivery = None

    def delete_keys(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Delete the rows of one batch of keys (destination names) under ``key``.

        Only for a sink with :attr:`supports_deletes`; the same batch may come again after a
        crash (same ``key``).
        """
        raise NotImplementedError(f"{self.sink_type} cannot delete rows")

    def open_deletes(self) -> None:  # noqa: B027 - optional hook
        """Called before the first batch of keys to delete (connect)."""

    def close_deletes(self) -> None:  # noqa: B027 - optional hook
        """Called after the last batch of keys to delete (also after a failure)."""

    def describe(self) -> str:
        """Where the data goes, for logs and errors; never containing a secret."""
        return self.settings.destination

    # -- shared machinery -------------------------------------------------------------------

    def with_retries(self, attempt: Any, *, what: str, **log_context: Any) -> Any:
        """Run ``attempt()`` under this sink's retry policy and return its result."""
        for try_ in retrying(
            self.settings.retry, what=what, destination=self.settings.destination, **log_context
        ):
            with try_:
                return attempt()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def write(self, data: Any, delivery: Delivery | None = None) -> EgressResult:
        """Deliver ``data`` (a table, a batch, a reader or batches) and report the outcome.

        Args:
            data: The source rows (source column names; the field mapping is applied here).
            delivery: The delivery and its journal, from the command; ``None`` delivers with
                an in-memory journal (a sink used from Python directly).

        Raises:
            SinkConfigurationError: The data does not fit the configuration (a mapped column
                is missing, ...). Delivery failures are reported in the result instead.
            DeliveryInterrupted: A stop was requested; what was delivered is in the journal.
        """
        import pyarrow as pa  # here, not at import: create_sink (validate) needs none of it

        started = time.perf_counter()
        delivery = delivery or Delivery(self.settings.destination)
        self.delivery = delivery
        checksum = delivery.new_checksum()
        whole = delivery.unit is None  # a unit's delivery is completed by the engine
        prepared = False
        success = False

        def on_schema(schema: pa.Schema) -> None:
            nonlocal prepared
            self.prepare(schema)
            prepared = True

        totals = DeliveryTotals()
        errors: list[str] = []
        try:
            deliver_batches(
                data,
                delivery=delivery,
                batch_size=self.settings.batch_size,
                send=lambda batch, key: self.deliver(batch, key=key),
                field_mapping=self.settings.field_mapping,
                concurrency=self.concurrency,
                checksum=checksum,
                on_schema=on_schema,
                totals=totals,
            )
            if not prepared:
                on_schema(pa.schema([]))  # no rows and no schema: nothing to create
            success = True
        except SinkConfigurationError:
            raise
        except SinkError as exc:
            errors.append(str(exc))
        finally:
            if prepared:
                try:
                    self.finish(success=success and whole)
                except SinkError as exc:
                    if success:
                        errors.append(str(exc))
            self.delivery = None
        return self._result(started, checksum, totals, errors)

    def delete(self, keys: Any, delivery: Delivery | None = None) -> EgressResult:
        """Delete the rows with ``keys`` (a table of key columns, destination names).

        Batches of keys go through the delivery's journal in their own range of positions,
        so a resumed delivery does not repeat acknowledged deletes.
        """
        from floe_sink.checksum import Checksum
        from floe_sink.sync import DELETE_POSITIONS

        started = time.perf_counter()
        delivery = delivery or Delivery(self.settings.destination)
        self.delivery = delivery
        checksum = Checksum()
        totals = DeliveryTotals()
        errors: list[str] = []
        self.open_deletes()
        try:
            deliver_batches(
                keys,
                delivery=delivery,
                batch_size=self.settings.batch_size,
                send=lambda batch, key: self.delete_keys(batch, key=key),
                checksum=checksum,
                totals=totals,
                first_position=DELETE_POSITIONS,
            )
        except SinkConfigurationError:
            raise
        except SinkError as exc:
            errors.append(str(exc))
        finally:
            self.close_deletes()
            self.delivery = None
        return self._result(started, checksum, totals, errors)

    def _result(
        self,
        started: float,
        checksum: Checksum | DeliveryChecksum,
        totals: DeliveryTotals,
        errors: list[str],
    ) -> EgressResult:
        digest = checksum.hexdigest()
        return EgressResult(
            success=not errors,
            rows_delivered=totals.rows,
            bytes_transmitted=totals.bytes,
            duration_seconds=time.perf_counter() - started,
            checksum=digest,
            delivery_timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
            idempotency_key=idempotency_key(self.settings.destination, digest),
            destination_record_ids=list(totals.record_ids),
            errors=errors,
            resumed_batches=totals.resumed_batches,
            rows_rejected=totals.rejected,
        )
