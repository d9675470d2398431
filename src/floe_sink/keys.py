"""Primary-key checks over a stream of Arrow batches, run before anything is sent.

A ``merge`` (or any keyed write) is only well defined when every row has a complete key and
no key occurs twice: a NULL key cannot be matched, and two rows with the same key overwrite
each other in an order nobody chose. :func:`check_primary_key` reads the key columns of a
stream once and refuses such data with a :class:`~floe_sink.errors.SinkConfigurationError`
that says which destination, which column(s), how many rows, a few of the offending key
values (never values of any other column) and how to fix it.

The work is vectorised Arrow: one hash aggregation (``Table.group_by``) over the key columns
(skipped for a single integer or string key whose values are strictly increasing, as Gold
tables written in key order are), and only when something is duplicated a semi-join and a second
aggregation over the rows of the duplicated keys (to show the first ones in stream order); no
Python loop runs per row.
Only the key columns of each batch are kept, so memory grows with the keys (a few times their
size at the peak), not with the other columns of the batches. Values are compared within
their type: dictionary-encoded and view columns by their plain values, floating point keys as
a unique index compares them (``-0.0`` equals ``0.0``, every NaN equals every other NaN).

See ``docs/configuration.md`` for ``primary_key``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.chunking import as_batches
from floe_sink.errors import SinkConfigurationError

__all__ = ["MAX_EXAMPLES", "KeyStats", "KeyValue", "check_primary_key", "scan_primary_key"]

MAX_EXAMPLES = 5
"""The most offending key values an error message (and :class:`KeyStats`) shows."""

_MAX_VALUE_CHARS = 40
_COUNT = "count_all"
_ROW = "row"  # not a key column's name: those are renamed k0, k1, ...

KeyValue = tuple[Any, ...]
"""One key as Python values, in the order of the key columns (``None`` for NULL)."""


@attrs.frozen(kw_only=True)
class KeyStats:
    """What a scan of the key columns found.

    Attributes:
        key_columns: The key columns, in the order given.
        rows: Rows read.
        distinct_keys: Distinct keys among the rows with no NULL in any key column.
        null_rows: Key column -> rows in which that column is NULL.
        rows_with_nulls: Rows with a NULL in at least one key column.
        duplicate_keys: Complete keys that occur in more than one row.
        duplicate_rows: Rows that carry one of those keys (all of them, first ones included).
        null_examples: Up to :data:`MAX_EXAMPLES` keys holding a NULL, in stream order.
        duplicate_examples: Up to :data:`MAX_EXAMPLES` duplicated keys with the number of rows
            that carry each, in the order of their first occurrence.
    """

    key_columns: tuple[str, ...]
    rows: int = 0
    distinct_keys: int = 0
    null_rows: Mapping[str, int] = attrs.field(factory=dict, hash=False)
    rows_with_nulls: int = 0
    duplicate_keys: int = 0
    duplicate_rows: int = 0
    null_examples: tuple[KeyValue, ...] = ()
    duplicate_examples: tuple[tuple[KeyValue, int], ...] = ()

    @property
    def valid(self) -> bool:
        """True when every row has a complete key and no key occurs twice."""
        return self.rows_with_nulls == 0 and self.duplicate_keys == 0


def scan_primary_key(batches: Iterable[pa.RecordBatch], key_columns: Sequence[str]) -> KeyStats:
    """Count the NULL and duplicated keys of a stream, without judging them.

    Args:
        batches: Record batches holding at least the key columns (a ``pyarrow.Table`` or a
            ``RecordBatchReader`` works too). Consumed once; of each batch only the key
            columns are kept.
        key_columns: The primary key's column names, one or more, each once.

    Returns:
        The counts and a few examples; see :class:`KeyStats`.

    Raises:
        ValueError: ``key_columns`` is empty or names a column twice.
        SinkConfigurationError: A batch lacks a key column, or a key column has a type that
            cannot be a key (lists, structs, maps, unions).
        TypeError: A key column changes type between batches in a way Arrow cannot cast.
    """
    names = _key_names(key_columns)
    table = _collect(batches, names)
    if table is None:
        return KeyStats(key_columns=names, null_rows=dict.fromkeys(names, 0))
    return _analyse(table, names)


def check_primary_key(
    batches: Iterable[pa.RecordBatch],
    key_columns: Sequence[str],
    *,
    destination: str,
    source_table: str,
) -> KeyStats:
    """Refuse a stream whose primary key has NULLs or duplicates, before anything is sent.

    Args:
        batches: Record batches holding at least the key columns (see
            :func:`scan_primary_key`); consumed once.
        key_columns: The destination's ``primary_key`` columns.
        destination: The destination's name in floe.yaml, for the message.
        source_table: The Gold table read, for the message.

    Returns:
        The counts of a valid key (``rows == distinct_keys``, nothing NULL or duplicated).

    Raises:
        SinkConfigurationError: A key column holds NULLs or a key occurs more than once: the
            message names the destination and the column(s), counts the rows and shows at
            most :data:`MAX_EXAMPLES` offending key values. Also raised for a missing or
            unusable key column.
        ValueError: ``key_columns`` is empty or names a column twice.
        TypeError: A key column changes type between batches in a way Arrow cannot cast.
    """
    try:
        stats = scan_primary_key(batches, key_columns)
    except SinkConfigurationError as exc:
        raise SinkConfigurationError(
            f"Destination {destination!r}: {exc.message}",
            destination=destination,
            source_table=source_table,
        ) from exc
    if not stats.valid:
        raise SinkConfigurationError(
            _violation_message(stats, destination, source_table),
            destination=destination,
            source_table=source_table,
        )
    return stats


# -- reading ----------------------------------------------------------------------------------


def _key_names(key_columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(key_columns, str):
        raise ValueError(f"key_columns must be a sequence of names, not the string {key_columns!r}")
    names = tuple(key_columns)
    if not names:
        raise ValueError("key_columns must name at least one column")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"key_columns names column(s) more than once: {', '.join(repeated)}")
    return names


def _collect(batches: Iterable[pa.RecordBatch], names: tuple[str, ...]) -> pa.Table | None:
    """The key columns of every batch as one (chunked) table; ``None`` for no batch at all."""
    chunks: list[list[pa.Array]] = [[] for _ in names]
    types: list[list[pa.DataType]] = [[] for _ in names]
    for batch in as_batches(batches):
        arrays = [_normalise(_key_column(batch, name)) for name in names]
        for index, array in enumerate(arrays):
            if array.type not in types[index]:
                _check_key_type(names[index], array.type)
                types[index].append(array.type)
            if len(array):
                chunks[index].append(array)
        del batch, arrays  # keep nothing of the batch but its key columns
    if not types[0]:
        return None
    columns = [
        _chunked(name, pieces, seen)
        for name, pieces, seen in zip(names, chunks, types, strict=True)
    ]
    return pa.Table.from_arrays(columns, names=[f"k{index}" for index in range(len(names))])


def _key_column(batch: pa.RecordBatch, name: str) -> pa.Array:
    indices = batch.schema.get_all_field_indices(name)
    if len(indices) == 1:
        return batch.column(indices[0])
    if not indices:
        raise SinkConfigurationError(
            f"primary_key column {name!r} is not in the data read; the columns read are "
            f"{', '.join(batch.schema.names) or '(none)'}. Name a column of the source table in "
            "primary_key (and in columns, when columns is set)."
        )
    raise SinkConfigurationError(
        f"primary_key column {name!r} appears {len(indices)} times in the data read; "
        "rename the columns in the Gold model so that the key column is unambiguous."
    )


def _normalise(array: pa.Array) -> pa.Array:
    """Make equal keys equal bit for bit, as Arrow's hashing compares them."""
    if pa.types.is_dictionary(array.type):
        # Dictionaries differ from batch to batch; compare the values they stand for.
        array = array.dictionary_decode()
    if pa.types.is_string_view(array.type) or pa.types.is_binary_view(array.type):
        # Views can be grouped but not joined on nor taken from: compare them as plain values.
        array = pc.cast(array, pa.string() if pa.types.is_string_view(array.type) else pa.binary())
    if pa.types.is_float32(array.type) or pa.types.is_float64(array.type):
        array = pc.add(array, pa.scalar(0, array.type))  # -0.0 + 0.0 == +0.0
        array = pc.if_else(pc.is_nan(array), pa.scalar(math.nan, array.type), array)
    return array


def _check_key_type(name: str, type_: pa.DataType) -> None:
    if pa.types.is_nested(type_):
        raise SinkConfigurationError(
            f"primary_key column {name!r} has type {type_}, which cannot be part of a key: "
            "lists, structs, maps and unions have no equality a destination could index. "
            "Choose scalar columns for primary_key."
        )


def _chunked(name: str, pieces: list[pa.Array], seen: list[pa.DataType]) -> pa.ChunkedArray:
    """The pieces of one key column as one chunked array of one type.

    ``seen`` lists the column's types in the order the batches brought them. When the type
    changed between batches (``string`` then ``large_string``, or an all-NULL first batch of
    the null type), every piece is cast to the first type that is not the null type.
    """
    if len(seen) == 1:
        return pa.chunked_array(pieces, type=seen[0])
    target = next((type_ for type_ in seen if not pa.types.is_null(type_)), seen[0])
    try:
        cast = [piece if piece.type == target else pc.cast(piece, target) for piece in pieces]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        found = ", ".join(str(type_) for type_ in seen)
        raise TypeError(
            f"key column {name!r} changes type between batches ({found}): {exc}"
        ) from exc
    return pa.chunked_array(cast, type=target)


# -- counting ---------------------------------------------------------------------------------


def _analyse(table: pa.Table, names: tuple[str, ...]) -> KeyStats:
    keys = table.column_names
    null_rows = {
        name: int(table.column(key).null_count) for name, key in zip(names, keys, strict=True)
    }
    complete = table
    rows_with_nulls = 0
    null_examples: tuple[KeyValue, ...] = ()
    nullable = [key for name, key in zip(names, keys, strict=True) if null_rows[name]]
    if nullable:
        mask = pc.is_null(table.column(nullable[0]))
        for key in nullable[1:]:
            mask = pc.or_(mask, pc.is_null(table.column(key)))
        rows_with_nulls = int(pc.sum(mask).as_py())
        first_rows = pc.indices_nonzero(mask).slice(0, MAX_EXAMPLES)
        null_examples = _key_values(table.take(first_rows), keys)
        complete = table.filter(pc.invert(mask))

    stats = KeyStats(
        key_columns=names,
        rows=table.num_rows,
        distinct_keys=complete.num_rows,  # until the grouping below says otherwise
        null_rows=null_rows,
        rows_with_nulls=rows_with_nulls,
        null_examples=null_examples,
    )
    if len(keys) == 1 and _all_distinct(complete.column(keys[0])):
        return stats  # a key written in order (a Gold table's usual layout) needs no grouping
    try:
        grouped = complete.group_by(keys, use_threads=False).aggregate([([], _COUNT)])
    except pa.ArrowNotImplementedError as exc:  # a type Arrow cannot hash, e.g. an extension
        types = ", ".join(
            f"{name!r} ({table.schema.field(key).type})"
            for name, key in zip(names, keys, strict=True)
        )
        raise SinkConfigurationError(
            f"primary_key column(s) {types} cannot be compared as a key ({exc}). Choose "
            "scalar columns for primary_key."
        ) from exc
    if grouped.num_rows == complete.num_rows:
        return stats  # every complete key once: the common case ends here
    duplicates = grouped.filter(pc.greater(grouped.column(_COUNT), 1))
    shown = _first_duplicates(complete, duplicates.select(keys), keys)
    return attrs.evolve(
        stats,
        distinct_keys=grouped.num_rows,
        duplicate_keys=duplicates.num_rows,
        duplicate_rows=int(pc.sum(duplicates.column(_COUNT)).as_py()),
        duplicate_examples=tuple(
            zip(
                _key_values(shown, keys),
                (int(count) for count in shown.column(_COUNT).to_pylist()),
                strict=True,
            )
        ),
    )


def _all_distinct(column: pa.ChunkedArray) -> bool:
    """True when a column of integers, strings or binaries (no NULLs) is strictly increasing,
    so holds each value once: one vectorised comparison of neighbours, where the ``group_by``
    hashes every key (Gold tables are often written in key order). ``False`` says nothing:
    the ``group_by`` decides. Floats (-0.0 and NaN compare as a unique index does) always go
    through the ``group_by``. (``count_distinct`` was measured: ~1 GB for 5M integers.)"""
    kind = column.type
    plain = (
        pa.types.is_integer(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )
    if not plain or column.null_count:
        return False
    values = column.combine_chunks()
    if len(values) < 2:
        return True
    rising = pc.greater(values.slice(1), values.slice(0, len(values) - 1))
    return bool(pc.all(rising).as_py())


def _first_duplicates(complete: pa.Table, duplicated: pa.Table, keys: list[str]) -> pa.Table:
    """The first :data:`MAX_EXAMPLES` duplicated keys in stream order, with their counts.

    The grouper's output order follows its hash table, not the input, so the keys are ranked
    by the first row that carries them. Only the rows of duplicated keys are grouped again: a
    semi-join picks them out.
    """
    numbered = complete.append_column(_ROW, pc.indices_nonzero(pa.repeat(True, len(complete))))
    candidates = numbered.join(duplicated, keys, join_type="left semi", use_threads=False)
    ranked = candidates.group_by(keys, use_threads=False).aggregate([([], _COUNT), (_ROW, "min")])
    ranked = ranked.filter(pc.greater(ranked.column(_COUNT), 1))
    first = pc.select_k_unstable(ranked, k=MAX_EXAMPLES, sort_keys=[(f"{_ROW}_min", "ascending")])
    return ranked.take(first)


def _key_values(table: pa.Table, keys: list[str]) -> tuple[KeyValue, ...]:
    """The keys of a few rows (at most :data:`MAX_EXAMPLES`) as Python tuples."""
    columns = [table.column(key).to_pylist() for key in keys]
    return tuple(zip(*columns, strict=True))


# -- the message ------------------------------------------------------------------------------


def _violation_message(stats: KeyStats, destination: str, source_table: str) -> str:
    composite = len(stats.key_columns) > 1
    key = f"({', '.join(stats.key_columns)})" if composite else stats.key_columns[0]
    problems: list[str] = []
    if stats.rows_with_nulls:
        per_column = ", ".join(
            f"{_rows(count)} in {name}" for name, count in stats.null_rows.items() if count
        )
        text = f"NULL keys: {per_column}"
        if composite:
            examples = ", ".join(_format_key(value) for value in stats.null_examples)
            more = _more(len(stats.null_examples), stats.rows_with_nulls)
            text += (
                f" ({_rows(stats.rows_with_nulls)} with an incomplete key, e.g. {examples}{more})"
            )
        problems.append(text)
    if stats.duplicate_keys:
        examples = ", ".join(
            f"{_format_key(value)} in {count:,} rows" for value, count in stats.duplicate_examples
        )
        values = "value occurs" if stats.duplicate_keys == 1 else "values occur"
        more = _more(len(stats.duplicate_examples), stats.duplicate_keys)
        problems.append(
            f"duplicate keys: {stats.duplicate_keys:,} key {values} more than once, spanning "
            f"{_rows(stats.duplicate_rows)}, e.g. {examples}{more}"
        )
    return (
        f"Destination {destination!r}: primary_key {key} must be unique and never NULL, but in "
        f"the {_rows(stats.rows)} read from {source_table}: {'; '.join(problems)}. Fix: "
        "deduplicate in the Gold model (one row per key, no NULL in a key column), or choose "
        "another primary_key for this destination in floe.yaml."
    )


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _more(shown: int, total: int) -> str:
    return f" and {total - shown:,} more" if total > shown else ""


def _format_key(key: KeyValue) -> str:
    values = [_format_value(value) for value in key]
    return values[0] if len(values) == 1 else f"({', '.join(values)})"


def _format_value(value: object) -> str:
    if value is None:
        return "NULL"
    text = repr(value) if isinstance(value, str | bytes) else str(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text
