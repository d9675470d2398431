"""Hypothesis strategies shared by the test suite, one headed section per subject."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Arrow: tables, and the same table cut into record batches in arbitrary ways.
# Self-contained: imports and helpers of this section stay in this section.
# ---------------------------------------------------------------------------------------------
import itertools

import pyarrow as pa
from hypothesis import strategies as st

#: Column types the Arrow strategies draw from: every family a Gold table typically holds.
ARROW_TYPES: tuple[pa.DataType, ...] = (
    pa.int64(),
    pa.int32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.timestamp("us", tz="UTC"),
    pa.date32(),
    pa.decimal128(12, 2),
    pa.list_(pa.int64()),
)

_COLUMN_NAMES = st.text(
    alphabet=st.characters(categories=("Ll", "Lu", "Nd"), include_characters="_"),
    min_size=1,
    max_size=12,
)


def arrow_values(type_: pa.DataType) -> st.SearchStrategy[object]:
    """Python values (``None`` included) that Arrow stores in a column of ``type_``."""
    import datetime
    import decimal

    if pa.types.is_boolean(type_):
        base: st.SearchStrategy[object] = st.booleans()
    elif pa.types.is_integer(type_):
        info = type_.bit_width - 1
        base = st.integers(min_value=-(2**info), max_value=2**info - 1)
    elif pa.types.is_floating(type_):
        base = st.floats(allow_nan=False, width=64)
    elif pa.types.is_string(type_) or pa.types.is_large_string(type_):
        base = st.text(max_size=20)
    elif pa.types.is_binary(type_):
        base = st.binary(max_size=20)
    elif pa.types.is_timestamp(type_):
        base = st.datetimes(
            min_value=datetime.datetime(1970, 1, 1),
            max_value=datetime.datetime(2200, 1, 1),
            timezones=st.just(datetime.UTC),
        )
    elif pa.types.is_date(type_):
        base = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2200, 1, 1))
    elif pa.types.is_decimal(type_):
        base = st.decimals(
            min_value=decimal.Decimal("-1e9"),
            max_value=decimal.Decimal("1e9"),
            places=2,
            allow_nan=False,
            allow_infinity=False,
        )
    elif pa.types.is_list(type_):
        base = st.lists(st.none() | arrow_values(type_.value_type), max_size=4)
    else:  # pragma: no cover - extend ARROW_TYPES and this together
        raise NotImplementedError(str(type_))
    return st.none() | base


@st.composite
def arrow_schemas(draw: st.DrawFn, *, max_columns: int = 4) -> pa.Schema:
    """Schemas of 1..``max_columns`` uniquely named columns of :data:`ARROW_TYPES`."""
    names = draw(st.lists(_COLUMN_NAMES, min_size=1, max_size=max_columns, unique=True))
    types = [draw(st.sampled_from(ARROW_TYPES)) for _ in names]
    return pa.schema([pa.field(name, type_) for name, type_ in zip(names, types, strict=True)])


@st.composite
def arrow_tables(
    draw: st.DrawFn,
    *,
    schema: pa.Schema | None = None,
    min_rows: int = 0,
    max_rows: int = 60,
) -> pa.Table:
    """Tables of ``min_rows``..``max_rows`` rows (nulls included) of a drawn schema."""
    schema = schema if schema is not None else draw(arrow_schemas())
    rows = draw(st.integers(min_value=min_rows, max_value=max_rows))
    columns = [
        pa.array(draw(st.lists(arrow_values(f.type), min_size=rows, max_size=rows)), f.type)
        for f in schema
    ]
    table = pa.Table.from_arrays(columns, schema=schema)
    if draw(st.booleans()) and any(pa.types.is_string(f.type) for f in schema):
        # Some string columns dictionary-encoded, as Parquet readers often return them.
        table = _dictionary_encode_strings(table)
    return table


def _dictionary_encode_strings(table: pa.Table) -> pa.Table:
    columns = [
        column.dictionary_encode() if pa.types.is_string(column.type) else column
        for column in table.columns
    ]
    return pa.Table.from_arrays(columns, names=table.column_names)


@st.composite
def cut_points(draw: st.DrawFn, num_rows: int) -> list[int]:
    """Sorted row positions strictly inside ``0..num_rows`` where to cut a table."""
    if num_rows < 2:
        return []
    points = draw(st.lists(st.integers(min_value=1, max_value=num_rows - 1), max_size=8))
    return sorted(set(points))


def cut(table: pa.Table, points: list[int], *, empty_batches: bool = False) -> list[pa.RecordBatch]:
    """``table`` as record batches cut at ``points`` (zero-copy slices of its batches).

    Args:
        table: The table to cut.
        points: Row positions (from :func:`cut_points`).
        empty_batches: Put a zero-row batch between the pieces too (streams do that).
    """
    combined = table.combine_chunks()
    bounds = [0, *points, table.num_rows]
    batches: list[pa.RecordBatch] = []
    for start, end in itertools.pairwise(bounds):
        piece = combined.slice(start, end - start).to_batches()
        batch = piece[0] if piece else pa.RecordBatch.from_pylist([], schema=table.schema)
        batches.append(batch)
        if empty_batches:
            batches.append(batch.slice(0, 0))
    return batches


@st.composite
def rechunked_tables(draw: st.DrawFn, **table_kwargs: int) -> tuple[pa.Table, list[pa.RecordBatch]]:
    """A table and the same rows cut into record batches at drawn positions."""
    table = draw(arrow_tables(**table_kwargs))
    points = draw(cut_points(table.num_rows))
    return table, cut(table, points, empty_batches=draw(st.booleans()))
