"""Retries with exponential backoff and jitter (tenacity), honouring ``Retry-After``.

A sink builds a :class:`RetryPolicy` from ``SinkConfig.retry_config`` and wraps each delivery
attempt with :func:`retrying`. An exception with a ``retry_after`` (seconds: a field of every
:class:`~floe_sink.SinkError`, an attribute of any other exception) makes the next wait at
least that long. A ``retry_after`` longer than ``max_wait`` is not shortened: a retry before
the server's time would only be refused again, so the delivery fails at once with a
:class:`RetryAfterTooLongError` that says how to wait longer.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import tenacity

from floe_sink.errors import SinkConfigurationError, SinkError, SinkWriteError
from floe_sink.logs import get_logger
from floe_sink.structuring import json_schema

__all__ = ["RetryAfterTooLongError", "RetryPolicy", "parse_retry_after", "retrying"]

log = get_logger(__name__)


@json_schema({"exclusiveMinimum": 0})
def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"retry_config.{attribute.name} must be > 0 (got {value})")


@json_schema({"minimum": 0})
def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"retry_config.{attribute.name} must be >= 0 (got {value})")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently a delivery is retried.

    Attributes:
        max_attempts: Attempts in all, the first included (1 = no retry).
        initial_wait: Seconds before the first retry.
        max_wait: Cap, in seconds, on any single wait. A ``Retry-After`` longer than this
            fails the delivery at once (:class:`RetryAfterTooLongError`).
        multiplier: Growth of the wait per attempt (exponential backoff).
        jitter: Up to this many random seconds added to each wait, so that clients that
            failed together do not retry together.
        timeout: Seconds for one request, where the sink makes requests.
    """

    max_attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    initial_wait: float = attrs.field(default=0.5, validator=_non_negative)
    max_wait: float = attrs.field(default=30.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    jitter: float = attrs.field(default=0.5, validator=_non_negative)
    timeout: float = attrs.field(default=30.0, validator=_positive)

    @classmethod
    def from_config(cls, retry_config: Mapping[str, Any] | None) -> RetryPolicy:
        """Build a policy from ``SinkConfig.retry_config`` (``None`` gives the defaults).

        Raises:
            SinkConfigurationError: Naming every unknown key and every bad value.
        """
        if not retry_config:
            return cls()
        problems = cls.problems(retry_config)
        if problems:
            raise SinkConfigurationError(
                "; ".join(
                    reason if key is None else f"invalid retry_config: {key} {reason}"
                    for key, reason in problems
                )
            )
        return cls(**dict(retry_config))

    @classmethod
    def problems(cls, retry_config: Mapping[str, Any]) -> list[tuple[str | None, str]]:
        """Every problem of ``retry_config``, not only the first.

        Returns:
            ``(key, reason)`` pairs, e.g. ``("max_attempts", "must be >= 1 (got 0)")``; the
            unknown keys come first, as one pair whose key is ``None``.
        """
        known = attrs.fields_dict(cls)
        problems: list[tuple[str | None, str]] = []
        unknown = sorted(str(key) for key in retry_config if key not in known)
        if unknown:
            problems.append(
                (
                    None,
                    f"retry_config has unknown key(s) {', '.join(unknown)}; "
                    f"allowed: {', '.join(sorted(known))}",
                )
            )
        for key, value in retry_config.items():
            if key not in known:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append((key, f"expected a number, got {_describe(value)}"))
                continue
            setting: dict[str, Any] = {key: value}
            try:
                cls(**setting)
            except (TypeError, ValueError) as exc:
                problems.append((key, _reason(str(exc), key)))
        return problems

    def wait_for(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), without jitter."""
        backoff = self.initial_wait * self.multiplier ** (attempt - 1)
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        return min(backoff, self.max_wait)


def _describe(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str | int | float) or value is None:
        return text if len(text) <= 40 else text[:40] + "..."
    return f"a {type(value).__name__}"


def _reason(message: str, key: str) -> str:
    """An attrs or own validator's message as ``must be >= 1 (got 0)``."""
    reason = message.removeprefix(f"retry_config.{key} ").replace(f"'{key}' must be", "must be")
    return re.sub(r"^(must be [<>]=? \S+): (.+)$", r"\1 (got \2)", reason)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns ``None`` for a missing or unparseable header; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.jitter = tenacity.wait_random(0, policy.jitter)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        base = self.policy.wait_for(retry_state.attempt_number, retry_after)
        if retry_after is not None and base >= self.policy.max_wait:
            return base  # the server said when; jitter would only exceed the cap
        return min(base + self.jitter(retry_state), self.policy.max_wait)


class RetryAfterTooLongError(SinkWriteError):
    """Raised when the server asks to wait longer (``Retry-After``) than ``max_wait`` allows.

    Transient: the same delivery may succeed later (a resumed run sends it again).

    Attributes:
        retry_after: The seconds the server asked for.
        max_wait: The policy's cap on one wait.
    """

    def __init__(self, error: BaseException, *, retry_after: float, max_wait: float) -> None:
        self.max_wait = max_wait
        asked = math.ceil(retry_after)
        message = error.message if isinstance(error, SinkError) else str(error)
        context = dict(error.context) if isinstance(error, SinkError) else {}
        super().__init__(
            f"{message}; the API asks to wait {asked} s before trying again, more than "
            f"retry.max_wait ({max_wait:g} s), so it was not retried. Raise max_wait in the "
            f"destination's retry settings in floe.yaml (retry: {{max_wait: {asked}}}) to "
            "wait that long, or run again later",
            retry_after=retry_after,
            **context,
        )


def _default_retryable(error: BaseException) -> bool:
    return isinstance(error, SinkError) and error.retryable


class _Retry(tenacity.retry_base):
    """``retryable`` errors are retried, unless the server asks to wait beyond ``max_wait``."""

    def __init__(self, policy: RetryPolicy, retryable: Callable[[BaseException], bool]) -> None:
        self.policy = policy
        self.retryable = retryable

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if error is None or not self.retryable(error):
            return False
        retry_after = getattr(error, "retry_after", None)
        if (
            isinstance(retry_after, int | float)
            and retry_after > self.policy.max_wait
            and retry_state.attempt_number < self.policy.max_attempts
        ):
            # waiting less than asked would only be refused again: stop, saying why
            raise RetryAfterTooLongError(
                error, retry_after=retry_after, max_wait=self.policy.max_wait
            ) from error
        return True


def retrying(
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool] = _default_retryable,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "delivery",
    **log_context: Any,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for ``policy``: use as ``for attempt in retrying(...)``.

    Args:
        policy: Attempts and waits.
        retryable: Which exceptions are retried (default: transient ``SinkError``). One whose
            ``retry_after`` exceeds ``policy.max_wait`` raises :class:`RetryAfterTooLongError`
            instead, while attempts remain.
        sleep: The sleep function (tests pass a fake one).
        what: Names the operation in the ``retrying`` log event.
        **log_context: Added to the log event (batch number, destination; never secrets).

    The last exception is re-raised unchanged once attempts run out.
    """

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "retrying",
            what=what,
            attempt=state.attempt_number,
            max_attempts=policy.max_attempts,
            wait_seconds=round(state.upcoming_sleep, 3),
            error=str(error),
            **log_context,
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts),
        wait=_Wait(policy),
        retry=_Retry(policy, retryable),
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
