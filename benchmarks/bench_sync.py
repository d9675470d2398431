"""Benchmark: change-aware syncs (issue 11), whole ``floe-sink run`` processes into PostgreSQL.

Run from the repository root (not part of the test suite)::

    .venv/bin/python benchmarks/bench_sync.py [--rows 1000000] [--repeat 3]
                                              [--memory-rows 5000000] [--skip-memory]

A ``gold.customers`` table (the quickstart's 12 columns, ``examples/quickstart/seed.py``) is
written with pyiceberg to the embedded SQLite catalog under a temp dir; a throwaway
PostgreSQL 15 (fsync on, ``tests/fixtures/postgres.py``) receives it with
``write_disposition: merge`` on ``customer_id``. Every case is one ``floe-sink run --output
json`` child process, timed by its wall time (with its peak RSS, process tree, sampled every
20 ms). Each round, interleaved:

1. a dbt-style rebuild of the table (``overwrite``: every data file new) in which 1% of the
   rows changed since the previous round (``lifetime_value`` of another 1% of the keys);
2. **(a) full**: ``sync: full`` merge of that snapshot into a fresh table (the baseline);
3. **(b) rebuild**: the ``sync: changes`` destination after the rebuild (sends the 1%);
4. **(c) unchanged**: the same destination again, nothing changed;
5. an ``append`` of 1% new rows (a new snapshot, no rebuild);
6. **(d) append**: the ``changes`` destination again (sends the appended rows), then the
   hand-written incremental script (``baseline_postgres.py --appended-since``: pyiceberg,
   the files added since the snapshot it is told, psycopg merge into a table of its own):
   what any process that opens the table with pyiceberg and merges into PostgreSQL costs.

Floors (ratios of the medians): (b) <= 0.25x (a), (c) <= 0.15x, (d) <= 0.1x. Then
**(e) memory**: a ``--memory-rows`` table (5M) is delivered once with ``sync: changes``
(5M keys of state), rebuilt with 1% changed, and the ``changes`` run after the rebuild must
peak under 500 MB RSS. Exits 1 when a floor is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests"), str(ROOT / "examples" / "quickstart")]

from _env import compiled_env  # noqa: E402
from bench_e2e import MAPPING, PeakRss  # noqa: E402

FLOORS = {"rebuild": 0.25, "unchanged": 0.15, "append": 0.10}
GOALS = {"rebuild": 0.10, "unchanged": 0.05}
MAX_RSS_MB = 500.0
TABLE = "gold.customers"
MEMORY_TABLE = "gold.customers_big"


def _load() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def _destination(name: str, table: str, sync: str, source: str = TABLE) -> dict[str, Any]:
    return {
        "name": name,
        "sink_type": "sql_database",
        "connection_secret_ref": "bench-db",
        "source_table": source,
        "field_mapping": MAPPING,
        "config": {"table": table},
        "write_disposition": "merge",
        "primary_key": ["customer_id"],
        "sync": sync,
    }


class Project:
    """The temp project: catalog and state under ``.floe``, secrets, floe.yaml."""

    def __init__(self, root: Path, url: str) -> None:
        import yaml

        self.root = root
        self.state_dir = root / ".floe"
        self.env = compiled_env(root / "pycache")  # compiled by the first (untimed) run
        (root / "secrets" / "bench-db").mkdir(parents=True)
        (root / "secrets" / "bench-db" / "url").write_text(url)
        (root / "manifest.yaml").write_text("scope: enterprise\napproved_sinks: [sql_database]\n")
        self._yaml = yaml
        self.destinations: list[dict[str, Any]] = []
        self.last: dict[str, Any] = {}

    def add(self, destination: dict[str, Any]) -> None:
        self.destinations.append(destination)
        floe = {"destinations": self.destinations}
        (self.root / "floe.yaml").write_text(self._yaml.safe_dump(floe, sort_keys=False))

    def catalog(self) -> Any:
        from floe_sink.source import load_catalog, source_config

        return load_catalog(source_config({"table": TABLE, "state_dir": str(self.state_dir)}))

    def run(self, destination: str) -> dict[str, Any]:
        """One ``floe-sink run -d destination`` process: its result, wall time and peak RSS."""
        script = Path(sys.executable).with_name("floe-sink")
        command = [str(script), "run", "floe.yaml", "-d", destination, "-q"]
        command += ["--manifest", "manifest.yaml", "--secrets-dir", "secrets"]
        command += ["--state-dir", str(self.state_dir), "--output", "json", "--no-progress"]
        (record,) = json.loads(self.timed(command, destination))
        if not record["success"]:
            raise SystemExit(f"{destination} failed: {record['errors']}")
        record.update(self.last)
        return dict(record)

    def baseline(self, url: str, *extra: str) -> dict[str, Any]:
        """One ``baseline_postgres.py --mode merge`` process into ``customers_base``."""
        from floe_sink.source import source_config

        config = source_config({"table": TABLE, "state_dir": str(self.state_dir)})
        properties = config["catalog_properties"]
        command = [sys.executable, str(HERE / "baseline_postgres.py")]
        command += ["--catalog-name", config["catalog_name"], "--catalog-uri", properties["uri"]]
        command += ["--warehouse", properties["warehouse"], "--table", TABLE, "--url", url]
        command += ["--target", "customers_base", "--mode", "merge", "--key", "customer_id"]
        record = json.loads(self.timed([*command, *extra], "baseline"))
        record.update(self.last)
        return dict(record)

    def timed(self, command: list[str], what: str) -> str:
        """Run ``command`` to its exit: its stdout; wall time, peak RSS and load in ``last``."""
        load = _load()
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sampler = PeakRss(process.pid)
        stdout, stderr = process.communicate()
        seconds = time.perf_counter() - started
        peak = sampler.stop()
        if process.returncode != 0:
            raise SystemExit(f"{what} exited with {process.returncode}:\n{stdout}\n{stderr}")
        self.last = {"wall": seconds, "peak_mb": peak, "load": load}
        return stdout


def _rebuilt(rows: int, changed_percent: int) -> Any:
    """The table rebuilt: the seed's rows with ``lifetime_value`` + 1 for ``customer_id``
    mod 100 below ``changed_percent`` (each round changes one more percent of the keys)."""
    import pyarrow.compute as pc
    from seed import make_customers

    table = make_customers(rows, seed=42)
    ids = table.column("customer_id")
    remainder = pc.subtract(ids, pc.multiply(pc.divide(ids, 100), 100))
    value = table.column("lifetime_value")
    changed = pc.if_else(pc.less(remainder, changed_percent), pc.add(value, 1.0), value)
    return table.set_column(
        table.schema.get_field_index("lifetime_value"), "lifetime_value", changed
    )


def _overwrite(project: Project, identifier: str, table: Any) -> None:
    catalog = project.catalog()
    if not catalog.table_exists(identifier):
        catalog.create_namespace_if_not_exists(identifier.rpartition(".")[0])
        iceberg = catalog.create_table(identifier, schema=table.schema)
        # a first version in several files, then the rebuild replaces them all
        step = max(1, table.num_rows // 4)
        for offset in range(0, table.num_rows, step):
            iceberg.append(table.slice(offset, step))
        return
    catalog.load_table(identifier).overwrite(table)


def _append(project: Project, identifier: str, rows: int, first_id: int) -> None:
    from seed import make_customers

    catalog = project.catalog()
    catalog.load_table(identifier).append(make_customers(rows, seed=7, first_id=first_id))


def _counts(record: dict[str, Any]) -> str:
    return (
        f"+{record.get('rows_inserted', 0):,} ~{record.get('rows_updated', 0):,} "
        f"={record.get('rows_unchanged', 0):,}"
    )


def _show(label: str, record: dict[str, Any]) -> None:
    print(
        f"  {label:12} wall {record['wall']:6.2f} s  run {record['duration_seconds']:6.2f} s  "
        f"peak {record['peak_mb']:4.0f} MB  sent {record['rows_delivered']:>9,}  "
        f"{_counts(record):28} load {record['load']}",
        flush=True,
    )


def ratios(args: argparse.Namespace, project: Project, cluster: Any, url: str) -> bool:
    rows = args.rows
    step = rows // 100
    project.add(_destination("sync", "customers_sync", "changes"))
    started = time.perf_counter()
    _overwrite(project, TABLE, _rebuilt(rows, 0))
    print(f"seeded {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    first = project.run("sync")  # untimed, and the warm-up: it compiles the bytecode
    _show("first sync", first)  # every row an insert: the state of 1M keys
    seeded = project.baseline(url)  # untimed: the hand-written script's table, and warm-up
    print(f"  baseline     wall {seeded['wall']:6.2f} s  its table of {seeded['rows']:,} rows")
    results: dict[str, list[dict[str, Any]]] = {}
    next_id = rows * 10
    for round_number in range(1, args.repeat + 1):
        print(f"round {round_number}", flush=True)
        _overwrite(project, TABLE, _rebuilt(rows, round_number))
        name = f"full_{round_number}"
        project.add(_destination(name, name, "full"))
        cases = [("full", name), ("rebuild", "sync"), ("unchanged", "sync")]
        for case, destination in cases:
            record = project.run(destination)
            results.setdefault(case, []).append(record)
            _show(case, record)
        before = project.catalog().load_table(TABLE).metadata.current_snapshot_id
        _append(project, TABLE, step, next_id)
        next_id += step
        record = project.run("sync")
        results.setdefault("append", []).append(record)
        _show("append", record)
        record = project.baseline(url, "--appended-since", str(before))
        if record["rows"] != step:
            raise SystemExit(f"round {round_number}: the baseline sent {record['rows']:,} rows")
        results.setdefault("hand-written", []).append(record)
        print(
            f"  hand-written wall {record['wall']:6.2f} s  peak {record['peak_mb']:4.0f} MB  "
            f"sent {record['rows']:>9,}  (the appended files, no state)",
            flush=True,
        )
        cluster.psql(f'DROP TABLE "{name}"', database="bench_sync")
        checks = {
            "full": (results["full"][-1]["rows_delivered"], rows),
            "rebuild": (results["rebuild"][-1]["rows_updated"], step),
            "unchanged": (results["unchanged"][-1]["rows_delivered"], 0),
            "append": (results["append"][-1]["rows_inserted"], step),
        }
        for case, (got, want) in checks.items():
            if got != want:
                raise SystemExit(f"round {round_number} {case}: {got:,} rows, expected {want:,}")
    counted = int(cluster.psql("SELECT count(*) FROM customers_sync", "bench_sync").strip())
    if counted != rows + args.repeat * step:
        raise SystemExit(f"customers_sync holds {counted:,} rows")

    def median(case: str, key: str = "wall") -> float:
        return statistics.median(r[key] for r in results[case])

    base = median("full")
    failed = False
    print(f"\nmedians of {args.repeat} interleaved rounds (wall time of the process):")
    print(f"  (a) full        {base:6.2f} s  (run {median('full', 'duration_seconds'):.2f} s)")
    for letter, case in (("b", "rebuild"), ("c", "unchanged"), ("d", "append")):
        seconds = median(case)
        ratio = seconds / base
        per_round = ", ".join(
            f"{r['wall'] / f['wall']:.3f}"
            for r, f in zip(results[case], results["full"], strict=True)
        )
        ok = ratio <= FLOORS[case]
        failed |= not ok
        goal = f", goal {GOALS[case]}" if case in GOALS else ""
        print(
            f"  ({letter}) {case:11} {seconds:6.2f} s  (run {median(case, 'duration_seconds'):.2f}"
            f" s, peak {median(case, 'peak_mb'):.0f} MB)  ratio {ratio:.3f} (per round "
            f"{per_round}; floor <= {FLOORS[case]}{goal}) {'ok' if ok else 'MISSED'}"
        )
    hand = median("hand-written")
    print(
        f"  (d) hand-written: {hand:6.2f} s  ratio {hand / base:.3f} to (a); (d) is "
        f"{median('append') / hand:.2f}x it (a script that knows the snapshot it sent last, "
        "reads the appended files and merges them with psycopg, keeping no state)"
    )
    print(f"  peak RSS of (a): {median('full', 'peak_mb'):.0f} MB")
    return failed


def memory(args: argparse.Namespace, project: Project) -> bool:
    rows = args.memory_rows
    project.add(_destination("big", "customers_big", "changes", source=MEMORY_TABLE))
    started = time.perf_counter()
    _overwrite(project, MEMORY_TABLE, _rebuilt(rows, 0))
    print(f"\nseeded {rows:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    first = project.run("big")
    _show("first sync", first)
    _overwrite(project, MEMORY_TABLE, _rebuilt(rows, 1))
    record = project.run("big")
    _show("(e) rebuild", record)
    if record["rows_updated"] != rows // 100:
        raise SystemExit(f"(e): {record['rows_updated']:,} updates, expected {rows // 100:,}")
    ok = record["peak_mb"] < MAX_RSS_MB
    print(
        f"  (e) {rows:,}-row changes run with {first['rows_delivered']:,} keys of state: peak "
        f"RSS {record['peak_mb']:.0f} MB (bound < {MAX_RSS_MB:.0f} MB) {'ok' if ok else 'MISSED'}"
    )
    state = project.state_dir / "sync"
    sizes = {p.name: p.stat().st_size / 1e6 for p in state.glob("*.parquet")}
    print(f"  sync state files: {', '.join(f'{k} {v:.1f} MB' for k, v in sizes.items())}")
    return not ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, default=5_000_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-ratios", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp project")
    args = parser.parse_args()

    from fixtures.postgres import PostgresCluster

    root = Path(tempfile.mkdtemp(prefix="floe-bench-sync-"))
    failed = False
    try:
        with PostgresCluster.start(fsync=True) as cluster:
            url = cluster.create_database("bench_sync")
            print(
                f"PostgreSQL {cluster.psql('SHOW server_version').strip()}, fsync "
                f"{cluster.psql('SHOW fsync').strip()}; {os.cpu_count()} CPUs; load {_load()}",
                flush=True,
            )
            project = Project(root, url)
            if not args.skip_ratios:
                failed |= ratios(args, project, cluster, url)
            if not args.skip_memory:
                failed |= memory(args, project)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
