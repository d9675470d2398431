"""Each Arrow type in docs/sinks/sql_database.md (Types) round-trips in every dialect, nulls too."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from conftest import Database, quote

pytestmark = [pytest.mark.requirement("4G-FR-005"), pytest.mark.requirement("4G-FR-008")]

UTC = dt.UTC
PARIS = dt.timezone(dt.timedelta(hours=1))

COLUMNS: dict[str, tuple[pa.DataType, list[Any]]] = {
    "i8": (pa.int8(), [-128, 127]),
    "i16": (pa.int16(), [-32768, 32767]),
    "i32": (pa.int32(), [-(2**31), 2**31 - 1]),
    "i64": (pa.int64(), [-(2**63), 2**63 - 1]),
    "f32": (pa.float32(), [1.5, -0.25]),
    "f64": (pa.float64(), [3.141592653589793, -1e300]),
    "dec": (pa.decimal128(18, 4), [Decimal("12345678901234.5678"), Decimal("-0.0001")]),
    "s": (pa.string(), ["héllo ✓", ""]),
    "ls": (pa.large_string(), ["x" * 300, "quote ' \" ;"]),
    "b": (pa.bool_(), [True, False]),
    "d": (pa.date32(), [dt.date(2024, 2, 29), dt.date(1970, 1, 1)]),
    "ts": (
        pa.timestamp("us"),
        [dt.datetime(2024, 2, 29, 12, 34, 56, 123456), dt.datetime(1999, 12, 31)],
    ),
    "tsz": (
        pa.timestamp("us", tz="UTC"),
        [
            dt.datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=UTC),
            dt.datetime(2000, 1, 1, tzinfo=UTC),
        ],
    ),
    "tsp": (
        pa.timestamp("ms", tz="+01:00"),
        [
            dt.datetime(2024, 6, 1, 8, 0, 0, 500000, tzinfo=PARIS),
            dt.datetime(2001, 1, 1, tzinfo=PARIS),
        ],
    ),
    "bin": (pa.binary(), [b"\x00\xffbytes", b""]),
    "cat": (pa.dictionary(pa.int8(), pa.string()), ["red", "blue"]),
}


def source() -> pa.Table:
    arrays = {}
    for name, (type_, values) in COLUMNS.items():
        with_null = [*values, None]
        if pa.types.is_dictionary(type_):
            arrays[name] = pa.array(with_null, pa.string()).dictionary_encode().cast(type_)
        else:
            arrays[name] = pa.array(with_null, type_)
    arrays["id"] = pa.array([1, 2, 3], pa.int64())
    return pa.table(arrays)


def normalise(name: str, value: Any) -> Any:
    """Bring a value read back to the Python type of the source column."""
    if value is None:
        return None
    type_ = COLUMNS[name][0]
    if isinstance(value, str):  # SQLite stores these as exact text
        if pa.types.is_decimal(type_):
            return Decimal(value)
        if pa.types.is_date(type_):
            return dt.date.fromisoformat(value)
        if pa.types.is_timestamp(type_):
            return dt.datetime.fromisoformat(value)
    if pa.types.is_boolean(type_):
        return bool(value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def expected(name: str, value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    return value


def read_back(db: Database) -> dict[str, list[Any]]:
    names = list(COLUMNS)
    columns = ", ".join(quote(name) for name in names)
    if db.dialect == "duckdb":
        import duckdb

        with duckdb.connect(db.url.removeprefix("duckdb:///")) as conn:
            table = conn.sql(f'SELECT {columns} FROM "types" ORDER BY "id"').to_arrow_table()
            if isinstance(table, pa.RecordBatchReader):
                table = table.read_all()
        return {name: table.column(name).to_pylist() for name in names}
    rows = db.query(f'SELECT {columns} FROM "types" ORDER BY "id"')
    return {name: [row[index] for row in rows] for index, name in enumerate(names)}


def test_every_type_round_trips(db: Database) -> None:
    data = source()
    for mode in ("append", "merge"):
        db.execute('DROP TABLE IF EXISTS "types"')
        sink = db.sink(
            "types", write_disposition=mode, primary_key=["id"] if mode == "merge" else None
        )
        result = sink.write(data)
        assert result.success, result.errors
        got = read_back(db)
        for name, (_type, values) in COLUMNS.items():
            want = [expected(name, value) for value in [*values, None]]
            assert [normalise(name, value) for value in got[name]] == want, (mode, name)


def test_created_column_types(db: Database) -> None:
    assert db.sink("types").write(source()).success
    if db.dialect == "postgresql":
        types = dict(
            db.query(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'types'"
            )
        )
        assert types["i64"] == "bigint"
        assert types["dec"] == "numeric"
        assert types["ts"] == "timestamp without time zone"
        assert types["tsz"] == "timestamp with time zone"
        assert types["bin"] == "bytea"
        assert types["cat"] == "text"
    elif db.dialect == "duckdb":
        types = dict(
            db.query(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'types'"
            )
        )
        assert types["dec"] == "DECIMAL(18,4)"
        assert types["tsz"] == "TIMESTAMP WITH TIME ZONE"
        assert types["i8"] == "TINYINT"


def test_date64_and_decimals_wider_than_duckdb_takes_are_written(db: Database) -> None:
    # found by the conformance kit: PostgreSQL's COPY writer refused date64, DuckDB a
    # decimal256 of more than 38 digits, both at the first batch
    wide = Decimal("1234567890123456789012345678901234567890.12")
    table = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "day": pa.array([dt.date(2024, 5, 1)], pa.date64()),
            "big": pa.array([wide], pa.decimal256(45, 2)),
        }
    )
    result = db.sink("wide").write(table)
    assert result.success, result.errors
    ((day, big),) = db.query('SELECT "day", "big" FROM "wide"')
    assert str(day) == "2024-05-01"
    assert Decimal(str(big)) == wide
