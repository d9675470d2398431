"""Units of work and the per-file delivery checksum, without a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink import Checksum, checksum_of
from floe_sink.checksum import DeliveryChecksum, FileBoundaries, combine_pieces
from floe_sink.delivery import Delivery, DeliveryUnit
from floe_sink.engines import EngineSettings, EngineUnavailableError, engine_settings
from floe_sink.errors import SinkConfigurationError, SinkWriteError
from floe_sink.state import BatchRecord
from floe_sink.units import UnitResult, aggregate, plan_units, unit_id


def _task(path: str, size: int, rows: int = 10) -> SimpleNamespace:
    return SimpleNamespace(
        file=SimpleNamespace(file_path=path, file_size_in_bytes=size, record_count=rows)
    )


# -- units --------------------------------------------------------------------------------------


def test_units_group_consecutive_files_up_to_the_size_and_keep_every_file_once() -> None:
    tasks = [_task(f"s3://w/t/{i:03}.parquet", size) for i, size in enumerate([4, 4, 4, 9, 1, 1])]
    units = plan_units(tasks, destination="crm", snapshot_id=7, target_bytes=8)
    assert [len(unit.paths) for unit in units] == [2, 1, 1, 2]  # 4+4 | 4 | 9 (too big) | 1+1
    assert [path for unit in units for path in unit.paths] == [t.file.file_path for t in tasks]
    assert [unit.index for unit in units] == [0, 1, 2, 3]
    assert units[0].rows == 20
    assert units[0].size_bytes == 8


def test_a_unit_is_identified_by_destination_snapshot_and_files() -> None:
    tasks = [_task(f"f{i}", 1) for i in range(4)]
    first = plan_units(tasks, destination="crm", snapshot_id=7, target_bytes=2)
    again = plan_units(tasks, destination="crm", snapshot_id=7, target_bytes=2)
    assert [u.unit_id for u in first] == [u.unit_id for u in again]
    assert first[0].unit_id == unit_id("crm", 7, ["f0", "f1"])
    others = [
        plan_units(tasks, destination="erp", snapshot_id=7, target_bytes=2),
        plan_units(tasks, destination="crm", snapshot_id=8, target_bytes=2),
        plan_units(tasks, destination="crm", snapshot_id=7, target_bytes=3),
    ]
    for other in others:
        assert other[0].unit_id != first[0].unit_id


def test_a_unit_is_a_sub_delivery_with_its_own_key_scope() -> None:
    whole = Delivery("crm", delivery_id="d1")
    unit = Delivery("crm", delivery_id="d1", unit=DeliveryUnit(index=3, unit_id="abc"))
    assert whole.key_scope == "crm"  # the local engine's keys are unchanged
    assert unit.key_scope == "crm/abc"
    assert unit.delivery_id == whole.delivery_id  # the sink's ledger keys on it


def test_the_journal_record_of_a_unit_round_trips_and_refuses_another_unit() -> None:
    units = plan_units([_task("a", 1), _task("b", 1)], destination="crm", snapshot_id=1)
    result = UnitResult(
        index=0,
        unit_id=units[0].unit_id,
        success=True,
        rows=20,
        bytes=99,
        batches=3,
        pieces=((10, "ab" * 32), (10, "cd" * 32)),
    )
    record = BatchRecord(position=0, key=result.journal_key(), rows=20, bytes=99)
    back = UnitResult.from_journal(record, units[0], destination="crm")
    assert (back.rows, back.batches, back.pieces, back.resumed) == (20, 3, result.pieces, True)
    moved = plan_units([_task("a", 1), _task("c", 1)], destination="crm", snapshot_id=1)
    with pytest.raises(SinkWriteError, match="reset"):
        UnitResult.from_journal(record, moved[0], destination="crm")
    local = BatchRecord(position=0, key="floe-" + "0" * 64, rows=5, bytes=1)
    with pytest.raises(SinkWriteError, match="another engine"):
        UnitResult.from_journal(local, units[0], destination="crm")


def test_aggregate_does_not_depend_on_the_order_units_finish_in() -> None:
    schema = pa.schema([("id", pa.int64())])
    tasks = [_task(f"f{i}", 1) for i in range(3)]
    units = plan_units(tasks, destination="crm", snapshot_id=1, target_bytes=1)
    tables = [pa.table({"id": list(range(i * 10, i * 10 + 10))}) for i in range(3)]
    results = {
        unit.index: UnitResult(
            index=unit.index,
            unit_id=unit.unit_id,
            success=True,
            rows=10,
            pieces=((10, checksum_of(tables[unit.index])),),
            record_ids=(str(unit.index),),
        )
        for unit in units
    }
    forward = aggregate(units, results, schema=schema, destination="crm", errors=[], started=0)
    backward = dict(reversed(list(results.items())))
    reverse = aggregate(units, backward, schema=schema, destination="crm", errors=[], started=0)
    assert forward.checksum == reverse.checksum
    assert forward.rows_delivered == 30
    assert forward.success
    assert forward.destination_record_ids == ["0", "1", "2"] == reverse.destination_record_ids
    missing = aggregate(
        units, {0: results[0]}, schema=schema, destination="crm", errors=[], started=0
    )
    assert not missing.success


# -- the per-file checksum ----------------------------------------------------------------------


@given(
    sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=6),
    cut=st.integers(min_value=1, max_value=17),
    ahead=st.booleans(),
)
def test_a_delivery_checksum_is_its_files_checksums_combined(
    sizes: list[int], cut: int, ahead: bool
) -> None:
    table = pa.table({"id": pa.array(range(sum(sizes)), pa.int64())})
    files = FileBoundaries()
    checksum = DeliveryChecksum(files)
    checksum.update(table.schema.empty_table())  # the delivery loop announces the schema
    if ahead:  # the reader may be ahead of the checksum: boundaries are offsets, not events
        for size in sizes:
            files.end_file(size)
    offset = 0
    for size in sizes:
        part = table.slice(offset, size)
        for start in range(0, size, cut):  # batches never straddle files, but come cut
            checksum.update(part.slice(start, cut))
        offset += size
        if not ahead:
            files.end_file(size)
    pieces = []
    offset = 0
    for size in sizes:
        if size:
            pieces.append((size, checksum_of(table.slice(offset, size))))
        offset += size
    assert checksum.pieces() == pieces
    assert checksum.hexdigest() == combine_pieces(table.schema, pieces)
    assert checksum.rows == table.num_rows


def test_a_delivery_checksum_changes_with_the_content_and_the_schema() -> None:
    schema = pa.schema([("id", pa.int64())])
    pieces = [(10, checksum_of(pa.table({"id": list(range(10))})))]
    assert combine_pieces(schema, pieces) != combine_pieces(schema, [(10, "00" * 32)])
    assert combine_pieces(schema, pieces) != combine_pieces(pa.schema([("x", pa.int64())]), pieces)
    assert combine_pieces(schema, []) == combine_pieces(schema, [(0, "ff" * 32)])  # empty files
    assert combine_pieces(schema, pieces) != checksum_of(pa.table({"id": list(range(10))}))


def test_a_delivery_without_file_boundaries_keeps_the_stream_checksum() -> None:
    assert isinstance(Delivery("crm").new_checksum(), Checksum)
    assert isinstance(Delivery("crm", files=FileBoundaries()).new_checksum(), DeliveryChecksum)


# -- engine settings ----------------------------------------------------------------------------


def _manifest(**engine: object) -> SimpleNamespace:
    from floe_sink.config import EngineConfig

    return SimpleNamespace(engine=EngineConfig(**engine) if engine else None)  # type: ignore[arg-type]


def test_the_local_engine_is_the_default_and_adds_nothing_to_a_delivery_plan() -> None:
    settings = engine_settings(_manifest())
    assert settings == EngineSettings()
    assert settings.plan == "local"


def test_the_command_overrides_the_manifest_engine() -> None:
    from floe_sink.config import EngineType

    manifest = _manifest(type=EngineType.RAY, address="auto", max_tasks=3)
    assert engine_settings(manifest, engine="local").type == "local"
    assert engine_settings(manifest).max_tasks == 3
    assert engine_settings(_manifest(), address="ray://head:10001").type == "ray"
    with pytest.raises(SinkConfigurationError, match="--engine ray"):
        engine_settings(_manifest(), engine="local", address="ray://head:10001")
    assert engine_settings(manifest).plan != engine_settings(manifest, engine="local").plan


def test_the_ray_engine_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import floe_sink.engines as engines

    monkeypatch.setattr(engines, "ray_installed", lambda: False)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'floe-sink\[ray\]'"):
        engine_settings(_manifest(), engine="ray")


def test_records_a_unit_refused_reach_the_drivers_dead_letter_store(tmp_path: Path) -> None:
    from floe_sink.delivery import BatchReceipt, Rejection
    from floe_sink.engines.ray_worker import UnitJournal
    from floe_sink.state import LocalStateStore

    journal = UnitJournal()
    unit = Delivery("crm", delivery_id="d1", store=journal, unit=DeliveryUnit(index=0, unit_id="u"))
    unit.run_id = "r1"
    unit.track_rejects(["id"], ['{"id": 1}'])
    batch = pa.record_batch({"id": [1, 2, 3], "email": ["a", "b", "c"]})
    refused = Rejection(index=1, status="400", message="invalid email")
    unit.acknowledge(0, "k", BatchReceipt(rows=2, rejected=(refused,)), batch)
    assert [r["key"] for r in journal.rejects] == ['{"id": 2}']
    assert journal.cleared == ['{"id": 1}']  # delivered now: no longer refused

    store = LocalStateStore(tmp_path)
    store.reject("crm", key='{"id": 1}', record="{}", status="400", message="x", run_id="r0")
    driver = Delivery("crm", delivery_id="d1", store=store)
    driver.track_rejects(["id"], ['{"id": 1}'])
    driver.file_rejects(journal.rejects, journal.cleared)
    assert [(r.key, r.status, r.run_id) for r in store.rejects("crm")] == [({"id": 2}, "400", "r1")]
    assert driver.open_rejects == []
    store.close()
