"""Cutting encoded records into requests within a body size and a record count
(floe_sink_dlt.saas.splitting)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink_dlt.json_encoding import join_rows
from floe_sink_dlt.saas.splitting import RequestPlan, plan_requests

PREFIX, SUFFIX = b'{"inputs":[', b"]}"
ENVELOPE = len(PREFIX) + len(SUFFIX)


def texts(sizes: list[int]) -> pa.Array:
    """Records of the given byte lengths (with a 2-byte character, lengths stay bytes)."""
    return pa.array(["é" * (size // 2) + "x" * (size % 2) for size in sizes], pa.string())


@given(
    sizes=st.lists(st.integers(1, 60), max_size=40),
    max_body=st.integers(1, 200),
    max_records=st.none() | st.integers(1, 10),
    offset=st.integers(0, 3),
)
def test_every_body_fits_and_every_fitting_record_is_sent_once_in_order(
    sizes: list[int], max_body: int, max_records: int | None, offset: int
) -> None:
    records = texts([7] * offset + sizes).slice(offset)  # a slice: offsets must be honoured
    plan = plan_requests(
        records, envelope_bytes=ENVELOPE, max_body_bytes=max_body, max_records=max_records
    )
    sent = [position for start, stop in plan.ranges for position in range(start, stop)]
    assert sorted(sent + list(plan.oversized)) == list(range(len(sizes)))
    assert sent == sorted(sent)
    assert list(plan.oversized) == [n for n, size in enumerate(sizes) if ENVELOPE + size > max_body]
    for start, stop in plan.ranges:
        body = join_rows(records.slice(start, stop - start), prefix=PREFIX, suffix=SUFFIX)
        assert len(body) <= max_body
        assert max_records is None or stop - start <= max_records
        # greedy: the next record would not have fitted (or it is oversized, or the count)
        if stop < len(sizes) and stop not in plan.oversized:
            full = max_records is not None and stop - start == max_records
            assert full or len(body) + 1 + sizes[stop] > max_body


def test_without_a_size_limit_only_the_count_cuts() -> None:
    plan = plan_requests(texts([5] * 7), envelope_bytes=2, max_records=3)
    assert plan == RequestPlan(ranges=((0, 3), (3, 6), (6, 7)))
    assert plan.requests == 3
    assert plan_requests(texts([5] * 7), envelope_bytes=2).ranges == ((0, 7),)
    assert plan_requests(texts([]), envelope_bytes=2, max_body_bytes=10) == RequestPlan(ranges=())


def test_an_exact_fit_is_kept_together() -> None:
    # [aaaa,bbbb] is 2 + 4 + 1 + 4 = 11 bytes
    assert plan_requests(texts([4, 4]), envelope_bytes=2, max_body_bytes=11).ranges == ((0, 2),)
    assert plan_requests(texts([4, 4]), envelope_bytes=2, max_body_bytes=10).ranges == (
        (0, 1),
        (1, 2),
    )


def test_a_record_too_large_alone_is_set_aside() -> None:
    plan = plan_requests(texts([3, 50, 3, 3]), envelope_bytes=2, max_body_bytes=9)
    assert plan == RequestPlan(ranges=((0, 1), (2, 4)), oversized=(1,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"envelope_bytes": -1}, "envelope_bytes must be >= 0"),
        ({"envelope_bytes": 2, "max_body_bytes": 0}, "max_body_bytes must be a positive"),
        ({"envelope_bytes": 2, "max_records": 0}, "max_records must be a positive"),
        ({"envelope_bytes": 2, "max_records": True}, "max_records must be a positive"),
    ],
)
def test_bad_limits_are_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_requests(texts([1]), **kwargs)  # type: ignore[arg-type]
