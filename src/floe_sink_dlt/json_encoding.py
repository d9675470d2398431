"""Arrow record batches to JSON request bodies, vectorised with ``pyarrow.compute``.

Each column is turned into the JSON text of its values in one compute pass (no Python loop over
rows); the texts are then joined element-wise into one JSON object per row, and the rows into
one array. How values are written:

===========================  =================================================================
Arrow type                   JSON
===========================  =================================================================
null (any type)              ``null``
integers                     numbers
floats                       numbers (shortest round-trip form); NaN and +/-inf as ``null``
booleans                     ``true`` / ``false``
strings                      strings (UTF-8, with ``"``, ``\\`` and control characters escaped)
timestamps with a time zone  strings, ISO-8601 in UTC with a ``Z`` suffix
                             (``2024-05-01T12:00:00.000000Z``; the fraction has the column's
                             precision)
timestamps without one       strings, ISO-8601 without an offset (wall time as stored)
dates                        strings, ``YYYY-MM-DD``
times                        strings, ``HH:MM:SS[.fraction]``
decimals                     **strings**, exact (``"12.30"``): a JSON number would be read as a
                             binary float by most clients and lose digits
binary                       strings, base64
dictionary-encoded           as the decoded values
lists, structs, maps,        per value through :func:`json.dumps` (maps become objects), with
durations, others            the rules above for nested scalars; durations as seconds
===========================  =================================================================

Binary and nested columns fall back to a Python pass over that column of the batch only; the
types of a Gold table (numbers, strings, timestamps, booleans, decimals) never do.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.preview import json_value, timestamp_text

__all__ = [
    "encode_batch",
    "encode_column",
    "encode_rows",
    "encode_text",
    "encode_values",
    "join_rows",
]

_NULL = "null"
_CONTROL_CHARACTERS = "[\\x00-\\x1f]"
# JSON's short escapes; every other control character becomes \u00XX.
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def encode_batch(batch: pa.RecordBatch, *, records_key: str | None = None) -> bytes:
    """Encode ``batch`` as a JSON array of objects (one per row), UTF-8.

    Args:
        batch: The rows to encode; column names become the object keys.
        records_key: Wrap the array in an object under this key (``{"records": [...]}``).

    Returns:
        The request body.
    """
    rows = encode_rows(batch)
    if records_key is None:
        return join_rows(rows)
    return join_rows(rows, prefix=b"{" + _json_string(records_key).encode() + b":[", suffix=b"]}")


def join_rows(rows: pa.Array, *, prefix: bytes = b"[", suffix: bytes = b"]") -> bytes:
    """Join JSON texts into one body: ``prefix``, the texts separated by commas, ``suffix``.

    Args:
        rows: One JSON text per record (a string array without nulls), e.g. from
            :func:`encode_rows`.
        prefix: Bytes before the first record (``[`` for a bare array).
        suffix: Bytes after the last record (``]`` for a bare array).

    Returns:
        The request body.
    """
    one_list = pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows)
    body: bytes = pc.binary_join(one_list, ",")[0].as_buffer().to_pybytes()
    return prefix + body + suffix


def encode_rows(batch: pa.RecordBatch) -> pa.Array:
    """The JSON object text of every row of ``batch``, as a string array (no nulls)."""
    if batch.num_columns == 0:
        return pa.repeat(pa.scalar("{}"), batch.num_rows)
    pieces: list[Any] = []
    for index, (name, column) in enumerate(zip(batch.schema.names, batch.columns, strict=True)):
        opener = "{" if index == 0 else ","
        pieces.append(pa.scalar(opener + _json_string(name) + ":"))
        pieces.append(encode_column(column))
    pieces.append(pa.scalar("}"))
    return pc.binary_join_element_wise(*pieces, "")


def encode_column(column: pa.Array) -> pa.Array:
    """The JSON text of every value of ``column`` (``null`` for nulls), as a string array."""
    return pc.fill_null(encode_values(column), _NULL)


def encode_values(column: pa.Array) -> pa.Array:
    """The JSON text of every value of ``column``, with a null where the JSON value is ``null``.

    The same texts as :func:`encode_column`, except that the values JSON writes as ``null``
    (nulls, NaN and infinities) stay nulls of the result: a caller can then omit them, or fill
    them with ``null`` itself.

    Args:
        column: The values (an array or a chunked array, of any type).

    Returns:
        A string array as long as ``column``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    type_ = column.type
    if pa.types.is_dictionary(type_):
        # encode the (few) distinct values once, then pick them per row
        return pc.take(encode_values(column.dictionary), column.indices)
    if pa.types.is_null(type_):
        return pa.nulls(len(column), pa.string())
    text: pa.Array
    if pa.types.is_boolean(type_):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_integer(type_):
        text = pc.cast(column, pa.string())
    elif pa.types.is_floating(type_):
        if pa.types.is_float16(type_):
            column = pc.cast(column, pa.float32())
        finite = pc.is_finite(column)
        text = pc.if_else(finite, pc.cast(column, pa.string()), pa.scalar(None, pa.string()))
    elif _is_text(type_):
        text = _quote(_escape(pc.cast(column, pa.string())))
    elif pa.types.is_timestamp(type_):
        text = _quote(timestamp_text(column))
    elif pa.types.is_date(type_):
        text = _quote(pc.strftime(pc.cast(column, pa.date32()), format="%Y-%m-%d"))
    elif pa.types.is_time(type_) or pa.types.is_decimal(type_):
        text = _quote(pc.cast(column, pa.string()))
    else:
        text = _encode_in_python(column)
    return text


def encode_text(strings: pa.Array) -> pa.Array:
    """JSON string literals of ``strings`` (quoted and escaped); nulls stay nulls.

    Args:
        strings: A string-like array (``string``, ``large_string``, ``string_view``).

    Returns:
        A string array as long as ``strings``.
    """
    return _quote(_escape(pc.cast(strings, pa.string())))


def _is_text(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    )


def _escape(strings: pa.Array) -> pa.Array:
    escaped = pc.replace_substring(strings, "\\", "\\\\")
    escaped = pc.replace_substring(escaped, '"', '\\"')
    if not pc.any(pc.match_substring_regex(escaped, _CONTROL_CHARACTERS)).as_py():
        return escaped  # the common case: one scan, no more passes
    for code in range(0x20):
        char = chr(code)
        escaped = pc.replace_substring(escaped, char, _SHORT_ESCAPES.get(char, f"\\u{code:04x}"))
    return escaped


def _quote(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _json_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _encode_in_python(column: pa.Array) -> pa.Array:
    """Fallback for binary, nested and rare types: one Python pass over this column only."""
    values = column.to_pylist(maps_as_pydicts="lossy")
    return pa.array(
        [None if value is None else _dumps(value) for value in values], type=pa.string()
    )


def _dumps(value: Any) -> str:
    return json.dumps(json_value(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
