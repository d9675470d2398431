"""Fingerprints are the same whichever reader computed them.

The diff hashes local Parquet data files with DuckDB's own reader when the scan reads them as
they are (:meth:`floe_sink.source.SourceScan.local_parquet_files`), and the Arrow stream of
the scan otherwise (deletes, a row filter, a renamed column, an object store). A table moves
between the two (a filter added, a column renamed): if the fingerprints differed, every row
would look changed and be sent again. Real Iceberg tables, written with pyiceberg.
"""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fixtures.iceberg import IcebergWarehouse
from floe_sink.source import SourceScan, open_table, plan_scan, source_config
from floe_sink.sync import SyncDiff

pytestmark = pytest.mark.requirement("4G-FR-008")

ROWS = 50
UTC = datetime.UTC


def every_type() -> pa.Table:
    ids = list(range(ROWS))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"name {i}" if i % 7 else None for i in ids], pa.string()),
            "small": pa.array([i % 5 for i in ids], pa.int32()),
            "ratio": pa.array([i / 3 for i in ids], pa.float64()),
            "single": pa.array([i / 7 for i in ids], pa.float32()),
            "flag": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
            "amount": pa.array([Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
            "day": pa.array([datetime.date(2026, 1, 1 + i % 28) for i in ids], pa.date32()),
            "at": pa.array(
                [datetime.datetime(2026, 1, 1, i % 24, tzinfo=UTC) for i in ids],
                pa.timestamp("us", tz="UTC"),
            ),
            "local": pa.array(
                [datetime.datetime(2026, 2, 1, 0, i) for i in ids], pa.timestamp("us")
            ),
            "clock": pa.array([datetime.time(i % 24, 30) for i in ids], pa.time64("us")),
            "blob": pa.array([bytes([i, i + 1]) for i in ids], pa.binary()),
            "tags": pa.array([[f"t{i}", "x"] for i in ids], pa.list_(pa.string())),
            "address": pa.array(
                [{"city": f"c{i}", "zip": i} for i in ids],
                pa.struct([("city", pa.string()), ("zip", pa.int64())]),
            ),
            "token": pa.array([uuid.UUID(int=i).bytes for i in ids], pa.binary(16)),
        }
    )


def scan_of(warehouse: IcebergWarehouse, identifier: str, **plan: Any) -> SourceScan:
    config = source_config({**warehouse.catalog_properties, "table": identifier})
    return plan_scan(open_table(config), **plan)


class ArrowOnly:
    """The same scan, without its local files: the diff streams it through Arrow."""

    def __init__(self, scan: SourceScan) -> None:
        self._scan = scan

    def __getattr__(self, name: str) -> Any:
        if name == "local_parquet_files":
            raise AttributeError(name)
        return getattr(self._scan, name)


class NoArrow:
    """The same scan, refusing to stream: what reads it must be DuckDB."""

    def __init__(self, scan: SourceScan) -> None:
        self._scan = scan

    def reader(self, **_kwargs: Any) -> pa.RecordBatchReader:
        raise AssertionError("the Arrow scan was streamed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scan, name)


def diff_of(
    scan: Any, tmp_path: Path, mapping: dict[str, str] | None = None, *, state: str = "none"
) -> SyncDiff:
    """A ``changes`` diff of ``scan`` keyed on ``id``, against the state named ``state``."""
    return SyncDiff(
        mode="changes",
        scan=scan,
        key_columns=["id"],
        field_mapping=mapping,
        state_path=tmp_path / "sync" / f"{state}.parquet",
        work_dir=tmp_path / "tmp",
        plan="plan",
    )


def delivered(diff: SyncDiff, delivery_id: str) -> None:
    """Fold every row of ``diff`` as acknowledged, and close it."""
    diff.save_state(
        delivery_id=delivery_id,
        sent_batches=None,
        batch_size=None,
        deleted_batches=None,
        delete_batch_size=None,
    )
    diff.close()


def fingerprints(
    scan: Any, tmp_path: Path, mapping: dict[str, str] | None, *, natively: bool | None = None
) -> pa.Table:
    diff = diff_of(scan, tmp_path, mapping)
    try:
        if natively is not None:
            assert diff.read_natively is natively
        table: pa.Table = diff._table("SELECT k0, rn, fp FROM cur ORDER BY rn")
        return table
    finally:
        diff.close()


@pytest.mark.parametrize(
    "mapping", [None, {"name": "full_name", "amount": "total", "id": "id", "at": "seen"}]
)
def test_duckdb_and_arrow_fingerprints_agree_on_every_type(
    iceberg_warehouse: IcebergWarehouse, tmp_path: Path, mapping: dict[str, str] | None
) -> None:
    iceberg_warehouse.write("gold.types", every_type(), files=3)
    scan = scan_of(iceberg_warehouse, "gold.types")
    files = scan.local_parquet_files()
    assert files is not None
    assert len(files) == 3
    assert sum(rows for _path, rows in files) == ROWS

    native = fingerprints(scan, tmp_path, mapping, natively=True)
    streamed = fingerprints(ArrowOnly(scan), tmp_path, mapping, natively=False)
    assert native.column("rn").to_pylist() == list(range(ROWS))
    assert sorted(native.column("k0").to_pylist()) == list(range(ROWS))  # files in path order
    assert native.equals(streamed)
    assert len(set(native.column("fp").to_pylist())) == ROWS  # the content is in it


def test_a_changed_value_changes_the_fingerprint_on_both_paths(
    iceberg_warehouse: IcebergWarehouse, tmp_path: Path
) -> None:
    data = every_type()
    iceberg_warehouse.write("gold.types", data)
    before = fingerprints(scan_of(iceberg_warehouse, "gold.types"), tmp_path, None)
    index = data.schema.get_field_index("address")
    changed = data.column("address").to_pylist()
    changed[3] = {"city": "elsewhere", "zip": 3}
    iceberg_warehouse.overwrite(
        "gold.types", data.set_column(index, "address", pa.array(changed, data.schema[index].type))
    )
    scan = scan_of(iceberg_warehouse, "gold.types")
    for after in (
        fingerprints(scan, tmp_path, None),
        fingerprints(ArrowOnly(scan), tmp_path, None),
    ):
        pairs = zip(before["fp"].to_pylist(), after["fp"].to_pylist(), strict=True)
        differs = [i for i, (a, b) in enumerate(pairs) if a != b]
        assert differs == [3]


def test_filtered_renamed_or_deleted_files_are_streamed(
    iceberg_warehouse: IcebergWarehouse,
) -> None:
    table = iceberg_warehouse.write("gold.types", every_type())
    assert scan_of(iceberg_warehouse, "gold.types").local_parquet_files() is not None
    filtered = scan_of(iceberg_warehouse, "gold.types", row_filter="id > 3")
    assert filtered.local_parquet_files() is None
    with table.update_schema() as update:
        update.rename_column("name", "label")
    assert scan_of(iceberg_warehouse, "gold.types").local_parquet_files() is None


@pytest.mark.parametrize("mapping", [None, {"name": "full_name", "id": "id", "tags": "labels"}])
def test_changed_rows_read_back_by_duckdb_equal_the_arrow_scans(
    iceberg_warehouse: IcebergWarehouse, tmp_path: Path, mapping: dict[str, str] | None
) -> None:
    """The rows to send, read back by DuckDB (few changed) or the Arrow scan: the same
    values, the scan's own schema, the snapshot's order."""
    data = every_type()
    iceberg_warehouse.write("gold.types", data, files=2)
    delivered(diff_of(scan_of(iceberg_warehouse, "gold.types"), tmp_path, mapping, state="d"), "D1")
    changed = [2, 9, 31]  # under a tenth of the rows: DuckDB reads them back
    names = data.column("name").to_pylist()
    for i in changed:
        names[i] = f"renamed {i}"
    iceberg_warehouse.overwrite(
        "gold.types", data.set_column(1, "name", pa.array(names, pa.string()))
    )
    scan = scan_of(iceberg_warehouse, "gold.types")

    native = diff_of(NoArrow(scan), tmp_path, mapping, state="d")  # no Arrow stream at all
    assert native.read_natively
    assert native.updates == len(changed)
    read_back = native.rows().read_all()
    native.close()
    streamed = diff_of(ArrowOnly(scan), tmp_path, mapping, state="d")
    assert not streamed.read_natively
    rescanned = streamed.rows().read_all()
    streamed.close()

    assert read_back.schema.equals(scan.schema)
    assert read_back.equals(rescanned)
    assert sorted(read_back.column("id").to_pylist()) == changed
    assert read_back.column("name").to_pylist() == [names[i] for i in read_back["id"].to_pylist()]


def test_a_delivery_that_stops_early_folds_with_the_read_back_open(
    iceberg_warehouse: IcebergWarehouse, tmp_path: Path
) -> None:
    """A refused batch stops the delivery before the changed rows are drained: the fold
    still runs its queries (DuckDB refuses a new query while a result is open)."""
    data = every_type()
    iceberg_warehouse.write("gold.types", data)
    delivered(diff_of(scan_of(iceberg_warehouse, "gold.types"), tmp_path, state="d"), "D1")
    small = [7 if i in (4, 8, 15) else i % 5 for i in range(ROWS)]  # few: DuckDB reads back
    iceberg_warehouse.overwrite(
        "gold.types", data.set_column(2, "small", pa.array(small, pa.int32()))
    )
    diff = diff_of(scan_of(iceberg_warehouse, "gold.types"), tmp_path, state="d")
    assert diff.read_natively
    assert diff.updates == 3
    rows = diff.rows()
    assert rows.read_next_batch().num_rows > 0  # then the destination refuses: stop here
    diff.save_state(
        delivery_id="D2",
        sent_batches=[],
        batch_size=10,
        deleted_batches=[],
        delete_batch_size=10,
    )
    diff.close()
    again = diff_of(scan_of(iceberg_warehouse, "gold.types"), tmp_path, state="d")
    assert again.updates == 3  # nothing was acknowledged: all of them again
    again.close()
