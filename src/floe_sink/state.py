"""The state store: the delivery journal, run history and the lock of each destination.

One owner for delivery state. The journal says, per destination, which *deliveries* exist
(a delivery is one attempt to bring one Iceberg snapshot to one destination; a resumed run
continues the same delivery) and which of a delivery's batches the destination
*acknowledged*. A batch is recorded here only after the sink reported it delivered, so the
journal never claims more than the destination has; the sink-side ledger of ``sql_database``
covers the window between the destination's commit and this record.

The ``local`` store is one SQLite database, ``<state dir>/state.db`` (WAL journal: a commit
survives the process being killed; ``synchronous=NORMAL``, so a power loss can forget the last
acknowledgements, which only means those batches are sent again). Nothing here holds row data:
a resumed delivery re-reads its snapshot, which Iceberg keeps immutable. Batch records are
deleted when their delivery completes, so the file stays small whatever the table size.

The sync state of a change-aware destination (``sync: changes`` / ``mirror``: every key
delivered there and the fingerprint of its content) is one Parquet file per destination under
``<state dir>/sync/``, replaced atomically after each delivery (see :mod:`floe_sink.sync`).

Locks are one file per destination under ``<state dir>/locks/``, held with ``flock``: the
kernel releases a lock when its process dies, so a killed run's lock is taken over safely by
the next run, and two live runs of one destination never overlap.

State is keyed by the destination name itself; file names use :func:`escape_name`, which is
lossless and safe on case-insensitive file systems, so no two names ever share state.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import attrs

from floe_sink.errors import FloeSinkError, SinkConfigurationError

__all__ = [
    "DEFAULT_STATE_DIR",
    "BatchRecord",
    "DeliveryRecord",
    "DestinationLockedError",
    "LocalStateStore",
    "RejectRecord",
    "RunRecord",
    "StateStore",
    "escape_name",
    "open_state_store",
    "sync_state_path",
]

DEFAULT_STATE_DIR = Path(".floe")
"""Where state lives unless ``--state-dir`` / ``$FLOE_STATE_DIR`` says otherwise."""

STATE_FILE = "state.db"
LOCKS_DIR = "locks"
SYNC_DIR = "sync"

OPEN = "open"
"""A delivery under way, interrupted, killed or failed transiently: the next run resumes it."""
FAILED = "failed"
"""A delivery that failed for good (the destination refused a batch)."""
DONE = "done"
"""A delivery whose every batch was acknowledged and whose sink finished."""
ABANDONED = "abandoned"
"""A delivery that will never be resumed (its configuration changed, its snapshot expired,
or a reset)."""


def now_utc() -> str:
    """The current time, ISO-8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def escape_name(name: str) -> str:
    """``name`` as a file name: lossless, and distinct on case-insensitive file systems.

    Lower-case letters, digits and ``-`` stay; every other character (``_`` and upper-case
    letters included) becomes ``_`` and its code point in hex, ``;``-terminated, so that
    ``crm-contacts``, ``crm_contacts`` and ``CRM-contacts`` never collide.
    """
    out = []
    for char in name:
        if char.isascii() and (char.islower() or char.isdigit() or char == "-"):
            out.append(char)
        else:
            out.append(f"_{ord(char):x};")
    return "".join(out) or "_;"


class DestinationLockedError(FloeSinkError):
    """Raised when another live run holds the destination's lock.

    Attributes:
        destination: The destination name.
        holder: What the holder wrote in the lock (pid, host, since), when readable.
    """

    def __init__(self, destination: str, holder: Mapping[str, Any] | None) -> None:
        self.destination = destination
        self.holder = dict(holder or {})
        who = (
            f"process {self.holder.get('pid')} on {self.holder.get('host')} "
            f"since {self.holder.get('since')}"
            if self.holder
            else "another process"
        )
        super().__init__(
            f"destination {destination!r} is being delivered by {who}; wait for that run to "
            "finish (or stop it) and run again: two runs of one destination never overlap"
        )


@attrs.frozen(kw_only=True)
class BatchRecord:
    """An acknowledged batch of a delivery."""

    position: int
    key: str
    rows: int
    bytes: int


@attrs.frozen(kw_only=True)
class DeliveryRecord:
    """A delivery as the journal knows it."""

    delivery_id: str
    destination: str
    plan: str
    """The fingerprint of what is delivered (source, mapping, batching, sink config)."""
    snapshot_id: int | None
    status: str
    created_at: str


@attrs.frozen(kw_only=True)
class RejectRecord:
    """A record a destination refused, as ``floe-sink rejects`` lists it."""

    destination: str
    key: dict[str, Any]
    """The record's primary key (destination names)."""
    record: dict[str, Any] = attrs.field(repr=False)
    """The record as it was sent (customer data: never in logs or errors)."""
    status: str
    message: str = attrs.field(repr=False)
    run_id: str
    first_seen: str
    last_seen: str
    attempts: int


@attrs.frozen(kw_only=True)
class RunRecord:
    """One run of one destination, as ``floe-sink status`` shows it."""

    destination: str
    run_id: str
    started_at: str
    finished_at: str | None
    success: bool | None
    sync: str
    snapshot_id: int | None
    delivery_id: str
    result: dict[str, Any] = attrs.field(factory=dict)
    """The run's result record (the ``EgressResult`` fields and counts)."""


class StateStore(Protocol):
    """What the command needs from a state store (local files, or a database)."""

    def lock(self, destination: str) -> contextlib.AbstractContextManager[None]:
        """Hold the destination's lock for the block; raise :class:`DestinationLockedError`."""

    def latest_unfinished(self, destination: str) -> DeliveryRecord | None:
        """The newest delivery of ``destination`` that is open or failed, if any."""

    def create_delivery(self, destination: str, plan: str, snapshot_id: int | None) -> str:
        """Start a new delivery; return its id."""

    def set_status(self, delivery_id: str, status: str) -> None:
        """Move a delivery to ``status``; batch records go when it is done or abandoned."""

    def batches(self, delivery_id: str) -> dict[int, BatchRecord]:
        """The acknowledged batches of a delivery, by position."""

    def acknowledge(self, delivery_id: str, batch: BatchRecord) -> None:
        """Record that the destination has ``batch`` (idempotent)."""

    def start_run(self, run: RunRecord) -> None:
        """Record that a run of a destination started."""

    def finish_run(self, run_id: str, *, success: bool, result: Mapping[str, Any]) -> None:
        """Record a run's outcome."""

    def runs(self, destination: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        """Run history, most recent first."""

    def reject(
        self,
        destination: str,
        *,
        key: str,
        record: str,
        status: str,
        message: str,
        run_id: str,
        attempts: int = 1,
    ) -> None:
        """File a refused record (by its JSON key): new, or seen again (attempts add up)."""

    def rejects(self, destination: str | None = None) -> list[RejectRecord]:
        """The refused records, oldest first."""

    def clear_rejects(self, destination: str, keys: list[str]) -> None:
        """Forget refused records the destination has now accepted (by JSON key)."""

    def sync_state_path(self, destination: str) -> Path:
        """Where the destination's sync state (keys and fingerprints, Parquet) lives."""

    def forget(self, destination: str) -> None:
        """Abandon every unfinished delivery of ``destination`` and drop its sync state
        (``floe-sink reset``)."""

    def close(self) -> None:
        """Release connections."""


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS floe_deliveries (
        delivery_id TEXT PRIMARY KEY, destination TEXT NOT NULL, plan TEXT NOT NULL,
        snapshot_id BIGINT, status TEXT NOT NULL, created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS floe_deliveries_dest ON floe_deliveries (destination, status)",
    """CREATE TABLE IF NOT EXISTS floe_batches (
        delivery_id TEXT NOT NULL, position BIGINT NOT NULL, batch_key TEXT NOT NULL,
        rows BIGINT NOT NULL, bytes BIGINT NOT NULL, PRIMARY KEY (delivery_id, position))""",
    """CREATE TABLE IF NOT EXISTS floe_runs (
        run_id TEXT PRIMARY KEY, destination TEXT NOT NULL, delivery_id TEXT NOT NULL,
        started_at TEXT NOT NULL, finished_at TEXT, success INTEGER, sync TEXT NOT NULL,
        snapshot_id BIGINT, result TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS floe_runs_dest ON floe_runs (destination, started_at)",
    """CREATE TABLE IF NOT EXISTS floe_rejects (
        destination TEXT NOT NULL, record_key TEXT NOT NULL, record TEXT NOT NULL,
        status TEXT NOT NULL, message TEXT NOT NULL, run_id TEXT NOT NULL,
        first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, attempts BIGINT NOT NULL,
        PRIMARY KEY (destination, record_key))""",
)

RUNS_KEPT = 1000
"""Run records kept per destination (older ones are dropped as new runs start)."""


class LocalStateStore:
    """The ``local`` state store: ``state.db`` and ``locks/`` under the state directory.

    Thread-safe: sinks acknowledge batches from their worker threads.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.state_dir / STATE_FILE,
                timeout=30.0,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise SinkConfigurationError(
                f"cannot use state directory {str(self.state_dir)!r}: {exc}; "
                "point --state-dir (or $FLOE_STATE_DIR) at a writable folder"
            ) from exc
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStateStore({str(self.state_dir)!r})"

    # -- locks --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, destination: str) -> Iterator[None]:
        import fcntl

        folder = self.state_dir / LOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{escape_name(destination)}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DestinationLockedError(destination, _read_holder(fd)) from None
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now_utc()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"destination": destination, **holder}).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- deliveries ---------------------------------------------------------------------

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self._db.execute(sql, params).fetchall()

    def latest_unfinished(self, destination: str) -> DeliveryRecord | None:
        rows = self._execute(
            "SELECT delivery_id, destination, plan, snapshot_id, status, created_at "
            "FROM floe_deliveries WHERE destination = ? AND status IN (?, ?) "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (destination, OPEN, FAILED),
        )
        if not rows:
            return None
        delivery_id, dest, plan, snapshot_id, status, created = rows[0]
        return DeliveryRecord(
            delivery_id=delivery_id,
            destination=dest,
            plan=plan,
            snapshot_id=snapshot_id,
            status=status,
            created_at=created,
        )

    def create_delivery(self, destination: str, plan: str, snapshot_id: int | None) -> str:
        delivery_id = uuid.uuid4().hex
        at = now_utc()
        self._execute(
            "INSERT INTO floe_deliveries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (delivery_id, destination, plan, snapshot_id, OPEN, at, at),
        )
        return delivery_id

    def set_status(self, delivery_id: str, status: str) -> None:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "UPDATE floe_deliveries SET status = ?, updated_at = ? WHERE delivery_id = ?",
                    (status, now_utc(), delivery_id),
                )
                if status in (DONE, ABANDONED):
                    self._db.execute(
                        "DELETE FROM floe_batches WHERE delivery_id = ?", (delivery_id,)
                    )
                    # a finished delivery's row is history enough in floe_runs
                    self._db.execute(
                        "DELETE FROM floe_deliveries WHERE delivery_id = ?", (delivery_id,)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def batches(self, delivery_id: str) -> dict[int, BatchRecord]:
        rows = self._execute(
            "SELECT position, batch_key, rows, bytes FROM floe_batches WHERE delivery_id = ?",
            (delivery_id,),
        )
        return {
            int(position): BatchRecord(position=int(position), key=key, rows=rows_, bytes=size)
            for position, key, rows_, size in rows
        }

    def acknowledge(self, delivery_id: str, batch: BatchRecord) -> None:
        self._execute(
            "INSERT OR REPLACE INTO floe_batches VALUES (?, ?, ?, ?, ?)",
            (delivery_id, batch.position, batch.key, batch.rows, batch.bytes),
        )

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, run: RunRecord) -> None:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO floe_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.run_id,
                        run.destination,
                        run.delivery_id,
                        run.started_at,
                        None,
                        None,
                        run.sync,
                        run.snapshot_id,
                        json.dumps(run.result),
                    ),
                )
                self._db.execute(
                    "DELETE FROM floe_runs WHERE destination = ? AND run_id NOT IN ("
                    "SELECT run_id FROM floe_runs WHERE destination = ? "
                    "ORDER BY started_at DESC LIMIT ?)",
                    (run.destination, run.destination, RUNS_KEPT),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def finish_run(self, run_id: str, *, success: bool, result: Mapping[str, Any]) -> None:
        self._execute(
            "UPDATE floe_runs SET finished_at = ?, success = ?, result = ? WHERE run_id = ?",
            (now_utc(), int(success), json.dumps(dict(result), default=str), run_id),
        )

    def runs(self, destination: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        where = "WHERE destination = ?" if destination is not None else ""
        params: tuple[Any, ...] = (destination,) if destination is not None else ()
        rows = self._execute(
            "SELECT destination, run_id, started_at, finished_at, success, sync, snapshot_id, "
            f"delivery_id, result FROM floe_runs {where} "
            f"ORDER BY started_at DESC, rowid DESC LIMIT {int(limit) if limit else -1}",
            params,
        )
        return [_run_record(row) for row in rows]

    # -- rejected records ------------------------------------------------------------------

    def reject(
        self,
        destination: str,
        *,
        key: str,
        record: str,
        status: str,
        message: str,
        run_id: str,
        attempts: int = 1,
    ) -> None:
        at = now_utc()
        self._execute(
            "INSERT INTO floe_rejects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (destination, record_key) DO UPDATE SET record = excluded.record, "
            "status = excluded.status, message = excluded.message, run_id = excluded.run_id, "
            "last_seen = excluded.last_seen, attempts = floe_rejects.attempts + excluded.attempts",
            (destination, key, record, status, message, run_id, at, at, attempts),
        )

    def rejects(self, destination: str | None = None) -> list[RejectRecord]:
        where = "WHERE destination = ?" if destination is not None else ""
        rows = self._execute(
            "SELECT destination, record_key, record, status, message, run_id, first_seen, "
            f"last_seen, attempts FROM floe_rejects {where} ORDER BY first_seen, record_key",
            (destination,) if destination is not None else (),
        )
        return [
            RejectRecord(
                destination=dest,
                key=json.loads(key),
                record=json.loads(record),
                status=status,
                message=message,
                run_id=run_id,
                first_seen=first,
                last_seen=last,
                attempts=int(attempts),
            )
            for dest, key, record, status, message, run_id, first, last, attempts in rows
        ]

    def clear_rejects(self, destination: str, keys: list[str]) -> None:
        with self._mutex:
            self._db.executemany(
                "DELETE FROM floe_rejects WHERE destination = ? AND record_key = ?",
                [(destination, key) for key in keys],
            )

    def sync_state_path(self, destination: str) -> Path:
        return sync_state_path(self.state_dir, destination)

    def forget(self, destination: str) -> None:
        self.sync_state_path(destination).unlink(missing_ok=True)
        self._execute("DELETE FROM floe_rejects WHERE destination = ?", (destination,))
        rows = self._execute(
            "SELECT delivery_id FROM floe_deliveries WHERE destination = ?", (destination,)
        )
        for (delivery_id,) in rows:
            self.set_status(delivery_id, ABANDONED)

    def close(self) -> None:
        with self._mutex:
            self._db.close()


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    dest, run_id, started, finished, success, sync, snapshot_id, delivery_id, result = row
    return RunRecord(
        destination=dest,
        run_id=run_id,
        started_at=started,
        finished_at=finished,
        success=None if success is None else bool(success),
        sync=sync,
        snapshot_id=snapshot_id,
        delivery_id=delivery_id,
        result=json.loads(result) if result else {},
    )


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode()) if raw else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def sync_state_path(state_dir: Path, destination: str) -> Path:
    """Where the ``local`` store keeps a destination's sync state (read without opening it)."""
    return Path(state_dir) / SYNC_DIR / f"{escape_name(destination)}.parquet"


def open_state_store(state_dir: Path) -> StateStore:
    """The state store of a run: the ``local`` store under ``state_dir``."""
    return LocalStateStore(state_dir)
