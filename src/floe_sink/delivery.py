"""Delivering a stream in batches, exactly as the journal says: the loop every sink shares.

A *delivery* brings one Iceberg snapshot to one destination. The command opens it in the state
store (:mod:`floe_sink.state`) and hands the sink a :class:`Delivery`: the sink's ``write``
receives it as the ``delivery`` argument. :func:`deliver_batches` is the loop a sink calls with
its own ``send`` function for one batch:

1. the source batches are mapped (``field_mapping``) and cut into batches of exactly
   ``batch_size`` rows (the last one shorter); batch *n* of a delivery is always the same rows,
   because the snapshot is immutable and read in a fixed order;
2. each batch gets its idempotency key (destination, position, content);
3. a batch the journal already holds as acknowledged is not sent again (its key is checked
   against the journal's, so a source that reads differently is caught, not silently skipped);
4. every other batch is sent, up to ``concurrency`` at once, and recorded in the journal as soon
   as ``send`` returns: a batch counts as acknowledged exactly when the destination has it;
5. an interrupt (SIGINT/SIGTERM, see :mod:`floe_sink.interrupts`) or a failed batch stops the
   loop from sending more; batches in flight are waited for and recorded, then it raises.

A process killed at any point therefore leaves a journal that names only batches the
destination has; the next run resumes the delivery and sends the rest (the batch in flight at
the kill is sent again with the same key).

A delivery may be cut into *units* (the Ray engine, :mod:`floe_sink.units`): each unit is
delivered by its own process with a :class:`Delivery` that keeps the delivery's id and names
its :class:`DeliveryUnit`. Batch positions then count within the unit, and keys are scoped
by it (:attr:`Delivery.key_scope`), so a unit delivered twice sends the same batches under the
same keys and a sink's ledger (keyed by delivery id and batch key) takes them once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from floe_sink.errors import ErrorCategory, SinkWriteError
from floe_sink.interrupts import StopRequest
from floe_sink.logs import get_logger
from floe_sink.state import BatchRecord, StateStore

if TYPE_CHECKING:
    import pyarrow as pa

    from floe_sink.checksum import Checksum, DeliveryChecksum, FileBoundaries

__all__ = [
    "BatchReceipt",
    "Delivery",
    "DeliveryInterrupted",
    "DeliveryTotals",
    "DeliveryUnit",
    "Pacer",
    "Rejection",
    "deliver_batches",
]

log = get_logger(__name__)


class DeliveryInterrupted(BaseException):
    """Raised when a stop was requested (SIGINT/SIGTERM): the delivery stays resumable.

    A ``BaseException``, like ``KeyboardInterrupt``, so that a sink's ``except Exception``
    does not turn a stop into a failed batch.

    Attributes:
        signal_number: The signal that asked for the stop.
    """

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number
        super().__init__(f"interrupted by signal {signal_number}")


@attrs.frozen(kw_only=True)
class Rejection:
    """One record of a batch the destination refused, and why (never a row value)."""

    index: int
    """The record's row in the batch (0-based)."""
    status: str
    """What refused it: an HTTP status (``"400"``) or a database error class."""
    message: str = attrs.field(repr=False)
    """The destination's message (it may quote the record: kept out of ``repr``)."""
    attempts: int = 1


@attrs.frozen(kw_only=True)
class BatchReceipt:
    """What a sink's ``send`` reports for one batch."""

    rows: int
    """Rows of the batch now at the destination (also when it already had them), rejected
    rows excluded."""
    bytes: int = 0
    """Bytes sent or written."""
    record_ids: list[str] = attrs.field(factory=list)
    """IDs the destination returned, where it does."""
    skipped: bool = False
    """True when the destination already had this batch (its own ledger said so)."""
    rejected: tuple[Rejection, ...] = ()
    """Records of the batch the destination refused one by one; the batch still counts as
    delivered (the others are there), the rejected records go to the dead-letter store."""


@attrs.frozen(kw_only=True)
class DeliveryUnit:
    """The part of a delivery that one process delivers (see :mod:`floe_sink.units`)."""

    index: int
    """The unit's place in the delivery (units are in the order of their files' paths)."""
    unit_id: str
    """Stable identity from the table: destination, snapshot and the unit's file paths."""


class Pacer(Protocol):
    """A request rate limit shared by every process of a delivery (the Ray engine's)."""

    def acquire(self) -> float:
        """Wait for the next request slot; return the seconds waited."""


class Delivery:
    """One delivery of one destination: its identity and its journal.

    The command creates it; a sink receives it as ``write``'s ``delivery`` argument and passes
    it to :func:`deliver_batches`. Without a state store (a sink used from Python directly) the
    journal lives in memory for the one write.

    Attributes:
        destination: The destination name (what ledgers are keyed by).
        delivery_id: Stable across the runs that resume this delivery.
        resumed: True when an earlier run started this delivery.
        stop: Requested when the run should stop after the batches in flight.
        unit: The unit of the delivery this process delivers; ``None``: all of it.
        files: Where the source's data files end in the stream, when the engine knows
            (:meth:`new_checksum` then checksums per file).
        pacer: The delivery's shared request rate limit, when the engine provides one.
        checksum: The checksum :meth:`new_checksum` handed out last.
        failure: The error that stopped :func:`deliver_batches`, if one did.
    """

    def __init__(
        self,
        destination: str,
        *,
        delivery_id: str | None = None,
        store: StateStore | None = None,
        resumed: bool = False,
        stop: StopRequest | None = None,
        unit: DeliveryUnit | None = None,
        files: FileBoundaries | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        import uuid

        self.destination = destination
        self.delivery_id = delivery_id or uuid.uuid4().hex
        self.resumed = resumed
        self.stop = stop or StopRequest()
        self.unit = unit
        self.files = files
        self.pacer = pacer
        self.checksum: Checksum | DeliveryChecksum | None = None
        self.failure: BaseException | None = None
        self._store = store
        self._lock = threading.Lock()
        self._acked: dict[int, BatchRecord] = (
            store.batches(self.delivery_id) if store is not None and resumed else {}
        )
        self.batch_sizes: dict[int, int] = {}
        """The batch size of each range of positions delivered (by its first position)."""
        self.rejections: list[tuple[int, int]] = []
        """(position, row in batch) of every record the destination refused in this run."""
        self.key_columns: tuple[str, ...] = ()
        """The primary key under its destination names (what a rejected record is filed by)."""
        self.run_id = ""
        self._open_rejects: set[str] = set()

    def __repr__(self) -> str:
        unit = f", unit={self.unit.index}" if self.unit is not None else ""
        return (
            f"Delivery({self.destination!r}, id={self.delivery_id!r}{unit}, "
            f"resumed={self.resumed}, acknowledged={len(self._acked)})"
        )

    @property
    def key_scope(self) -> str:
        """What batch keys are computed for: the destination, and the unit when there is one.

        A whole delivery's keys are the destination's (unchanged by units existing); a unit's
        batch *n* is keyed ``destination/unit_id`` and *n*, so two units never share a key
        and a unit delivered again repeats its own.
        """
        if self.unit is None:
            return self.destination
        return f"{self.destination}/{self.unit.unit_id}"

    def new_checksum(self) -> Checksum | DeliveryChecksum:
        """A fresh checksum for this delivery's content (kept in :attr:`checksum`).

        Per data file (:class:`floe_sink.checksum.DeliveryChecksum`) when the engine told
        where the files end, so that every engine reports the same digest for a snapshot;
        else one :class:`floe_sink.checksum.Checksum` of the stream.
        """
        from floe_sink.checksum import Checksum, DeliveryChecksum

        checksum: Checksum | DeliveryChecksum = (
            DeliveryChecksum(self.files) if self.files is not None else Checksum()
        )
        self.checksum = checksum
        return checksum

    def acknowledged(self, position: int) -> BatchRecord | None:
        """The journal's record of batch ``position``, when the destination has it."""
        with self._lock:
            return self._acked.get(position)

    def acknowledged_positions(self, start: int = 0, stop: int | None = None) -> list[int]:
        """Positions the journal holds as acknowledged in ``[start, stop)``, sorted."""
        with self._lock:
            return sorted(
                position
                for position in self._acked
                if position >= start and (stop is None or position < stop)
            )

    @property
    def acknowledged_count(self) -> int:
        """How many batches the journal holds as acknowledged."""
        with self._lock:
            return len(self._acked)

    def acknowledge(
        self,
        position: int,
        key: str,
        receipt: BatchReceipt,
        batch: pa.RecordBatch | None = None,
    ) -> None:
        """Record that the destination has batch ``position`` (call only after it does).

        Rejected records (``receipt.rejected``) are written to the dead-letter store first,
        with the key columns and the record as sent (``batch`` holds them).
        """
        if receipt.rejected and batch is not None:
            self._reject(position, batch, receipt.rejected)
        if batch is not None:
            self._clear_accepted(batch, {r.index for r in receipt.rejected})
        record = BatchRecord(position=position, key=key, rows=receipt.rows, bytes=receipt.bytes)
        if self._store is not None:
            self._store.acknowledge(self.delivery_id, record)
        with self._lock:
            self._acked[position] = record
            self.rejections.extend((position, r.index) for r in receipt.rejected)

    @property
    def open_rejects(self) -> list[str]:
        """The JSON keys of refused records not yet accepted (as :meth:`track_rejects` got)."""
        return sorted(self._open_rejects)

    def file_rejects(self, rejects: Sequence[Mapping[str, Any]], cleared: Sequence[str]) -> None:
        """Record what a unit delivered by another process refused and cleared (Ray engine).

        ``rejects`` are the keyword arguments of the state store's ``reject`` (``key``,
        ``record``, ``status``, ``message``, ``run_id``, ``attempts``); ``cleared`` the keys
        of refused records the destination has now accepted.
        """
        if self._store is None:
            return
        for rejected in rejects:
            self._store.reject(self.destination, **rejected)
        if cleared:
            self._store.clear_rejects(self.destination, list(cleared))
            self._open_rejects.difference_update(cleared)

    def track_rejects(self, key_columns: Sequence[str], open_keys: Sequence[str]) -> None:
        """File refused records by ``key_columns``; clear ``open_keys`` once accepted."""
        self.key_columns = tuple(key_columns)
        self._open_rejects = set(open_keys)

    def resumed_batch(self, position: int, batch: pa.RecordBatch) -> int:
        """Batch ``position`` was acknowledged by an earlier run of this delivery, and is not
        sent again: its records that run saw refused, and that are still open in the
        dead-letter store, count as refused in this run too (:attr:`rejections`), so the
        sync state does not take them for delivered. Returns how many."""
        found = [index for index, _key in self._open_reject_rows(batch)]
        if found:
            with self._lock:
                self.rejections.extend((position, index) for index in found)
        return len(found)

    def _clear_accepted(self, batch: pa.RecordBatch, rejected: set[int]) -> None:
        """Forget the dead-letter records of keys this batch delivered."""
        found = [key for index, key in self._open_reject_rows(batch) if index not in rejected]
        if found and self._store is not None:
            self._store.clear_rejects(self.destination, found)
            self._open_rejects.difference_update(found)

    def _open_reject_rows(self, batch: pa.RecordBatch) -> list[tuple[int, str]]:
        """(row, JSON key) of the rows of ``batch`` whose key is an open refused record (rare:
        only while the destination has some; per-row work only for rows whose key might
        match)."""
        import json

        import pyarrow as pa
        import pyarrow.compute as pc

        if self._store is None or not self.key_columns or not self._open_rejects:
            return []
        keys = batch.select(list(self.key_columns))
        first = self.key_columns[0]
        try:
            wanted = pa.array(
                [json.loads(text)[first] for text in self._open_rejects],
                type=keys.column(0).type,
            )
            rows = pc.indices_nonzero(pc.is_in(keys.column(0), value_set=wanted))
            candidates = keys.take(rows).to_pylist()
            indices = rows.to_pylist()
        except (pa.ArrowException, KeyError, TypeError, ValueError):
            candidates, indices = keys.to_pylist(), list(range(keys.num_rows))
        return [
            (index, text)
            for index, row in zip(indices, candidates, strict=True)
            if (text := json.dumps(row, sort_keys=True, default=str)) in self._open_rejects
        ]

    def _reject(self, position: int, batch: pa.RecordBatch, found: Sequence[Rejection]) -> None:
        import json

        if self._store is None:
            return
        rows = batch.take([r.index for r in found]).to_pylist()
        for rejection, row in zip(found, rows, strict=True):
            key = (
                {name: row.get(name) for name in self.key_columns}
                if self.key_columns
                else {"delivery": self.delivery_id, "batch": position, "row": rejection.index}
            )
            self._store.reject(
                self.destination,
                key=json.dumps(key, sort_keys=True, default=str),
                record=json.dumps(row, default=str),
                status=rejection.status,
                message=rejection.message,
                run_id=self.run_id,
                attempts=rejection.attempts,
            )

    def check_stop(self) -> None:
        """Raise :class:`DeliveryInterrupted` when a stop was requested."""
        if self.stop.requested:
            raise DeliveryInterrupted(self.stop.signal_number or signal.SIGINT)


@attrs.define(kw_only=True)
class DeliveryTotals:
    """What :func:`deliver_batches` did."""

    rows: int = 0
    """Rows of the whole delivery now at the destination (acknowledged earlier or now)."""
    bytes: int = 0
    """Bytes this process sent."""
    batches: int = 0
    """Batches of the delivery (sent now, or acknowledged by an earlier run)."""
    sent_batches: int = 0
    """Batches this process sent."""
    resumed_batches: int = 0
    """Batches skipped because an earlier run of this delivery had delivered them."""
    record_ids: list[str] = attrs.field(factory=list)
    rejected: int = 0
    """Records the destination refused one by one (in the dead-letter store)."""
    schema: pa.Schema | None = None
    """The mapped schema (known even when there were no rows)."""


Send = Callable[["pa.RecordBatch", str], BatchReceipt]


def mapped_batches(
    data: Any, field_mapping: Mapping[str, str] | None
) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """The mapped schema (when known up front) and the non-empty mapped batches of ``data``."""
    import pyarrow as pa

    from floe_sink.chunking import as_batches
    from floe_sink.mapping import apply_field_mapping, mapped_schema

    schema = None
    if isinstance(data, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
        schema = mapped_schema(data.schema, field_mapping)

    def generate() -> Iterator[pa.RecordBatch]:
        for batch in as_batches(data):
            mapped = apply_field_mapping(batch, field_mapping)
            if mapped.num_rows:
                yield mapped

    return schema, generate()


def deliver_batches(
    data: Any,
    *,
    delivery: Delivery,
    batch_size: int,
    send: Send,
    field_mapping: Mapping[str, str] | None = None,
    concurrency: int = 1,
    checksum: Checksum | DeliveryChecksum | None = None,
    on_schema: Callable[[pa.Schema], None] | None = None,
    totals: DeliveryTotals | None = None,
    first_position: int = 0,
) -> DeliveryTotals:
    """Map, batch, key and send ``data``, skipping what the journal holds; see the module doc.

    Args:
        data: A table, a reader or an iterable of record batches (source column names).
        delivery: The delivery and its journal.
        batch_size: Rows per batch.
        send: Delivers one batch (mapped names) under its key; raises a
            :class:`floe_sink.SinkError` when it cannot. Called from worker threads when
            ``concurrency`` is above 1.
        field_mapping: Source column -> destination field.
        concurrency: Batches in flight at once.
        checksum: Updated with every mapped batch, skipped ones included.
        on_schema: Called once with the mapped schema before the first batch is sent: at
            once when ``data`` knows its schema (a table, a reader: also when it turns out
            empty), so the sink gets ready while the source reads; else with the first batch.
        totals: Updated in place as batches are delivered, so that a caller still knows
            what was delivered when this raises.
        first_position: The journal position of the first batch: a delivery's deletes use
            their own range (:data:`floe_sink.sync.DELETE_POSITIONS`).

    Returns:
        The totals of the delivery.

    Raises:
        DeliveryInterrupted: A stop was requested; every batch sent was recorded first.
        SinkError: A batch could not be delivered (the first failure; batches in flight were
            waited for and recorded first).
    """
    from floe_sink.chunking import Rechunker
    from floe_sink.idempotency import idempotency_key

    totals = totals if totals is not None else DeliveryTotals()
    delivery.batch_sizes[first_position] = batch_size
    schema, batches = mapped_batches(data, field_mapping)
    scope = delivery.key_scope
    announced = False

    def announce(known: pa.Schema) -> None:
        nonlocal announced
        if not announced:
            announced = True
            totals.schema = known
            if on_schema is not None:
                on_schema(known)

    seen = False

    def keyed() -> Iterator[tuple[int, str, pa.RecordBatch]]:
        nonlocal seen
        rechunker = Rechunker(batch_size)
        position = first_position
        for mapped in batches:
            seen = True
            announce(mapped.schema)
            if checksum is not None:
                checksum.update(mapped)
            for chunk in rechunker.push(mapped):
                yield position, idempotency_key(scope, chunk, position), chunk
                position += 1
        for chunk in rechunker.flush():
            yield position, idempotency_key(scope, chunk, position), chunk

    def record(position: int, key: str, receipt: BatchReceipt, chunk: pa.RecordBatch) -> None:
        delivery.acknowledge(position, key, receipt, chunk)
        totals.rejected += len(receipt.rejected)
        totals.rows += receipt.rows
        totals.bytes += receipt.bytes
        totals.sent_batches += 1
        totals.record_ids.extend(receipt.record_ids)

    def skip(position: int, key: str, chunk: pa.RecordBatch) -> bool:
        done = delivery.acknowledged(position)
        if done is None:
            return False
        if done.key != key:
            raise SinkWriteError(
                f"cannot resume delivery {delivery.delivery_id}: batch {position} of the "
                "source reads differently than when it was delivered (the snapshot or the "
                "batching changed); run `floe-sink reset` for this destination to start over",
                category=ErrorCategory.PERMANENT,
                destination=delivery.destination,
            )
        totals.rows += done.rows
        totals.resumed_batches += 1
        # refused by the run that sent it, still open: refused in this delivery's result too
        totals.rejected += delivery.resumed_batch(position, chunk)
        return True

    started = time.perf_counter()
    if schema is not None:
        announce(schema)  # known: the sink gets ready while the source reads its first batch
    try:
        if concurrency <= 1:
            for position, key, chunk in keyed():
                totals.batches += 1
                if skip(position, key, chunk):
                    continue
                delivery.check_stop()
                record(position, key, send(chunk, key), chunk)
        else:
            _deliver_concurrently(keyed(), delivery, send, concurrency, totals, skip, record)
    except Exception as exc:
        delivery.failure = delivery.failure or exc  # the engine reads its category
        raise
    if not seen and schema is not None and checksum is not None:
        checksum.update(schema.empty_table())  # an empty delivery's checksum
    log.debug(
        "batches_delivered",
        destination=delivery.destination,
        delivery_id=delivery.delivery_id,
        batches=totals.batches,
        sent=totals.sent_batches,
        resumed=totals.resumed_batches,
        seconds=round(time.perf_counter() - started, 3),
    )
    return totals


def _deliver_concurrently(
    items: Iterator[tuple[int, str, pa.RecordBatch]],
    delivery: Delivery,
    send: Send,
    concurrency: int,
    totals: DeliveryTotals,
    skip: Callable[[int, str, pa.RecordBatch], bool],
    record: Callable[[int, str, BatchReceipt, pa.RecordBatch], None],
) -> None:
    in_flight: dict[Future[BatchReceipt], tuple[int, str, pa.RecordBatch]] = {}
    failure: BaseException | None = None

    def settle(done: set[Future[BatchReceipt]]) -> None:
        nonlocal failure
        for future in done:
            position, key, chunk = in_flight.pop(future)
            error = future.exception()
            if error is not None:
                failure = failure or error
            else:
                record(position, key, future.result(), chunk)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floe-send") as pool:
        try:
            for position, key, chunk in items:
                totals.batches += 1
                if skip(position, key, chunk):
                    continue
                while len(in_flight) >= concurrency and failure is None:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    settle(done)
                if failure is not None:
                    break
                delivery.check_stop()
                in_flight[pool.submit(send, chunk, key)] = (position, key, chunk)
        finally:
            # whatever stops the loop (a failure, an interrupt, the source failing), batches
            # already sent are waited for and recorded: the journal must not miss them
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                settle(done)
    if failure is not None:
        raise failure
