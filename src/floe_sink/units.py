"""Units of work: a destination's scan cut into groups of data files, each a sub-delivery.

The Ray engine (:mod:`floe_sink.engines`) does not stream one table through one process: it
cuts the planned scan of the delivery's snapshot into *units* and has each delivered by a
task. A unit is

- **a group of data files**, consecutive in the order of their paths (the order every engine
  reads them in), of at most ``target_bytes`` together; a file larger than that is a unit of
  its own. Each file is in exactly one unit.
- **identified by the table, not by the engine**: :func:`unit_id` hashes the destination, the
  snapshot id and the unit's file paths, so the same snapshot cut the same way gives the same
  units on every run, whichever task or process delivers them.
- **a sub-delivery**: delivered with a :class:`floe_sink.delivery.Delivery` that keeps the
  delivery's id and names the unit (:class:`floe_sink.delivery.DeliveryUnit`). Batch
  positions count within the unit and batch keys are scoped by it (``destination/unit_id``),
  so a unit delivered twice (a retried task, a rerun) sends the same batches under the same
  keys: ``sql_database``'s ledger (destination, delivery id, batch key) takes them once, and a
  ``rest_api`` receiver sees the same ``Idempotency-Key``.

The driver records each unit's completion in the delivery's journal as a batch record at the
unit's index (:meth:`UnitResult.journal_key`): its rows, the bytes sent, its batch count and
its files' checksum pieces. A rerun of the delivery skips the recorded units and still knows
their part of the checksum. What a task returns (:class:`UnitResult`) is small and holds no
rows.

The checksum of the delivery is :func:`floe_sink.checksum.combine_pieces` of every file's
piece in path order: the same for the local engine, which checksums per file too, so neither
the tasks nor the order they finish in change it (:func:`aggregate`).

Later kinds of units (changed rows of a ``sync: changes`` delivery, bucketed by key hash and
computed on the driver) fit the same frame: a unit needs a stable identity, a fixed content
and an order; only what a task reads changes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from floe_sink.checksum import Piece, combine_pieces
from floe_sink.errors import ErrorCategory, SinkWriteError
from floe_sink.models import EgressResult

if TYPE_CHECKING:
    import pyarrow as pa

    from floe_sink.state import BatchRecord

__all__ = [
    "DEFAULT_UNIT_BYTES",
    "JOURNAL_PREFIX",
    "Unit",
    "UnitResult",
    "aggregate",
    "plan_units",
    "unit_id",
]

DEFAULT_UNIT_BYTES = 128 * 1024 * 1024
"""Data-file bytes per unit unless the engine says otherwise (``unit_size_mb``)."""

JOURNAL_PREFIX = "unit:"
"""How a unit's journal record (its "batch key") starts; a local delivery's keys never do."""


def unit_id(destination: str, snapshot_id: int | None, paths: Sequence[str]) -> str:
    """The identity of a unit: SHA-256 of the destination, the snapshot and the file paths."""
    material = "\x00".join([destination, str(snapshot_id), *paths]).encode()
    return hashlib.sha256(material).hexdigest()[:32]


@attrs.frozen(kw_only=True)
class Unit:
    """A group of data files of a scan, delivered as one sub-delivery."""

    index: int
    """Position among the delivery's units (their files' path order)."""
    unit_id: str
    """See :func:`unit_id`."""
    paths: tuple[str, ...]
    """The data files, in path order."""
    rows: int
    """Record count of the files (before a row filter or deletes)."""
    size_bytes: int
    """Size of the files."""
    tasks: tuple[Any, ...] = attrs.field(eq=False, repr=False)
    """The pyiceberg ``FileScanTask``s (picklable: what a Ray task reads)."""

    def describe(self) -> str:
        """``unit 3 (2 files from 00012-....parquet)``, for messages."""
        first = self.paths[0].rsplit("/", 1)[-1] if self.paths else "-"
        files = "file" if len(self.paths) == 1 else "files"
        return f"unit {self.index} ({len(self.paths)} {files} from {first})"


def plan_units(
    tasks: Sequence[Any],
    *,
    destination: str,
    snapshot_id: int | None,
    target_bytes: int = DEFAULT_UNIT_BYTES,
) -> list[Unit]:
    """Cut planned ``FileScanTask``s into units of consecutive files up to ``target_bytes``.

    ``tasks`` must be in path order (:func:`floe_sink.source.plan_scan` sorts them); the
    units are in that order too, and the same tasks always give the same units.
    """
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be >= 1 (got {target_bytes})")
    groups: list[list[Any]] = []
    size = 0
    for task in tasks:
        file_size = int(task.file.file_size_in_bytes)
        if groups and size + file_size <= target_bytes:
            groups[-1].append(task)
            size += file_size
        else:
            groups.append([task])
            size = file_size
    units: list[Unit] = []
    for index, group in enumerate(groups):
        paths = tuple(str(task.file.file_path) for task in group)
        units.append(
            Unit(
                index=index,
                unit_id=unit_id(destination, snapshot_id, paths),
                paths=paths,
                rows=sum(int(task.file.record_count) for task in group),
                size_bytes=sum(int(task.file.file_size_in_bytes) for task in group),
                tasks=tuple(group),
            )
        )
    return units


@attrs.frozen(kw_only=True)
class UnitResult:
    """What the delivery of one unit came to (a Ray task's return value: no rows in it)."""

    index: int
    unit_id: str
    success: bool
    rows: int = 0
    """Rows of the unit now at the destination."""
    bytes: int = 0
    """Bytes sent for it (0 for a unit a rerun skipped)."""
    batches: int = 0
    """Batches the unit was cut into."""
    pieces: tuple[Piece, ...] = ()
    """Checksum pieces of the unit's files (``rows``, digest), in path order."""
    record_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    duration_seconds: float = 0.0
    resumed: bool = False
    """True when the journal already had the unit (nothing was sent for it)."""
    rows_rejected: int = 0
    """Records the destination refused one by one (they are not in ``rows``)."""
    rejects: tuple[dict[str, Any], ...] = ()
    """The refused records, for the driver's dead-letter store (``StateStore.reject``)."""
    cleared_rejects: tuple[str, ...] = ()
    """Keys of earlier refused records the destination accepted now."""
    trace_id: str = ""
    """The OpenTelemetry trace the task's spans joined (hex), when there was one."""
    worker: str = ""
    """Where it ran (``host:pid``), for logs."""

    def journal_key(self) -> str:
        """The unit's record in the journal (stored as the batch key at :attr:`index`)."""
        document = {
            "unit": self.unit_id,
            "batches": self.batches,
            "files": [[rows, digest] for rows, digest in self.pieces],
        }
        return JOURNAL_PREFIX + json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_journal(cls, record: BatchRecord, unit: Unit, *, destination: str) -> UnitResult:
        """The result of a unit an earlier run of the delivery recorded as delivered.

        Raises:
            SinkWriteError: The record is not this unit's (the snapshot, the files or the way
                they are cut changed since): resuming would skip the wrong rows.
        """
        document: Any = None
        if record.key.startswith(JOURNAL_PREFIX):
            try:
                document = json.loads(record.key.removeprefix(JOURNAL_PREFIX))
            except ValueError:
                document = None
        if not isinstance(document, Mapping) or document.get("unit") != unit.unit_id:
            raise SinkWriteError(
                f"cannot resume this delivery with units: the journal's record of "
                f"{unit.describe()} is not that unit's (the snapshot's files or how they are "
                "cut changed, or another engine started the delivery); run `floe-sink reset` "
                "for this destination to start over",
                category=ErrorCategory.PERMANENT,
                destination=destination,
            )
        pieces = tuple((int(rows), str(digest)) for rows, digest in document.get("files", []))
        return cls(
            index=unit.index,
            unit_id=unit.unit_id,
            success=True,
            rows=record.rows,
            bytes=0,
            batches=int(document.get("batches", 0)),
            pieces=pieces,
            resumed=True,
        )


def aggregate(
    units: Sequence[Unit],
    results: Mapping[int, UnitResult],
    *,
    schema: pa.Schema | None,
    destination: str,
    errors: Iterable[str],
    started: float,
) -> EgressResult:
    """One result for the destination from its units' results.

    ``rows_delivered`` adds the rows of every delivered unit (those a rerun skipped too),
    ``bytes_transmitted`` what this run sent; ``checksum`` combines every file's piece in unit
    order, which is path order, so it is the local engine's checksum of the same snapshot
    whatever task delivered which unit, in whatever order; ``idempotency_key`` derives from
    it as the local engine's does; record IDs are in unit order; ``resumed_batches`` counts
    the batches of the units the journal already had.
    """
    from floe_sink.idempotency import idempotency_key

    errors = list(errors)
    done = [results[unit.index] for unit in units if unit.index in results]
    pieces = [piece for result in done for piece in result.pieces]
    digest = combine_pieces(schema, pieces)
    return EgressResult(
        success=not errors and len(done) == len(units),
        rows_delivered=sum(result.rows for result in done),
        bytes_transmitted=sum(result.bytes for result in done),
        duration_seconds=time.perf_counter() - started,
        checksum=digest,
        delivery_timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
        idempotency_key=idempotency_key(destination, digest),
        destination_record_ids=[rid for result in done for rid in result.record_ids],
        errors=errors,
        resumed_batches=sum(result.batches for result in done if result.resumed),
        rows_rejected=sum(result.rows_rejected for result in done),
    )
