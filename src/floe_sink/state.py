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
A store hands it out as a local file (:meth:`StateStore.load_sync_state`) and takes the new
one back (:meth:`StateStore.save_sync_state`): the ``local`` store uses its own file in place,
the ``sql`` store (:mod:`floe_sink.sqlstate`) downloads it and uploads it in one transaction.

Locks are one file per destination under ``<state dir>/locks/``, held with ``flock``: the
kernel releases a lock when its process dies, so a killed run's lock is taken over safely by
the next run, and two live runs of one destination never overlap.

State is keyed by the destination name itself; file names use :func:`escape_name`, which is
lossless and safe on case-insensitive file systems, so no two names ever share state.

Which store a run uses is the manifest's ``state:`` (``backend: local``, the default, or
``sql``), opened by :func:`open_state_store` through the ``get_state_store`` hook, so a
platform can bring its own (:mod:`floe_sink.state_backends` provides the built-in two).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from floe_sink.errors import FloeSinkError, PluginContractError, SinkConfigurationError
from floe_sink.secrets import Secret

__all__ = [
    "DEFAULT_STATE_DIR",
    "BatchRecord",
    "DeliveryRecord",
    "DestinationLockedError",
    "LocalStateStore",
    "RejectRecord",
    "RunRecord",
    "StateSettings",
    "StateStore",
    "StateStoreError",
    "escape_name",
    "flock_held",
    "marks_path",
    "open_state_store",
    "state_settings",
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


class StateStoreError(FloeSinkError):
    """Raised when the state store itself fails: its database is unreachable, refuses a
    statement, or is in use by another process. The message never shows a password."""


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

    def load_sync_state(self, destination: str) -> Path:
        """A local Parquet file with the destination's sync state (keys and fingerprints).

        The file does not exist when the destination has no state yet. The sync engine
        reads it, writes the new state to the same path and hands it back with
        :meth:`save_sync_state`; a store that keeps state elsewhere downloads it to a
        temporary file (under the state directory) that :meth:`close` removes.
        """

    def save_sync_state(self, destination: str, path: Path) -> None:
        """Make the Parquet file at ``path`` the destination's sync state, in one step: a
        crash leaves either the old state or the new one, never a mix."""

    def forget(self, destination: str) -> None:
        """Abandon every unfinished delivery of ``destination`` and drop its sync state
        (``floe-sink reset``)."""

    def close(self) -> None:
        """Release connections."""


def journal_schema(*, sequenced: bool) -> tuple[str, ...]:
    """The tables of the journal, run history and refused records (``CREATE ... IF NOT EXISTS``).

    ``sequenced`` adds a ``seq`` column to ``floe_deliveries`` and ``floe_runs``, which orders
    records created within the same millisecond in databases that have no ``rowid``.
    """
    seq = ", seq BIGINT NOT NULL" if sequenced else ""
    return (
        f"""CREATE TABLE IF NOT EXISTS floe_deliveries (
            delivery_id TEXT PRIMARY KEY, destination TEXT NOT NULL, plan TEXT NOT NULL,
            snapshot_id BIGINT, status TEXT NOT NULL, created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL{seq})""",
        "CREATE INDEX IF NOT EXISTS floe_deliveries_dest ON floe_deliveries (destination, status)",
        """CREATE TABLE IF NOT EXISTS floe_batches (
            delivery_id TEXT NOT NULL, position BIGINT NOT NULL, batch_key TEXT NOT NULL,
            rows BIGINT NOT NULL, bytes BIGINT NOT NULL, PRIMARY KEY (delivery_id, position))""",
        f"""CREATE TABLE IF NOT EXISTS floe_runs (
            run_id TEXT PRIMARY KEY, destination TEXT NOT NULL, delivery_id TEXT NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT, success INTEGER, sync TEXT NOT NULL,
            snapshot_id BIGINT, result TEXT NOT NULL{seq})""",
        "CREATE INDEX IF NOT EXISTS floe_runs_dest ON floe_runs (destination, started_at)",
        """CREATE TABLE IF NOT EXISTS floe_rejects (
            destination TEXT NOT NULL, record_key TEXT NOT NULL, record TEXT NOT NULL,
            status TEXT NOT NULL, message TEXT NOT NULL, run_id TEXT NOT NULL,
            first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, attempts BIGINT NOT NULL,
            PRIMARY KEY (destination, record_key))""",
    )


RUNS_KEPT = 1000
"""Run records kept per destination (older ones are dropped as new runs start)."""

_RUN_COLUMNS = (
    "destination, run_id, started_at, finished_at, success, sync, snapshot_id, delivery_id, result"
)
_REJECT_COLUMNS = (
    "destination, record_key, record, status, message, run_id, first_seen, last_seen, attempts"
)
_REJECT_SEEN_AGAIN = (
    "ON CONFLICT (destination, record_key) DO UPDATE SET record = excluded.record, "
    "status = excluded.status, message = excluded.message, run_id = excluded.run_id, "
    "last_seen = excluded.last_seen, attempts = floe_rejects.attempts + excluded.attempts"
)
"""How a store files a record refused again: the latest of everything, the attempts added."""

T = TypeVar("T")


class Session:
    """One database session: statements with ``?`` placeholders, explicit transactions."""

    blob = "BLOB"
    """The column type of binary data."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def begin(self) -> None:
        self.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def close(self) -> None:
        raise NotImplementedError

    def lost(self, error: BaseException) -> bool:
        """True when ``error`` means the session is gone (reconnect and try again)."""
        return False


class SQLiteSession(Session):
    """A session on a SQLite file: WAL journal, ``synchronous=NORMAL``, usable from threads."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(
            path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._db.execute(sql, tuple(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def begin(self) -> None:
        self.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks

    def close(self) -> None:
        self._db.close()


def in_transaction(conn: Session, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one transaction of ``conn``: committed, or rolled back if it raises."""
    conn.begin()
    try:
        result = work(conn)
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    return result


class JournalStore:
    """The journal, run history and refused records of a store that keeps them in SQL tables
    (:func:`journal_schema`): what the ``local`` and the ``sql`` store share.

    A subclass runs statements (:meth:`_call`), says which column orders records created in
    the same millisecond (:attr:`_order`) and provides locks and sync state.
    """

    _order = "rowid"
    """The column that orders records created within the same millisecond."""

    def _call(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` on the store's session."""
        raise NotImplementedError

    def _sequence(self) -> dict[str, Any]:
        """The ``seq`` column of a new delivery or run, for stores whose tables have one."""
        return {}

    def _transaction(self, work: Callable[[Session], T]) -> T:
        return self._call(lambda conn: in_transaction(conn, work))

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._call(lambda conn: conn.execute(sql, params))

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._call(lambda conn: conn.query(sql, params))

    def _insert(self, conn: Session, table: str, values: Mapping[str, Any], tail: str) -> None:
        columns = {**values, **self._sequence()}
        conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) {tail}",
            tuple(columns.values()),
        )

    # -- deliveries ---------------------------------------------------------------------

    def latest_unfinished(self, destination: str) -> DeliveryRecord | None:
        rows = self._query(
            "SELECT delivery_id, destination, plan, snapshot_id, status, created_at "
            "FROM floe_deliveries WHERE destination = ? AND status IN (?, ?) "
            f"ORDER BY created_at DESC, {self._order} DESC LIMIT 1",
            (destination, OPEN, FAILED),
        )
        if not rows:
            return None
        delivery_id, dest, plan, snapshot_id, status, created = rows[0]
        return DeliveryRecord(
            delivery_id=delivery_id,
            destination=dest,
            plan=plan,
            snapshot_id=None if snapshot_id is None else int(snapshot_id),
            status=status,
            created_at=created,
        )

    def create_delivery(self, destination: str, plan: str, snapshot_id: int | None) -> str:
        delivery_id = uuid.uuid4().hex
        at = now_utc()
        values = {
            "delivery_id": delivery_id,
            "destination": destination,
            "plan": plan,
            "snapshot_id": snapshot_id,
            "status": OPEN,
            "created_at": at,
            "updated_at": at,
        }
        self._call(
            lambda conn: self._insert(
                conn, "floe_deliveries", values, "ON CONFLICT (delivery_id) DO NOTHING"
            )
        )
        return delivery_id

    def set_status(self, delivery_id: str, status: str) -> None:
        def work(conn: Session) -> None:
            conn.execute(
                "UPDATE floe_deliveries SET status = ?, updated_at = ? WHERE delivery_id = ?",
                (status, now_utc(), delivery_id),
            )
            if status in (DONE, ABANDONED):
                conn.execute("DELETE FROM floe_batches WHERE delivery_id = ?", (delivery_id,))
                # a finished delivery's row is history enough in floe_runs
                conn.execute("DELETE FROM floe_deliveries WHERE delivery_id = ?", (delivery_id,))

        self._transaction(work)

    def batches(self, delivery_id: str) -> dict[int, BatchRecord]:
        rows = self._query(
            "SELECT position, batch_key, rows, bytes FROM floe_batches WHERE delivery_id = ?",
            (delivery_id,),
        )
        return {
            int(position): BatchRecord(
                position=int(position), key=key, rows=int(count), bytes=int(size)
            )
            for position, key, count, size in rows
        }

    def acknowledge(self, delivery_id: str, batch: BatchRecord) -> None:
        self._execute(
            "INSERT INTO floe_batches (delivery_id, position, batch_key, rows, bytes) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id, position) DO UPDATE SET "
            "batch_key = excluded.batch_key, rows = excluded.rows, bytes = excluded.bytes",
            (delivery_id, batch.position, batch.key, batch.rows, batch.bytes),
        )

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, run: RunRecord) -> None:
        values = {
            "destination": run.destination,
            "run_id": run.run_id,
            "started_at": run.started_at,
            "sync": run.sync,
            "snapshot_id": run.snapshot_id,
            "delivery_id": run.delivery_id,
            "result": json.dumps(run.result, default=str),
        }

        def work(conn: Session) -> None:
            self._insert(conn, "floe_runs", values, "ON CONFLICT (run_id) DO NOTHING")
            conn.execute(
                "DELETE FROM floe_runs WHERE destination = ? AND run_id NOT IN ("
                "SELECT run_id FROM floe_runs WHERE destination = ? "
                f"ORDER BY started_at DESC, {self._order} DESC LIMIT ?)",
                (run.destination, run.destination, RUNS_KEPT),
            )

        self._transaction(work)

    def finish_run(self, run_id: str, *, success: bool, result: Mapping[str, Any]) -> None:
        self._execute(
            "UPDATE floe_runs SET finished_at = ?, success = ?, result = ? WHERE run_id = ?",
            (now_utc(), int(success), json.dumps(dict(result), default=str), run_id),
        )

    def runs(self, destination: str | None = None, *, limit: int | None = None) -> list[RunRecord]:
        where = "WHERE destination = ?" if destination is not None else ""
        params: tuple[Any, ...] = (destination,) if destination is not None else ()
        bound = f" LIMIT {int(limit)}" if limit else ""
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM floe_runs {where} "
            f"ORDER BY started_at DESC, {self._order} DESC{bound}",
            params,
        )
        return [_run_record(row) for row in rows]

    # -- refused records ----------------------------------------------------------------

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
            f"INSERT INTO floe_rejects ({_REJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            + _REJECT_SEEN_AGAIN,
            (destination, key, record, status, message, run_id, at, at, attempts),
        )

    def rejects(self, destination: str | None = None) -> list[RejectRecord]:
        where = "WHERE destination = ?" if destination is not None else ""
        rows = self._query(
            f"SELECT {_REJECT_COLUMNS} FROM floe_rejects {where} ORDER BY first_seen, record_key",
            (destination,) if destination is not None else (),
        )
        return [_reject_record(row) for row in rows]

    def clear_rejects(self, destination: str, keys: list[str]) -> None:
        def work(conn: Session) -> None:
            for key in keys:
                conn.execute(
                    "DELETE FROM floe_rejects WHERE destination = ? AND record_key = ?",
                    (destination, key),
                )

        if keys:
            self._transaction(work)

    def _forget_journal(self, conn: Session, destination: str) -> None:
        """Drop the refused records and every unfinished delivery of ``destination``."""
        conn.execute("DELETE FROM floe_rejects WHERE destination = ?", (destination,))
        conn.execute(
            "DELETE FROM floe_batches WHERE delivery_id IN ("
            "SELECT delivery_id FROM floe_deliveries WHERE destination = ?)",
            (destination,),
        )
        conn.execute("DELETE FROM floe_deliveries WHERE destination = ?", (destination,))


class LocalStateStore(JournalStore):
    """The ``local`` state store: ``state.db`` and ``locks/`` under the state directory.

    Thread-safe: sinks acknowledge batches from their worker threads.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._db = SQLiteSession(self.state_dir / STATE_FILE)
            for statement in journal_schema(sequenced=False):
                self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise SinkConfigurationError(
                f"cannot use state directory {str(self.state_dir)!r}: {exc}; "
                "point --state-dir (or $FLOE_STATE_DIR) at a writable folder"
            ) from exc
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalStateStore({str(self.state_dir)!r})"

    def _call(self, work: Callable[[Session], T]) -> T:
        with self._mutex:
            return work(self._db)

    def lock(self, destination: str) -> contextlib.AbstractContextManager[None]:
        folder = self.state_dir / LOCKS_DIR
        return flock_held(folder / f"{escape_name(destination)}.lock", destination)

    def sync_state_path(self, destination: str) -> Path:
        """Where this store keeps the destination's sync state."""
        return sync_state_path(self.state_dir, destination)

    def load_sync_state(self, destination: str) -> Path:
        return self.sync_state_path(destination)

    def save_sync_state(self, destination: str, path: Path) -> None:
        target = self.sync_state_path(destination)
        if Path(path).absolute() == target.absolute():
            return  # the sync engine replaced the file in place, atomically
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        shutil.copyfile(path, temporary)
        replace_durably(temporary, target)

    def forget(self, destination: str) -> None:
        path = self.sync_state_path(destination)
        path.unlink(missing_ok=True)
        marks_path(path).unlink(missing_ok=True)
        self._transaction(lambda conn: self._forget_journal(conn, destination))

    def close(self) -> None:
        with self._mutex:
            self._db.close()


def replace_durably(temporary: Path, target: Path) -> None:
    """Make the file ``temporary`` the file ``target`` in one step, once it is on disk: a
    crash leaves the old file or the new one, never a part of either."""
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)


def _reject_record(row: tuple[Any, ...]) -> RejectRecord:
    """A :class:`RejectRecord` from a ``floe_rejects`` row (:data:`_REJECT_COLUMNS`)."""
    dest, key, record, status, message, run_id, first, last, attempts = row
    return RejectRecord(
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


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    """A :class:`RunRecord` from a ``floe_runs`` row (:data:`_RUN_COLUMNS`)."""
    dest, run_id, started, finished, success, sync, snapshot_id, delivery_id, result = row
    return RunRecord(
        destination=dest,
        run_id=run_id,
        started_at=started,
        finished_at=finished,
        success=None if success is None else bool(success),
        sync=sync,
        snapshot_id=None if snapshot_id is None else int(snapshot_id),
        delivery_id=delivery_id,
        result=json.loads(result) if result else {},
    )


@contextlib.contextmanager
def flock_held(path: Path, destination: str) -> Iterator[None]:
    """Hold ``destination``'s lock, the file ``path`` locked with ``flock``, for the block.

    The kernel releases the lock when the process dies; the file says who holds it.

    Raises:
        DestinationLockedError: Another open file description (another run) holds it.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DestinationLockedError(destination, _read_holder(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"destination": destination, **lock_holder()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_holder() -> dict[str, Any]:
    """Who takes a lock: this process, this host, now (shown to a run that finds it held)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": now_utc()}


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


def marks_path(state_path: Path) -> Path:
    """Where the marks of a delivery under way stand beside the sync state at ``state_path``
    (:meth:`floe_sink.sync.SyncDiff.mark_pending`): a name no state file has (those end in
    ``.parquet``)."""
    return state_path.with_name(state_path.name + ".pending")


BACKENDS = ("local", "sql")
"""The state backends floe-sink itself provides."""


@attrs.frozen(kw_only=True)
class StateSettings:
    """The manifest's ``state:`` as the ``get_state_store`` hook receives it.

    Attributes:
        config: ``backend`` (``local`` when there is no ``state:``), ``connection_secret_ref``
            and ``options`` when set, as plain data.
        secrets: The resolved ``connection_secret_ref`` (``{}`` without one).
        where: Where the settings come from, to prefix messages (``manifest.yaml: state``).
    """

    config: dict[str, Any] = attrs.field(factory=lambda: {"backend": "local"})
    secrets: dict[str, Secret] = attrs.field(factory=dict, repr=False)
    where: str = "state"

    @property
    def backend(self) -> str:
        """The backend's name."""
        return str(self.config.get("backend") or "local")

    def secret_values(self) -> list[str]:
        """Every secret value, and the password of every URL among them, for scrubbing."""
        from urllib.parse import unquote, urlsplit

        values: list[str] = []
        for secret in self.secrets.values():
            value = secret.reveal()
            values.append(value)
            with contextlib.suppress(ValueError):
                password = urlsplit(value.strip()).password
                if password:
                    values.extend({password, unquote(password)})
        return values


def state_settings(
    manifest: Any, manifest_path: Path | None = None, *, secrets_dir: Path | None = None
) -> StateSettings:
    """The state settings of a run: the manifest's ``state:`` with its secret resolved.

    Raises:
        SinkConfigurationError: The secret cannot be resolved; the message names the file,
            ``state.connection_secret_ref`` and the secret, never a value.
    """
    where = f"{manifest_path}: state" if manifest_path is not None else "state"
    state = getattr(manifest, "state", None)
    if state is None:
        return StateSettings(where=where)
    config: dict[str, Any] = {"backend": state.backend}
    if state.connection_secret_ref is not None:
        config["connection_secret_ref"] = state.connection_secret_ref
    if state.options:
        config["options"] = dict(state.options)
    secrets: dict[str, Secret] = {}
    if state.connection_secret_ref is not None:
        from floe_sink.config import resolve_secret

        try:
            secrets = dict(resolve_secret(state.connection_secret_ref, secrets_dir))
        except SinkConfigurationError as exc:
            raise SinkConfigurationError(f"{where}.connection_secret_ref: {exc}") from None
    return StateSettings(config=config, secrets=secrets, where=where)


def open_state_store(
    state_dir: Path, settings: StateSettings | None = None, *, manager: Any = None
) -> StateStore:
    """Open the state store the settings name (default: the ``local`` store in ``state_dir``).

    Plugins are asked first through the ``get_state_store`` hook of ``manager`` (a
    platform's own backend, or its own take on ``local``/``sql``); the built-in backends
    answer last, also when no manager is given or an allow-list left them out.

    Raises:
        SinkConfigurationError: No plugin provides the backend, or the backend refused its
            settings (messages are prefixed with ``settings.where``).
    """
    from floe_sink import state_backends

    settings = settings or StateSettings()
    state_dir = Path(state_dir)
    store: Any
    try:
        if manager is not None:
            store = manager.get_state_store(settings.config, settings.secrets, state_dir)
        else:
            store = state_backends.get_state_store(settings.config, settings.secrets, state_dir)
    except SinkConfigurationError as exc:
        message = str(exc)
        if not message.startswith(settings.where):
            message = f"{settings.where}: {message}"
        raise SinkConfigurationError(message) from None
    if store is None:
        raise SinkConfigurationError(
            f"{settings.where}.backend: no installed plugin provides state backend "
            f"{settings.backend!r} (built in: {', '.join(BACKENDS)}); install the plugin "
            "package that provides it, or fix state.backend in the manifest"
        )
    missing = [name for name in _STORE_METHODS if not callable(getattr(store, name, None))]
    if missing:  # the backend's bug, not the manifest's
        raise PluginContractError(
            settings.backend,
            "get_state_store",
            f"its store ({type(store).__name__}) lacks {', '.join(missing)}: it is not a "
            "StateStore",
        )
    opened: StateStore = store
    return opened


_STORE_METHODS = (
    "lock",
    "latest_unfinished",
    "create_delivery",
    "set_status",
    "batches",
    "acknowledge",
    "start_run",
    "finish_run",
    "runs",
    "reject",
    "rejects",
    "clear_rejects",
    "load_sync_state",
    "save_sync_state",
    "forget",
    "close",
)
