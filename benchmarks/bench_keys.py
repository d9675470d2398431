"""Benchmark: ``floe_sink.keys.check_primary_key`` over 5,000,000 keys of each kind.

    python benchmarks/bench_keys.py [--rows 5000000] [--batch-rows 65536] [--repeat 3]

Each case is a stream of record batches of ``--batch-rows`` rows holding only the key
column(s), all keys distinct and in shuffled order (the check's worst case: nothing is sorted
and every key reaches the hash table). Cases: ``int64`` keys, short ``string`` keys
(``C0000000``-style, 8 characters), the same strings dictionary-encoded batch by batch, a
composite ``(int64, string)`` key, and ``int64`` keys of which one occurs twice (the refusal:
the extra work of finding and showing the duplicate). The data is built before the clock
starts; the time covers the whole check (reading the batches, the hash aggregation, the
verdict). Prints the median and the best of ``--repeat`` rounds per case. Not part of the test
suite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.errors import SinkConfigurationError
from floe_sink.keys import check_primary_key


def shuffled_ints(rows: int) -> pa.Array:
    """``0 .. rows - 1`` in a deterministic shuffled order."""
    return pc.cast(pc.sort_indices(pc.random(rows, initializer=42)), pa.int64())


def short_strings(ints: pa.Array) -> pa.Array:
    """``C`` and seven zero-padded digits of each int: 8-character distinct strings."""
    return pc.binary_join_element_wise("C", pc.utf8_lpad(pc.cast(ints, pa.string()), 7, "0"), "")


def as_stream(columns: dict[str, pa.Array], batch_rows: int) -> list[pa.RecordBatch]:
    """The columns cut into batches of ``batch_rows`` rows (zero-copy slices)."""
    return pa.table(columns).combine_chunks().to_batches(max_chunksize=batch_rows)


def dictionary_per_batch(batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """Each batch with its string columns dictionary-encoded on their own, as Parquet gives."""
    return [
        pa.record_batch(
            [
                column.dictionary_encode() if pa.types.is_string(column.type) else column
                for column in batch.columns
            ],
            names=batch.schema.names,
        )
        for batch in batches
    ]


def time_check(batches: list[pa.RecordBatch], keys: list[str]) -> float:
    """Seconds for one check of ``batches``: to the verdict, a pass or a refusal."""
    start = time.perf_counter()
    with contextlib.suppress(SinkConfigurationError):  # the refusal is a verdict too
        check_primary_key(iter(batches), keys, destination="bench", source_table="bench.t")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    ints = shuffled_ints(args.rows)
    strings = short_strings(ints)
    plain = as_stream({"s": strings}, args.batch_rows)
    with_duplicate = pc.if_else(pc.equal(ints, 0), 1, ints)  # refused: the failure path
    cases: dict[str, Callable[[], tuple[list[pa.RecordBatch], list[str]]]] = {
        "int64": lambda: (as_stream({"id": ints}, args.batch_rows), ["id"]),
        "string (8 chars)": lambda: (plain, ["s"]),
        "dictionary<string>": lambda: (dictionary_per_batch(plain), ["s"]),
        "(int64, string)": lambda: (
            as_stream({"id": ints, "s": strings}, args.batch_rows),
            ["id", "s"],
        ),
        "int64, 1 duplicate": lambda: (as_stream({"id": with_duplicate}, args.batch_rows), ["id"]),
    }
    print(
        f"{args.rows:,} keys in batches of {args.batch_rows:,} rows; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pyarrow {pa.__version__}; "
        f"median (best) of {args.repeat}"
    )
    for name, build in cases.items():
        batches, keys = build()
        times = [time_check(batches, keys) for _ in range(args.repeat)]
        print(f"{name:>20}: {statistics.median(times):6.3f} s ({min(times):.3f} s)")


if __name__ == "__main__":
    main()
