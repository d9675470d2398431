"""Adaptive pacing from rate-limit headers (floe_sink_dlt.saas.pacing)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from floe_sink.errors import SinkConfigurationError
from floe_sink_dlt.rate_limit import RateLimiter
from floe_sink_dlt.saas.pacing import AdaptivePacer, RateLimitHeaders

WALL = 1_700_000_000.0  # the fake wall clock's "now" (epoch seconds)


class Clock:
    """A fake monotonic clock that sleeping advances; records the sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

    def wall(self) -> float:
        return WALL + (self.now - 100.0)


def pacer(clock: Clock, **kwargs: Any) -> AdaptivePacer:
    return AdaptivePacer(clock=clock, wall_clock=clock.wall, sleep=clock.sleep, **kwargs)


def test_without_headers_or_rate_nothing_waits() -> None:
    clock = Clock()
    limiter = pacer(clock)
    assert [limiter.acquire() for _ in range(5)] == [0.0] * 5
    limiter.observe(200, {"Content-Type": "application/json"})
    assert limiter.acquire() == 0.0
    assert clock.sleeps == []


def test_the_fixed_rate_spaces_requests_like_the_plain_limiter() -> None:
    clock, plain_clock = Clock(), Clock()
    adaptive = pacer(clock, max_requests_per_second=4)
    plain = RateLimiter(4, clock=plain_clock, sleep=plain_clock.sleep)
    assert [adaptive.acquire() for _ in range(4)] == [plain.acquire() for _ in range(4)]
    assert clock.sleeps == [0.25, 0.25, 0.25]


@pytest.mark.parametrize(
    ("value", "wait"),
    [("7", 7.0), ("0", 0.0), ("Tue, 14 Nov 2023 22:13:40 GMT", 20.0), ("soon", 0.0)],
)
def test_retry_after_holds_every_request(value: str, wait: float) -> None:
    clock = Clock()
    limiter = pacer(clock)
    assert WALL == 1_700_000_000.0  # 2023-11-14T22:13:20Z, 20 s before the date above
    limiter.observe(429, {"retry-after": value})
    assert limiter.acquire() == wait
    assert limiter.acquire() == 0.0


def test_a_retry_after_beyond_max_wait_is_capped() -> None:
    clock = Clock()
    limiter = pacer(clock, max_wait=30)
    limiter.observe(429, {"Retry-After": "86400"})
    assert limiter.acquire() == 30.0


def test_nothing_remaining_waits_for_the_reset_in_seconds() -> None:
    clock = Clock()
    limiter = pacer(clock)
    limiter.observe(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"})
    assert limiter.acquire() == 12.0
    assert limiter.acquire() == 0.0  # a new window: its budget is unknown until an answer


@pytest.mark.parametrize(
    ("reset", "unit", "wait"),
    [
        (str(int(WALL) + 9), "auto", 9.0),  # epoch seconds
        (str(int(WALL * 1000) + 2500), "auto", 2.5),  # epoch milliseconds
        ("1500", "milliseconds", 1.5),
        (str(int(WALL) + 4), "epoch_seconds", 4.0),
        (str(int(WALL * 1000) + 4000), "epoch_milliseconds", 4.0),
        (str(int(WALL) - 50), "auto", 0.0),  # a reset in the past
    ],
)
def test_reset_units(reset: str, unit: str, wait: float) -> None:
    clock = Clock()
    limiter = pacer(clock, headers=RateLimitHeaders(reset_unit=unit))
    limiter.observe(200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
    assert limiter.acquire() == pytest.approx(wait)


def test_little_remaining_is_spread_over_the_window() -> None:
    clock = Clock()
    limiter = pacer(clock, low_water=4)
    limiter.observe(200, {"RateLimit-Remaining": "4", "RateLimit-Reset": "8"})
    waits = [limiter.acquire() for _ in range(5)]
    # 4 left for 8 s: one every 2 s; the fifth finds none left and waits for the reset
    assert waits == [0.0, 2.0, 2.0, 2.0, 2.0]
    assert clock.now == 108.0


def test_plenty_remaining_is_not_paced() -> None:
    clock = Clock()
    limiter = pacer(clock, low_water=5)
    limiter.observe(200, {"X-RateLimit-Remaining": "90", "X-RateLimit-Reset": "10"})
    assert [limiter.acquire() for _ in range(20)] == [0.0] * 20


def test_requests_count_against_the_remaining_until_the_next_answer() -> None:
    clock = Clock()
    limiter = pacer(clock, low_water=0)
    limiter.observe(200, {"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "5"})
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 5.0]


def test_hubspot_style_headers_with_a_window_length() -> None:
    headers = RateLimitHeaders.parse(
        {
            "remaining": "X-HubSpot-RateLimit-Remaining",
            "window": "X-HubSpot-RateLimit-Interval-Milliseconds",
            "window_unit": "milliseconds",
        }
    )
    clock = Clock()
    limiter = pacer(clock, headers=headers, low_water=0)
    limiter.observe(
        200,
        {
            "X-HubSpot-RateLimit-Remaining": "0",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": "100",
        },
    )
    assert limiter.acquire() == 10.0


def test_a_remaining_count_without_a_reset_is_ignored() -> None:
    clock = Clock()
    limiter = pacer(clock)
    limiter.observe(200, {"X-RateLimit-Remaining": "0"})
    limiter.observe(200, {"X-RateLimit-Remaining": "many", "X-RateLimit-Reset": "3"})
    assert limiter.acquire() == 0.0


def test_threads_share_the_pacing() -> None:
    clock = Clock()
    lock = threading.Lock()
    waits: list[float] = []
    limiter = AdaptivePacer(clock=clock, wall_clock=clock.wall, sleep=lambda _: None, low_water=8)
    limiter.observe(200, {"X-RateLimit-Remaining": "8", "X-RateLimit-Reset": "4"})

    def worker() -> None:
        for _ in range(2):
            wait = limiter.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # the clock stands still: the reservations are one every 0.5 s, whoever asked
    assert sorted(waits) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "config.rate_limit_headers: expected a mapping"),
        (
            {"remain": "x"},
            "config.rate_limit_headers.remain: unknown key; did you mean 'remaining'?",
        ),
        ({"remaining": ""}, "config.rate_limit_headers.remaining: must be a header name"),
        ({"reset": [1]}, "config.rate_limit_headers.reset: must be a header name"),
        ({"reset_unit": "minutes"}, "config.rate_limit_headers.reset_unit: must be one of auto"),
        ({"window_unit": "hours"}, "window_unit: must be one of seconds, milliseconds"),
    ],
)
def test_bad_header_configs_are_refused(spec: Any, message: str) -> None:
    with pytest.raises(
        SinkConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        RateLimitHeaders.parse(spec)


def test_header_config_defaults_and_lists() -> None:
    assert RateLimitHeaders.parse(None) == RateLimitHeaders()
    parsed = RateLimitHeaders.parse({"remaining": ["A", "B"], "reset": "C"})
    assert parsed.remaining == ("A", "B")
    assert parsed.reset == ("C",)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_requests_per_second": 0}, {"low_water": -1}, {"max_wait": 0}],
)
def test_bad_pacer_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        AdaptivePacer(**kwargs)  # type: ignore[arg-type]
