"""Progress of a run: a rich bar on a terminal, structlog lines otherwise.

:func:`track` wraps a stream of record batches and counts rows and batches as the sink pulls
them, without touching the data (it stays one Arrow stream, batch by batch).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from floe_sink.logs import get_logger

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ProgressReporter", "track"]

log = get_logger(__name__)

_LOG_EVERY_SECONDS = 5.0


class ProgressReporter:
    """Reports rows and batches read per destination.

    Args:
        stream: Where the bar is drawn (stderr by default).
        enabled: Draw a bar; ``None`` draws one when ``stream`` is a terminal. Without a bar,
            a ``source_progress`` log line is written every few seconds instead.
    """

    def __init__(self, *, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if enabled is None else enabled
        self._progress: Any = None

    def __enter__(self) -> ProgressReporter:
        if self.bar:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TextColumn("{task.fields[rate]:>12} rows/s"),
                TextColumn("{task.fields[batches]} batches"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def track(
        self, destination: str, reader: pa.RecordBatchReader, total_rows: int | None
    ) -> pa.RecordBatchReader:
        """Return ``reader`` wrapped so that rows and batches are counted as they are read."""
        import pyarrow as pa

        return pa.RecordBatchReader.from_batches(
            reader.schema, self._counted(destination, reader, total_rows)
        )

    def _counted(
        self, destination: str, reader: pa.RecordBatchReader, total_rows: int | None
    ) -> Iterator[pa.RecordBatch]:
        started = last_log = time.monotonic()
        rows = batches = 0
        task = None
        if self._progress is not None:
            task = self._progress.add_task(destination, total=total_rows, batches=0, rate="-")
        for batch in reader:
            rows += batch.num_rows
            batches += 1
            now = time.monotonic()
            rate = rows / (now - started) if now > started else 0.0
            if task is not None:
                self._progress.update(task, completed=rows, batches=batches, rate=f"{rate:,.0f}")
            elif now - last_log >= _LOG_EVERY_SECONDS:
                last_log = now
                log.info(
                    "source_progress",
                    destination=destination,
                    rows=rows,
                    batches=batches,
                    rows_per_second=round(rate),
                    total_rows=total_rows,
                )
            yield batch
        elapsed = time.monotonic() - started
        if task is not None:
            self._progress.update(task, total=rows, completed=rows)
        log.info(
            "source_read",
            destination=destination,
            rows=rows,
            batches=batches,
            seconds=round(elapsed, 3),
        )


@contextmanager
def track(
    *, stream: TextIO | None = None, enabled: bool | None = None
) -> Iterator[ProgressReporter]:
    """A :class:`ProgressReporter` as a context manager (the bar is stopped on exit)."""
    with ProgressReporter(stream=stream, enabled=enabled) as reporter:
        yield reporter
