"""What ``floe-sink run --dry-run`` shows of the rows: the values as the sink will send them.

A sink decides its wire format, so the dry run asks the sink object: when it has a
``preview(batch) -> list[dict]`` method, its rows are shown (the ``rest_api`` sink returns the
JSON of its request body). Otherwise the rows are shown as JSON-ready Arrow values:

===========================  =================================================================
Arrow type                   shown as
===========================  =================================================================
timestamps with a time zone  ISO-8601 in UTC with a ``Z`` (``2024-05-01T12:00:00.123456Z``;
                             the fraction has the column's precision)
timestamps without one       ISO-8601 without an offset (wall time as stored)
dates, times                 ISO-8601 (``2024-05-01``, ``12:00:00``)
decimals                     strings, exact (``"12.30"``)
binary                       base64 strings
floats                       numbers; NaN and +/-inf as ``null``
durations                    seconds
lists, structs, maps         lists and objects of the above
===========================  =================================================================
"""

from __future__ import annotations

import base64
import datetime
import decimal
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.errors import SinkError

__all__ = ["json_ready_rows", "json_value", "preview_rows", "timestamp_text"]

_TIME_OF_DAY = {
    "s": pa.time32("s"),
    "ms": pa.time32("ms"),
    "us": pa.time64("us"),
    "ns": pa.time64("ns"),
}


def preview_rows(sink: Any, batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of ``batch`` as ``sink`` will send them.

    Args:
        sink: The sink object ``create_sink`` returned (not connected), or ``None``.
        batch: Mapped rows (destination field names), a few of them.

    Returns:
        One JSON-ready mapping per row: the sink's ``preview(batch)`` when it has one, else
        :func:`json_ready_rows`.

    Raises:
        SinkError: The sink's ``preview`` returned something else than one mapping per row.
    """
    preview = getattr(sink, "preview", None)
    if not callable(preview):
        return json_ready_rows(batch)
    rows = preview(batch)
    if (
        not isinstance(rows, list)
        or len(rows) != batch.num_rows
        or not all(isinstance(row, dict) for row in rows)
    ):
        raise SinkError(
            f"{type(sink).__name__}.preview() must return a list of {batch.num_rows} dict(s), "
            "one per row"
        )
    return rows


def json_ready_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of ``batch`` as JSON-ready Python values (see the module docstring)."""
    columns = [_column_values(column) for column in batch.columns]
    names = batch.schema.names
    return [
        {name: values[index] for name, values in zip(names, columns, strict=True)}
        for index in range(batch.num_rows)
    ]


def _column_values(column: pa.Array) -> list[Any]:
    if pa.types.is_timestamp(column.type):
        # vectorised, and exact for nanoseconds (Python's datetime stops at microseconds)
        text: list[Any] = timestamp_text(column).to_pylist()
        return text
    return [json_value(value) for value in column.to_pylist(maps_as_pydicts="lossy")]


def timestamp_text(column: pa.Array) -> pa.Array:
    """ISO-8601 text of a timestamp column, ``Z`` for a zoned one, vectorised.

    Shared with the ``rest_api`` sink's encoder. Date and time-of-day casts are several times
    faster than strftime.
    """
    # A zoned timestamp stores UTC: viewed without its zone (zero-copy) it reads as UTC.
    type_ = column.type
    wall = column.view(pa.timestamp(type_.unit)) if type_.tz is not None else column
    date = pc.cast(pc.cast(wall, pa.date32()), pa.string())
    time_of_day = pc.cast(pc.cast(wall, _TIME_OF_DAY[type_.unit]), pa.string())
    suffix = "Z" if type_.tz is not None else ""
    return pc.binary_join_element_wise(date, "T", time_of_day, suffix, "")


def json_value(value: Any) -> Any:
    """A Python value of Arrow's ``to_pylist()`` as JSON can hold it (the table above).

    Shared with the ``rest_api`` sink's encoder, which writes nested values the same way.
    """
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value
