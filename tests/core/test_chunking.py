"""iter_chunks / Rechunker / as_batches: exact batch sizes, zero-copy slices, any input."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink import as_batches, iter_chunks
from floe_sink.chunking import Rechunker
from strategies import arrow_tables, rechunked_tables

SIZES = st.integers(min_value=1, max_value=25)


def _rows(batches: list[pa.RecordBatch], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_batches(batches, schema=schema)


@given(pair=rechunked_tables(), batch_size=SIZES)
def test_concatenation_equals_the_input(
    pair: tuple[pa.Table, list[pa.RecordBatch]], batch_size: int
) -> None:
    table, batches = pair
    chunks = list(iter_chunks(batches, batch_size))
    assert _rows(chunks, table.schema).equals(table)


@given(pair=rechunked_tables(), batch_size=SIZES)
def test_every_chunk_is_full_but_the_last(
    pair: tuple[pa.Table, list[pa.RecordBatch]], batch_size: int
) -> None:
    table, batches = pair
    sizes = [chunk.num_rows for chunk in iter_chunks(batches, batch_size)]
    assert all(0 < size <= batch_size for size in sizes)
    assert all(size == batch_size for size in sizes[:-1])
    assert len(sizes) == math.ceil(table.num_rows / batch_size)


@given(table=arrow_tables(max_rows=0))
def test_empty_input_yields_nothing(table: pa.Table) -> None:
    assert list(iter_chunks(table, 10)) == []
    assert list(iter_chunks(table, None)) == []
    assert list(iter_chunks([], 3)) == []


@given(pair=rechunked_tables())
def test_batch_size_none_is_one_batch(pair: tuple[pa.Table, list[pa.RecordBatch]]) -> None:
    table, batches = pair
    chunks = list(iter_chunks(iter(batches), None))  # a one-shot stream
    if table.num_rows:
        (chunk,) = chunks
        assert pa.Table.from_batches([chunk]).equals(table)
    else:
        assert chunks == []


def test_batch_size_none_on_a_single_batch_is_that_batch() -> None:
    batch = pa.record_batch({"x": [1, 2, 3]})
    (chunk,) = iter_chunks(batch, None)
    assert chunk is batch


def test_chunks_inside_one_batch_are_zero_copy_slices() -> None:
    table = pa.table({"x": list(range(100))})
    source = table.to_batches()[0]
    chunks = list(iter_chunks(table, 30))
    assert [c.num_rows for c in chunks] == [30, 30, 30, 10]
    base = source.column(0).buffers()[1].address
    for index, chunk in enumerate(chunks):
        buffer = chunk.column(0).buffers()[1]
        assert buffer.address == base  # the same memory, offset by the slice
        assert chunk.column(0).offset == index * 30


def test_a_reader_and_a_generator_are_streams() -> None:
    table = pa.table({"x": list(range(10))})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3))
    assert [c.num_rows for c in iter_chunks(reader, 4)] == [4, 4, 2]

    def stream():  # type: ignore[no-untyped-def]
        yield from table.to_batches(max_chunksize=7)

    assert [c.num_rows for c in iter_chunks(stream(), 5)] == [5, 5]


def test_tables_inside_an_iterable_are_accepted() -> None:
    parts = [pa.table({"x": [1, 2]}), pa.table({"x": [3]})]
    assert [c.num_rows for c in iter_chunks(parts, 2)] == [2, 1]


@pytest.mark.parametrize("bad", [0, -1])
def test_batch_size_below_one_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(iter_chunks(pa.table({"x": [1]}), bad))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Rechunker(bad)


@pytest.mark.parametrize("bad", ["text", 42, [1, 2], None])
def test_wrong_input_types_are_named(bad: object) -> None:
    with pytest.raises(TypeError, match="expected"):
        list(as_batches(bad))


def test_rechunker_peek_does_not_consume() -> None:
    rechunker = Rechunker(4)
    assert rechunker.peek() is None
    assert list(rechunker.push(pa.record_batch({"x": [1, 2, 3]}))) == []
    peeked = rechunker.peek()
    assert peeked is not None
    assert peeked.num_rows == 3
    assert [c.num_rows for c in rechunker.push(pa.record_batch({"x": [4, 5]}))] == [4]
    assert [c.num_rows for c in rechunker.flush()] == [1]
    assert list(rechunker.flush()) == []
