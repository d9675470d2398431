"""An unchanged table is settled from the catalog's metadata location (floe_sink.settled):
nothing read, nothing imported of the lakehouse stack or the sink, the same result."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fixtures.command import FloeProject

ROWS = 2_000


def customers(ids: range, *, version: int = 1) -> pa.Table:
    keys = pa.array(list(ids), pa.int64())
    return pa.table(
        {
            "id": keys,
            "email": pc.binary_join_element_wise("c", pc.cast(keys, pa.string()), "@x.io", ""),
            "score": pc.multiply(keys.cast(pa.float64()), float(version)),
        }
    )


def sql_destination(mode: str) -> dict[str, Any]:
    return {
        "name": "crm_db",
        "sink_type": "sql_database",
        "connection_secret_ref": "db",
        "source_table": "gold.customers",
        "config": {"table": "customers"},
        "write_disposition": "merge",
        "primary_key": ["id"],
        "sync": mode,
        "batch_size": 250,
    }


def db_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT id, email, score FROM customers"))


def expected(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = (table.column(name).to_pylist() for name in ("id", "email", "score"))
    return sorted(zip(*columns, strict=True))


def run_json(project: FloeProject) -> dict[str, Any]:
    result = project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    assert record["success"], record["errors"]
    return dict(record)


@pytest.fixture
def sql_project(floe_project: FloeProject, tmp_path: Path) -> tuple[FloeProject, Path]:
    database = tmp_path / "crm.db"
    floe_project.secret("db", url=f"sqlite:///{database}")
    floe_project.warehouse.write("gold.customers", customers(range(ROWS)), files=2)
    return floe_project, database


HEAVY = ("pyiceberg", "pyarrow", "duckdb", "adbc_driver_manager", "sqlalchemy", "dlt")

# the command as a child process that reports, at exit, which heavy packages it imported
_WATCHED = (
    "import atexit, sys\n"
    "def report():\n"
    f"    heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
    "    sys.stderr.write('IMPORTED ' + ' '.join(heavy) + '\\n')\n"
    "atexit.register(report)\n"
    "from floe_sink.cli import main\n"
    "sys.argv[0] = 'floe-sink'\n"
    "main()\n"
)

SAME = ("success", "rows_delivered", "rows_unchanged", "rows_inserted", "rows_updated")
SAME += ("rows_deleted", "sync", "snapshot_id", "checksum", "idempotency_key", "errors")


def watched_run(project: FloeProject) -> tuple[dict[str, Any], set[str], str]:
    import subprocess

    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _WATCHED,
            "run",
            "floe.yaml",
            "--manifest",
            "manifest.yaml",
            "--secrets-dir",
            "secrets",
            "--output",
            "json",
            "-v",
            "--log-format",
            "json",
        ],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    (record,) = json.loads(completed.stdout)
    (line,) = [x for x in completed.stderr.splitlines() if x.startswith("IMPORTED")]
    return record, set(line.split()[1:]), completed.stderr


def sidecar(project: FloeProject) -> Path:
    (path,) = (project.root / ".floe" / "sync").glob("*.settled.json")
    return path


def test_an_unchanged_table_is_settled_without_reading_it(
    sql_project: tuple[FloeProject, Path],
) -> None:
    project, database = sql_project
    project.write_floe([sql_destination("mirror")])
    run_json(project)
    settled = sidecar(project)

    # the ordinary path (no sidecar: a kill before it was written), then the settled one
    saved = settled.read_text()
    settled.unlink()
    ordinary, imported, log = watched_run(project)
    assert '"sync_diff"' in log
    assert "pyarrow" in imported
    assert settled.read_text() == saved  # written again beside the same state
    fast, imported, log = watched_run(project)
    assert imported == set(), imported
    assert '"sync_unchanged_snapshot"' in log
    assert '"sync_diff"' not in log
    assert {k: fast[k] for k in SAME} == {k: ordinary[k] for k in SAME}
    assert (fast["rows_unchanged"], fast["rows_delivered"]) == (ROWS, 0)
    assert fast["delivery_id"]
    assert fast["delivery_id"] != ordinary["delivery_id"]

    status = project.run("status", "floe.yaml", "--output", "json")
    assert status.code == 0, status.stderr
    history = status.json()
    assert len(history) == 3
    assert all(run["success"] for run in history)
    assert history[0]["snapshot_id"] == fast["snapshot_id"]
    assert history[0]["rows_delivered"] == 0

    # a rebuild: another metadata file, the diff runs (deletes too)
    project.warehouse.overwrite("gold.customers", customers(range(ROWS // 2)))
    rebuilt, imported, log = watched_run(project)
    assert '"sync_diff"' in log
    assert (rebuilt["rows_deleted"], rebuilt["rows_unchanged"]) == (ROWS // 2, ROWS // 2)
    assert db_rows(database) == expected(customers(range(ROWS // 2)))
    assert watched_run(project)[1] == set()


def test_a_sidecar_that_outlived_its_state_is_ignored(
    sql_project: tuple[FloeProject, Path],
) -> None:
    """A sidecar describes one state file (size, mtime, inode): put beside another state
    (a kill between the state's rename and the sidecar's, a copied folder), it says nothing."""
    project, database = sql_project
    project.write_floe([sql_destination("changes")])
    run_json(project)
    old = json.loads(sidecar(project).read_text())
    project.warehouse.overwrite("gold.customers", customers(range(ROWS), version=2))
    run_json(project)
    new = json.loads(sidecar(project).read_text())
    # the old sidecar, claiming the new metadata file, beside the new state
    sidecar(project).write_text(json.dumps({**old, "metadata_location": new["metadata_location"]}))
    record, _, log = watched_run(project)
    assert '"sync_diff"' in log
    assert '"sync_unchanged_snapshot"' not in log
    assert (record["rows_delivered"], record["rows_unchanged"]) == (0, ROWS)

    # reset forgets the state: the sidecar left beside nothing is ignored, all is resent
    project.run("reset", "floe.yaml", "--destination", "crm_db")
    again = run_json(project)
    assert again["rows_inserted"] == ROWS
    assert db_rows(database) == expected(customers(range(ROWS), version=2))
