"""The ``sql`` state store: delivery journal, run history, locks and sync state in a database.

For runners whose disk does not survive (a Kubernetes Job, a CI runner), the manifest names a
database instead of the state directory::

    state:
      backend: sql
      connection_secret_ref: floe-state     # secret key `url`

The ``url`` is ``postgresql://user:password@host:port/database``, ``sqlite:///path/state.db``
or ``duckdb:///path/state.duckdb`` (three slashes and a relative path, four for an absolute
one). One implementation serves the three, with the same tables as the ``local`` store's
``state.db`` (``floe_deliveries``, ``floe_batches``, ``floe_runs``, ``floe_rejects``; a
``seq`` column orders records created within the same millisecond, databases having no
``rowid``), and two more:

* ``floe_sync_state``: each destination's sync state, the Parquet file itself in chunks of
  :data:`SYNC_CHUNK_BYTES`. A new state is uploaded in one transaction (its chunks under a new
  version, the old version deleted): a crash leaves the old state or the new one. The sync
  engine works on a local copy, downloaded to a temporary folder under the state directory.
* ``floe_locks``: who holds a destination's lock (PostgreSQL), for the message of a run that
  finds it held.

Locks: on PostgreSQL a session advisory lock (``pg_try_advisory_lock`` on a 64-bit hash of the
destination name) held on a connection of its own, which the server releases when the session
ends, a killed process included; on SQLite and DuckDB an ``flock`` on a file in the folder
``<database file>.locks/`` beside the database, released by the kernel likewise. DuckDB lets
one process at a time open a database file: two concurrent runs on one DuckDB state file fail
with a clear message (use PostgreSQL, or SQLite, for concurrent runners).

The password of the URL never appears in a message, a log line or a ``repr``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from floe_sink.database_url import DIALECTS, DatabaseUrl
from floe_sink.errors import FloeSinkError, SinkConfigurationError
from floe_sink.logs import get_logger
from floe_sink.secrets import Secret, reveal
from floe_sink.state import (
    DestinationLockedError,
    JournalStore,
    Session,
    SQLiteSession,
    StateStoreError,
    escape_name,
    flock_held,
    in_transaction,
    journal_schema,
    lock_holder,
    now_utc,
)

__all__ = ["DIALECTS", "SYNC_CHUNK_BYTES", "SqlStateStore", "StateUrl"]

log = get_logger(__name__)

T = TypeVar("T")


SYNC_CHUNK_BYTES = 8 << 20
"""Bytes of a sync state file per row of ``floe_sync_state``."""

TEMP_PREFIX = "sql-state-"
"""Temporary folders (under ``<state dir>/tmp``) holding downloaded sync states."""

_STALE_SECONDS = 24 * 3600


class StateUrl(DatabaseUrl):
    """A parsed state database URL; ``str()`` and ``repr()`` never show the password.

    Attributes:
        dialect: ``postgresql``, ``sqlite`` or ``duckdb``.
        path: The database file (SQLite, DuckDB).
        host, port, database: Where a PostgreSQL database is.
    """

    @classmethod
    def parse(cls, value: Any, *, where: str = "url") -> StateUrl:
        """Validate ``value`` (a :class:`Secret` or a string).

        Raises:
            SinkConfigurationError: Not a URL, an unsupported scheme, no host, database or
                file; the message starts with ``where`` and never shows the password.
        """

        def fail(problem: str) -> SinkConfigurationError:
            return SinkConfigurationError(f"{where}: {problem}")

        raw = reveal(value)
        if not isinstance(raw, str) or not raw.strip():
            raise fail("empty; set it to a PostgreSQL, SQLite or DuckDB URL")
        return cls.parse_url(
            raw,
            fail=fail,
            examples="postgresql://user:password@host:port/db, sqlite:///path/to/state.db or "
            "duckdb:///path/to/state.duckdb",
            in_memory="in-memory state does not last",
        )


# -- the three drivers -----------------------------------------------------------------------


class _DuckDB(Session):
    def __init__(self, path: Path) -> None:
        import duckdb

        self._db = duckdb.connect(str(path), config={"threads": 1})

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._db.execute(sql, list(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, list(params)).fetchall()

    def close(self) -> None:
        self._db.close()


_PLACEHOLDER = re.compile(r"\?")


class _Postgres(Session):
    blob = "BYTEA"

    def __init__(self, url: StateUrl) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        uri = url.reveal()
        extra = [
            option
            for option in ("connect_timeout=10", "application_name=floe-sink-state")
            if option.split("=")[0] + "=" not in uri
        ]
        if extra:
            uri = f"{uri}{'&' if '?' in uri else '?'}{'&'.join(extra)}"
        self._conn = adbc.connect(uri, autocommit=True)
        self._cursor = self._conn.cursor()

    @staticmethod
    def _numbered(sql: str) -> str:
        counter = iter(range(1, 1 << 16))
        return _PLACEHOLDER.sub(lambda _match: f"${next(counter)}", sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._numbered(sql), tuple(params) if params else None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._numbered(sql), tuple(params) if params else None)
        return list(self._cursor.fetchall())

    def begin(self) -> None:
        self.execute("BEGIN")

    def close(self) -> None:
        # the cursor first: ADBC refuses to close a connection with an open statement
        for resource in (self._cursor, self._conn):
            with contextlib.suppress(Exception):  # a dead connection may fail to close
                resource.close()

    def lost(self, error: BaseException) -> bool:
        sqlstate = str(getattr(error, "sqlstate", "") or "")
        if sqlstate.startswith(("08", "57P")):  # connection exception, operator intervention
            return True
        text = str(error).lower()
        return type(error).__name__ == "OperationalError" or any(
            marker in text
            for marker in ("server closed", "connection", "terminating", "no connection")
        )


def _schema(blob: str) -> tuple[str, ...]:
    return (
        *journal_schema(sequenced=True),
        f"""CREATE TABLE IF NOT EXISTS floe_sync_state (
            destination TEXT NOT NULL, version TEXT NOT NULL, chunk BIGINT NOT NULL,
            data {blob} NOT NULL, saved_at TEXT NOT NULL,
            PRIMARY KEY (destination, version, chunk))""",
        """CREATE TABLE IF NOT EXISTS floe_locks (
            destination TEXT PRIMARY KEY, pid BIGINT, host TEXT, since TEXT, token TEXT)""",
    )


def lock_key(destination: str) -> int:
    """The PostgreSQL advisory lock key of ``destination``: a signed 64-bit hash."""
    digest = hashlib.sha256(b"floe-sink destination lock\x00" + destination.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_SCHEMA_LOCK = lock_key("\x00floe-sink state schema")


class SqlStateStore(JournalStore):
    """The ``sql`` state store (see the module doc). Thread-safe: sinks acknowledge batches
    from their worker threads.

    Args:
        url: The parsed ``url`` of the state secret.
        state_dir: Where downloaded sync states are kept while a run uses them.

    Raises:
        StateStoreError: The database cannot be opened (unreachable, refused, in use).
    """

    _order = "seq"

    def __init__(self, url: StateUrl, *, state_dir: Path) -> None:
        self.url = url
        self.state_dir = Path(state_dir)
        self._mutex = threading.RLock()
        self._conn: Session | None = None
        self._schema_ready = False
        self._temp: Path | None = None
        self._copies: dict[str, tuple[str, Path, tuple[int, int, int] | None]] = {}
        self._seq = 0
        if url.dialect != "duckdb":
            # fail now on an unreachable or refusing database; a DuckDB file is opened at its
            # first use, so that a run finding the destination locked says so, rather than
            # that the file is in use (DuckDB lets one process at a time open it)
            self._call(lambda _conn: None)

    def __repr__(self) -> str:
        return f"SqlStateStore({self.url.dialect}, {self.url.where!r})"

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> Session:
        url = self.url
        try:
            if url.dialect == "postgresql":
                return _Postgres(url)
            assert url.path is not None
            url.path.parent.mkdir(parents=True, exist_ok=True)
            if url.dialect == "duckdb":
                return _DuckDB(url.path)
            return SQLiteSession(url.path)
        except Exception as exc:
            raise self._error(exc, "cannot open") from None

    def _open(self) -> Session:
        """A session with the tables created (once per store)."""
        conn = self._connect()
        if not self._schema_ready:
            try:
                in_transaction(conn, self._create_schema)
            except Exception as exc:
                conn.close()
                raise self._error(exc, "cannot create the tables in") from None
            self._schema_ready = True
        return conn

    def _error(self, exc: BaseException, doing: str = "failed on") -> StateStoreError:
        message = self.url.scrub(f"{type(exc).__name__}: {exc}".strip())
        hint = ""
        if self.url.dialect == "duckdb" and "lock" in message.lower():
            hint = (
                "; DuckDB lets one process at a time use a database file: wait for the other "
                "run, or keep state in PostgreSQL or SQLite for concurrent runners"
            )
        return StateStoreError(
            f"state store {self.url.dialect} {self.url.where!r}: {doing} the database: "
            f"{message}{hint}"
        )

    def _call(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` on the session; reconnect and run it once more when the session was
        lost (every operation here is safe to repeat)."""
        with self._mutex:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._open()
                conn = self._conn
                try:
                    return work(conn)
                except FloeSinkError:
                    raise
                except Exception as exc:
                    if attempt == 1 and conn.lost(exc):
                        log.warning("state_store_reconnecting", store=repr(self))
                        self._drop()
                        continue
                    raise self._error(exc) from None
            raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _create_schema(self, conn: Session) -> None:
        if self.url.dialect == "postgresql":
            # two runners creating the tables at once would collide in the catalog
            conn.query("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
        for statement in _schema(conn.blob):
            conn.execute(statement)

    def _sequence(self) -> dict[str, Any]:
        with self._mutex:
            self._seq = max(self._seq + 1, time.time_ns())
            return {"seq": self._seq}

    # -- locks ------------------------------------------------------------------------------

    def lock(self, destination: str) -> contextlib.AbstractContextManager[None]:
        if self.url.dialect != "postgresql":
            assert self.url.path is not None
            folder = self.url.path.with_name(self.url.path.name + ".locks")
            return flock_held(folder / f"{escape_name(destination)}.lock", destination)
        return self._advisory_lock(destination)

    @contextlib.contextmanager
    def _advisory_lock(self, destination: str) -> Iterator[None]:
        conn = self._connect()  # a session of its own: the lock lives and dies with it
        key = lock_key(destination)
        try:
            try:
                ((acquired,),) = conn.query("SELECT pg_try_advisory_lock(?)", (key,))
                holder: dict[str, Any] | None = None
                if not acquired:
                    rows = conn.query(
                        "SELECT pid, host, since FROM floe_locks WHERE destination = ?",
                        (destination,),
                    )
                    if rows:
                        holder = dict(zip(("pid", "host", "since"), rows[0], strict=True))
                    raise DestinationLockedError(destination, holder)
                token = uuid.uuid4().hex
                who = lock_holder()
                conn.execute(
                    "INSERT INTO floe_locks (destination, pid, host, since, token) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
                    "pid = excluded.pid, host = excluded.host, since = excluded.since, "
                    "token = excluded.token",
                    (destination, who["pid"], who["host"], who["since"], token),
                )
            except FloeSinkError:
                raise
            except Exception as exc:
                raise self._error(exc) from None
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # closing the session releases it anyway
                    conn.execute(
                        "DELETE FROM floe_locks WHERE destination = ? AND token = ?",
                        (destination, token),
                    )
                    conn.query("SELECT pg_advisory_unlock(?)", (key,))
        finally:
            conn.close()

    # -- sync state -------------------------------------------------------------------------

    def _temp_dir(self) -> Path:
        with self._mutex:
            if self._temp is None:
                root = self.state_dir / "tmp"
                root.mkdir(parents=True, exist_ok=True)
                _remove_stale(root)
                self._temp = root / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
                self._temp.mkdir()
            return self._temp

    def load_sync_state(self, destination: str) -> Path:
        """A local copy of the destination's sync state (see :class:`StateStore`).

        A copy this store downloaded or uploaded is handed out again while the database
        holds the same version and the file was not changed since; otherwise the state is
        downloaded to a new file.
        """
        path = self._temp_dir() / f"{escape_name(destination)}-{uuid.uuid4().hex[:8]}.parquet"
        for _attempt in range(5):
            found = self._query(
                "SELECT version, max(chunk), max(saved_at) FROM floe_sync_state "
                "WHERE destination = ? GROUP BY version ORDER BY 3 DESC LIMIT 1",
                (destination,),
            )
            if not found:
                self._copies.pop(destination, None)
                return path  # no state yet: the path does not exist
            version, last, _saved = found[0]
            cached = self._copies.get(destination)
            if cached is not None and cached[0] == version and _stamp(cached[1]) == cached[2]:
                return cached[1]
            if self._download(destination, str(version), int(last), path):
                self._copies[destination] = (str(version), path, _stamp(path))
                return path
            # a concurrent save replaced that version while it was read: read the new one
        raise StateStoreError(
            f"state store {self.url.dialect} {self.url.where!r}: the sync state of "
            f"{destination!r} kept changing while it was read; try again"
        )

    def _download(self, destination: str, version: str, last: int, path: Path) -> bool:
        with path.open("wb") as out:
            for chunk in range(last + 1):
                rows = self._query(
                    "SELECT data FROM floe_sync_state "
                    "WHERE destination = ? AND version = ? AND chunk = ?",
                    (destination, version, chunk),
                )
                if not rows:
                    return False
                out.write(bytes(rows[0][0]))
        return True

    def save_sync_state(self, destination: str, path: Path) -> None:
        version = uuid.uuid4().hex
        at = now_utc()

        def work(conn: Session) -> int:
            size = 0
            with Path(path).open("rb") as source:
                for chunk in range(1 << 40):
                    data = source.read(SYNC_CHUNK_BYTES)
                    if not data and chunk:
                        break
                    conn.execute(
                        "INSERT INTO floe_sync_state (destination, version, chunk, data, "
                        "saved_at) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (destination, version, chunk) DO NOTHING",
                        (destination, version, chunk, data, at),
                    )
                    size += len(data)
            conn.execute(
                "DELETE FROM floe_sync_state WHERE destination = ? AND version <> ?",
                (destination, version),
            )
            return size

        size = self._transaction(work)
        self._copies[destination] = (version, Path(path), _stamp(Path(path)))
        log.info("sync_state_uploaded", destination=destination, store=repr(self), bytes=size)

    def forget(self, destination: str) -> None:
        def work(conn: Session) -> None:
            conn.execute("DELETE FROM floe_sync_state WHERE destination = ?", (destination,))
            self._forget_journal(conn, destination)

        self._transaction(work)
        self._copies.pop(destination, None)

    def close(self) -> None:
        with self._mutex:
            self._drop()
            temp, self._temp = self._temp, None
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a file from the one it replaced (``None``: no file)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _remove_stale(root: Path) -> None:
    """Remove downloaded sync states that killed runs left behind (older than a day)."""
    cutoff = time.time() - _STALE_SECONDS
    for folder in root.glob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


def open_sql_store(
    state_config: Mapping[str, Any], secrets: Mapping[str, Secret], state_dir: Path
) -> SqlStateStore:
    """The ``sql`` store of the manifest's ``state:`` and its resolved secret.

    Raises:
        SinkConfigurationError: No ``connection_secret_ref``, no ``url`` key, a bad URL.
        StateStoreError: The database cannot be opened.
    """
    ref = state_config.get("connection_secret_ref")
    if not ref:
        raise SinkConfigurationError(
            "backend: sql needs connection_secret_ref: the Kubernetes Secret whose key 'url' "
            "names the state database"
        )
    value = secrets.get("url")
    if value is None:
        raise SinkConfigurationError(
            f"secret {ref!r} has no key 'url' (it has: {', '.join(sorted(secrets)) or 'none'}); "
            "add the state database's URL under the key url"
        )
    url = StateUrl.parse(value, where=f"secret {ref!r}, key 'url'")
    return SqlStateStore(url, state_dir=state_dir)
