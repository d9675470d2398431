"""A rate limiter shared by threads that follows the API's rate-limit response headers.

:class:`floe_sink_dlt.rate_limit.RateLimiter` spaces requests evenly at a fixed rate chosen
by the user. :class:`AdaptivePacer` does that too (``max_requests_per_second``), and also
listens to what the API says about its own limits, so that a long sync paces itself instead of
running into 429s:

* ``Retry-After`` (seconds or an HTTP date), on any answer: no thread sends before then;
* a remaining count with a reset time (``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``,
  the IETF ``RateLimit-Remaining``/``RateLimit-Reset``, or names of the API's choosing such as
  HubSpot's ``X-HubSpot-RateLimit-Remaining`` with its window length
  ``X-HubSpot-RateLimit-Interval-Milliseconds``): when nothing remains, every thread waits
  for the reset; when little remains (``low_water`` or fewer), the remaining requests are
  spread evenly over the time left. Each request sent counts against the last remaining
  count until the next answer says more, so concurrent threads do not all spend the last one.

Waits are capped by ``max_wait`` (a daily quota's reset is hours away: the retry policy decides
what then). Waits are reserved under a lock and slept outside it.

How the delivery loop calls it
------------------------------
One pacer per write, shared by every thread of it::

    pacer = AdaptivePacer(
        max_requests_per_second=options.max_requests_per_second,
        headers=RateLimitHeaders.parse(config.get("rate_limit_headers")),
    )
    ...
    pacer.acquire()                                # before every request, retries included
    response = client.request(...)
    pacer.observe(response.status_code, response.headers)
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from floe_sink.retry import parse_retry_after
from floe_sink.structuring import (
    ConfigValueError,
    converter,
    json_schema,
    register_checked_class,
    register_enum,
)
from floe_sink_dlt.structure import structure_at

__all__ = [
    "RESET_UNITS",
    "AdaptivePacer",
    "HeaderNames",
    "RateLimitHeaders",
    "ResetUnit",
    "WindowUnit",
]

RESET_UNITS: Final = ("auto", "seconds", "milliseconds", "epoch_seconds", "epoch_milliseconds")
"""How a reset header counts: a delay (seconds, milliseconds) or a moment (epoch), or guess."""

_EPOCH_SECONDS_FROM: Final = 1e9  # 2001-09-09: a larger reset value is a moment, not a delay
_EPOCH_MILLISECONDS_FROM: Final = 1e12


class ResetUnit(enum.StrEnum):
    """The values of ``reset_unit`` (:data:`RESET_UNITS`)."""

    AUTO = "auto"
    SECONDS = "seconds"
    MILLISECONDS = "milliseconds"
    EPOCH_SECONDS = "epoch_seconds"
    EPOCH_MILLISECONDS = "epoch_milliseconds"


class WindowUnit(enum.StrEnum):
    """The values of ``window_unit``."""

    SECONDS = "seconds"
    MILLISECONDS = "milliseconds"


register_enum(ResetUnit)
register_enum(WindowUnit)


_NAME: Final = {"type": "string", "minLength": 1}


@json_schema({"anyOf": [_NAME, {"type": "array", "minItems": 1, "items": _NAME}]})
class HeaderNames(tuple[str, ...]):
    """Header names, the first present is read: one name or a list in the configuration."""


def _structure_names(value: Any, _type: type) -> HeaderNames:
    if isinstance(value, str) and value:
        return HeaderNames((value,))
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return HeaderNames(value)
    raise ConfigValueError("must be a header name or a list of header names")


converter.register_structure_hook(HeaderNames, _structure_names)

_REMAINING: Final = HeaderNames(
    ("X-RateLimit-Remaining", "RateLimit-Remaining", "X-Rate-Limit-Remaining")
)
_RESET: Final = HeaderNames(("X-RateLimit-Reset", "RateLimit-Reset", "X-Rate-Limit-Reset"))
_NONE: Final = HeaderNames()


@attrs.frozen(kw_only=True)
class RateLimitHeaders:
    """Which response headers tell the remaining requests and when the count resets.

    Attributes:
        remaining: Header names of the remaining count (the first present is read).
        reset: Header names of the reset time.
        reset_unit: How the reset counts: ``auto`` (default), ``seconds``, ``milliseconds``,
            ``epoch_seconds`` or ``epoch_milliseconds``; ``auto`` reads a value over 10**12 as
            epoch milliseconds, over 10**9 as epoch seconds, else as seconds.
        window: Header names of the window's length, used as the reset time when no reset
            header is present (HubSpot sends only the window).
        window_unit: ``seconds`` or ``milliseconds``.
    """

    remaining: HeaderNames = _REMAINING
    reset: HeaderNames = _RESET
    reset_unit: ResetUnit = ResetUnit.AUTO
    window: HeaderNames = _NONE
    window_unit: WindowUnit = WindowUnit.SECONDS

    @classmethod
    def parse(cls, spec: Any, *, where: str = "config.rate_limit_headers") -> RateLimitHeaders:
        """Validate a ``rate_limit_headers`` config (``None`` gives the common names).

        Args:
            spec: A mapping with any of ``remaining``, ``reset``, ``reset_unit``, ``window``,
                ``window_unit``, or ``None``.
            where: The config's place, the start of every error path.

        Returns:
            The header names.

        Raises:
            SinkConfigurationError: Listing every key that is unknown or invalid.
        """
        if spec is None:
            return cls()
        return structure_at(spec, cls, where=where)


register_checked_class(RateLimitHeaders)


def _header(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value is not None and value.strip():
            return value.strip()
    return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.split(",")[0].split(";")[0])
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


class AdaptivePacer:
    """Paces the requests of every thread of a write by a fixed rate and the API's headers.

    Args:
        max_requests_per_second: A fixed client-side rate (``None``: none).
        headers: Which headers carry the remaining count and reset time.
        low_water: Spread the requests evenly once this few remain (0: only wait at zero).
        max_wait: The longest single wait, in seconds.
        clock: A monotonic clock (tests pass a fake one).
        wall_clock: Seconds since the epoch, for epoch reset headers and HTTP dates.
        sleep: The sleep function (tests pass a fake one).

    Raises:
        ValueError: A number is out of range.
    """

    def __init__(
        self,
        *,
        max_requests_per_second: float | None = None,
        headers: RateLimitHeaders | None = None,
        low_water: int = 5,
        max_wait: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_requests_per_second is not None and not max_requests_per_second > 0:
            raise ValueError(f"max_requests_per_second must be > 0 (got {max_requests_per_second})")
        if low_water < 0:
            raise ValueError(f"low_water must be >= 0 (got {low_water})")
        if not max_wait > 0:
            raise ValueError(f"max_wait must be > 0 (got {max_wait})")
        self.headers = headers or RateLimitHeaders()
        self.low_water = low_water
        self.max_wait = max_wait
        self._interval = 1.0 / max_requests_per_second if max_requests_per_second else 0.0
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_fixed = float("-inf")
        self._blocked_until = float("-inf")
        self._remaining: float | None = None
        self._reset_at: float | None = None
        self._next_paced = float("-inf")

    # -- before a request -------------------------------------------------------------------

    def acquire(self) -> float:
        """Wait until this thread may send its next request.

        Returns:
            The seconds waited.
        """
        with self._lock:
            now = self._clock()
            if self._reset_at is not None and now >= self._reset_at:
                self._forget_window()
            slot = max(now, self._blocked_until, self._next_fixed)
            if self._remaining is not None and self._reset_at is not None:
                if self._remaining < 1:
                    # nothing left in this window: everyone waits for the reset
                    self._blocked_until = max(self._blocked_until, self._reset_at)
                    slot = max(slot, self._reset_at)
                    self._forget_window()
                else:
                    if self._remaining <= self.low_water:
                        # the time left after this slot, shared by the requests left
                        slot = max(slot, self._next_paced)
                        spacing = max(self._reset_at - slot, 0.0) / self._remaining
                        self._next_paced = slot + spacing
                    self._remaining -= 1
            slot = min(slot, now + self.max_wait)
            if self._interval:
                self._next_fixed = slot + self._interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)

    def _forget_window(self) -> None:
        self._remaining = None
        self._reset_at = None
        self._next_paced = float("-inf")

    # -- after an answer --------------------------------------------------------------------

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer's headers (any status; a 429's ``Retry-After`` above all).

        Args:
            status: The HTTP status (unused today: the headers say it all).
            headers: The response headers.
        """
        retry_after = parse_retry_after(_header(headers, ("Retry-After",)), now=self._wall_clock())
        remaining = _number(_header(headers, self.headers.remaining))
        reset_in = self._reset_in(headers)
        with self._lock:
            now = self._clock()
            if retry_after is not None:
                until = now + min(retry_after, self.max_wait)
                self._blocked_until = max(self._blocked_until, until)
            if remaining is not None and reset_in is not None:
                self._remaining = max(remaining, 0.0)
                self._reset_at = now + min(reset_in, self.max_wait)
                self._next_paced = max(self._next_paced, now)

    def _reset_in(self, headers: Mapping[str, str]) -> float | None:
        """Seconds until the remaining count resets, from the reset or window header."""
        value = _number(_header(headers, self.headers.reset))
        if value is not None:
            unit: str = self.headers.reset_unit
            if unit == "auto":
                if value >= _EPOCH_MILLISECONDS_FROM:
                    unit = "epoch_milliseconds"
                elif value >= _EPOCH_SECONDS_FROM:
                    unit = "epoch_seconds"
                else:
                    unit = "seconds"
            if unit == "seconds":
                seconds = value
            elif unit == "milliseconds":
                seconds = value / 1000.0
            elif unit == "epoch_seconds":
                seconds = value - self._wall_clock()
            else:
                seconds = value / 1000.0 - self._wall_clock()
            return max(seconds, 0.0)
        window = _number(_header(headers, self.headers.window))
        if window is not None:
            seconds = window / 1000.0 if self.headers.window_unit == "milliseconds" else window
            return max(seconds, 0.0)
        return None
