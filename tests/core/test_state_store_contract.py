"""The state store contract: the same tests for every ``StateStore`` implementation.

A backend is one entry of :data:`BACKENDS`: a name and a function ``(request, tmp_path)``
returning an *opener*, a function of no arguments that opens a store on the same backing
storage every time it is called (tests open a store twice to see what a second process, or
the next run, sees). A backend needing a fixture asks ``request`` for it, e.g. the ``sql``
store on the test PostgreSQL::

    "sql-postgresql": lambda request, tmp_path: partial(
        _sql, request.getfixturevalue("postgres_url"), tmp_path
    ),

The sync state is reached only through ``load_sync_state`` / ``save_sync_state``: a store
may keep it anywhere (the ``sql`` store keeps it in its database and hands out local copies).

A plugin that brings its own store can also subclass :class:`StateStoreContract` and override
the ``open_store`` fixture. Each test names the property it proves; the lock takeover forks a
child that takes a lock and is SIGKILLed while holding it (the opener is inherited, not pickled).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from floe_sink.sqlstate import SqlStateStore, StateUrl
from floe_sink.state import (
    ABANDONED,
    DONE,
    FAILED,
    OPEN,
    BatchRecord,
    DestinationLockedError,
    LocalStateStore,
    RunRecord,
    StateStore,
)
from floe_sink.sync import DELETE_POSITIONS

pytestmark = pytest.mark.requirement("4G-FR-008")

Opener = Callable[[], StateStore]


def _sql(url: str, tmp_path: Path) -> StateStore:
    return SqlStateStore(StateUrl.parse(url), state_dir=tmp_path / "work")


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "local": lambda request, tmp_path: partial(LocalStateStore, tmp_path / "state"),
    "sql-sqlite": lambda request, tmp_path: partial(_sql, f"sqlite:///{tmp_path}/s.db", tmp_path),
    "sql-duckdb": lambda request, tmp_path: partial(
        _sql, f"duckdb:///{tmp_path}/s.duckdb", tmp_path
    ),
    "sql-postgresql": lambda request, tmp_path: partial(
        _sql, request.getfixturevalue("postgres_url"), tmp_path
    ),
}
"""Every state store the contract runs on: adding a backend is one line here."""


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.postgres] if "postgresql" in name else [])
        for name in BACKENDS
    ]
)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a store of the backend under test (the same backing storage on every call);
    every store opened is closed after the test."""
    opener = BACKENDS[request.param](request, tmp_path)
    opened: list[StateStore] = []

    def open_one() -> StateStore:
        store = opener()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        with contextlib.suppress(Exception):
            store.close()


def batch(position: int, *, key: str | None = None, rows: int = 10) -> BatchRecord:
    return BatchRecord(position=position, key=key or f"key-{position}", rows=rows, bytes=rows * 8)


def run_record(destination: str, run_id: str, started_at: str, **extra: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "destination": destination,
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": None,
        "success": None,
        "sync": "changes",
        "snapshot_id": 42,
        "delivery_id": f"delivery-of-{run_id}",
        **extra,
    }
    return RunRecord(**fields)


class StateStoreContract:
    """What the command relies on from a state store; see the module docstring."""

    # -- deliveries ---------------------------------------------------------------------

    def test_a_new_delivery_is_the_unfinished_one_with_its_plan_and_snapshot(
        self, open_store: Opener
    ) -> None:
        store = open_store()
        assert store.latest_unfinished("crm") is None
        delivery_id = store.create_delivery("crm", "plan-a", 1234567890123456789)
        found = store.latest_unfinished("crm")
        assert found is not None
        assert (found.delivery_id, found.destination, found.plan) == (delivery_id, "crm", "plan-a")
        assert (found.snapshot_id, found.status) == (1234567890123456789, OPEN)
        assert found.created_at
        assert store.batches(delivery_id) == {}

    def test_a_delivery_without_snapshot_keeps_none(self, open_store: Opener) -> None:
        store = open_store()
        delivery_id = store.create_delivery("crm", "plan", None)
        found = store.latest_unfinished("crm")
        assert found is not None
        assert (found.delivery_id, found.snapshot_id) == (delivery_id, None)

    def test_delivery_ids_are_unique_and_the_latest_is_the_newest(self, open_store: Opener) -> None:
        store = open_store()
        ids = [store.create_delivery("crm", f"plan-{n}", n) for n in range(5)]
        assert len(set(ids)) == 5
        latest = store.latest_unfinished("crm")
        assert latest is not None
        # created within the same millisecond or not, the last one created is the latest
        assert (latest.delivery_id, latest.plan) == (ids[-1], "plan-4")

    def test_deliveries_of_other_destinations_are_not_seen(self, open_store: Opener) -> None:
        store = open_store()
        mine = store.create_delivery("crm-contacts", "plan", 1)
        store.create_delivery("crm_contacts", "plan", 2)
        store.create_delivery("CRM-contacts", "plan", 3)
        found = store.latest_unfinished("crm-contacts")
        assert found is not None
        assert found.delivery_id == mine
        assert store.latest_unfinished("crm") is None

    def test_acknowledged_batches_are_kept_by_position(self, open_store: Opener) -> None:
        store = open_store()
        delivery_id = store.create_delivery("crm", "plan", 1)
        records = [batch(0), batch(1, rows=3), batch(7)]
        for record in records:
            store.acknowledge(delivery_id, record)
        assert store.batches(delivery_id) == {r.position: r for r in records}

    def test_delete_positions_beyond_32_bits_round_trip(self, open_store: Opener) -> None:
        """A delivery's delete batches live at positions from 2**40 (a 64-bit column)."""
        store = open_store()
        delivery_id = store.create_delivery("crm", "plan", 1)
        records = [batch(0), batch(DELETE_POSITIONS), batch(DELETE_POSITIONS + 123_456)]
        for record in records:
            store.acknowledge(delivery_id, record)
        assert store.batches(delivery_id) == {r.position: r for r in records}

    def test_acknowledging_again_is_idempotent(self, open_store: Opener) -> None:
        store = open_store()
        delivery_id = store.create_delivery("crm", "plan", 1)
        for _ in range(3):
            store.acknowledge(delivery_id, batch(4))
        assert store.batches(delivery_id) == {4: batch(4)}

    def test_batches_belong_to_their_delivery(self, open_store: Opener) -> None:
        store = open_store()
        first = store.create_delivery("crm", "plan", 1)
        second = store.create_delivery("other", "plan", 1)
        store.acknowledge(first, batch(0, key="first"))
        store.acknowledge(second, batch(0, key="second"))
        assert store.batches(first) == {0: batch(0, key="first")}
        assert store.batches(second) == {0: batch(0, key="second")}
        assert store.batches("no-such-delivery") == {}

    def test_acknowledgements_from_many_threads_are_all_kept(self, open_store: Opener) -> None:
        """Sinks acknowledge from their worker threads (max_concurrency)."""
        store = open_store()
        delivery_id = store.create_delivery("crm", "plan", 1)
        errors: list[BaseException] = []

        def acknowledge(first: int) -> None:
            try:
                for position in range(first, first + 25):
                    store.acknowledge(delivery_id, batch(position))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=acknowledge, args=(n * 25,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sorted(store.batches(delivery_id)) == list(range(100))

    # -- status transitions ---------------------------------------------------------------

    def test_a_failed_delivery_stays_unfinished_with_its_batches(self, open_store: Opener) -> None:
        store = open_store()
        delivery_id = store.create_delivery("crm", "plan", 1)
        store.acknowledge(delivery_id, batch(0))
        store.set_status(delivery_id, FAILED)
        found = store.latest_unfinished("crm")
        assert found is not None
        assert (found.delivery_id, found.status) == (delivery_id, FAILED)
        assert store.batches(delivery_id) == {0: batch(0)}
        store.set_status(delivery_id, OPEN)  # a failed append is resumed
        found = store.latest_unfinished("crm")
        assert found is not None
        assert found.status == OPEN

    @pytest.mark.parametrize("status", [DONE, ABANDONED])
    def test_a_finished_delivery_is_not_unfinished_and_loses_its_batches(
        self, open_store: Opener, status: str
    ) -> None:
        store = open_store()
        older = store.create_delivery("crm", "plan", 1)
        store.acknowledge(older, batch(0))
        finished = store.create_delivery("crm", "plan", 2)
        store.acknowledge(finished, batch(0))
        store.acknowledge(finished, batch(DELETE_POSITIONS))
        store.set_status(finished, status)
        assert store.batches(finished) == {}
        found = store.latest_unfinished("crm")
        assert found is not None
        assert found.delivery_id == older  # the older unfinished one shows again
        store.set_status(older, status)
        assert store.latest_unfinished("crm") is None
        assert store.batches(older) == {}

    def test_the_journal_survives_the_store_being_reopened(self, open_store: Opener) -> None:
        """What one run recorded, the next run (another process) sees."""
        first = open_store()
        delivery_id = first.create_delivery("crm", "plan", 9)
        first.acknowledge(delivery_id, batch(0))
        first.acknowledge(delivery_id, batch(DELETE_POSITIONS + 1))
        first.start_run(run_record("crm", "r1", "2026-01-01T00:00:00.000+00:00"))
        first.close()
        second = open_store()
        found = second.latest_unfinished("crm")
        assert found is not None
        assert (found.delivery_id, found.snapshot_id, found.status) == (delivery_id, 9, OPEN)
        assert sorted(second.batches(delivery_id)) == [0, DELETE_POSITIONS + 1]
        assert [run.run_id for run in second.runs("crm")] == ["r1"]

    # -- runs -------------------------------------------------------------------------------

    def test_a_run_is_recorded_started_then_finished(self, open_store: Opener) -> None:
        store = open_store()
        store.start_run(run_record("crm", "r1", "2026-01-01T00:00:00.000+00:00"))
        (started,) = store.runs("crm")
        assert (started.run_id, started.finished_at, started.success) == ("r1", None, None)
        assert (started.sync, started.snapshot_id, started.delivery_id) == (
            "changes",
            42,
            "delivery-of-r1",
        )
        result = {"rows_inserted": 3, "errors": [], "when": Path("/x")}  # not all JSON
        store.finish_run("r1", success=True, result=result)
        (finished,) = store.runs("crm")
        assert finished.success is True
        assert finished.finished_at
        assert finished.result == {"rows_inserted": 3, "errors": [], "when": "/x"}
        store.start_run(run_record("crm", "r2", "2026-01-02T00:00:00.000+00:00"))
        store.finish_run("r2", success=False, result={"errors": ["interrupted"]})
        assert [(r.run_id, r.success) for r in store.runs("crm")] == [("r2", False), ("r1", True)]

    def test_runs_are_most_recent_first_and_limited(self, open_store: Opener) -> None:
        store = open_store()
        # recorded out of order: the order is the start time's, not the recording's
        for run_id, day in [("b", 2), ("a", 1), ("d", 4), ("c", 3)]:
            store.start_run(run_record("crm", run_id, f"2026-01-0{day}T00:00:00.000+00:00"))
        store.start_run(run_record("other", "x", "2026-01-05T00:00:00.000+00:00"))
        assert [run.run_id for run in store.runs("crm")] == ["d", "c", "b", "a"]
        assert [run.run_id for run in store.runs("crm", limit=2)] == ["d", "c"]
        assert [run.run_id for run in store.runs(limit=3)] == ["x", "d", "c"]
        assert [run.run_id for run in store.runs()] == ["x", "d", "c", "b", "a"]
        assert [run.destination for run in store.runs("other")] == ["other"]
        assert store.runs("nobody") == []

    def test_runs_started_at_the_same_time_are_newest_recorded_first(
        self, open_store: Opener
    ) -> None:
        store = open_store()
        for run_id in ("first", "second", "third"):
            store.start_run(run_record("crm", run_id, "2026-01-01T00:00:00.000+00:00"))
        assert [run.run_id for run in store.runs("crm")] == ["third", "second", "first"]

    # -- forget (floe-sink reset) ----------------------------------------------------------

    def test_forget_abandons_every_unfinished_delivery_and_drops_the_sync_state(
        self, open_store: Opener
    ) -> None:
        store = open_store()
        ids = [store.create_delivery("crm", "plan", n) for n in range(2)]
        store.set_status(ids[0], FAILED)
        for delivery_id in ids:
            store.acknowledge(delivery_id, batch(0))
        kept = store.create_delivery("other", "plan", 1)
        store.acknowledge(kept, batch(0))
        store.start_run(run_record("crm", "r1", "2026-01-01T00:00:00.000+00:00"))
        for name, content in (("crm", b"keys and fingerprints"), ("other", b"other")):
            state = store.load_sync_state(name)
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_bytes(content)
            store.save_sync_state(name, state)

        store.forget("crm")
        assert store.latest_unfinished("crm") is None
        assert all(store.batches(delivery_id) == {} for delivery_id in ids)
        assert not store.load_sync_state("crm").exists()
        assert not open_store().load_sync_state("crm").exists()
        # another destination keeps everything; the history of runs is kept
        found = store.latest_unfinished("other")
        assert found is not None
        assert found.delivery_id == kept
        assert store.batches(kept) == {0: batch(0)}
        assert open_store().load_sync_state("other").read_bytes() == b"other"
        assert [run.run_id for run in store.runs("crm")] == ["r1"]
        store.forget("crm")  # nothing left to forget: no error
        store.forget("never-ran")

    # -- sync state ---------------------------------------------------------------------

    def test_sync_states_are_kept_per_destination_and_outlive_the_store(
        self, open_store: Opener, tmp_path: Path
    ) -> None:
        """The sync engine gets a local file, writes the new state there, hands it back."""
        store = open_store()
        names = ["crm-contacts", "crm_contacts", "CRM-contacts", "crm.contacts", "c/r m", "é"]
        for index, name in enumerate(names):
            path = store.load_sync_state(name)
            assert not path.exists()  # no state yet
            path.parent.mkdir(parents=True, exist_ok=True)  # a writer can create it
            path.write_bytes(f"state {index}".encode())
            store.save_sync_state(name, path)
        store.close()
        again = open_store()
        expected = [f"state {index}".encode() for index in range(len(names))]
        assert [again.load_sync_state(name).read_bytes() for name in names] == expected
        # a new state replaces the old one whole, also when written to another file
        newer = tmp_path / "elsewhere.parquet"
        newer.write_bytes(b"replaced")
        again.save_sync_state(names[0], newer)
        assert open_store().load_sync_state(names[0]).read_bytes() == b"replaced"
        assert open_store().load_sync_state(names[1]).read_bytes() == expected[1]

    # -- locks ------------------------------------------------------------------------------

    def test_a_second_lock_fails_naming_the_holder(self, open_store: Opener) -> None:
        first, second = open_store(), open_store()
        with first.lock("crm"):
            with pytest.raises(DestinationLockedError) as caught, second.lock("crm"):
                pytest.fail("two holders of one destination's lock")
            error = caught.value
            assert error.destination == "crm"
            assert error.holder.get("pid") == os.getpid()
            assert error.holder.get("host") == socket.gethostname()
            assert error.holder.get("since")
            assert f"process {os.getpid()}" in str(error)
            # another destination is not blocked, not even one whose file name is close
            with second.lock("CRM"), second.lock("crm_"):
                pass
        with second.lock("crm"):  # released at the end of the block
            pass

    def test_a_lock_is_released_when_its_block_raises(self, open_store: Opener) -> None:
        store = open_store()
        with pytest.raises(RuntimeError), store.lock("crm"):
            raise RuntimeError("the run failed")
        with open_store().lock("crm"):
            pass

    def test_the_lock_of_a_killed_process_is_taken_over(self, open_store: Opener) -> None:
        ready_read, ready_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: take the lock, say so, wait to be killed
            code = 1
            try:
                os.close(ready_read)
                with open_store().lock("crm"):
                    os.write(ready_write, b"locked")
                    time.sleep(60)
            except BaseException:
                code = 2
            finally:
                os._exit(code)
        try:
            os.close(ready_write)
            with os.fdopen(ready_read, "rb") as ready:
                assert ready.read(6) == b"locked", "the child never took the lock"
            with pytest.raises(DestinationLockedError) as caught, open_store().lock("crm"):
                pytest.fail("the lock of a live process was taken")
            assert caught.value.holder.get("pid") == pid
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status)
            assert os.WTERMSIG(status) == signal.SIGKILL
            pid = 0
            with open_store().lock("crm"):  # the killed holder's lock is free
                pass
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


class TestStateStoreContract(StateStoreContract):
    """The contract on every backend of :data:`BACKENDS`."""


def test_local_sync_state_files_are_distinct_on_case_insensitive_file_systems(
    tmp_path: Path,
) -> None:
    store = LocalStateStore(tmp_path / "state")
    names = ["crm-contacts", "crm_contacts", "CRM-contacts", "crm.contacts", "c/r m", "é"]
    paths = [store.load_sync_state(name) for name in names]
    assert len({str(path).lower() for path in paths}) == len(names)
    assert all(path.parent == tmp_path / "state" / "sync" for path in paths)
    store.close()
