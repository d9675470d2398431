"""SIGINT and SIGTERM during a run: stop after the batches in flight, stay resumable.

:func:`stop_on_signals` installs handlers for the duration of a run. The first SIGINT (Ctrl-C)
or SIGTERM (Kubernetes stopping a pod) sets a stop event: the delivery loop sends no further
batch, waits for the ones in flight and records them, and the run ends with
:class:`~floe_sink.delivery.DeliveryInterrupted`; the command exits 130 (SIGINT) or 143
(SIGTERM). A second signal raises ``KeyboardInterrupt`` at once: the journal still names only
acknowledged batches, so even that is resumable.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["EXIT_CODES", "StopRequest", "stop_on_signals"]

EXIT_CODES: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}
"""The conventional exit code of a process stopped by each signal (128 + number)."""


class StopRequest:
    """The stop event of a run and the signal that set it."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_number = 0

    def request(self, signal_number: int) -> None:
        """Ask the run to stop (what the first signal does)."""
        self.signal_number = signal_number
        self.event.set()

    @property
    def requested(self) -> bool:
        """True once a stop was requested."""
        return self.event.is_set()


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT/SIGTERM to ``stop`` while the block runs (main thread only).

    Outside the main thread (an embedding application) nothing is installed: the
    application decides how to stop, e.g. by calling ``stop.request(signal.SIGTERM)``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(number: int, _frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.request(number)

    previous: dict[int, Any] = {}
    for number in EXIT_CODES:
        previous[number] = signal.signal(number, handler)
    try:
        yield stop
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
