"""Hypothesis: for random tables and batch sizes, every row arrives and the checksum is the
core's checksum of the input."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Database
from floe_sink.checksum import checksum_of

pytestmark = [pytest.mark.requirement("4G-FR-008")]

_counter = itertools.count()

COLUMN_TYPES = {
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats(allow_nan=False, allow_infinity=False)),
    "text": (pa.string(), st.text(max_size=12)),
    "flag": (pa.bool_(), st.booleans()),
}


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    kinds = draw(st.lists(st.sampled_from(sorted(COLUMN_TYPES)), min_size=1, max_size=4))
    rows = draw(st.integers(0, 60))
    columns: dict[str, pa.Array] = {"id": pa.array(range(rows), pa.int64())}
    for index, kind in enumerate(kinds):
        type_, values = COLUMN_TYPES[kind]
        data = draw(st.lists(st.none() | values, min_size=rows, max_size=rows))
        columns[f"{kind} {index}"] = pa.array(data, type_)
    return pa.table(columns)


@pytest.mark.parametrize("dialect", ["sqlite", "duckdb"])
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=tables(), batch_size=st.integers(1, 25), merge=st.booleans())
def test_rows_delivered_equal_rows_in_and_checksum_matches(
    tmp_path: Path, dialect: str, data: pa.Table, batch_size: int, merge: bool
) -> None:
    run = next(_counter)
    suffix = "db" if dialect == "sqlite" else "duckdb"
    db = Database(
        dialect=dialect,
        url=f"{dialect}:///{tmp_path / f'p{run}.{suffix}'}",
        tmp_path=tmp_path / f"r{run}",
    )
    sink = db.sink(
        "t",
        write_disposition="merge" if merge else "append",
        primary_key=["id"] if merge else None,
        batch_size=batch_size,
    )
    result = sink.write(data)
    assert result.success, result.errors
    assert result.rows_delivered == data.num_rows
    assert result.checksum == checksum_of(data)
    if data.num_rows:
        assert db.count("t") == data.num_rows
