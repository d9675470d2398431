"""The benchmark table: 1,000,000 rows, 8 columns, built deterministically with pyarrow."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["build_table"]


def _uniform(rows: int, seed: int) -> pa.DoubleArray:
    return pc.random(rows, initializer=seed)


def _ints(rows: int, seed: int, high: int, type_: pa.DataType) -> pa.Array:
    return pc.cast(pc.floor(pc.multiply(_uniform(rows, seed), high)), type_)


def build_table(rows: int = 1_000_000) -> pa.Table:
    """The 8-column benchmark table.

    int64 ``id`` (0..rows-1), two ~20-char strings, float64, a UTC timestamp, bool, int32 and
    a dictionary-encoded category of 10 values.
    """
    ids = pa.array(range(rows), pa.int64())
    digits = pc.utf8_lpad(pc.cast(_ints(rows, 1, 10**8, pa.int64()), pa.string()), 8, "0")
    name = pc.binary_join_element_wise("customer-", digits, "-xyz", "")
    email = pc.binary_join_element_wise(
        "user", pc.utf8_lpad(pc.cast(ids, pa.string()), 7, "0"), "@example.com", ""
    )
    start = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in microseconds
    offsets = _ints(rows, 2, 365 * 86_400 * 10**6, pa.int64())
    stamps = pc.add(offsets, start).cast(pa.timestamp("us", tz="UTC"))
    categories = pa.array([f"category-{index}" for index in range(10)])
    return pa.table(
        {
            "id": ids,
            "name": name,
            "email": email,
            "amount": pc.multiply(_uniform(rows, 3), 1000.0),
            "updated_at": stamps,
            "active": pc.less(_uniform(rows, 4), 0.5),
            "quantity": _ints(rows, 5, 1000, pa.int32()),
            "category": pa.DictionaryArray.from_arrays(_ints(rows, 6, 10, pa.int8()), categories),
        }
    )
