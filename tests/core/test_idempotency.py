"""Idempotency keys: stable across retries and processes, distinct across batches/destinations."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pyarrow as pa
from hypothesis import assume, given
from hypothesis import strategies as st

from floe_sink import checksum_of, idempotency_key, iter_chunks
from floe_sink.idempotency import KEY_PREFIX
from strategies import arrow_tables, rechunked_tables

DESTINATIONS = st.text(min_size=1, max_size=30)
POSITIONS = st.integers(min_value=0, max_value=10_000)


@given(table=arrow_tables(), destination=DESTINATIONS, position=POSITIONS)
def test_stable_across_retries(table: pa.Table, destination: str, position: int) -> None:
    first = idempotency_key(destination, table, position)
    again = idempotency_key(destination, table, position)  # the retry re-sends the same batch
    assert first == again
    assert first == idempotency_key(destination, checksum_of(table), position)
    assert first.startswith(KEY_PREFIX)
    assert len(first) == len(KEY_PREFIX) + 64


@given(pair=rechunked_tables(), destination=DESTINATIONS)
def test_independent_of_how_the_batch_is_held(
    pair: tuple[pa.Table, list[pa.RecordBatch]], destination: str
) -> None:
    table, batches = pair
    assert idempotency_key(destination, batches) == idempotency_key(destination, table)


@given(table=arrow_tables(), first=DESTINATIONS, second=DESTINATIONS, position=POSITIONS)
def test_distinct_across_destinations(
    table: pa.Table, first: str, second: str, position: int
) -> None:
    assume(first != second)
    assert idempotency_key(first, table, position) != idempotency_key(second, table, position)


@given(table=arrow_tables(min_rows=2), batch_size=st.integers(min_value=1, max_value=10))
def test_distinct_across_the_batches_of_a_delivery(table: pa.Table, batch_size: int) -> None:
    keys = [
        idempotency_key("crm", batch, position)
        for position, batch in enumerate(iter_chunks(table, batch_size))
    ]
    assert len(set(keys)) == len(keys)  # even two identical batches differ by position


def test_whole_delivery_key_differs_from_batch_keys() -> None:
    table = pa.table({"x": [1, 2]})
    assert idempotency_key("crm", table) != idempotency_key("crm", table, 0)


def test_different_content_gives_a_different_key() -> None:
    assert idempotency_key("crm", pa.table({"x": [1]}), 0) != idempotency_key(
        "crm", pa.table({"x": [2]}), 0
    )


def test_stable_across_processes() -> None:
    code = textwrap.dedent(
        """
        import pyarrow as pa
        from floe_sink import idempotency_key
        table = pa.table({"id": [1, 2, 3], "email": ["a@x", None, "c@x"]})
        print(idempotency_key("crm", table, 7))
        """
    )
    # Another interpreter with another hash seed: nothing process-specific may leak in.
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**__import__("os").environ, "PYTHONHASHSEED": "12345"},
    )
    table = pa.table({"id": [1, 2, 3], "email": ["a@x", None, "c@x"]})
    assert completed.stdout.strip() == idempotency_key("crm", table, 7)


def test_a_known_value() -> None:
    # Pinned: a key that changes between releases would re-deliver every batch once.
    assert idempotency_key("crm", "0" * 64, 0) == (
        "floe-" + __import__("hashlib").sha256(b"crm\x000\x00" + b"0" * 64).hexdigest()
    )
