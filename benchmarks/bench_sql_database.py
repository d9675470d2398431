"""Benchmark: the sql_database sink into PostgreSQL against a raw psycopg CSV COPY.

Run from the repository root (not part of the test suite)::

    .venv/bin/python benchmarks/bench_sql_database.py [--rows 1000000] [--repeat 3]

It starts a throwaway PostgreSQL (default durability: fsync on), builds the 8-column table
once (saved as Arrow IPC), and runs every case in a child process so that each one's peak RSS
is its own. Cases:

* ``raw_copy``: psycopg ``COPY ... FROM STDIN (FORMAT csv)`` fed by pyarrow's CSV writer in
  50,000-row chunks, into a new table (the baseline);
* ``sink_append``: ``SqlDatabaseSink.write`` with ``write_disposition: append`` into a new table;
* ``sink_merge``: ``write_disposition: merge`` of the same rows into a table already holding
  them (filled by a raw COPY beforehand, so the sink's ledger knows nothing of them).

Prints rows/s and peak RSS (and RSS over the loaded table) per case (median of ``--repeat``),
the ratios, and exits 1 when a ratio misses its target (append >= 0.6, merge >= 0.35).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests"), str(ROOT / "src")]

TARGETS = {"sink_append": 0.6, "sink_merge": 0.35}
DDL = (
    '"id" BIGINT{pk}, "name" TEXT, "email" TEXT, "amount" DOUBLE PRECISION, '
    '"updated_at" TIMESTAMPTZ, "active" BOOLEAN, "quantity" INTEGER, "category" TEXT'
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _load(path: str) -> Any:
    import pyarrow as pa

    with pa.memory_map(path) as source:
        return pa.ipc.open_file(source).read_all().combine_chunks()


def _raw_copy(url: str, table: Any, name: str, *, primary_key: bool = False) -> None:
    import psycopg
    import pyarrow.csv as pacsv

    options = pacsv.WriteOptions(include_header=False)
    with psycopg.connect(url) as conn:
        conn.execute(
            f'CREATE TABLE "{name}" ({DDL.format(pk=" PRIMARY KEY" if primary_key else "")})'
        )
        with conn.cursor() as cursor, cursor.copy(f'COPY "{name}" FROM STDIN (FORMAT csv)') as copy:
            for batch in table.to_batches(50_000):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getbuffer())
        conn.commit()


def _sink(url: str, name: str, disposition: str) -> Any:
    from floe_sink import SinkConfig
    from floe_sink_dlt.sql import SqlDatabaseSink

    return SqlDatabaseSink.from_config(
        SinkConfig(
            sink_type="sql_database",
            connection_config={"url": url, "table": name},
            destination=f"bench_{name}",
            write_disposition=disposition,
            primary_key=["id"] if disposition == "merge" else None,
        )
    )


def child(case: str, url: str, data: str, name: str) -> dict[str, float]:
    """Run one case in this process; return seconds and memory figures."""
    table = _load(data)
    if case == "sink_merge":  # untimed set-up: the table already holds the rows
        _raw_copy(url, table, name, primary_key=True)
    # imports are not part of the timing
    import adbc_driver_postgresql.dbapi  # noqa: F401
    import psycopg  # noqa: F401
    import pyarrow.csv  # noqa: F401

    import floe_sink_dlt.sql.postgres
    import floe_sink_dlt.sql.sink  # noqa: F401

    loaded = _rss_mb()
    started = time.perf_counter()
    if case == "raw_copy":
        _raw_copy(url, table, name)
    else:
        result = _sink(url, name, case.removeprefix("sink_")).write(table)
        if not result.success or result.rows_delivered != table.num_rows:
            raise SystemExit(f"{case} failed: {result.errors}")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": table.num_rows,
        "peak_mb": _peak_mb(),
        "over_mb": _peak_mb() - loaded,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("CASE", "URL", "DATA", "TABLE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0

    import logging

    import pyarrow as pa
    from _data import build_table

    from fixtures.postgres import PostgresCluster

    logging.getLogger("dlt").setLevel(logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, PostgresCluster.start(fsync=True) as cluster:
        data = str(Path(tmp) / "table.arrow")
        table = build_table(args.rows)
        with pa.OSFile(data, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        del table
        url = cluster.create_database("bench")
        print(
            f"PostgreSQL {cluster.psql('SHOW server_version').strip()}, fsync "
            f"{cluster.psql('SHOW fsync').strip()}; {args.rows:,} rows; {os.cpu_count()} CPUs"
        )
        for run in range(args.repeat):
            for case in ("raw_copy", "sink_append", "sink_merge"):
                name = f"{case}_{run}"
                env = dict(os.environ)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", case, url, data, name],
                    check=True,
                    capture_output=True,
                    text=True,
                    env=env,
                )
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault(case, []).append(figures)
                rate = figures["rows"] / figures["seconds"]
                print(
                    f"  run {run + 1} {case:12} {rate:>10,.0f} rows/s  "
                    f"peak RSS {figures['peak_mb']:,.0f} MB (+{figures['over_mb']:,.0f} MB)"
                )
                cluster.psql(f'DROP TABLE "{name}"', database="bench")

    def median_rate(case: str) -> float:
        return statistics.median(r["rows"] / r["seconds"] for r in results[case])

    baseline = median_rate("raw_copy")
    failed = False
    print("\nmedian of", args.repeat, "runs:")
    for case in ("raw_copy", "sink_append", "sink_merge"):
        rate = median_rate(case)
        peak = statistics.median(r["peak_mb"] for r in results[case])
        over = statistics.median(r["over_mb"] for r in results[case])
        line = (
            f"  {case:12} {rate:>10,.0f} rows/s  "
            f"peak RSS {peak:,.0f} MB (+{over:,.0f} MB over the table)"
        )
        if case in TARGETS:
            ratio = rate / baseline
            ok = ratio >= TARGETS[case]
            failed |= not ok
            line += f"  ratio {ratio:.2f} (target >= {TARGETS[case]}) {'ok' if ok else 'MISSED'}"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
