"""A stateful property test of the sync engine: random edits, faults, crashes and runs.

:class:`SyncMachine` is a Hypothesis ``RuleBasedStateMachine``. It keeps a model of the
source table (key -> delivered content) and of every snapshot it made, and its rules are:

* **source edits**, each a real Iceberg commit: append rows (new keys, or keys deleted
  earlier coming back with their old content), update rows (an overwrite with a filter),
  delete rows, a dbt-style rebuild (every data file new, only a column that is not sent
  changed), a rollback to an earlier snapshot, expiring every snapshot but the current one;
* **configuration**: a new ``batch_size`` (a new delivery plan: an open delivery is abandoned);
* **delivery faults**, each for one run at its n-th upsert or n-th delete batch: the
  destination refuses the batch (an HTTP 422 from the local server, a refused SQL batch),
  fails it transiently after every retry (503s), SIGTERM, or a crash;
* **refused rows** (SQL): the destination refuses every write or delete of some keys (SQLite:
  real triggers raising a constraint error; DuckDB, which has no triggers: the sink's send
  refuses them) until ``accept_all``;
* **runs**, with or without a fault: ``floe-sink run`` in-process (``floe_sink.cli.main``,
  the console script's entry point).

Crashes are in-process, to keep the test fast: :class:`Crash`, a ``BaseException`` that no
code of floe-sink catches, raised in the sink's send (before the batch is sent, or after the
destination has it and before the journal records it), before the sync state is saved
(``kill-at-fold``) or when the journal closes a delivery (``kill-at-close``). Like a SIGKILL it
leaves the delivery open and the run unfinished; unlike one, ``finally`` blocks run (the
lock is released, connections closed), which a killed process gets from the kernel. The
SIGKILL of the real command is tested in ``test_sync_crashes.py``.

Invariants, checked after every run that succeeds: the destination equals (``mirror``) or
contains (``changes``) the snapshot the run delivered (apart from the keys it refused, when
the sink isolated them as rejected rows and wrote the rest); when that is the current snapshot,
``floe-sink plan`` reports 0 inserts, updates and deletes; and when the sync state was exact
before the run, the run's counts are exactly what changed. A run fails only when a fault or
a refusal says it may. At the end, with every fault cleared, runs converge on the current
snapshot. The destination is SQLite or DuckDB (merge) or the local HTTP server (REST).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.control import event
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from fixtures.http_server import RecordingServer, Reply
from fixtures.iceberg import IcebergWarehouse
from floe_sink.errors import ErrorCategory, SinkWriteError
from floe_sink.state import ABANDONED, DONE, LocalStateStore
from strategies import (
    sync_batch_sizes,
    sync_contents,
    sync_destinations,
    sync_faults,
)

pytestmark = [pytest.mark.slow, pytest.mark.requirement("4G-FR-008")]

TABLE = "gold.items"
MAPPING = {"id": "id", "label": "name", "score": "score"}

Content = tuple[str, int | None]
Rows = dict[int, Content]


class Crash(BaseException):
    """The process dies here (nothing in floe-sink catches a ``BaseException`` like this)."""


def arrow_rows(rows: Rows, *, order: list[int] | None = None, internal: str = "i") -> pa.Table:
    ids = order if order is not None else sorted(rows)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "label": pa.array([rows[i][0] for i in ids], pa.string()),
            "score": pa.array([rows[i][1] for i in ids], pa.int64()),
            "internal": pa.array([f"{internal}{i}" for i in ids], pa.string()),  # never sent
        }
    )


def differences(state: Rows, source: Rows, mode: str) -> tuple[int, int, int]:
    """Inserts, updates and deletes a run of ``source`` against an exact ``state`` makes."""
    inserts = sum(1 for key in source if key not in state)
    updates = sum(1 for key, content in source.items() if key in state and state[key] != content)
    deletes = sum(1 for key in state if key not in source) if mode == "mirror" else 0
    return inserts, updates, deletes


class Destination:
    """Where the machine's runs deliver: its floe.yaml entry, its rows, its refusals."""

    kind = ""
    refuse_in_send = False
    """The sink's send refuses the refused keys (a database without triggers)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.refused: set[int] = set()

    def entry(self) -> dict[str, Any]:
        raise NotImplementedError

    def secret(self) -> dict[str, str]:
        raise NotImplementedError

    def rows(self) -> Rows:
        raise NotImplementedError

    def refuse(self, keys: set[int]) -> None:
        self.refused |= keys

    def accept_all(self) -> None:
        self.refused.clear()

    def fail_next(self, kind: str) -> None:
        """Make the batch about to be sent fail: refused (``refuse``) or ``transient``."""
        category = ErrorCategory.PERMANENT if kind == "refuse" else ErrorCategory.TRANSIENT
        raise SinkWriteError(f"injected {kind} failure of a SQL batch", category=category)

    def close(self) -> None:
        """Release what the destination holds."""


class SqliteDestination(Destination):
    kind = "sqlite"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.path = root / "dest.db"
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            db.execute("CREATE TABLE refused (id INTEGER PRIMARY KEY)")

    def entry(self) -> dict[str, Any]:
        return {"sink_type": "sql_database", "config": {"table": "items"}}

    def secret(self) -> dict[str, str]:
        return {"url": f"sqlite:///{self.path}"}

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return list(db.execute(sql))

    def rows(self) -> Rows:
        if not self._query("SELECT name FROM sqlite_master WHERE name = 'items'"):
            return {}
        return {
            i: (name, score) for i, name, score in self._query("SELECT id, name, score FROM items")
        }

    def refuse(self, keys: set[int]) -> None:
        """Real refusals: triggers raising a constraint error for the refused keys."""
        super().refuse(keys)
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            db.executemany("INSERT OR IGNORE INTO refused VALUES (?)", [(k,) for k in keys])
            if db.execute("SELECT name FROM sqlite_master WHERE name = 'items'").fetchall():
                for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
                    db.execute(
                        f"CREATE TRIGGER IF NOT EXISTS refuse_{event.lower()} BEFORE {event} "
                        f"ON items WHEN {row}.id IN (SELECT id FROM refused) "
                        "BEGIN SELECT RAISE(ABORT, 'refused by the destination'); END"
                    )
            else:  # no table yet: the sink creates it; refuse in its send meanwhile
                self.refuse_in_send = True

    def accept_all(self) -> None:
        super().accept_all()
        self.refuse_in_send = False
        with contextlib.closing(sqlite3.connect(self.path, isolation_level=None)) as db:
            db.execute("DELETE FROM refused")


class DuckdbDestination(Destination):
    kind = "duckdb"
    refuse_in_send = True

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.path = root / "dest.duckdb"

    def entry(self) -> dict[str, Any]:
        return {"sink_type": "sql_database", "config": {"table": "items"}}

    def secret(self) -> dict[str, str]:
        return {"url": f"duckdb:///{self.path}"}

    def rows(self) -> Rows:
        if not self.path.exists():
            return {}
        with duckdb.connect(str(self.path)) as db:
            found = db.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'items'"
            ).fetchone()
            if not found or not found[0]:
                return {}
            rows = db.execute("SELECT id, name, score FROM items").fetchall()
        return {i: (name, score) for i, name, score in rows}


class RestDestination(Destination):
    kind = "rest"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.server = RecordingServer().start()

    def entry(self) -> dict[str, Any]:
        return {"sink_type": "rest_api", "config": {"url": self.server.url_for("/items")}}

    def secret(self) -> dict[str, str]:
        return {"token": "tok-machine"}

    def rows(self) -> Rows:
        """The last content each key was sent with (a replayed key is not applied twice)."""
        return {row["id"]: (row["name"], row["score"]) for row in self.server.applied}

    def fail_next(self, kind: str) -> None:
        """The server answers the request about to be sent: 422, or 503 to every retry."""
        if kind == "refuse":
            self.server.script(Reply(422, {"error": "invalid record"}))
        else:
            self.server.script(Reply(503, "unavailable"), Reply(503, "unavailable"))

    def close(self) -> None:
        self.server.stop()


DESTINATIONS: dict[str, Callable[[Path], Destination]] = {
    "sqlite": SqliteDestination,
    "duckdb": DuckdbDestination,
    "rest": RestDestination,
}


class SyncMachine(RuleBasedStateMachine):
    """The sync engine against a model of the source; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="floe-sync-machine-"))
        self.warehouse = IcebergWarehouse(root=self.tmp / "lakehouse")
        self.project = self.tmp / "project"
        self.project.mkdir()
        self.destination: Destination | None = None
        self.mode = "mirror"
        self.batch_size = 2
        self.model: Rows = {}
        self.history: dict[int | None, Rows] = {}
        self.gone: Rows = {}
        """Rows deleted from the source, which may come back with the same content."""
        self.next_id = 0
        self.fault: tuple[str, str, int] | None = None
        self.fault_hit = False
        self.exact_state: Rows | None = {}
        """What the sync state holds when it is known exactly (after a complete run)."""
        self.refused_since_clean: set[int] = set()
        """Keys refused since the last run that rejected nothing: a resumed delivery may
        still count them (their batch was acknowledged by the run that saw them refused)."""

    # -- set-up ---------------------------------------------------------------------------

    @initialize(
        destination=sync_destinations,
        batch_size=sync_batch_sizes,
        rows=st.lists(sync_contents, max_size=10),
    )
    def start(self, destination: tuple[str, str], batch_size: int, rows: list[Content]) -> None:
        kind, self.mode = destination
        self.destination = DESTINATIONS[kind](self.tmp)
        self.batch_size = batch_size
        secrets = self.project / "secrets" / "dest"
        secrets.mkdir(parents=True)
        for key, value in self.destination.secret().items():
            (secrets / key).write_text(value)
        (self.project / "manifest.yaml").write_text(
            yaml.safe_dump({"catalog": self.warehouse.catalog_properties})
        )
        self.write_floe()
        self.model = self.new_rows(rows)
        self.warehouse.write(TABLE, arrow_rows(self.model))
        self.committed()

    def teardown(self) -> None:
        try:
            if self.destination is not None:
                self.converge()
        finally:
            if self.destination is not None:
                self.destination.close()
            with contextlib.suppress(Exception):
                self.warehouse.catalog.engine.dispose()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def converge(self) -> None:
        """With every fault cleared, the destination catches up with the current snapshot."""
        assert self.destination is not None
        self.fault = None
        self.destination.accept_all()
        for _ in range(3):  # a resume of an older snapshot, then the current one
            if self.run_once() == self.current_snapshot():
                return
        raise AssertionError("three clean runs did not deliver the current snapshot")

    def write_floe(self) -> None:
        assert self.destination is not None
        entry: dict[str, Any] = {
            "name": "items",
            "connection_secret_ref": "dest",
            "source_table": TABLE,
            "field_mapping": MAPPING,
            "primary_key": ["id"],
            "sync": self.mode,
            "batch_size": self.batch_size,
            "retry": {"max_attempts": 2, "initial_wait": 0.001, "max_wait": 0.001, "jitter": 0},
            **self.destination.entry(),
        }
        if entry["sink_type"] == "sql_database":
            entry["write_disposition"] = "merge"
        (self.project / "floe.yaml").write_text(yaml.safe_dump({"destinations": [entry]}))

    # -- the source -------------------------------------------------------------------------

    def new_rows(self, contents: list[Content]) -> Rows:
        rows = {self.next_id + offset: content for offset, content in enumerate(contents)}
        self.next_id += len(contents)
        return rows

    def table(self) -> Any:
        return self.warehouse.catalog.load_table(TABLE)

    def current_snapshot(self) -> int | None:
        snapshot = self.table().current_snapshot()
        return None if snapshot is None else int(snapshot.snapshot_id)

    def committed(self) -> None:
        self.history[self.current_snapshot()] = dict(self.model)

    @rule(contents=st.lists(sync_contents, max_size=4), revive=st.integers(0, 3))
    def append_rows(self, contents: list[Content], revive: int) -> None:
        """New keys, and keys deleted earlier coming back with the content they had."""
        added = self.new_rows(contents)
        for key in sorted(self.gone)[:revive]:
            added[key] = self.gone.pop(key)
        if not added:
            return
        self.table().append(arrow_rows(added))
        self.model.update(added)
        self.committed()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def update_rows(self, data: st.DataObject) -> None:
        from pyiceberg.expressions import In

        keys = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, max_size=5))
        keys = sorted(set(keys))
        contents = data.draw(st.lists(sync_contents, min_size=len(keys), max_size=len(keys)))
        updated = dict(zip(keys, contents, strict=True))  # the same content sometimes
        self.table().overwrite(arrow_rows(updated, internal="u"), overwrite_filter=In("id", keys))
        self.model.update(updated)
        self.committed()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete_rows(self, data: st.DataObject) -> None:
        from pyiceberg.expressions import In

        keys = data.draw(st.lists(st.sampled_from(sorted(self.model)), min_size=1, max_size=4))
        keys = sorted(set(keys))
        self.table().delete(In("id", keys))
        for key in keys:
            self.gone[key] = self.model.pop(key)
        self.committed()

    @rule(seed=st.integers(0, 1000))
    def rebuild(self, seed: int) -> None:
        """A dbt-style rebuild: every data file new, rows in another order, only the column
        that is not sent changed (nothing to send)."""
        order = sorted(self.model)
        random.Random(seed).shuffle(order)
        self.table().overwrite(arrow_rows(self.model, order=order, internal=f"r{seed}-"))
        self.committed()

    @rule(data=st.data())
    def rollback(self, data: st.DataObject) -> None:
        table = self.table()
        current = table.current_snapshot()
        ancestors = []
        parent = current.parent_snapshot_id if current is not None else None
        while parent is not None:
            snapshot = table.snapshot_by_id(parent)
            if snapshot is None:  # expired
                break
            if int(parent) in self.history:
                ancestors.append(int(parent))
            parent = snapshot.parent_snapshot_id
        if not ancestors:
            return
        target = data.draw(st.sampled_from(ancestors))
        table.manage_snapshots().rollback_to_snapshot(target).commit()
        self.model = dict(self.history[target])
        self.gone = {
            key: content
            for rows in self.history.values()
            for key, content in rows.items()
            if key not in self.model
        }

    @rule()
    def expire_snapshots(self) -> None:
        table = self.table()
        current = self.current_snapshot()
        old = [int(s.snapshot_id) for s in table.snapshots() if s.snapshot_id != current]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()

    @rule(batch_size=sync_batch_sizes)
    def reconfigure(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.write_floe()

    # -- faults -----------------------------------------------------------------------------

    @precondition(lambda self: self.destination is not None and self.destination.kind != "rest")
    @rule(data=st.data())
    def refuse_rows(self, data: st.DataObject) -> None:
        assert self.destination is not None
        if not self.next_id:
            return
        # every key there ever was (not what the destination holds: draws must not depend on it)
        keys = data.draw(st.lists(st.integers(0, self.next_id - 1), min_size=1, max_size=2))
        self.destination.refuse(set(keys))
        self.refused_since_clean |= set(keys)

    @rule()
    def accept_all(self) -> None:
        assert self.destination is not None
        self.destination.accept_all()

    @contextlib.contextmanager
    def faults(self) -> Iterator[None]:
        """The armed fault and the refusals, for one run."""
        from floe_sink import sync
        from floe_sink_dlt.rest import RestApiSink
        from floe_sink_dlt.sql import SqlDatabaseSink

        destination = self.destination
        assert destination is not None
        fault, phase, at = self.fault or ("", "", 0)
        sends = {"upsert": 0, "delete": 0}

        def wrapped(real: Callable[..., Any], kind: str) -> Callable[..., Any]:
            def send(sink: Any, batch: pa.RecordBatch, *, key: str) -> Any:
                sends[kind] += 1
                keys = set(batch.column("id").to_pylist())
                if destination.refuse_in_send and keys & destination.refused:
                    raise SinkWriteError(
                        "refused by the destination: constraint failed",
                        category=ErrorCategory.PERMANENT,
                    )
                now = kind == phase and sends[kind] == at
                if now:
                    self.fault_hit = True
                if now and fault == "kill-before":
                    raise Crash
                if now and fault == "sigterm":
                    # the run's handler (never the default one, which would end the test)
                    assert callable(signal.getsignal(signal.SIGTERM))
                    signal.raise_signal(signal.SIGTERM)  # the run stops after this batch
                if now and fault in ("refuse", "transient"):
                    destination.fail_next(fault)
                receipt = real(sink, batch, key=key)
                if now and fault == "kill-after":
                    raise Crash  # the destination has the batch, the journal does not
                return receipt

            return send

        real_write_state = sync.write_state
        real_set_status = LocalStateStore.set_status

        def write_state(*args: Any, **kwargs: Any) -> None:
            if fault == "kill-at-fold":
                self.fault_hit = True
                raise Crash
            real_write_state(*args, **kwargs)

        def set_status(store: LocalStateStore, delivery_id: str, status: str) -> None:
            if fault == "kill-at-close" and status in (DONE, ABANDONED):
                self.fault_hit = True
                raise Crash
            real_set_status(store, delivery_id, status)

        with contextlib.ExitStack() as patches:
            for cls, name, kind in (
                (SqlDatabaseSink, "deliver", "upsert"),
                (SqlDatabaseSink, "delete_keys", "delete"),
                (RestApiSink, "deliver", "upsert"),
            ):
                send = wrapped(getattr(cls, name), kind)
                patches.enter_context(mock.patch.object(cls, name, send))
            patches.enter_context(mock.patch.object(sync, "write_state", write_state))
            patches.enter_context(mock.patch.object(LocalStateStore, "set_status", set_status))
            yield

    # -- runs -------------------------------------------------------------------------------

    def command(self, *args: str) -> tuple[int, str, str]:
        """``floe-sink ARGS`` in-process: exit code, stdout, stderr."""
        from floe_sink.cli import main

        out, err = io.StringIO(), io.StringIO()
        code: Any = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exit_:
                code = exit_.code
        return int(code or 0), out.getvalue(), err.getvalue()

    def options(self) -> list[str]:
        return [
            str(self.project / "floe.yaml"),
            "--manifest",
            str(self.project / "manifest.yaml"),
            "--secrets-dir",
            str(self.project / "secrets"),
            "--state-dir",
            str(self.project / ".floe"),
            "--output",
            "json",
            "-q",
        ]

    @rule()
    def run_clean(self) -> None:
        self.run(fault=None)

    @rule(fault=st.tuples(sync_faults, st.sampled_from(["upsert", "delete"]), st.integers(1, 2)))
    def run(self, fault: tuple[str, str, int] | None) -> None:
        """A run; with ``fault``, that fault at the n-th upsert or delete batch it sends (a
        run that sends fewer batches than that does not meet it; ``changes`` deletes none)."""
        if fault is not None and self.mode == "changes":
            fault = (fault[0], "upsert", fault[2])
        self.fault = fault
        self.run_once()

    def run_once(self) -> int | str | None:
        """One run with the armed fault; the invariants when it succeeds. Returns the
        snapshot a successful run delivered whole, else ``"failed"`` (a run that rejected rows
        did not deliver its snapshot whole)."""
        destination = self.destination
        assert destination is not None
        fault = self.fault[0] if self.fault else ""
        self.fault_hit = False
        refusing = bool(destination.refused)
        crashed = False
        with self.faults():
            try:
                code, out, err = self.command("run", *self.options())
            except Crash:
                crashed = True
        if self.fault:
            note(f"fault {fault} at {self.fault[1]}: {'hit' if self.fault_hit else 'missed'}")
        self.fault = None
        if isinstance(destination, RestDestination):
            destination.server.clear_script()
        note(f"{destination.kind} {self.mode}: run {'crashed' if crashed else code}")
        if crashed:
            assert fault.startswith("kill"), "a crash without a kill armed"
            self.exact_state = None
            return "failed"
        if code != 0:
            allowed = {1: refusing or fault in ("refuse", "transient"), 143: fault == "sigterm"}
            assert allowed.get(code), f"run exited {code} (fault {fault!r}): {err}"
            self.exact_state = None
            return "failed"
        (record,) = json.loads(out)
        assert record["success"], record
        snapshot = record["snapshot_id"]
        if record["rows_rejected"]:
            # the sink isolated refused rows and wrote the rest of their batches: the refused
            # keys stay unsynced (the next run sends them again), every other key is exact; a
            # resumed delivery also counts what an earlier run of it saw refused and did not
            # send again (the batch was acknowledged)
            refused = destination.refused | self.refused_since_clean
            assert refused, f"records rejected without a refusal: {record}"
            assert record["rows_rejected"] <= len(refused), record
            self.check_destination(self.history[snapshot], apart_from=refused)
            self.exact_state = None
            return "failed"
        self.refused_since_clean = set(destination.refused)
        self.check_destination(self.history[snapshot])
        if self.exact_state is not None and snapshot == self.current_snapshot():
            # a new delivery against a state known exactly: it sends exactly what changed
            counts = (record["rows_inserted"], record["rows_updated"], record["rows_deleted"])
            assert counts == differences(self.exact_state, self.model, self.mode), record
        if snapshot == self.current_snapshot():
            self.check_plan_is_empty()
            if self.mode == "mirror":
                self.exact_state = dict(self.model)  # a complete mirror state is the source
            elif self.exact_state is not None:  # changes keeps the keys that left
                self.exact_state = {**self.exact_state, **self.model}
        else:
            self.exact_state = None
        return int(snapshot) if snapshot is not None else None

    def check_destination(
        self, expected: Rows, apart_from: set[int] | frozenset[int] = frozenset()
    ) -> None:
        assert self.destination is not None
        actual = self.destination.rows()
        if apart_from:
            actual = {key: row for key, row in actual.items() if key not in apart_from}
            expected = {key: row for key, row in expected.items() if key not in apart_from}
        if self.mode == "mirror":
            assert actual == expected, _diff(actual, expected)
        else:
            seen = {key: actual.get(key) for key in expected}
            assert seen == expected, _diff(seen, expected)

    def check_plan_is_empty(self) -> None:
        code, out, err = self.command("plan", *self.options())
        assert code == 0, err
        (record,) = json.loads(out)
        counts = (record["inserts"], record["updates"], record["deletes"])
        assert counts == (0, 0, 0), record


def note(text: str) -> None:
    """A Hypothesis event (``--hypothesis-show-statistics``); nothing outside a test."""
    with contextlib.suppress(InvalidArgument):
        event(text)


def _diff(actual: Rows, expected: Rows) -> str:
    missing = {k: v for k, v in expected.items() if k not in actual}
    extra = {k: v for k, v in actual.items() if k not in expected}
    wrong = {k: (actual[k], v) for k, v in expected.items() if k in actual and actual[k] != v}
    return f"missing {missing}, extra {extra}, wrong (actual, expected) {wrong}"


_profile = settings()
SyncMachine.TestCase.settings = settings(
    max_examples=max(6, _profile.max_examples // 4),  # fast: 10, thorough: 125
    stateful_step_count=25 if _profile.max_examples <= 40 else 40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSyncMachine = SyncMachine.TestCase


# -- what the machine found, replayed step by step ---------------------------------------------


@contextlib.contextmanager
def machine(destination: tuple[str, str], batch_size: int, rows: list[Content]) -> Iterator[Any]:
    """A :class:`SyncMachine` driven by hand (its rules as methods); converges at the end."""
    driven = SyncMachine()
    try:
        driven.start(destination=destination, batch_size=batch_size, rows=rows)
        yield driven
    finally:
        driven.teardown()


def test_a_failed_delivery_folded_before_a_kill_is_not_taken_as_done() -> None:
    """A run whose batch is refused saves the acknowledged rows in the sync state, then is
    killed before the journal abandons the delivery: the next run must send the rest, not
    resume the delivery, find its state and call it done."""
    with machine(("sqlite", "mirror"), 2, [("a", 1)] * 6) as driven:
        driven.run(fault=None)
        driven.model = dict.fromkeys(driven.model, ("b", 2))
        driven.table().overwrite(arrow_rows(driven.model))
        driven.committed()
        driven.destination.refuse({3})  # the second batch: rows 2 and 3
        driven.run(fault=("kill-at-close", "upsert", 1))
        assert driven.fault_hit
        driven.destination.accept_all()
        driven.run(fault=None)  # succeeds, and the destination is the source


def delete_from_source(driven: SyncMachine, keys: list[int]) -> None:
    from pyiceberg.expressions import In

    driven.table().delete(In("id", keys))
    for key in keys:
        driven.gone[key] = driven.model.pop(key)
    driven.committed()


def test_deletes_of_an_interrupted_mirror_run_are_saved_in_the_sync_state() -> None:
    """SIGTERM during the delete phase: the deletes the destination acknowledged leave the
    sync state, so keys coming back unchanged are sent again (not taken as still there)."""
    with machine(("sqlite", "mirror"), 1, [("a", 1)] * 6) as driven:
        driven.run(fault=None)
        delete_from_source(driven, [0, 1, 2, 3])
        driven.run(fault=("sigterm", "delete", 2))  # keys 0 and 1 deleted, then it stops
        assert driven.fault_hit
        assert sorted(driven.destination.rows()) == [2, 3, 4, 5]
        driven.append_rows(contents=[], revive=2)  # 0 and 1 come back, unchanged
        driven.run(fault=None)  # the destination is the source: 0 and 1 are there again


def test_deletes_acknowledged_before_a_kill_are_saved_when_the_resumed_run_fails() -> None:
    """Killed during the delete phase, then the resumed run fails before it deletes
    anything (the database cannot be reached): the deletes of the killed run are saved in the
    sync state all the same (the batch size of the deletes is the upserts')."""
    from floe_sink.errors import SinkConnectionError
    from floe_sink_dlt.sql import SqlDatabaseSink

    with machine(("sqlite", "mirror"), 1, [("a", 1)] * 6) as driven:
        driven.run(fault=None)
        driven.table().overwrite(arrow_rows({**driven.model, 5: ("b", 2)}))
        driven.model[5] = ("b", 2)
        driven.committed()
        delete_from_source(driven, [0, 1, 2])
        driven.run(fault=("kill-before", "delete", 2))  # key 0 deleted, then killed
        assert driven.fault_hit
        assert 0 not in driven.destination.rows()

        def unreachable(sink: Any, schema: pa.Schema) -> None:
            raise SinkConnectionError("cannot connect to sqlite: unreachable")

        with mock.patch.object(SqlDatabaseSink, "prepare", unreachable):
            code, _, err = driven.command("run", *driven.options())
        assert code == 1, err
        driven.exact_state = None
        driven.append_rows(contents=[], revive=1)  # 0 comes back, unchanged
        driven.run(fault=None)


def test_keys_deleted_by_a_killed_delivery_come_back_after_it_is_abandoned() -> None:
    """Killed in its delete phase, then abandoned (a new batch_size is a new plan): a key it
    deleted that comes back unchanged is sent again (the state did not keep it as there)."""
    with machine(("sqlite", "mirror"), 1, [("a", 1)] * 6) as driven:
        driven.run(fault=None)
        delete_from_source(driven, [0, 1, 2])
        driven.run(fault=("kill-before", "delete", 2))  # key 0 deleted, then killed
        assert driven.fault_hit
        driven.reconfigure(batch_size=2)
        driven.append_rows(contents=[], revive=1)  # 0 comes back, unchanged
        driven.run(fault=None)


def test_keys_inserted_by_a_killed_delivery_are_deleted_after_it_is_abandoned() -> None:
    """Killed after inserting a key, which then leaves the source; the killed delivery's
    snapshot expires, so it is abandoned: mirror still deletes the key it had inserted."""
    with machine(("sqlite", "mirror"), 1, [("a", 1)] * 2) as driven:
        driven.run(fault=None)
        driven.append_rows(contents=[("n", 1), ("m", 1)], revive=0)  # keys 2 and 3
        driven.run(fault=("kill-before", "upsert", 2))  # key 2 inserted, then killed
        assert driven.fault_hit
        delete_from_source(driven, [2])
        driven.expire_snapshots()
        driven.run(fault=None)


@pytest.mark.parametrize("fault", ["kill-before", "kill-after"])
def test_updates_of_a_killed_delivery_are_undone_when_the_source_is_rolled_back(
    fault: str,
) -> None:
    """A killed delivery had updated a key (acknowledged, or only sent: in flight at the kill);
    the source is rolled back to before the update and the killed delivery's snapshot
    expires: the key is sent again with its old content."""
    with machine(("sqlite", "changes"), 1, [("a", 1)] * 3) as driven:
        driven.run(fault=None)
        before = driven.current_snapshot()
        driven.table().overwrite(arrow_rows(dict.fromkeys(driven.model, ("b", 2))))
        driven.model = dict.fromkeys(driven.model, ("b", 2))
        driven.committed()
        driven.run(fault=(fault, "upsert", 2))  # key 0 (kill-after: and 1) updated
        assert driven.fault_hit
        driven.table().manage_snapshots().rollback_to_snapshot(before).commit()
        driven.model = dict(driven.history[before])
        driven.expire_snapshots()
        driven.run(fault=None)
