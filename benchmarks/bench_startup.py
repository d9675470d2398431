"""Benchmark: the fixed cost of a ``floe-sink`` process (what an hourly 5-row sync pays).

Run from the repository root (not part of the test suite)::

    .venv/bin/python benchmarks/bench_startup.py [--repeat 7] [--rows 5] [--before SRC]

1. Seeds a ``--rows``-row ``gold.customers`` (the quickstart's table) into the embedded
   Iceberg catalog of a project in a temp dir.
2. Runs, each in a fresh process, interleaved ``--repeat`` times:

   - ``floe-sink run`` of one ``sql_database`` destination (a SQLite file, ``merge``);
   - ``floe-sink run`` of one ``rest_api`` destination (the test suite's local HTTP server,
     in this process, on 127.0.0.1);
   - the same two deliveries made by a hand-written script (pyiceberg's SQL catalog,
     ``scan().to_arrow()``, then ``sqlite3`` or ``httpx``; no journal, no retries);
   - ``floe-sink validate`` of ``examples/quickstart`` (reads and sends nothing).

For a run, the fixed cost is the wall time of the process minus the run's own
``duration_seconds`` (the delivery itself, from ``--output json``; the script times its own
read and write the same way): interpreter start, imports, reading the files, opening the
catalog and the journal, and exiting. On a shared machine the absolute figures move with the
load, the ratio to the hand-written script much less. Prints the median and the best of each
case and exits 1 when a median misses its bound (runs: 0.8 s, validate: 0.5 s wall).

``--before SRC`` also runs the command from another checkout's ``src`` (``PYTHONPATH``), in
the same rounds: the figures before a change, under the same load.

Every process writes and reads its bytecode under the temp dir (``_env.compiled_env``), as an
installed package has it; one untimed round first compiles it (and creates the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _env import compiled_env  # benchmarks/ is the script's directory, on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUICKSTART = ROOT / "examples" / "quickstart"
sys.path[:0] = [str(ROOT / "tests"), str(QUICKSTART), str(ROOT / "src")]

RUN_BOUND = 0.8
VALIDATE_BOUND = 0.5

HAND_WRITTEN = """
import json, sqlite3, sys, time
import httpx
from pyiceberg.catalog.sql import SqlCatalog

root, target = sys.argv[1], sys.argv[2]
catalog = SqlCatalog(
    "floe", uri=f"sqlite:///{root}/.floe/catalog.db", warehouse=f"file://{root}/.floe/warehouse"
)
started = time.perf_counter()
table = catalog.load_table("gold.customers")
rows = table.scan(selected_fields=("customer_id", "email", "country")).to_arrow().to_pylist()
if target == "sqlite":
    db = sqlite3.connect(f"{root}/hand.sqlite")
    db.execute("CREATE TABLE IF NOT EXISTS c (id INTEGER PRIMARY KEY, email TEXT, cc TEXT)")
    db.executemany(
        "INSERT OR REPLACE INTO c VALUES (?, ?, ?)",
        [(r["customer_id"], r["email"], r["country"]) for r in rows],
    )
    db.commit()
else:
    httpx.post(target, json=rows, headers={"Authorization": "Bearer t"}).raise_for_status()
print(json.dumps({"duration_seconds": time.perf_counter() - started}))
"""


def floe_sink() -> list[str]:
    script = Path(sys.executable).with_name("floe-sink")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from floe_sink.cli import main; main()"]


def write_project(root: Path, url: str, rows: int) -> None:
    """floe.yaml, secrets and a ``rows``-row table in the embedded catalog under ``root``."""
    import yaml
    from seed import seed

    seed(state_dir=root / ".floe", rows=rows)
    mapping = {"customer_id": "id", "email": "email", "country": "country_code"}
    common = {"source_table": "gold.customers", "field_mapping": mapping}
    destinations = [
        {
            "name": "db",
            "sink_type": "sql_database",
            "connection_secret_ref": "db",
            "config": {"table": "customers"},
            "write_disposition": "merge",
            "primary_key": ["customer_id"],
            **common,
        },
        {
            "name": "api",
            "sink_type": "rest_api",
            "connection_secret_ref": "api",
            "config": {"url": url},
            **common,
        },
    ]
    (root / "floe.yaml").write_text(yaml.safe_dump({"destinations": destinations}))
    for ref, key, value in (
        ("db", "url", f"sqlite:///{root / 'out.sqlite'}"),
        ("api", "token", "bench-token"),
    ):
        (root / "secrets" / ref).mkdir(parents=True, exist_ok=True)
        (root / "secrets" / ref / key).write_text(value)


def timed(command: list[str], cwd: Path, root: Path, src: str | None = None) -> tuple[float, str]:
    """(wall time, stdout) of ``command``; its bytecode is cached under the temp dir ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOE_", "OTEL_"))}
    env = compiled_env(root / "pycache", env)
    if src is not None:
        env["PYTHONPATH"] = src
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")
    return wall, completed.stdout


def run_case(root: Path, destination: str, src: str | None = None) -> tuple[float, float]:
    """(wall time, wall time minus the run's own duration) of one run."""
    wall, out = timed(
        [
            *floe_sink(),
            "run",
            "floe.yaml",
            "--secrets-dir",
            "secrets",
            "-d",
            destination,
            "--output",
            "json",
            "--no-progress",
        ],
        root,
        root,
        src,
    )
    (record,) = json.loads(out)
    assert record["success"], record
    return wall, wall - float(record["duration_seconds"])


def hand_written_case(root: Path, target: str) -> tuple[float, float]:
    """(wall time, wall time minus its own duration) of the hand-written script."""
    wall, out = timed([sys.executable, "-c", HAND_WRITTEN, str(root), target], root, root)
    return wall, wall - float(json.loads(out)["duration_seconds"])


def validate_case(root: Path, src: str | None = None) -> float:
    command = [*floe_sink(), "validate", "floe.yaml", "--manifest", "manifest.yaml"]
    wall, _ = timed([*command, "--secrets-dir", "secrets"], QUICKSTART, root, src)
    return wall


def one_round(
    root: Path, url: str, before: str | None
) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """Every case once: (wall, fixed cost) of the runs, and the wall times of validate."""
    measured = {
        "sqlite": run_case(root, "db"),
        "http": run_case(root, "api"),
        "hand sqlite": hand_written_case(root, "sqlite"),
        "hand http": hand_written_case(root, url),
    }
    validated: dict[str, float] = {}
    if before:
        measured["before sqlite"] = run_case(root, "db", before)
        measured["before http"] = run_case(root, "api", before)
        validated["before validate"] = validate_case(root, before)
    validated["validate"] = validate_case(root)
    return measured, validated


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} s, best {min(values):.3f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--before", metavar="SRC", help="another checkout's src, to compare")
    args = parser.parse_args()

    from fixtures.http_server import RecordingServer

    server = RecordingServer().start()
    cases = ("sqlite", "http", "hand sqlite", "hand http")
    if args.before:
        cases = (*cases, "before sqlite", "before http")
    fixed: dict[str, list[float]] = {case: [] for case in cases}
    walls: dict[str, list[float]] = {case: [] for case in (*cases, "validate", "before validate")}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="floe-bench-startup-") as tmp:
        root = Path(tmp)
        write_project(root, server.url, args.rows)
        # untimed: compiles every command's bytecode, warms the file cache, creates the tables
        one_round(root, server.url, args.before)
        for _ in range(args.repeat):
            measured, validated = one_round(root, server.url, args.before)
            for case, (wall, cost) in measured.items():
                walls[case].append(wall)
                fixed[case].append(cost)
            for case, wall in validated.items():
                walls[case].append(wall)
            loads.append(os.getloadavg()[0])
    server.stop()
    failed = False
    for case in cases:
        bound = ""
        if not case.startswith(("hand", "before")):
            failed |= statistics.median(fixed[case]) > RUN_BOUND
            bound = f"; bound {RUN_BOUND} s"
        print(
            f"run -> {case:<11} fixed cost: {summary(fixed[case])} "
            f"(wall {summary(walls[case])}{bound})"
        )
    for case in ("sqlite", "http"):
        ratio = statistics.median(fixed[case]) / statistics.median(fixed[f"hand {case}"])
        print(f"floe-sink / hand-written fixed cost, {case}: {ratio:.2f}")
    failed |= statistics.median(walls["validate"]) > VALIDATE_BOUND
    print(f"validate quickstart wall: {summary(walls['validate'])} (bound {VALIDATE_BOUND} s)")
    if args.before:
        print(f"validate before:          {summary(walls['before validate'])}")
    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_average": [round(min(loads), 1), round(max(loads), 1)],
    }
    print(json.dumps(report))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
