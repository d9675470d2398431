"""The data the conformance kit sends, and how it compares what comes back.

Every sample has the edge values of its type (extremes, the empty string, a leap day,
instants before 1970, the full precision of a timestamp's unit) and one null. pyarrow is
imported inside the functions: importing the kit never loads it.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

__all__ = ["coerce_table", "describe_difference", "sample_array", "standard_table"]

ID = "id"
"""The column that numbers the kit's rows (int64): what read-backs are sorted by."""

_INSTANTS = (
    # (seconds since the epoch, nanoseconds): before 1970, the epoch, a leap day with every
    # sub-second digit set, after 2038 (beyond 32-bit seconds)
    (-14182940, 0),
    (0, 0),
    (1709251199, 123456789),
    (2147483648, 500000000),
)
_TIMES_NS = (0, 45296_789012345, 86399_999999999, 21600_000000000)
_DATES = (dt.date(1900, 1, 1), dt.date(1970, 1, 1), dt.date(2024, 2, 29), dt.date(2099, 12, 31))
_STRINGS = ("", "plain", "ünïcödé ✓ 🙂", 'quote " back\\slash\nnew line\ttab')
_BYTES = (b"", b"\x00\x01\xfe\xff", b"plain", bytes(range(32)))
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _values(type_: Any) -> list[Any] | Any:
    """Four non-null values of ``type_`` (Python objects, or an Arrow array for temporals)."""
    import pyarrow as pa

    types = pa.types
    if types.is_boolean(type_):
        return [True, False, False, True]
    if types.is_integer(type_):
        bits = type_.bit_width
        if types.is_unsigned_integer(type_):
            return [0, 1, 2 ** (bits - 1), 2**bits - 1]
        return [0, -1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1]
    if types.is_float32(type_):
        return [0.0, 0.1, -2.25, 3.0e38]
    if types.is_float64(type_):
        return [0.0, 0.1, -2.25, 1.7976931348623157e308]
    if types.is_string(type_) or types.is_large_string(type_):
        return list(_STRINGS)
    if types.is_binary(type_) or types.is_large_binary(type_):
        return list(_BYTES)
    if types.is_fixed_size_binary(type_):
        return [bytes([index]) * type_.byte_width for index in (0, 1, 127, 255)]
    if types.is_date(type_):
        return list(_DATES)
    if types.is_decimal(type_):
        return _decimals(type_.precision, type_.scale)
    if types.is_timestamp(type_):
        step = _UNIT_NS[type_.unit]
        ticks = [(seconds * 1_000_000_000 + nanos) // step for seconds, nanos in _INSTANTS]
        return pa.array(ticks, pa.int64()).cast(type_)
    if types.is_time(type_):
        step = _UNIT_NS[type_.unit]
        ticks = [value // step for value in _TIMES_NS]
        storage = pa.int32() if types.is_time32(type_) else pa.int64()
        return pa.array(ticks, storage).cast(type_)
    if types.is_duration(type_):
        return pa.array([0, 1, -1, 2**40], pa.int64()).cast(type_)
    if types.is_list(type_) or types.is_large_list(type_):
        inner = _as_list(_values(type_.value_type))
        return [inner[:2], [], [inner[2], None], inner[3:]]
    if types.is_struct(type_):
        columns = {field.name: _as_list(_values(field.type)) for field in type_}
        return [{name: values[row] for name, values in columns.items()} for row in range(4)]
    raise TypeError(
        f"floe_sink.testing has no sample values for {type_}; declare a pyarrow.Array "
        "of sample values instead of the type in Capabilities(arrow_types=...)"
    )


def _as_list(values: Any) -> list[Any]:
    return values if isinstance(values, list) else values.to_pylist()


def _decimals(precision: int, scale: int) -> list[decimal.Decimal]:
    quantum = decimal.Decimal(1).scaleb(-scale)
    context = decimal.Context(prec=precision + 2)
    largest = context.subtract(context.power(10, precision - scale), quantum)
    some = decimal.Decimal("12.3") if precision - scale >= 2 else decimal.Decimal("0.5")
    return [
        decimal.Decimal(0).quantize(quantum, context=context),
        quantum,
        context.minus(largest),  # unary minus would round to the default 28 digits
        some.quantize(quantum, context=context) if scale else largest,
    ]


def sample_array(sample: Any) -> Any:
    """Five sample values of ``sample`` (a ``pyarrow.DataType``), the last one null.

    An array passed as ``sample`` is returned as it is: a plugin author's own values for a
    type the kit has no samples of.

    Raises:
        TypeError: A type the kit has no sample values for (declare an array instead).
    """
    import pyarrow as pa

    if isinstance(sample, pa.Array | pa.ChunkedArray):
        return sample.combine_chunks() if isinstance(sample, pa.ChunkedArray) else sample
    type_ = sample
    if pa.types.is_dictionary(type_):
        plain = sample_array(type_.value_type)
        return plain.dictionary_encode().cast(type_)
    if pa.types.is_null(type_):
        return pa.nulls(5)
    values = _values(type_)
    if isinstance(values, list):
        return pa.array([*values, None], type_)
    return pa.concat_arrays([values, pa.nulls(1, type_)])


def type_table(sample: Any) -> Any:
    """The table of a type's round-trip: ``id`` and ``v``, the sample values."""
    import pyarrow as pa

    values = sample_array(sample)
    return pa.table({ID: pa.array(range(len(values)), pa.int64()), "v": values})


def standard_table(rows: int, *, chunks: list[int] | None = None, extra: bool = False) -> Any:
    """``rows`` rows of ``id`` (int64) and ``name`` (string), cut into ``chunks`` batches.

    Args:
        rows: How many rows.
        chunks: The sizes of the table's record batches (they must add up to ``rows``), so
            that a sink has to re-cut them into its own batches.
        extra: Add an ``internal`` column (for field mappings to drop).
    """
    import pyarrow as pa

    columns: dict[str, Any] = {
        ID: pa.array(range(rows), pa.int64()),
        "name": pa.array([f"row {index}" for index in range(rows)], pa.string()),
    }
    if extra:
        columns["internal"] = pa.array([index * 7 for index in range(rows)], pa.int64())
    table = pa.table(columns)
    if chunks is None:
        return table
    if sum(chunks) != rows:
        raise ValueError(f"chunks {chunks} do not add up to {rows} rows")
    batches, offset = [], 0
    for size in chunks:
        batches.extend(table.slice(offset, size).to_batches())
        offset += size
    return pa.Table.from_batches(batches, schema=table.schema)


def plain_type(type_: Any) -> Any:
    """``type_`` without dictionary encoding (a destination stores the values)."""
    import pyarrow as pa

    return type_.value_type if pa.types.is_dictionary(type_) else type_


def _plain_column(column: Any) -> Any:
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return column


def _time_from_text(column: Any, type_: Any) -> Any:
    """ISO ``HH:MM:SS[.fraction]`` text as a time column (Arrow has no such cast)."""
    import pyarrow as pa

    step = _UNIT_NS[type_.unit]
    ticks: list[int | None] = []
    for text in column.to_pylist():
        if text is None:
            ticks.append(None)
            continue
        whole, _, fraction = str(text).partition(".")
        hours, minutes, seconds = (int(part) for part in whole.split(":"))
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
        ticks.append(((hours * 3600 + minutes * 60 + seconds) * 1_000_000_000 + nanos) // step)
    storage = pa.int32() if pa.types.is_time32(type_) else pa.int64()
    return pa.array(ticks, storage).cast(type_)


def coerce_table(table: Any, schema: Any) -> Any:
    """``table``'s columns of ``schema``, cast to its types (what a read-back is compared as).

    A read-back may come in the types the destination gave (ISO text for timestamps,
    integers for booleans, decimals for unsigned 64-bit integers...): anything pyarrow can
    cast to the expected type, or ISO text for a time. Columns ``schema`` does not name are
    ignored (a destination may add its own).

    Raises:
        ValueError: A column is missing or cannot be converted, naming it.
    """
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise ValueError(f"read_back must return a pyarrow.Table, got {type(table).__name__}")
    plain = pa.schema([field.with_type(plain_type(field.type)) for field in schema])
    if table.num_rows == 0:
        return plain.empty_table()
    missing = [name for name in plain.names if name not in table.column_names]
    if missing:
        raise ValueError(
            f"the destination holds no column {', '.join(map(repr, missing))} "
            f"(it has {', '.join(map(repr, table.column_names))})"
        )
    columns = []
    for field in plain:
        column = _plain_column(table.column(field.name))
        if pa.types.is_null(field.type) and column.null_count == len(column):
            column = pa.nulls(len(column))  # stored in some column type, and all null
        elif not column.type.equals(field.type):
            try:
                if pa.types.is_time(field.type) and pa.types.is_string(column.type):
                    column = _time_from_text(column, field.type)
                else:
                    column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
                raise ValueError(
                    f"column {field.name!r} reads back as {column.type}, which does not "
                    f"convert to {field.type}"
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=plain)


def _python_values(*columns: Any) -> list[list[Any]]:
    """The columns' values as Python objects, or all as text when one cannot be (nanosecond
    timestamps do not fit a ``datetime``): compared values must be converted alike."""
    import pyarrow as pa

    try:
        return [list(column.to_pylist()) for column in columns]
    except (ValueError, pa.ArrowException):
        return [list(column.cast(pa.string()).to_pylist()) for column in columns]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def describe_difference(expected: Any, actual: Any) -> str | None:
    """Why ``actual`` does not hold exactly ``expected``'s rows, or ``None`` when it does.

    Both are tables with an ``id`` column; rows are matched by it, order does not matter.
    """
    import pyarrow.compute as pc

    expected = coerce_table(expected, expected.schema)
    if actual.num_rows != expected.num_rows:
        ids = pc.value_counts(actual.column(ID)) if actual.num_rows else None
        twice = (
            sorted(
                item["values"]
                for item in ids.to_pylist()
                if item["counts"] > 1 and item["values"] is not None
            )
            if ids is not None
            else []
        )
        more = f"; ids held more than once: {twice[:10]}" if twice else ""
        return f"the destination holds {actual.num_rows} rows, expected {expected.num_rows}{more}"
    if expected.num_rows == 0:
        return None
    order = [(ID, "ascending")]
    expected = expected.sort_by(order)
    actual = actual.sort_by(order)
    for name in expected.column_names:
        want = _plain_column(expected.column(name))
        got = _plain_column(actual.column(name))
        if want.equals(got):
            continue
        # the kit's tables are a handful of rows: compare them as Python values
        pairs = zip(*_python_values(want, got), strict=True)
        for index, (sent, held) in enumerate(pairs):
            if sent != held:
                row = expected.column(ID)[index].as_py()
                return (
                    f"column {name!r} ({want.type}), row id={row}: sent {_show(sent)}, "
                    f"the destination holds {_show(held)}"
                )
    return None
