"""check_primary_key / scan_primary_key: NULL and duplicate keys found, counted and explained.

The properties compare the vectorised implementation with :func:`reference`, a plain Python
reading of the same rows.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs
import pyarrow as pa
import pytest
from hypothesis import given

from floe_sink.errors import ErrorCategory, SinkConfigurationError
from floe_sink.keys import MAX_EXAMPLES, KeyStats, check_primary_key, scan_primary_key
from strategies import PAYLOAD_PREFIX, KeyStream, key_streams

DEST = "crm_contacts"
TABLE = "gold.customers"


# -- the reference ----------------------------------------------------------------------------

_NAN = ("NaN",)  # NaN != NaN in Python; a unique index (and Arrow) takes all NaNs as one value


def _canonical(value: Any) -> Any:
    return _NAN if isinstance(value, float) and math.isnan(value) else value


def _canonical_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_canonical(value) for value in key)


def reference(table: pa.Table, key_columns: list[str]) -> KeyStats:
    """What a row-by-row reading finds: the semantics ``floe_sink.keys`` must have."""
    rows = table.select(key_columns).to_pylist()
    keys = [tuple(_canonical(row[name]) for name in key_columns) for row in rows]
    incomplete = [key for key in keys if None in key]
    counts = Counter(key for key in keys if None not in key)  # in order of first occurrence
    repeated = [(key, count) for key, count in counts.items() if count > 1]
    return KeyStats(
        key_columns=tuple(key_columns),
        rows=len(rows),
        distinct_keys=len(counts),
        null_rows={name: sum(row[name] is None for row in rows) for name in key_columns},
        rows_with_nulls=len(incomplete),
        duplicate_keys=len(repeated),
        duplicate_rows=sum(count for _, count in repeated),
        null_examples=tuple(incomplete[:MAX_EXAMPLES]),
        duplicate_examples=tuple(repeated[:MAX_EXAMPLES]),
    )


def _comparable(stats: KeyStats) -> dict[str, Any]:
    fields = attrs.asdict(stats, recurse=False)
    fields["null_rows"] = dict(stats.null_rows)
    fields["null_examples"] = [_canonical_key(key) for key in stats.null_examples]
    fields["duplicate_examples"] = [
        (_canonical_key(key), count) for key, count in stats.duplicate_examples
    ]
    return fields


def _check(data: Any, key_columns: list[str]) -> KeyStats:
    return check_primary_key(data, key_columns, destination=DEST, source_table=TABLE)


def _refusal(data: Any, key_columns: list[str]) -> SinkConfigurationError:
    with pytest.raises(SinkConfigurationError) as caught:
        _check(data, key_columns)
    return caught.value


def _batch(**columns: Any) -> pa.RecordBatch:
    return pa.record_batch(
        {name: v if isinstance(v, pa.Array) else pa.array(v) for name, v in columns.items()}
    )


# -- properties -------------------------------------------------------------------------------


@given(stream=key_streams())
def test_scan_finds_what_the_reference_finds(stream: KeyStream) -> None:
    found = scan_primary_key(iter(stream.batches), stream.key_columns)
    expected = reference(stream.table, stream.key_columns)
    assert _comparable(found) == _comparable(expected)


@given(stream=key_streams())
def test_check_refuses_exactly_the_streams_with_a_bad_key(stream: KeyStream) -> None:
    expected = reference(stream.table, stream.key_columns)
    if expected.valid:
        stats = _check(stream.batches, stream.key_columns)
        assert stats.valid
        assert stats.distinct_keys == stats.rows == stream.table.num_rows
        return
    error = _refusal(stream.batches, stream.key_columns)
    assert error.category is ErrorCategory.CONFIGURATION
    assert error.destination == DEST
    message = str(error)
    assert f"Destination {DEST!r}" in message
    assert TABLE in message
    assert "deduplicate in the Gold model" in message
    assert "choose another primary_key" in message
    for name, count in expected.null_rows.items():
        if count:
            assert f"{count:,} row{'s' if count > 1 else ''} in {name}" in message
    if expected.duplicate_keys:
        assert f"{expected.duplicate_keys:,} key value" in message
        assert f"spanning {expected.duplicate_rows:,} rows" in message


@given(stream=key_streams())
def test_the_message_shows_no_value_of_another_column(stream: KeyStream) -> None:
    if reference(stream.table, stream.key_columns).valid:
        return
    message = str(_refusal(stream.batches, stream.key_columns))
    assert PAYLOAD_PREFIX not in message
    duplicates_shown = re.findall(r" in [\d,]+ rows(?=, |\. | and )", message)
    assert len(duplicates_shown) <= MAX_EXAMPLES


@given(stream=key_streams())
def test_one_batch_or_many_give_the_same_stats(stream: KeyStream) -> None:
    whole = scan_primary_key([stream.table], stream.key_columns)
    cut = scan_primary_key(stream.batches, stream.key_columns)
    assert _comparable(whole) == _comparable(cut)


# -- valid keys -------------------------------------------------------------------------------


def test_a_valid_key_returns_its_counts() -> None:
    batches = [_batch(id=[3, 1], name=["a", "a"]), _batch(id=[2], name=["b"])]
    stats = _check(batches, ["id"])
    assert stats == KeyStats(key_columns=("id",), rows=3, distinct_keys=3, null_rows={"id": 0})
    assert stats.valid


def test_a_composite_key_of_mixed_types_is_unique_as_a_whole() -> None:
    batch = _batch(
        account=[1, 1, 2, 2],
        region=pa.array(["eu", "us", "eu", "us"]).dictionary_encode(),
        day=pa.array([datetime.date(2024, 1, 1)] * 4),
        amount=pa.array([decimal.Decimal("1.50")] * 4, pa.decimal128(10, 2)),
        at=pa.array([datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)] * 4),
    )
    stats = _check([batch], ["account", "region", "day", "amount", "at"])
    assert (stats.rows, stats.distinct_keys) == (4, 4)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([], id="no batch"),
        pytest.param(iter([]), id="empty iterator"),
        pytest.param([_batch(id=pa.array([], pa.int64()))] * 3, id="zero-row batches"),
        pytest.param(pa.table({"id": pa.array([], pa.int64())}), id="empty table"),
    ],
)
def test_empty_input_is_a_valid_key(data: Any) -> None:
    stats = _check(data, ["id"])
    assert stats == KeyStats(key_columns=("id",), null_rows={"id": 0})


def test_tables_readers_and_generators_are_read_once() -> None:
    table = pa.table({"id": [1, 2, 3]})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    assert _check(reader, ["id"]).rows == 3
    assert _check(table, ["id"]).rows == 3
    assert _check(iter(table.to_batches(max_chunksize=1)), ["id"]).rows == 3


# -- duplicates -------------------------------------------------------------------------------


def test_duplicates_are_counted_and_named() -> None:
    batches = [
        _batch(id=[1, 2, 3, 2], email=["a@x", "b@x", "c@x", "d@x"]),
        _batch(id=[2, 1, 4], email=["e@x", "f@x", "g@x"]),
    ]
    message = str(_refusal(batches, ["id"]))
    assert message == (
        "Destination 'crm_contacts': primary_key id must be unique and never NULL, but in the "
        "7 rows read from gold.customers: duplicate keys: 2 key values occur more than once, "
        "spanning 5 rows, e.g. 1 in 2 rows, 2 in 3 rows. Fix: deduplicate in the Gold model "
        "(one row per key, no NULL in a key column), or choose another primary_key for this "
        "destination in floe.yaml. [destination=crm_contacts, source_table=gold.customers]"
    )
    assert "@x" not in message


def test_a_composite_key_shows_whole_keys_in_order_of_first_occurrence() -> None:
    batch = _batch(
        account=[7, 7, 8, 7, 8, 9],
        region=["us", "eu", "eu", "us", "eu", "eu"],
        secret=["s0", "s1", "s2", "s3", "s4", "s5"],
    )
    stats = scan_primary_key([batch], ["account", "region"])
    assert stats.duplicate_examples == (((7, "us"), 2), ((8, "eu"), 2))
    message = str(_refusal([batch], ["account", "region"]))
    assert "primary_key (account, region)" in message
    assert "(7, 'us') in 2 rows, (8, 'eu') in 2 rows." in message
    assert "'s" not in message.replace("'us'", "")


def test_at_most_five_duplicates_are_shown() -> None:
    ids = pa.array([n // 3 for n in range(300)], pa.int64())  # 100 keys, 3 rows each
    stats = scan_primary_key([_batch(id=ids)], ["id"])
    assert (stats.duplicate_keys, stats.duplicate_rows) == (100, 300)
    assert stats.duplicate_examples == tuple(((n,), 3) for n in range(MAX_EXAMPLES))
    message = str(_refusal([_batch(id=ids)], ["id"]))
    assert "e.g. 0 in 3 rows, 1 in 3 rows, 2 in 3 rows, 3 in 3 rows, 4 in 3 rows and 95 more" in (
        message
    )
    assert "5 in 3 rows" not in message


def test_dictionaries_that_differ_per_batch_compare_by_value() -> None:
    first = pa.array(["b", "a"]).dictionary_encode()  # "a" is index 1 here ...
    second = pa.array(["a", "c"]).dictionary_encode()  # ... and index 0 here
    batches = [_batch(code=first), _batch(code=second)]
    stats = scan_primary_key(batches, ["code"])
    assert stats.duplicate_examples == ((("a",), 2),)
    assert stats.distinct_keys == 3


def test_float_keys_compare_as_a_unique_index_does() -> None:
    batch = _batch(x=pa.array([0.0, -0.0, math.nan, float("nan"), 1.0]))
    stats = scan_primary_key([batch], ["x"])
    assert stats.distinct_keys == 3
    assert stats.duplicate_examples[0] == ((0.0,), 2)
    assert math.isnan(stats.duplicate_examples[1][0][0])


def test_view_types_compare_as_plain_values() -> None:
    codes = pa.array(["z", "b", "a", "b", "a", "z", None], pa.string_view())
    blobs = pa.array([b"1", b"1", b"1", b"1", b"1", b"1", b"2"], pa.binary_view())
    stats = scan_primary_key([_batch(code=codes, blob=blobs)], ["code", "blob"])
    assert stats.duplicate_examples == ((("z", b"1"), 2), (("b", b"1"), 2), (("a", b"1"), 2))
    assert stats.null_examples == ((None, b"2"),)


def test_long_values_are_cut_in_the_message() -> None:
    long = "x" * 500
    message = str(_refusal([_batch(name=[long, long])], ["name"]))
    assert long[:30] in message
    assert long[:60] not in message
    assert "..." in message


# -- NULLs ------------------------------------------------------------------------------------


def test_nulls_are_counted_per_column() -> None:
    batches = [
        _batch(account=[1, None, 3], region=["eu", None, None], secret=["a", "b", "c"]),
        _batch(account=pa.array([None], pa.int64()), region=["us"], secret=["d"]),
    ]
    stats = scan_primary_key(batches, ["account", "region"])
    assert stats.null_rows == {"account": 2, "region": 2}
    assert stats.rows_with_nulls == 3
    assert stats.null_examples == ((None, None), (3, None), (None, "us"))
    message = str(_refusal(batches, ["account", "region"]))
    assert "NULL keys: 2 rows in account, 2 rows in region" in message
    assert "(3 rows with an incomplete key, e.g. (NULL, NULL), (3, NULL), (NULL, 'us'))" in message
    assert "duplicate keys" not in message


def test_at_most_five_incomplete_keys_are_shown() -> None:
    batch = _batch(a=pa.array([None] * 8, pa.int64()), b=list(range(8)))
    stats = scan_primary_key([batch], ["a", "b"])
    assert stats.null_examples == tuple((None, n) for n in range(MAX_EXAMPLES))
    message = str(_refusal([batch], ["a", "b"]))
    assert "(NULL, 3), (NULL, 4) and 3 more)" in message


def test_a_single_null_column_says_so_without_examples() -> None:
    message = str(_refusal([_batch(id=[1, None, 2])], ["id"]))
    assert "in the 3 rows read from gold.customers: NULL keys: 1 row in id. Fix:" in message


def test_rows_with_a_null_are_not_duplicates() -> None:
    batch = _batch(a=[1, 1, 1], b=pa.array([None, None, 2], pa.int64()))
    stats = scan_primary_key([batch], ["a", "b"])
    assert (stats.rows_with_nulls, stats.duplicate_keys, stats.distinct_keys) == (2, 0, 1)


def test_nulls_and_duplicates_are_both_reported() -> None:
    message = str(_refusal([_batch(id=[1, 1, None])], ["id"]))
    assert "NULL keys: 1 row in id; duplicate keys: 1 key value occurs more than once" in message


# -- memory -----------------------------------------------------------------------------------


def test_only_the_key_columns_are_kept() -> None:
    rows, batches, payload = 10_000, 20, b"p" * 100  # 1 MB of payload a batch, 80 kB of keys
    held: list[int] = []

    def stream() -> Iterator[pa.RecordBatch]:
        for index in range(batches):
            yield _batch(
                id=pa.array(range(index * rows, (index + 1) * rows), pa.int64()),
                payload=pa.array([payload] * rows, pa.binary()),
            )
            held.append(pa.total_allocated_bytes())

    before = pa.total_allocated_bytes()
    assert _check(stream(), ["id"]).rows == rows * batches
    growth = max(held) - before
    # Keys of every batch (1.6 MB) and at most a couple of live batches; not 20 MB of payload.
    assert growth < 6_000_000, growth


# -- bad keys and bad arguments ---------------------------------------------------------------


def test_a_missing_key_column_is_a_configuration_error() -> None:
    error = _refusal([_batch(id=[1], name=["a"])], ["customer_id"])
    assert error.category is ErrorCategory.CONFIGURATION
    assert "'customer_id' is not in the data read" in str(error)
    assert "id, name" in str(error)
    assert str(error).startswith(f"Destination {DEST!r}: ")


def test_an_ambiguous_key_column_is_a_configuration_error() -> None:
    batch = pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], names=["id", "id"])
    assert "'id' appears 2 times" in str(_refusal([batch], ["id"]))


def test_a_nested_key_column_is_refused() -> None:
    batch = _batch(tags=pa.array([[1], [2]]))
    message = str(_refusal([batch], ["tags"]))
    assert "'tags' has type list<item: int64>, which cannot be part of a key" in message


def test_a_key_column_may_widen_between_batches() -> None:
    batches = [
        _batch(id=pa.array([None, None], pa.null())),
        _batch(id=pa.array(["a"], pa.string())),
        _batch(id=pa.array(["a"], pa.large_string())),
    ]
    stats = scan_primary_key(batches, ["id"])
    assert (stats.null_rows, stats.duplicate_examples) == ({"id": 2}, ((("a",), 2),))


def test_a_key_column_that_changes_type_is_a_type_error() -> None:
    batches = [_batch(id=pa.array([1])), _batch(id=pa.array(["not a number"]))]
    with pytest.raises(TypeError, match="'id' changes type between batches"):
        scan_primary_key(batches, ["id"])


@pytest.mark.parametrize(
    ("key_columns", "match"),
    [([], "at least one"), (["id", "id"], "more than once: id"), ("id", "not the string")],
)
def test_bad_key_columns_are_a_value_error(key_columns: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _check([_batch(id=[1])], key_columns)


@pytest.mark.parametrize(
    ("values", "duplicates"),
    [
        (list(range(10)), 0),  # in key order: no grouping needed
        ([0, 1, 2, 2, 3], 1),  # in order but not strictly: the grouping finds the repeat
        (["a", "b", "c"], 0),
        (["a", "c", "b", "c"], 1),
    ],
)
def test_keys_in_order_are_checked_as_any_others(values: list[Any], duplicates: int) -> None:
    batches = [pa.record_batch({"id": values[:2]}), pa.record_batch({"id": values[2:]})]
    stats = scan_primary_key(batches, ["id"])
    assert (stats.rows, stats.duplicate_keys) == (len(values), duplicates)
    assert stats.distinct_keys == len(set(values))
