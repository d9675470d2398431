"""Cut a batch's encoded records into requests within an API's size and count limits.

How the delivery loop calls it
------------------------------
After encoding a batch with a compiled template, plan its requests, reject the records that
cannot fit in any request, and send each planned range as one request::

    records = compiled.encode_records(batch)
    plan = plan_requests(
        records,
        envelope_bytes=compiled.envelope_bytes,
        max_body_bytes=limits.max_body_bytes,      # None: no size limit
        max_records=limits.max_records,            # None: no count limit
    )
    for position in plan.oversized:                # alone it is over max_body_bytes
        reject(position, "the record alone is over max_body_bytes")
    for start, stop in plan.ranges:
        body = compiled.body(records.slice(start, stop - start))

A body of records ``start..stop-1`` is ``envelope_bytes`` plus their UTF-8 lengths plus one
comma between two records (:func:`floe_sink_dlt.json_encoding.join_rows`), so the plan is exact:
every planned body is at most ``max_body_bytes``. The plan is greedy (each request takes as
many records as fit, in order) and costs one cumulative sum over the lengths plus one binary
search per request; no Python runs per record.
"""

from __future__ import annotations

import bisect

import attrs
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["RequestPlan", "plan_requests"]


@attrs.frozen(kw_only=True)
class RequestPlan:
    """Which records go in which request.

    Attributes:
        ranges: ``(start, stop)`` positions of the records of each request, in order; together
            they cover every record except the oversized ones.
        oversized: Positions of the records whose body alone (envelope included) is over
            ``max_body_bytes``: no request can carry them.
    """

    ranges: tuple[tuple[int, int], ...]
    oversized: tuple[int, ...] = ()

    @property
    def requests(self) -> int:
        """How many requests the plan sends."""
        return len(self.ranges)


def plan_requests(
    records: pa.Array,
    *,
    envelope_bytes: int,
    max_body_bytes: int | None = None,
    max_records: int | None = None,
) -> RequestPlan:
    """Plan the requests that carry ``records`` within the limits.

    Args:
        records: One JSON text per record (a string or binary array without nulls).
        envelope_bytes: The bytes of a body besides its records and commas
            (``CompiledTemplate.envelope_bytes``; 2 for a bare array).
        max_body_bytes: The most bytes one request body may have, or ``None``.
        max_records: The most records one request may carry, or ``None``.

    Returns:
        The plan.

    Raises:
        ValueError: A limit is not a positive integer, or ``envelope_bytes`` is negative.
    """
    if envelope_bytes < 0:
        raise ValueError(f"envelope_bytes must be >= 0 (got {envelope_bytes})")
    for name, limit in (("max_body_bytes", max_body_bytes), ("max_records", max_records)):
        if limit is not None and (isinstance(limit, bool) or limit < 1):
            raise ValueError(f"{name} must be a positive integer or None (got {limit!r})")
    count = len(records)
    if count == 0:
        return RequestPlan(ranges=())
    step = max_records if max_records is not None else count
    if max_body_bytes is None:
        return RequestPlan(
            ranges=tuple((start, min(start + step, count)) for start in range(0, count, step))
        )

    # ends[i]: the bytes of records 0..i, one comma after each. Records s..e-1 make a body of
    # envelope - 1 + ends[e-1] - ends[s-1] bytes (the last record has no comma after it).
    lengths = pc.add(pc.cast(pc.binary_length(records), pa.int64()), 1)
    ends_array = pc.cumulative_sum(lengths)
    ends = memoryview(ends_array.buffers()[1]).cast("q")[
        ends_array.offset : ends_array.offset + count
    ]
    budget = max_body_bytes - envelope_bytes + 1
    ranges: list[tuple[int, int]] = []
    oversized: list[int] = []
    start = 0
    while start < count:
        before = ends[start - 1] if start else 0
        stop = min(bisect.bisect_right(ends, before + budget, start, count), start + step)
        if stop == start:
            oversized.append(start)
            start += 1
            continue
        ranges.append((start, stop))
        start = stop
    return RequestPlan(ranges=tuple(ranges), oversized=tuple(oversized))
