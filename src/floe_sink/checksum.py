"""A SHA-256 checksum of Arrow content that does not depend on how the data is chunked.

The digest covers the schema (column names, types, nullability) and every value. Input is
re-cut into fixed canonical blocks before hashing, dictionary columns are decoded and the
bytes under null slots are normalised, so the same rows give the same digest whether they
arrive as one table, as 1-row batches or anything in between; any changed value, column name
or type changes it. Hashing runs at roughly the speed of SHA-256 over the Arrow buffers.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.chunking import Rechunker, as_batches

__all__ = ["BLOCK_ROWS", "Checksum", "checksum_of"]

BLOCK_ROWS = 65_536
"""Rows per canonical block; part of the digest's definition, so never change it."""

_VERSION = b"floe-sink-checksum-v1\x00"


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
