"""Benchmark: ``floe-sink run`` into PostgreSQL (append), local engine vs Ray with 1 and 2 workers.

Run from the repository root (not part of the test suite; needs the ``ray`` extra)::

    .venv/bin/python benchmarks/bench_ray.py [--rows 1000000 5000000] [--file-rows 250000]
                                             [--cases local ray1 ray2 ray-own] [--repeat 1]

1. Seeds ``gold.customers`` (the quickstart's 12 columns) into a pyiceberg SQL catalog in a
   temp dir, in data files of ``--file-rows`` rows (5M rows: 20 files, so 20 units).
2. Starts a throwaway PostgreSQL (fsync on; ``tests/fixtures/postgres.py``).
3. Runs ``floe-sink run floe.yaml --output json`` as a child process per case, each into a
   fresh database, and checks the row count there:

   - ``local``: ``--engine local``;
   - ``ray1`` / ``ray2``: ``--engine ray --ray-address`` of a Ray cluster this script started
     beforehand with 1 or 2 CPUs (as a user's running cluster: its start is not timed, the
     connection and the workers' start are);
   - ``ray-own``: ``--engine ray`` without an address: the command starts a local Ray
     instance itself (all CPUs) and stops it, all of it timed.

Prints, per case, the wall time of the command and the delivery time
(``EgressResult.duration_seconds``), rows/s for both, and each Ray case's ratio to ``local``.

Every process (the command, Ray's workers) writes and reads its bytecode under a temp dir
(``_env.compiled_env``), as an installed package has it; an untimed warm-up of every case on
a 10,000-row table compiles it first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _env import compiled_env  # benchmarks/ is the script's directory, on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples" / "quickstart"), str(ROOT / "src")]

CASES = ("local", "ray1", "ray2", "ray-own")
WARM_UP_ROWS, WARM_UP_FILE_ROWS = 10_000, 2_500


def seed_table(state_dir: Path, rows: int, file_rows: int) -> None:
    from seed import seed

    started = time.perf_counter()
    seed(rows=rows, state_dir=state_dir, table="gold.customers", chunk_rows=file_rows)
    seconds = time.perf_counter() - started
    print(f"seeded {rows:,} rows in {rows // file_rows} files in {seconds:.1f} s")


def write_project(root: Path, url: str, batch_size: int, engine: dict[str, Any]) -> None:
    import yaml

    secret = root / "secrets" / "bench-db"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "url").write_text(url)
    floe = {
        "destinations": [
            {
                "name": "bench_postgres",
                "sink_type": "sql_database",
                "connection_secret_ref": "bench-db",
                "source_table": "gold.customers",
                "config": {"table": "customers_bench"},
                "write_disposition": "append",
                "batch_size": batch_size,
            }
        ]
    }
    (root / "floe.yaml").write_text(yaml.safe_dump(floe, sort_keys=False))
    (root / "manifest.yaml").write_text(yaml.safe_dump({"engine": engine}, sort_keys=False))


def run_floe_sink(root: Path, engine_args: list[str]) -> tuple[dict[str, Any], float]:
    script = Path(sys.executable).with_name("floe-sink")
    command = [str(script) if script.exists() else "floe-sink", "run", "floe.yaml"]
    command += ["--manifest", "manifest.yaml", "--secrets-dir", "secrets", "--output", "json"]
    command += ["--state-dir", str(root / ".floe"), "-q", *engine_args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOE_", "RAY_ADDRESS"))}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    started = time.perf_counter()
    process = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        print(process.stdout, process.stderr[-3000:])
        raise SystemExit(f"floe-sink exited with {process.returncode}")
    (record,) = json.loads(process.stdout)
    return record, seconds


class RayCluster:
    """A Ray cluster held by this process for the ``rayN`` cases (``ray.init(num_cpus=N)``)."""

    def __init__(self, cpus: int) -> None:
        import ray

        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        self.address = ray._private.worker._global_node.address

    def close(self) -> None:
        import ray

        ray.shutdown()


def run_case(pg: Any, root: Path, database: str, case: str, batch_size: int) -> dict[str, Any]:
    """One ``floe-sink run`` of ``case`` into a fresh ``database``: its result and wall time."""
    url = pg.create_database(database)
    cluster = None
    engine: dict[str, Any] = {"type": "local"}
    if case != "local":
        # every 250k-row file (~10 MB) a unit of its own
        engine = {"type": "ray", "unit_size_mb": 1}
    if case in ("ray1", "ray2"):
        cluster = RayCluster(int(case[-1]))
        engine["address"] = cluster.address
    try:
        write_project(root, url, batch_size, engine)
        shutil.rmtree(root / ".floe" / "locks", ignore_errors=True)
        record, seconds = run_floe_sink(root, [])
    finally:
        if cluster is not None:
            cluster.close()
    assert record["success"], record["errors"]
    counted = pg.psql("SELECT count(*) FROM customers_bench", database)
    assert int(counted.strip()) == record["rows_delivered"], counted
    pg.drop_database(database)
    return dict(record, wall=seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--file-rows", type=int, default=250_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from fixtures.postgres import PostgresCluster

    pg = PostgresCluster.start(fsync=True)
    pycache = Path(tempfile.mkdtemp(prefix="floe-bench-ray-pycache-"))
    # the command and the Ray clusters started here (ray.init) inherit this environment
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.update(compiled_env(pycache))
    figures: list[tuple[int, str, float, float]] = []
    try:
        warm_up = Path(tempfile.mkdtemp(prefix="floe-bench-ray-"))
        try:
            seed_table(warm_up / ".floe", WARM_UP_ROWS, WARM_UP_FILE_ROWS)
            for case in args.cases:  # untimed: compiles the bytecode of every case
                database = f"warm_up_{case.replace('-', '_')}"
                run_case(pg, warm_up, database, case, args.batch_size)
        finally:
            shutil.rmtree(warm_up, ignore_errors=True)
        for rows in args.rows:
            root = Path(tempfile.mkdtemp(prefix="floe-bench-ray-"))
            try:
                seed_table(root / ".floe", rows, args.file_rows)
                for round_ in range(args.repeat):
                    for case in args.cases:
                        database = f"bench_{rows}_{case.replace('-', '_')}_{round_}"
                        record = run_case(pg, root, database, case, args.batch_size)
                        assert record["rows_delivered"] == rows, record
                        seconds = float(record["wall"])
                        delivery = float(record["duration_seconds"])
                        figures.append((rows, case, seconds, delivery))
                        print(
                            f"{rows:>10,} rows  {case:<8} wall {seconds:6.1f} s "
                            f"({rows / seconds:>9,.0f} rows/s)  delivery {delivery:6.1f} s "
                            f"({rows / delivery:>9,.0f} rows/s)",
                            flush=True,
                        )
            finally:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        pg.stop()
        shutil.rmtree(pycache, ignore_errors=True)
    print()
    print("| rows | case | wall s | rows/s (wall) | delivery s | rows/s (delivery) | vs local |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for rows, case, seconds, delivery in figures:
        local = [s for r, c, s, _ in figures if r == rows and c == "local"]
        ratio = f"{(sum(local) / len(local)) / seconds:.2f}" if local and case != "local" else ""
        print(
            f"| {rows:,} | {case} | {seconds:.1f} | {rows / seconds:,.0f} | {delivery:.1f} | "
            f"{rows / delivery:,.0f} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
