"""A SHA-256 checksum of Arrow content that does not depend on how the data is chunked.

The digest covers the schema (column names, types, nullability) and every value. Input is
re-cut into fixed canonical blocks before hashing, dictionary columns are decoded and the
bytes under null slots are normalised, so the same rows give the same digest whether they
arrive as one table, as 1-row batches or anything in between; any changed value, column name
or type changes it. Hashing runs at roughly the speed of SHA-256 over the Arrow buffers.

:class:`Checksum` (``checksum_of``) hashes one stream of rows. A *delivery* read from an
Iceberg table by the command is checksummed per data file instead (:class:`DeliveryChecksum`):
each file's rows get their own :class:`Checksum`, and the delivery's digest combines those
(:func:`combine_pieces`) in the order of the files' paths. That is what lets the Ray engine
(``docs/scale-out.md``), whose tasks each read some of the files, report the same digest as
the local engine: no task needs another's rows, only the driver combines.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.chunking import Rechunker, as_batches

__all__ = [
    "BLOCK_ROWS",
    "Checksum",
    "DeliveryChecksum",
    "FileBoundaries",
    "Piece",
    "checksum_of",
    "combine_pieces",
]

BLOCK_ROWS = 65_536
"""Rows per canonical block; part of the digest's definition, so never change it."""

_VERSION = b"floe-sink-checksum-v1\x00"
_DELIVERY_VERSION = b"floe-sink-delivery-checksum-v2\x00"


def _canonical_schema(schema: pa.Schema) -> bytes:
    parts = [f"{field.name}\x1f{field.type}\x1f{int(field.nullable)}" for field in schema]
    return ("\x1e".join(parts) + "\x1d").encode()


def _zero_like(type_: pa.DataType) -> pa.Scalar | None:
    if pa.types.is_boolean(type_):
        return pa.scalar(False)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return pa.scalar("", type_)
    if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        return pa.scalar(b"", type_)
    try:
        return pa.scalar(0).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


@functools.cache
def _positions() -> pa.Array:
    """``0 .. BLOCK_ROWS - 1``, built once and sliced to each block's length."""
    return pa.array(range(BLOCK_ROWS), pa.int32())


def _fresh(block: pa.RecordBatch) -> pa.RecordBatch:
    """``block`` rebuilt into buffers of exactly its length.

    The IPC bytes of a slice depend on its parent: a zero-offset slice keeps the parent's
    longer buffers and the parent's bits past its end in the last byte of a bitmap. A take of
    every row rebuilds the buffers from the values alone (one memcpy-speed pass, far cheaper
    than the SHA-256 that follows).
    """
    return block.take(_positions().slice(0, block.num_rows))


def _canonical_columns(batch: pa.RecordBatch) -> list[pa.Array]:
    columns: list[pa.Array] = []
    for column in batch.columns:
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()  # the indices depend on how data was chunked
        if column.null_count:
            zero = _zero_like(column.type)
            if zero is not None:
                # Bytes under a null slot are arbitrary: hash the validity, then the values
                # with the nulls filled in.
                columns.append(pc.cast(pc.is_valid(column), pa.uint8()))
                column = pc.fill_null(column, zero)
        if pa.types.is_boolean(column.type):
            column = pc.cast(column, pa.uint8())  # a byte per value: no bitmap tail bits
        columns.append(column)
    return columns


def _block_bytes(block: pa.RecordBatch) -> pa.Buffer:
    columns = _canonical_columns(_fresh(block))
    names = [str(index) for index in range(len(columns))]
    return pa.RecordBatch.from_arrays(columns, names=names).serialize()


class Checksum:
    """Incremental, chunking-independent SHA-256 of Arrow data (like :mod:`hashlib`).

    Example::

        checksum = Checksum()
        for batch in batches:
            checksum.update(batch)
        checksum.hexdigest()

    Raises:
        ValueError: From :meth:`update`, when a batch's schema differs from the first one.
    """

    __slots__ = ("_rechunker", "_rows", "_schema", "_sha")

    def __init__(self, data: Any = None) -> None:
        self._sha = hashlib.sha256(_VERSION)
        self._schema: pa.Schema | None = None
        self._rechunker = Rechunker(BLOCK_ROWS)
        self._rows = 0
        if data is not None:
            self.update(data)

    @property
    def rows(self) -> int:
        """Rows hashed so far."""
        return self._rows

    def update(self, data: Any) -> None:
        """Add a table, a batch, a reader or an iterable of batches."""
        if isinstance(data, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
            self._set_schema(data.schema)
        for batch in as_batches(data):
            self._set_schema(batch.schema)
            self._rows += batch.num_rows
            for block in self._rechunker.push(batch):
                self._hash_block(block)

    def _set_schema(self, schema: pa.Schema) -> None:
        if self._schema is None:
            self._schema = schema
            self._sha.update(_canonical_schema(schema))
        elif not schema.equals(self._schema):
            raise ValueError(f"schema changed between batches: {self._schema} != {schema}")

    def _hash_block(self, block: pa.RecordBatch) -> None:
        self._sha.update(_block_bytes(block))

    def hexdigest(self) -> str:
        """The digest of everything added so far (more can be added afterwards)."""
        sha = self._sha.copy()
        pending = self._rechunker.peek()
        if pending is not None:
            sha.update(_block_bytes(pending))
        return sha.hexdigest()


def checksum_of(data: Any) -> str:
    """SHA-256 hex digest of ``data`` (see :class:`Checksum`)."""
    return Checksum(data).hexdigest()


Piece = tuple[int, str]
"""One data file's part of a delivery checksum: its rows and their :class:`Checksum` digest."""


def combine_pieces(schema: pa.Schema | None, pieces: Iterable[Piece]) -> str:
    """The digest of a delivery from its files' pieces, in the order of the files' paths.

    SHA-256 over a version tag, the canonical schema (when known), then, for each file that
    delivered rows, its row count (8 bytes, big-endian) and its 32-byte :class:`Checksum`
    digest. Files without rows are left out, so how many empty files a table has does not
    matter; the order and the content of the others does.
    """
    sha = hashlib.sha256(_DELIVERY_VERSION)
    if schema is not None:
        sha.update(_canonical_schema(schema))
    for rows, digest in pieces:
        if rows:
            sha.update(int(rows).to_bytes(8, "big"))
            sha.update(bytes.fromhex(digest))
    return sha.hexdigest()


class FileBoundaries:
    """Where each data file of a stream ends, counted in rows from the stream's start.

    The source appends to it as it reads (:meth:`end_file` after each file); a
    :class:`DeliveryChecksum` reads it to cut its pieces. Boundaries are row offsets, not
    events, so a reader running ahead of the checksum is harmless.
    """

    __slots__ = ("_ends", "_rows")

    def __init__(self) -> None:
        self._ends: list[int] = []
        self._rows = 0

    def end_file(self, rows: int) -> None:
        """The file just read had ``rows`` rows."""
        self._rows += rows
        self._ends.append(self._rows)

    @property
    def ends(self) -> list[int]:
        """The offsets known so far (a copy)."""
        return list(self._ends)

    def __len__(self) -> int:
        return len(self._ends)

    def end(self, index: int) -> int:
        """The offset where file ``index`` ends."""
        return self._ends[index]


class DeliveryChecksum:
    """The checksum of a delivery read file by file: a :class:`Checksum` per file, combined.

    Same interface as :class:`Checksum` (``update``, ``hexdigest``, ``rows``); rows must
    arrive in the order the source read them, and ``files`` must be fed by that source.
    :meth:`pieces` gives the per-file parts (what a Ray task returns to the driver);
    :meth:`hexdigest` is :func:`combine_pieces` of them.
    """

    __slots__ = ("_current", "_files", "_next_file", "_offset", "_pieces", "_schema")

    def __init__(self, files: FileBoundaries) -> None:
        self._files = files
        self._pieces: list[Piece] = []
        self._current = Checksum()
        self._schema: pa.Schema | None = None
        self._next_file = 0
        self._offset = 0

    @property
    def rows(self) -> int:
        """Rows hashed so far."""
        return self._offset

    def update(self, data: Any) -> None:
        """Add a table, a batch, a reader or an iterable of batches (in source order)."""
        if isinstance(data, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
            self._set_schema(data.schema)
        for batch in as_batches(data):
            self._set_schema(batch.schema)
            while batch.num_rows:
                self._close_finished()
                room = self._room()
                head = batch if room is None or room >= batch.num_rows else batch.slice(0, room)
                self._current.update(head)
                self._offset += head.num_rows
                batch = batch.slice(head.num_rows)

    def _set_schema(self, schema: pa.Schema) -> None:
        if self._schema is None:
            self._schema = schema
        elif not schema.equals(self._schema):
            raise ValueError(f"schema changed between batches: {self._schema} != {schema}")

    def _room(self) -> int | None:
        """Rows left in the current file, when its end is known."""
        if self._next_file < len(self._files):
            return self._files.end(self._next_file) - self._offset
        return None

    def _close_finished(self) -> None:
        while self._next_file < len(self._files) and self._files.end(self._next_file) <= (
            self._offset
        ):
            self._close()
            self._next_file += 1

    def _close(self) -> None:
        if self._current.rows:
            self._pieces.append((self._current.rows, self._current.hexdigest()))
        self._current = Checksum()

    def pieces(self) -> list[Piece]:
        """Every file's piece so far, the one still being read included (empty ones not)."""
        pieces = list(self._pieces)
        if self._current.rows:
            pieces.append((self._current.rows, self._current.hexdigest()))
        return pieces

    @property
    def schema(self) -> pa.Schema | None:
        """The schema of the rows (``None`` until the first update)."""
        return self._schema

    def hexdigest(self) -> str:
        """The delivery's digest: :func:`combine_pieces` of :meth:`pieces`."""
        return combine_pieces(self._schema, self.pieces())
