"""The retry policy: growing waits, Retry-After honoured and capped, a fake sleep."""

from __future__ import annotations

import email.utils

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from floe_sink import (
    ErrorCategory,
    RetryPolicy,
    SinkConfigurationError,
    SinkWriteError,
    parse_retry_after,
    retrying,
)
from floe_sink.retry import RetryAfterTooLongError

pytestmark = pytest.mark.requirement("4G-FR-016")


class Throttled(SinkWriteError):
    """A 429 carrying the server's Retry-After, in seconds."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("HTTP 429")
        self.retry_after = retry_after


def _run(policy: RetryPolicy, errors: list[BaseException]) -> tuple[list[float], int]:
    """Run an operation failing with ``errors`` in turn; return the sleeps and attempts."""
    sleeps: list[float] = []
    attempts = 0
    for attempt in retrying(policy, sleep=sleeps.append):
        with attempt:
            attempts += 1
            if errors:
                raise errors.pop(0)
    return sleeps, attempts


def test_waits_grow_exponentially_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, initial_wait=1, multiplier=2, max_wait=100, jitter=0)
    sleeps, attempts = _run(policy, [SinkWriteError("503")] * 4)
    assert sleeps == [1, 2, 4, 8]
    assert attempts == 5


def test_waits_are_capped_by_max_wait() -> None:
    policy = RetryPolicy(max_attempts=6, initial_wait=1, multiplier=10, max_wait=5, jitter=0)
    sleeps, _ = _run(policy, [SinkWriteError("503")] * 5)
    assert sleeps == [1, 5, 5, 5, 5]


@given(jitter=st.floats(min_value=0.01, max_value=3), attempt=st.integers(1, 4))
def test_jitter_stays_within_bounds(jitter: float, attempt: int) -> None:
    policy = RetryPolicy(max_attempts=attempt + 1, initial_wait=1, max_wait=10, jitter=jitter)
    sleeps, _ = _run(policy, [SinkWriteError("503")] * attempt)
    for number, slept in enumerate(sleeps, start=1):
        base = policy.wait_for(number)
        assert base <= slept <= min(base + jitter, policy.max_wait)


def test_retry_after_is_honoured() -> None:
    policy = RetryPolicy(max_attempts=3, initial_wait=0.1, max_wait=60, jitter=0)
    sleeps, attempts = _run(policy, [Throttled(7), Throttled(None)])
    assert sleeps == [7, 0.2]
    assert attempts == 3


def test_retry_after_equal_to_max_wait_is_honoured_with_no_jitter_beyond() -> None:
    policy = RetryPolicy(max_attempts=2, initial_wait=0.1, max_wait=10, jitter=5)
    sleeps, _ = _run(policy, [Throttled(10)])
    assert sleeps == [10]


def test_retry_after_longer_than_max_wait_fails_at_once_saying_how_to_wait() -> None:
    # Retrying every max_wait seconds before the server's time only burns the attempts.
    policy = RetryPolicy(max_attempts=5, initial_wait=0.1, max_wait=30, jitter=0)
    throttled = Throttled(3599.2)
    sleeps: list[float] = []
    attempts = 0

    def deliver() -> None:
        nonlocal attempts
        for attempt in retrying(policy, sleep=sleeps.append):
            with attempt:
                attempts += 1
                raise throttled

    with pytest.raises(RetryAfterTooLongError) as raised:
        deliver()
    assert (attempts, sleeps) == (1, [])
    error = raised.value
    assert str(error).startswith(
        "HTTP 429; the API asks to wait 3600 s before trying again, more than "
        "retry.max_wait (30 s), so it was not retried. Raise max_wait"
    )
    assert "retry: {max_wait: 3600}" in str(error)
    assert (error.retry_after, error.max_wait) == (3599.2, 30)
    assert error.__cause__ is throttled
    assert error.category is ErrorCategory.TRANSIENT  # a later run may deliver it


def test_retry_after_too_long_on_the_last_attempt_raises_the_error_itself() -> None:
    # nothing was going to be retried anyway: the server's own error is the news
    policy = RetryPolicy(max_attempts=1, max_wait=1)
    throttled = Throttled(60)
    with pytest.raises(Throttled) as raised:
        _run(policy, [throttled])
    assert raised.value is throttled


def test_attempts_run_out_and_the_last_error_is_raised_unchanged() -> None:
    last = SinkWriteError("still 503")
    policy = RetryPolicy(max_attempts=3, initial_wait=0, jitter=0)
    with pytest.raises(SinkWriteError) as raised:
        _run(policy, [SinkWriteError("503"), SinkWriteError("503"), last])
    assert raised.value is last


def test_permanent_errors_are_not_retried() -> None:
    error = SinkWriteError("HTTP 400", category=ErrorCategory.PERMANENT)
    sleeps: list[float] = []
    calls = 0

    def deliver() -> None:
        nonlocal calls
        for attempt in retrying(RetryPolicy(jitter=0), sleep=sleeps.append):
            with attempt:
                calls += 1
                raise error

    with pytest.raises(SinkWriteError) as raised:
        deliver()
    assert raised.value is error
    assert (calls, sleeps) == (1, [])


def test_custom_retryable_predicate() -> None:
    sleeps: list[float] = []
    calls = 0
    policy = RetryPolicy(max_attempts=3, initial_wait=1, jitter=0)
    for attempt in retrying(
        policy, retryable=lambda e: isinstance(e, OSError), sleep=sleeps.append
    ):
        with attempt:
            calls += 1
            if calls < 3:
                raise ConnectionResetError("reset")
    assert sleeps == [1, 2]


def test_each_retry_is_logged_without_secrets() -> None:
    policy = RetryPolicy(max_attempts=2, initial_wait=1, jitter=0)
    with capture_logs() as logs:
        _run_with_context = retrying(policy, sleep=lambda _: None, what="batch", batch=3)
        failed = False
        for attempt in _run_with_context:
            with attempt:
                if not failed:
                    failed = True
                    raise SinkWriteError("503")
    (entry,) = logs
    assert entry["event"] == "retrying"
    assert entry["what"] == "batch"
    assert entry["batch"] == 3
    assert entry["attempt"] == 1
    assert entry["max_attempts"] == 2
    assert entry["wait_seconds"] == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-4", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 90, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(90)
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_parse_retry_after_date_against_the_clock() -> None:
    import time

    header = email.utils.formatdate(time.time() + 3600, usegmt=True)
    waited = parse_retry_after(header)
    assert waited is not None
    assert 3500 < waited <= 3600


def test_policy_from_config() -> None:
    assert RetryPolicy.from_config(None) == RetryPolicy()
    assert RetryPolicy.from_config({"max_attempts": 2}).max_attempts == 2
    with pytest.raises(SinkConfigurationError, match=r"unknown key.*max_retries"):
        RetryPolicy.from_config({"max_retries": 2})
    with pytest.raises(SinkConfigurationError, match="max_wait"):
        RetryPolicy.from_config({"max_wait": -1})
    with pytest.raises(SinkConfigurationError, match="invalid retry_config"):
        RetryPolicy.from_config({"max_attempts": 0})


def test_policy_problems_lists_every_problem_not_only_the_first() -> None:
    config = {"max_attempts": 0, "multiplier": 0, "jitter": "soon", "backoff": 2, "timeout": 5}
    assert RetryPolicy.problems(config) == [
        (
            None,
            "retry_config has unknown key(s) backoff; allowed: "
            + ", ".join(sorted(field.name for field in attrs.fields(RetryPolicy))),
        ),
        ("max_attempts", "must be >= 1 (got 0)"),
        ("multiplier", "must be > 0 (got 0)"),
        ("jitter", "expected a number, got 'soon'"),
    ]
    with pytest.raises(SinkConfigurationError) as info:
        RetryPolicy.from_config(config)
    for key in ("backoff", "max_attempts", "multiplier", "jitter"):
        assert key in str(info.value)
