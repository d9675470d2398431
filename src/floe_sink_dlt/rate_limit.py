"""A client-side request rate limit shared by the threads of one write."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``rate`` requests per second, evenly spaced, across every thread that uses it.

    Each :meth:`acquire` reserves the next free slot (``1 / rate`` seconds after the previous
    one) under a lock and then sleeps, outside the lock, until that slot. Callers are served
    in the order they asked; no burst is allowed (so ``rate`` also bounds any shorter window).

    Args:
        rate: Requests per second (> 0).
        clock: Monotonic clock (tests pass a fake one).
        sleep: Sleep function (tests pass a fake one).

    Raises:
        ValueError: ``rate`` is not positive.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 (got {rate})")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")

    def acquire(self) -> float:
        """Wait for the next slot; return the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)
