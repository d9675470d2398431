"""The quickstart, end to end: seed a Gold table, run floe-sink, show what arrived.

Run it from anywhere (the README runs it from the repository root):

    .venv/bin/python examples/quickstart/run.py

1. ``seed.py`` writes ``gold.customers`` (5,000 customers) to the embedded Iceberg catalog
   under ``examples/quickstart/.floe`` (skipped when it is there already);
2. ``floe-sink run floe.yaml --manifest manifest.yaml --secrets-dir secrets --output json``
   sends the active customers to ``quickstart.sqlite`` (a merge on ``customer_id``, so running
   it again changes nothing);
3. the result is printed (rows, checksum, idempotency key), and the SQLite table is queried
   to show the data landed.

floe-sink's log lines go to stderr, warnings and errors only by default (``-v`` for more), so
what this script prints is the report alone.

Nothing to start, no network. Exit code: floe-sink's (0 success).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "quickstart.sqlite"
TABLE = "customers"


def floe_sink_command() -> list[str]:
    """The floe-sink console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("floe-sink")
    if script.exists():
        return [str(script)]
    found = shutil.which("floe-sink")
    if found:
        return [found]
    return [sys.executable, "-c", "from floe_sink.cli import main; main()"]


def seed_table() -> None:
    sys.path.insert(0, str(HERE))
    from seed import TABLE as SOURCE
    from seed import seed

    written, rows = seed(state_dir=HERE / ".floe")
    state = "seeded" if written else "already seeded"
    print(f"[1/3] {SOURCE}: {state}, {rows:,} rows in the embedded Iceberg catalog (.floe/)")


def run_floe_sink() -> tuple[int, list[dict[str, object]]]:
    command = [
        *floe_sink_command(),
        "run",
        "floe.yaml",
        "--manifest",
        "manifest.yaml",
        "--secrets-dir",
        "secrets",
        "--output",
        "json",
    ]
    print(f"[2/3] {' '.join(['floe-sink', *command[-8:]])}")
    env = dict(os.environ)
    env.setdefault("FLOE_SINK_LOG_FORMAT", "console")
    completed = subprocess.run(
        command, cwd=HERE, env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    try:
        results = json.loads(completed.stdout) if completed.stdout.strip() else []
    except json.JSONDecodeError:
        print(completed.stdout)
        results = []
    return completed.returncode, results


def show(results: list[dict[str, object]]) -> None:
    for result in results:
        status = "ok" if result["success"] else "FAILED"
        print(
            f"      {status}: {result['destination']}: {result['rows_delivered']:,} rows "
            f"delivered in {float(str(result['duration_seconds'])):.2f} s"
        )
        print(f"      checksum sha256:{result['checksum']}")
        if result.get("idempotency_key"):
            print(f"      idempotency key {result['idempotency_key']}")
        for error in result.get("errors") or []:  # type: ignore[attr-defined]
            print(f"      error: {error}")
    if not DATABASE.exists():
        return
    print(f"[3/3] where the data went: {DATABASE} (SQLite), table {TABLE}")
    with sqlite3.connect(DATABASE) as db:
        (count,) = db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()
        print(f"      {count:,} rows in {TABLE}")
        print(
            "      by segment: "
            + ", ".join(
                f"{segment} {n:,}"
                for segment, n in db.execute(
                    f"SELECT segment, COUNT(*) FROM {TABLE} GROUP BY segment ORDER BY 2 DESC"
                )
            )
        )
        cursor = db.execute(
            f"SELECT customer_id, email, country_code, segment, lifetime_value_eur "
            f"FROM {TABLE} ORDER BY lifetime_value_eur DESC LIMIT 3"
        )
        names = [column[0] for column in cursor.description]
        print("      top customers by lifetime value:")
        for row in cursor:
            print("        " + ", ".join(f"{n}={v}" for n, v in zip(names, row, strict=True)))


def main() -> int:
    seed_table()
    code, results = run_floe_sink()
    show(results)
    if code == 0:
        print("quickstart: success. Run it again: the merge leaves exactly the same rows.")
    else:
        print(f"quickstart: floe-sink exited with {code}; see the messages above.")
    return code


if __name__ == "__main__":
    sys.exit(main())
