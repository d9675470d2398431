"""Cut Arrow data into batches of at most ``batch_size`` rows, without copying."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

__all__ = ["Rechunker", "as_batches", "iter_chunks"]


def as_batches(data: Any) -> Iterator[pa.RecordBatch]:
    """Yield the record batches of ``data`` as they are (no re-chunking, no copies).

    Args:
        data: A ``pyarrow.Table``, a ``RecordBatch``, a ``RecordBatchReader`` or an iterable
            of ``RecordBatch``.

    Raises:
        TypeError: For anything else, naming the type received.
    """
    if isinstance(data, pa.Table):
        yield from data.to_batches()
    elif isinstance(data, pa.RecordBatch):
        yield data
    elif isinstance(data, pa.RecordBatchReader):
        yield from data
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        for batch in data:
            if isinstance(batch, pa.Table):
                yield from batch.to_batches()
            elif isinstance(batch, pa.RecordBatch):
                yield batch
            else:
                raise TypeError(f"expected pyarrow.RecordBatch items, got {type(batch).__name__}")
    else:
        raise TypeError(
            "expected a pyarrow.Table, RecordBatch, RecordBatchReader or an iterable of "
            f"RecordBatch, got {type(data).__name__}"
        )


def iter_chunks(data: Any, batch_size: int | None) -> Iterator[pa.RecordBatch]:
    """Yield batches of exactly ``batch_size`` rows (the last one may be shorter).

    Input batches are sliced (zero-copy) and, where a chunk straddles two input batches, the
    pieces are concatenated. Empty input batches are dropped, so an empty input yields nothing.

    Args:
        data: Anything :func:`as_batches` accepts.
        batch_size: Rows per chunk (>= 1); ``None`` yields the whole input as one batch.

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    if batch_size is None:
        batches = [batch for batch in as_batches(data) if batch.num_rows]
        if batches:
            yield _concat(batches)  # the whole input in memory: what batch_size=None asks for
        return
    rechunker = Rechunker(batch_size)
    for batch in as_batches(data):
        yield from rechunker.push(batch)
    yield from rechunker.flush()


class Rechunker:
    """Turn batches of any size into batches of exactly ``size`` rows, incrementally.

    ``push`` yields every full chunk completed by a batch; ``flush`` yields the remainder.
    Whole chunks inside one input batch are zero-copy slices; only a chunk that straddles
    input batches is concatenated.
    """

    __slots__ = ("_pending", "_pending_rows", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {size})")
        self.size = size
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    def push(self, batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
        """Add ``batch``; yield the chunks it completes."""
        offset = 0
        while offset < batch.num_rows:
            take = min(self.size - self._pending_rows, batch.num_rows - offset)
            piece = batch.slice(offset, take)
            offset += take
            if not self._pending and take == self.size:
                yield piece
                continue
            self._pending.append(piece)
            self._pending_rows += take
            if self._pending_rows == self.size:
                yield _concat(self._pending)
                self._pending, self._pending_rows = [], 0

    def peek(self) -> pa.RecordBatch | None:
        """The rows pending as one batch, without removing them (``None`` when none)."""
        return _concat(self._pending) if self._pending else None

    def flush(self) -> Iterator[pa.RecordBatch]:
        """Yield the rows still pending as one last, shorter chunk."""
        if self._pending:
            pending, self._pending, self._pending_rows = self._pending, [], 0
            yield _concat(pending)


def _concat(pieces: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(pieces) == 1:
        return pieces[0]
    return pa.concat_batches(pieces)
