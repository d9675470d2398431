"""The small parts of the rest_api sink: record-ID paths and the rate limiter."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from floe_sink_dlt.rate_limit import RateLimiter
from floe_sink_dlt.record_ids import RecordIdsPath

RESPONSE = {
    "ids": ["a", "b"],
    "data": [{"id": 1}, {"id": 2}, {"name": "no id"}, {"id": None}],
    "results": [{"record": {"id": "r1"}}, {"record": {"id": True}}],
    "items": [{"id": 10}, {"id": 11}],
    "nested": {"id": {"x": 1}},
}


@pytest.mark.requirement("4G-FR-008")
@pytest.mark.parametrize(
    ("path", "ids"),
    [
        ("ids", ["a", "b"]),
        ("data[*].id", ["1", "2"]),
        ("$.results[*].record.id", ["r1", "true"]),
        ("items[0].id", ["10"]),
        ("items[-1].id", ["11"]),
        ("items[5].id", []),
        ("missing[*].id", []),
        ("nested.id", ['{"x":1}']),
    ],
)
def test_record_ids_path_finds_the_ids(path: str, ids: list[str]) -> None:
    assert RecordIdsPath.parse(path).find(RESPONSE) == ids


@pytest.mark.parametrize("path", ["", "data[x].id", "data..id", "a[*", "$."])
def test_record_ids_path_refuses_bad_syntax(path: str) -> None:
    with pytest.raises(ValueError, match="record_ids_path"):
        RecordIdsPath.parse(path)


def test_a_response_of_the_wrong_shape_gives_no_ids() -> None:
    path = RecordIdsPath.parse("data[*].id")
    assert path.find(["not", "an", "object"]) == []
    assert path.find(None) == []


@pytest.mark.requirement("4G-FR-016")
def test_rate_limiter_spaces_calls_evenly() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0.25, 0.25, 0.25, 0.25])
    now[0] += 10  # idle time does not build up a burst
    assert limiter.acquire() == 0
    assert limiter.acquire() == pytest.approx(0.25)


@pytest.mark.requirement("4G-FR-016")
def test_rate_limiter_is_shared_fairly_between_threads() -> None:
    limiter = RateLimiter(200)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        import time

        for _ in range(10):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    assert len(stamps) == 40
    assert stamps[-1] - stamps[0] >= 39 / 200 * 0.9


def test_rate_limiter_refuses_a_non_positive_rate() -> None:
    bad: Any = 0
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(bad)
