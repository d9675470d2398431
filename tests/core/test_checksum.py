"""The SHA-256 content checksum: independent of chunking, sensitive to any change."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from floe_sink import Checksum, checksum_of
from strategies import arrow_tables, cut, cut_points, rechunked_tables


@given(pair=rechunked_tables())
def test_invariant_under_rechunking(pair: tuple[pa.Table, list[pa.RecordBatch]]) -> None:
    table, batches = pair
    assert checksum_of(batches) == checksum_of(table)


@given(table=arrow_tables(min_rows=1), data=st.data())
def test_incremental_updates_equal_one_shot(table: pa.Table, data: st.DataObject) -> None:
    checksum = Checksum()
    for batch in cut(table, data.draw(cut_points(table.num_rows))):
        checksum.update(batch)
    assert checksum.hexdigest() == checksum_of(table)
    assert checksum.rows == table.num_rows


@given(table=arrow_tables(min_rows=1), data=st.data())
def test_a_slice_hashes_like_the_same_rows_built_afresh(
    table: pa.Table, data: st.DataObject
) -> None:
    # A zero-offset slice keeps its parent's longer buffers: the digest must not see them.
    length = data.draw(st.integers(min_value=0, max_value=table.num_rows))
    start = data.draw(st.integers(min_value=0, max_value=table.num_rows - length))
    sliced = table.slice(start, length)
    afresh = pa.Table.from_pylist(sliced.to_pylist(), schema=table.schema)
    assert checksum_of(sliced) == checksum_of(afresh)


@given(table=arrow_tables(min_rows=1), data=st.data())
def test_any_changed_value_changes_it(table: pa.Table, data: st.DataObject) -> None:
    row = data.draw(st.integers(min_value=0, max_value=table.num_rows - 1))
    column = data.draw(st.integers(min_value=0, max_value=table.num_columns - 1))
    values = table.column(column).to_pylist()
    replacement = data.draw(
        st.sampled_from([None, 0, 1, "changed", b"changed", True, False, 1.5, [7]])
    )
    try:
        new_column = pa.array(
            [*values[:row], replacement, *values[row + 1 :]], table.column(column).type
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        assume(False)
        return
    assume(new_column.to_pylist()[row] != values[row])
    changed = table.set_column(column, table.field(column), new_column)
    assert checksum_of(changed) != checksum_of(table)


@given(table=arrow_tables())
def test_a_renamed_column_changes_it(table: pa.Table) -> None:
    names = table.column_names
    renamed = table.rename_columns([names[0] + "_x", *names[1:]])
    assert checksum_of(renamed) != checksum_of(table)


@given(table=arrow_tables())
def test_a_changed_type_changes_it(table: pa.Table) -> None:
    field = table.field(0)
    other = pa.large_binary() if field.type != pa.large_binary() else pa.binary()
    retyped = pa.Table.from_arrays(
        [pa.nulls(table.num_rows, other), *table.columns[1:]],
        schema=table.schema.set(0, pa.field(field.name, other)),
    )
    assume(retyped.schema != table.schema)
    assert checksum_of(retyped) != checksum_of(
        table.set_column(0, field, pa.nulls(table.num_rows, field.type))
    )


def test_nulls_differ_from_zeros_and_empty_strings() -> None:
    assert checksum_of(pa.table({"x": [0, 1]})) != checksum_of(pa.table({"x": [None, 1]}))
    assert checksum_of(pa.table({"s": ["", "a"]})) != checksum_of(pa.table({"s": [None, "a"]}))
    assert checksum_of(pa.table({"b": [False]})) != checksum_of(pa.table({"b": [None]}))


def test_bytes_under_null_slots_do_not_matter() -> None:
    # Two int columns with the same validity but different bytes under the null slot.
    validity = pa.py_buffer(bytes([0b101]))
    first = pa.Array.from_buffers(
        pa.int64(), 3, [validity, pa.py_buffer(pa.array([1, 111, 3]).buffers()[1])]
    )
    second = pa.Array.from_buffers(
        pa.int64(), 3, [validity, pa.py_buffer(pa.array([1, 222, 3]).buffers()[1])]
    )
    assert first.to_pylist() == second.to_pylist() == [1, None, 3]
    assert checksum_of(pa.table({"x": first})) == checksum_of(pa.table({"x": second}))


def test_dictionary_columns_hash_by_value_not_by_index() -> None:
    values = pa.array(["b", "a", None, "b"])
    one = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, None, 0], pa.int32()), pa.array(["b", "a"])
    )
    two = pa.DictionaryArray.from_arrays(
        pa.array([1, 0, None, 1], pa.int32()), pa.array(["a", "b"])
    )
    assert one.to_pylist() == two.to_pylist() == values.to_pylist()
    assert checksum_of(pa.table({"d": one})) == checksum_of(pa.table({"d": two}))
    # A dictionary column is a different type from a plain one: another digest.
    assert checksum_of(pa.table({"d": one})) != checksum_of(pa.table({"d": values}))


def test_empty_tables_hash_their_schema() -> None:
    empty_int = pa.table({"x": pa.array([], pa.int64())})
    empty_str = pa.table({"x": pa.array([], pa.string())})
    no_chunks = pa.Table.from_batches([], schema=empty_int.schema)
    assert checksum_of(empty_int) == checksum_of(no_chunks)
    assert checksum_of(empty_int) != checksum_of(empty_str)
    assert checksum_of(empty_int) != checksum_of(pa.table({"y": pa.array([], pa.int64())}))
    assert checksum_of(empty_int) != checksum_of(pa.table({"x": [1]}))
    # With no batch at all there is no schema either: the digest of nothing.
    assert checksum_of([]) == Checksum().hexdigest()
    assert checksum_of([]) != checksum_of(empty_int)


def test_a_sha256_hex_digest() -> None:
    digest = checksum_of(pa.table({"x": [1]}))
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert digest != hashlib.sha256().hexdigest()


def test_hexdigest_can_be_followed_by_more_updates() -> None:
    checksum = Checksum(pa.table({"x": [1, 2]}))
    first = checksum.hexdigest()
    checksum.update(pa.table({"x": [3]}))
    assert checksum.hexdigest() != first
    assert checksum.hexdigest() == checksum_of(pa.table({"x": [1, 2, 3]}))


def test_a_schema_change_between_batches_is_refused() -> None:
    checksum = Checksum(pa.table({"x": [1]}))
    with pytest.raises(ValueError, match="schema changed"):
        checksum.update(pa.table({"x": ["a"]}))


def test_spans_several_canonical_blocks() -> None:
    from floe_sink.checksum import BLOCK_ROWS

    table = pa.table(
        {"x": list(range(BLOCK_ROWS * 2 + 5)), "b": [i % 3 == 0 for i in range(BLOCK_ROWS * 2 + 5)]}
    )
    assert checksum_of(table.to_batches(max_chunksize=10_007)) == checksum_of(table)
