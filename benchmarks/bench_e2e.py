"""Benchmark: the whole command, a 5,000,000-row Iceberg table -> ``floe-sink run`` -> PostgreSQL.

Run from the repository root (not part of the test suite)::

    .venv/bin/python benchmarks/bench_e2e.py [--rows 5000000] [--url postgresql://...]
                                             [--dry-run] [--max-rss-mb 400]

1. Seeds ``gold.customers`` (the quickstart's 12 columns, ~570 MB as Arrow for 5M rows) into a
   pyiceberg SQL catalog in a temp dir, in 500,000-row data files.
2. Starts a throwaway PostgreSQL (fsync on; ``tests/fixtures/postgres.py``) unless ``--url``
   names a database.
3. Runs ``floe-sink run floe.yaml --output json`` (``write_disposition: append``) as a child
   process, sampling its resident memory (with its children) every 20 ms. Its bytecode is
   cached in the temp dir (``_env.compiled_env``), compiled by an untimed warm-up run of a
   1,000-row table first (into ``customers_bench_warmup`` of the throwaway cluster; a dry run
   with ``--url`` or ``--dry-run``).

Prints rows/s, the peak RSS of the floe-sink process and the result, checks the row count in
PostgreSQL, and exits 1 when the peak RSS is over ``--max-rss-mb`` (the table must be
streamed, not held). ``--dry-run`` measures the source side alone (read + map, nothing sent;
no database needed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _env import compiled_env  # benchmarks/ is the script's directory, on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples" / "quickstart"), str(ROOT / "src")]
WARM_UP_ROWS = 1_000

MAPPING = {
    "customer_id": "customer_id",
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "country": "country_code",
    "city": "city",
    "segment": "segment",
    "orders_count": "orders_count",
    "lifetime_value": "lifetime_value",
    "is_active": "is_active",
    "signup_date": "signup_date",
    "updated_at": "updated_at",
}


def seed_table(state_dir: Path, rows: int, row_group_rows: int | None) -> float:
    """Write the table; return its size as Arrow (MB, from a 100k-row sample)."""
    from seed import make_customers, seed

    started = time.perf_counter()
    seed(
        rows=rows,
        state_dir=state_dir,
        table="gold.customers",
        chunk_rows=500_000,
        row_group_rows=row_group_rows,
    )
    sample = make_customers(100_000)
    print(f"seeded {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    return sample.nbytes / 100_000 * rows / 1e6


def write_project(root: Path, url: str, batch_size: int, table: str = "customers_bench") -> None:
    import yaml

    (root / "secrets" / "bench-db").mkdir(parents=True)
    (root / "secrets" / "bench-db" / "url").write_text(url)
    floe = {
        "destinations": [
            {
                "name": "bench_postgres",
                "sink_type": "sql_database",
                "connection_secret_ref": "bench-db",
                "source_table": "gold.customers",
                "field_mapping": MAPPING,
                "config": {"table": table},
                "write_disposition": "append",
                "batch_size": batch_size,
            }
        ]
    }
    (root / "floe.yaml").write_text(yaml.safe_dump(floe, sort_keys=False))
    (root / "manifest.yaml").write_text("scope: enterprise\napproved_sinks: [sql_database]\n")


class PeakRss:
    """Samples the RSS of a process tree until stopped; keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                total = sum(p.memory_info().rss for p in tree)
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 1e6


def run_floe_sink(
    root: Path, *, dry_run: bool, pycache: Path
) -> tuple[dict[str, Any], float, float]:
    script = Path(sys.executable).with_name("floe-sink")
    command = [str(script) if script.exists() else "floe-sink", "run", "floe.yaml"]
    command += ["--manifest", "manifest.yaml", "--secrets-dir", "secrets", "--output", "json"]
    command += ["--state-dir", str(root / ".floe"), "-q"]
    if dry_run:
        command.append("--dry-run")
    env = compiled_env(pycache)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    sampler = PeakRss(process.pid)
    stdout, _ = process.communicate()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if process.returncode != 0:
        print(stdout)
        raise SystemExit(f"floe-sink exited with {process.returncode}")
    (record,) = json.loads(stdout)
    return record, seconds, peak


def warm_up(root: Path, url: str, batch_size: int, *, dry_run: bool) -> None:
    """An untimed run of a small table, which compiles the bytecode of the timed one."""
    from seed import seed

    project = root / "warm-up"
    seed(rows=WARM_UP_ROWS, state_dir=project / ".floe", table="gold.customers")
    write_project(project, url, batch_size, table="customers_bench_warmup")
    record, _, _ = run_floe_sink(project, dry_run=dry_run, pycache=root / "pycache")
    assert record["rows" if dry_run else "rows_delivered"] == WARM_UP_ROWS, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--url", help="a PostgreSQL database URL (default: a throwaway cluster)")
    parser.add_argument("--dry-run", action="store_true", help="source side only")
    parser.add_argument("--max-rss-mb", type=float, default=400.0)
    parser.add_argument(
        "--row-group-rows",
        type=int,
        default=None,
        help="Parquet row-group size of the seeded table (default: pyiceberg's, 1,048,576)",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="floe-bench-e2e-"))
    cluster: Any = None
    try:
        arrow_mb = seed_table(root / ".floe", args.rows, args.row_group_rows)
        url = args.url
        if url is None and not args.dry_run:
            from fixtures.postgres import PostgresCluster

            cluster = PostgresCluster.start(fsync=True)
            url = cluster.create_database("bench_e2e")
        url = url or "postgresql://unused@127.0.0.1:1/none"
        write_project(root, url, args.batch_size)
        warm_up(root, url, args.batch_size, dry_run=args.dry_run or cluster is None)
        record, seconds, peak = run_floe_sink(root, dry_run=args.dry_run, pycache=root / "pycache")
        rows = record["rows"] if args.dry_run else record["rows_delivered"]
        if not args.dry_run:
            assert record["success"], record["errors"]
            if cluster is not None:
                counted = cluster.psql("SELECT count(*) FROM customers_bench", "bench_e2e")
                assert int(counted.strip()) == args.rows, counted
        assert rows == args.rows, (rows, args.rows)
        mode = "dry run (read + map)" if args.dry_run else "run -> PostgreSQL append"
        print(f"case: {mode}, {args.rows:,} rows, table ~{arrow_mb:,.0f} MB as Arrow")
        print(f"  wall time of the command: {seconds:.1f} s -> {args.rows / seconds:,.0f} rows/s")
        if not args.dry_run:
            print(
                f"  delivery (EgressResult.duration_seconds): {record['duration_seconds']:.1f} s"
                f" -> {args.rows / record['duration_seconds']:,.0f} rows/s"
            )
        print(f"  peak RSS of floe-sink: {peak:,.0f} MB (bound {args.max_rss_mb:,.0f} MB)")
        if peak > args.max_rss_mb:
            print("FAIL: the peak RSS is over the bound")
            return 1
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
