"""SyncDiff's pending marks: a small file beside the state, never a rewrite of it.

The keys a delivery may touch are marked before anything is sent; a delivery that is killed
and then abandoned must leave them to be sent again, even when the source goes back to what
the state says, through any number of abandoned deliveries and partial folds. The scan is a
stand-in for an Iceberg scan (a table and a snapshot id): what is tested is the state logic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pytest

from floe_sink.state import marks_path
from floe_sink.sync import SyncDiff, read_state_info

pytestmark = pytest.mark.requirement("4G-FR-008")

ROWS = 100
CHANGED = list(range(0, ROWS, 10))


@attrs.frozen
class Scan:
    """What SyncDiff reads of a planned scan."""

    table: pa.Table
    snapshot_id: int
    metadata_location: str | None = None

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.table.to_batches(30))


def table(score: int = 0, changed: list[int] | None = None) -> pa.Table:
    bumped = set(changed or [])
    return pa.table(
        {
            "id": pa.array(range(ROWS), pa.int64()),
            "score": pa.array([score + (i in bumped) for i in range(ROWS)], pa.int64()),
        }
    )


def diff(tmp_path: Path, source: pa.Table, snapshot_id: int, mode: str = "changes") -> SyncDiff:
    return SyncDiff(
        mode=mode,
        scan=Scan(source, snapshot_id),
        key_columns=["id"],
        field_mapping=None,
        state_path=tmp_path / "sync" / "dest.parquet",
        work_dir=tmp_path / "tmp",
        plan="plan",
    )


def fold(d: SyncDiff, delivery_id: str, **acknowledged: Any) -> None:
    d.save_state(
        delivery_id=delivery_id,
        sent_batches=acknowledged.get("sent_batches"),
        batch_size=acknowledged.get("batch_size"),
        deleted_batches=acknowledged.get("deleted_batches"),
        delete_batch_size=acknowledged.get("delete_batch_size"),
    )
    d.close()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A complete state of ``table()`` (snapshot 1), delivered by ``D1``."""
    first = diff(tmp_path, table(), 1)
    assert first.inserts == ROWS
    first.mark_pending("D1")  # a `changes` delivery of inserts only marks nothing
    fold(first, "D1")
    path = tmp_path / "sync" / "dest.parquet"
    assert not marks_path(path).exists()
    return path


def test_marks_stand_beside_the_state_which_is_not_rewritten(tmp_path: Path, state: Path) -> None:
    before = state.read_bytes()
    d = diff(tmp_path, table(changed=CHANGED), 2)
    assert (d.inserts, d.updates, d.unchanged) == (0, len(CHANGED), ROWS - len(CHANGED))
    d.mark_pending("D2")
    d.close()

    assert state.read_bytes() == before
    assert marks_path(state).exists()
    info = read_state_info(state)
    assert info is not None
    assert (info.pending, info.delivery_id, info.snapshot_id, info.source_rows) == (
        "D2",
        "D1",
        None,
        None,
    )


def test_a_resumed_delivery_diffs_to_the_same_rows(tmp_path: Path, state: Path) -> None:
    source = table(changed=CHANGED)
    d = diff(tmp_path, source, 2)
    d.mark_pending("D2")
    rows = d.rows().read_all()
    d.close()

    again = diff(tmp_path, source, 2)  # the resume, against the marked state
    assert (again.inserts, again.updates) == (0, len(CHANGED))
    again.mark_pending("D2")  # marked by the run that started it: nothing to do
    assert again.rows().read_all().equals(rows)
    again.close()


def test_abandoned_deliveries_leave_their_keys_to_be_sent_again(
    tmp_path: Path, state: Path
) -> None:
    # D2 marks the changed keys and is killed (the destination may hold its rows)
    d2 = diff(tmp_path, table(changed=CHANGED), 2)
    d2.mark_pending("D2")
    d2.close()
    # the source goes back to what the state says; D3 is abandoned too (marking again)
    d3 = diff(tmp_path, table(), 3)
    assert (d3.inserts, d3.updates) == (0, len(CHANGED))
    d3.mark_pending("D3")
    d3.close()
    # still unknown: a third delivery sends them, and its fold settles them
    d4 = diff(tmp_path, table(), 4)
    assert (d4.inserts, d4.updates) == (0, len(CHANGED))
    assert d4.rows().read_all().column("id").to_pylist() == CHANGED
    d4.mark_pending("D4")
    fold(d4, "D4")
    assert not marks_path(state).exists()
    settled = diff(tmp_path, table(), 5)
    assert (settled.updates, settled.unchanged) == (0, ROWS)
    settled.close()


def test_a_partial_fold_keeps_the_marks_of_what_it_did_not_deliver(
    tmp_path: Path, state: Path
) -> None:
    d2 = diff(tmp_path, table(changed=CHANGED), 2)
    d2.mark_pending("D2")
    batch = 4
    fold(d2, "D2", sent_batches=[0], batch_size=batch)  # the first 4 changed rows only
    assert not marks_path(state).exists()
    info = read_state_info(state)
    assert info is not None
    assert (info.delivery_id, info.pending, info.snapshot_id) == ("D2", None, None)

    # the source goes back: the acknowledged keys are updates (the destination has D2's
    # rows), and so are the marked ones D2 did not deliver (it may have, in flight)
    back = diff(tmp_path, table(), 3)
    assert (back.inserts, back.updates) == (0, len(CHANGED))
    back.mark_pending("D3")  # marking a kept mark changes nothing
    back.close()
    again = diff(tmp_path, table(), 4)
    assert again.updates == len(CHANGED)
    again.close()


def test_mirror_marks_deletes_and_the_fold_drops_what_was_deleted(
    tmp_path: Path, state: Path
) -> None:
    gone = [3, 4]
    kept = table().filter(pa.compute.invert(pa.compute.is_in(table()["id"], pa.array(gone))))
    d = diff(tmp_path, kept, 2, mode="mirror")
    assert (d.deletes, d.updates) == (len(gone), 0)
    d.mark_pending("D2")
    assert marks_path(state).exists()
    assert d.deleted_keys(["id"]).column("id").to_pylist() == gone
    fold(d, "D2")
    assert not marks_path(state).exists()
    after = diff(tmp_path, kept, 3, mode="mirror")
    assert (after.deletes, after.updates, after.unchanged) == (0, 0, ROWS - len(gone))
    after.close()


def test_marks_made_against_another_state_are_void(tmp_path: Path, state: Path) -> None:
    d2 = diff(tmp_path, table(changed=CHANGED), 2)
    d2.mark_pending("D2")
    stale = marks_path(state).read_bytes()
    fold(d2, "D2")
    marks_path(state).write_bytes(stale)  # a kill between the new state and the unlink
    info = read_state_info(state)
    assert info is not None
    assert (info.pending, info.snapshot_id) == (None, 2)
    d3 = diff(tmp_path, table(changed=CHANGED), 3)
    assert (d3.updates, d3.unchanged) == (0, ROWS)
    d3.close()
