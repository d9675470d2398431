"""The quickstart, end to end: a change-aware sync from a Gold table to a database.

Run it from anywhere (the README runs it from the repository root):

    .venv/bin/python examples/quickstart/run.py

1. ``seed.py`` writes ``gold.customers`` (5,000 customers) to the embedded Iceberg catalog
   under ``examples/quickstart/.floe`` (every run starts afresh: the catalog, floe-sink's
   state and the SQLite file are recreated);
2. ``floe-sink run`` sends the active customers to ``quickstart.sqlite`` (``sync: mirror``,
   merging on ``customer_id``): the first run inserts every row;
3. the Gold table is rebuilt the way a dbt run would: three customers changed, one left
   (no longer active);
4. ``floe-sink plan`` shows what the next run would do, sending nothing;
5. ``floe-sink run`` again: only the three changed rows are sent, and the one who left is
   deleted at the destination;
6. ``floe-sink status`` shows both runs; the SQLite table is queried to show the result.

floe-sink's log lines go to stderr, warnings and errors only by default (``-v`` for more), so
what this script prints is the report alone. Nothing to start, no network.
Exit code: 0 when every step succeeded.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "quickstart.sqlite"
STATE = HERE / ".floe"
TABLE = "customers"
FILES = ["floe.yaml", "--manifest", "manifest.yaml", "--secrets-dir", "secrets"]
STEPS = 6


def floe_sink_command() -> list[str]:
    """The floe-sink console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("floe-sink")
    if script.exists():
        return [str(script)]
    found = shutil.which("floe-sink")
    if found:
        return [found]
    return [sys.executable, "-c", "from floe_sink.cli import main; main()"]


def step(number: int, text: str) -> None:
    print(f"[{number}/{STEPS}] {text}")


def floe_sink(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``floe-sink ARGS`` in the quickstart folder; stdout captured, stderr shown."""
    return subprocess.run(
        [*floe_sink_command(), *args], cwd=HERE, stdout=subprocess.PIPE, text=True, check=False
    )


def seed_table() -> None:
    sys.path.insert(0, str(HERE))
    from seed import TABLE as SOURCE
    from seed import seed

    shutil.rmtree(STATE, ignore_errors=True)  # a fresh start: catalog, journal, sync state
    DATABASE.unlink(missing_ok=True)
    _, rows = seed(state_dir=STATE)
    step(1, f"{SOURCE}: {rows:,} customers seeded in the embedded Iceberg catalog (.floe/)")


def run(number: int) -> dict[str, Any] | None:
    step(number, "floe-sink run " + " ".join(FILES))
    completed = floe_sink("run", *FILES, "--output", "json")
    try:
        (result,) = json.loads(completed.stdout)
    except (ValueError, TypeError):
        print(completed.stdout)
        return None
    status = "ok" if result["success"] else "FAILED"
    print(
        f"      {status}: {result['destination']} ({result['sync']}): "
        f"{result['rows_inserted']:,} inserted, {result['rows_updated']:,} updated, "
        f"{result['rows_deleted']:,} deleted, {result['rows_unchanged']:,} unchanged "
        f"in {float(result['duration_seconds']):.2f} s"
    )
    print(f"      checksum sha256:{result['checksum']}")
    print(f"      idempotency key {result['idempotency_key']}")
    for error in result.get("errors") or []:
        print(f"      error: {error}")
    return dict(result) if completed.returncode == 0 else None


def rebuild_gold_table() -> list[int]:
    """Three active customers change, one stops being active: a new snapshot, every file new."""
    import pyarrow as pa
    import pyarrow.compute as pc

    sys.path.insert(0, str(HERE))
    from seed import TABLE as SOURCE
    from seed import load_catalog, source_config

    table = load_catalog(source_config({"table": SOURCE, "state_dir": str(STATE)})).load_table(
        SOURCE
    )
    data = table.scan().to_arrow().sort_by("customer_id")
    active = data.filter(pc.field("is_active")).column("customer_id").to_pylist()
    changed, leaving = active[:3], active[3]
    ids = data.column("customer_id")
    bump = pc.is_in(ids, value_set=pa.array(changed, ids.type))
    value = data.column("lifetime_value")
    data = data.set_column(
        data.schema.get_field_index("lifetime_value"),
        data.schema.field("lifetime_value"),
        pc.if_else(bump, pc.add(value, pa.scalar(100.0, value.type)), value),
    )
    gone = pc.equal(ids, pa.scalar(leaving, ids.type))
    data = data.set_column(
        data.schema.get_field_index("is_active"),
        data.schema.field("is_active"),
        pc.if_else(gone, False, data.column("is_active")),
    )
    table.overwrite(data)
    step(
        3,
        f"{SOURCE} rebuilt: customers {', '.join(map(str, changed))} changed, "
        f"customer {leaving} left",
    )
    return [*changed, leaving]


def show_text(number: int, *args: str) -> bool:
    step(number, "floe-sink " + " ".join(args[:2]) + " ...")
    completed = floe_sink(*args)
    for line in completed.stdout.splitlines():
        print(f"      {line}")
    return completed.returncode == 0


def show_table() -> None:
    with sqlite3.connect(DATABASE) as db:
        (count,) = db.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()
        print(f"      {DATABASE.name}: {count:,} rows in {TABLE}; top customers by value:")
        cursor = db.execute(
            f"SELECT customer_id, email, segment, lifetime_value_eur "
            f"FROM {TABLE} ORDER BY lifetime_value_eur DESC LIMIT 3"
        )
        names = [column[0] for column in cursor.description]
        for row in cursor:
            print("        " + ", ".join(f"{n}={v}" for n, v in zip(names, row, strict=True)))


def main() -> int:
    seed_table()
    first = run(2)
    if first is None:
        print("quickstart: the first run failed; see the messages above.")
        return 1
    rebuild_gold_table()
    if not show_text(4, "plan", *FILES):
        print("quickstart: plan failed; see the messages above.")
        return 1
    second = run(5)
    if second is None:
        print("quickstart: the second run failed; see the messages above.")
        return 1
    if not show_text(6, "status", "floe.yaml", "--manifest", "manifest.yaml"):
        return 1
    show_table()
    print(
        "quickstart: success. The second run sent only the changed rows and deleted the "
        "customer who left; run it again to start over."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
