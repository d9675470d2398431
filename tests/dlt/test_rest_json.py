"""The rest_api JSON encoding (floe_sink_dlt.json_encoding) against a reference encoder."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import struct
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink_dlt.json_encoding import encode_batch, encode_column
from strategies import delivery_tables


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _same(type_: pa.DataType, encoded: Any, value: Any) -> bool:
    """True when ``encoded`` (from our JSON) means Python ``value`` (from to_pylist)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if value is None:
        return encoded is None
    if pa.types.is_floating(type_):
        if not math.isfinite(value):
            return encoded is None
        if pa.types.is_float32(type_):
            return _float32(float(encoded)) == _float32(value)
        return isinstance(encoded, int | float) and float(encoded) == value
    if pa.types.is_integer(type_):
        return isinstance(encoded, int) and not isinstance(encoded, bool) and encoded == value
    if pa.types.is_boolean(type_):
        return encoded is value
    if pa.types.is_timestamp(type_):
        parsed = datetime.datetime.fromisoformat(encoded)
        if type_.tz is not None:
            return bool(encoded.endswith("Z") and parsed == value)
        return bool(parsed.tzinfo is None and parsed == value)
    if pa.types.is_date(type_):
        return bool(datetime.date.fromisoformat(encoded) == value)
    if pa.types.is_decimal(type_):
        return isinstance(encoded, str) and bool(decimal.Decimal(encoded) == value)
    if pa.types.is_binary(type_):
        return bool(base64.b64decode(encoded) == value)
    return bool(encoded == value)


def _assert_matches_reference(batch: pa.RecordBatch, body: bytes) -> None:
    decoded = json.loads(body)  # raises on anything that is not strict JSON
    expected = batch.to_pylist()
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected, strict=True):
        assert list(got) == batch.schema.names
        for field in batch.schema:
            assert _same(field.type, got[field.name], want[field.name]), (
                field,
                got[field.name],
                want[field.name],
            )


@pytest.mark.requirement("4G-FR-008")
@given(delivery_tables(max_rows=25, max_columns=6))
def test_encoding_matches_a_reference_encoding_of_to_pylist(table: pa.Table) -> None:
    batch = table.combine_chunks().to_batches()
    for part in batch or [pa.RecordBatch.from_pylist([], schema=table.schema)]:
        body = encode_batch(part)
        assert body.decode("utf-8")  # valid UTF-8
        _assert_matches_reference(part, body)
        if part.num_rows > 1:  # a zero-copy slice, as the chunker hands them out
            _assert_matches_reference(part.slice(1), encode_batch(part.slice(1)))


@given(delivery_tables(max_rows=5, max_columns=2), st.text(min_size=1, max_size=8))
def test_records_key_wraps_the_array(table: pa.Table, key: str) -> None:
    batch = table.combine_chunks().to_batches()
    part = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema)
    wrapped = json.loads(encode_batch(part, records_key=key))
    assert list(wrapped) == [key]
    assert wrapped[key] == json.loads(encode_batch(part))


def test_values_are_written_as_documented() -> None:
    batch = pa.record_batch(
        {
            "id": pa.array([1, None], pa.int64()),
            "score": pa.array([0.1, float("nan")]),
            "text": pa.array(['say "hi"\\\n\x01', None]),
            "at": pa.array(
                [datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC), None],
                pa.timestamp("us", tz="Europe/Paris"),
            ),
            "local": pa.array([datetime.datetime(2024, 5, 1, 12, 30, 5), None], pa.timestamp("s")),
            "day": pa.array([datetime.date(2024, 5, 1), None]),
            "amount": pa.array(
                [decimal.Decimal("12345678901234567.10"), None], pa.decimal128(38, 2)
            ),
            "ok": pa.array([True, None]),
            "raw": pa.array([b"\x00\xff", None]),
            "tier": pa.array(["gold", None]).dictionary_encode(),
        }
    )
    body = encode_batch(batch).decode()
    first, second = json.loads(body)
    assert first == {
        "id": 1,
        "score": 0.1,
        "text": 'say "hi"\\\n\x01',
        "at": "2024-05-01T12:00:00.000000Z",
        "local": "2024-05-01T12:30:05",
        "day": "2024-05-01",
        "amount": "12345678901234567.10",  # exact: a string, never a rounded float
        "ok": True,
        "raw": "AP8=",
        "tier": "gold",
    }
    assert set(second.values()) == {None}
    assert '"text":"say \\"hi\\"\\\\\\n\\u0001"' in body


def test_non_finite_floats_become_null() -> None:
    column = pa.array([float("inf"), float("-inf"), float("nan"), -0.0, 1e300])
    assert encode_column(column).to_pylist() == ["null", "null", "null", "-0", "1e+300"]


def test_empty_batch_is_an_empty_array() -> None:
    batch = pa.RecordBatch.from_pylist([], schema=pa.schema([("a", pa.int64())]))
    assert encode_batch(batch) == b"[]"
    assert encode_batch(batch, records_key="records") == b'{"records":[]}'
