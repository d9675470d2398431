"""The crash matrix: `floe-sink run` SIGKILLed at several points, then run again, exactly.

SQL (SQLite, DuckDB, PostgreSQL) x append, merge, replace over a table that already holds
rows: after the kills and a final run, the table holds exactly the source rows (replace: none
of the old ones, none of the new ones lost). REST at max_concurrency 1 and 3: every record
arrives, and a batch is sent again only if it was in flight at a kill (counted at the server
by Idempotency-Key). Kill points: early, middle, late (the last batches, the replace swap and the
close of the delivery not yet done), and twice in a row.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fixtures.command import FloeProject, complete_run, run_and_kill
from fixtures.http_server import RecordingServer

pytestmark = [pytest.mark.slow, pytest.mark.requirement("4G-FR-008")]

ROWS = 12_000
BATCH = 150  # 80 batches: enough room for a kill to land in the middle
BATCHES = ROWS // BATCH
OLD_ROWS = 3_000


def items(rows: int, *, first_id: int = 0, label: str = "new") -> pa.Table:
    ids = pa.array(range(first_id, first_id + rows), pa.int64())
    return pa.table(
        {
            "id": ids,
            "label": pc.binary_join_element_wise(f"{label}-", pc.cast(ids, pa.string()), ""),
            "v": pc.multiply(ids.cast(pa.float64()), 0.5),
        }
    )


def acknowledged(state_dir: Path) -> int:
    """Batches the journal holds as acknowledged (of every delivery)."""
    path = state_dir / "state.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM floe_batches").fetchone()[0])
    except sqlite3.Error:  # not created yet, or busy
        return 0


# -- SQL ----------------------------------------------------------------------------------

# kill points, in batches acknowledged by the journal
SCENARIOS = {
    "middle": [BATCHES // 2],
    # three runs killed in a row: early, in the middle, late (the last batches, the replace
    # swap and the close of the delivery still to come); the fourth completes
    "early-middle-late": [3, BATCHES // 2, BATCHES - 3],
}


def read_table(dialect: str, url: str) -> list[tuple[Any, ...]]:
    query = 'SELECT "id", "label", "v" FROM "items" ORDER BY "id"'
    if dialect == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return list(db.execute(query))
    if dialect == "duckdb":
        with duckdb.connect(url.removeprefix("duckdb:///")) as db:
            return list(db.execute(query).fetchall())
    import psycopg

    with psycopg.connect(url) as db:
        return list(db.execute(query).fetchall())


def expected(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(table.column(n).to_pylist() for n in ("id", "label", "v")), strict=True))


@pytest.fixture(params=["sqlite", "duckdb", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "postgresql":
        yield "postgresql", request.getfixturevalue("postgres_url")
    elif request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'dest.db'}"
    else:
        yield "duckdb", f"duckdb:///{tmp_path / 'dest.duckdb'}"


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("disposition", ["append", "merge", "replace"])
def test_sql_killed_runs_end_with_exactly_the_source_rows(
    floe_project: FloeProject,
    database_url: tuple[str, str],
    disposition: str,
    scenario: str,
) -> None:
    dialect, url = database_url
    project = floe_project
    project.secret("db", url=url)
    destination: dict[str, Any] = {
        "name": "items_db",
        "sink_type": "sql_database",
        "connection_secret_ref": "db",
        "source_table": "gold.items",
        "config": {"table": "items"},
        "write_disposition": disposition,
        "batch_size": BATCH,
    }
    if disposition == "merge":
        destination["primary_key"] = ["id"]
    project.write_floe([destination])
    project.write_manifest()
    state = project.root / ".floe"
    if disposition == "replace":
        # the table already holds rows (other ids): a replace must leave none of them
        project.warehouse.write("gold.items", items(OLD_ROWS, first_id=10**6, label="old"))
        complete_run(project)
    source = items(ROWS)
    project.warehouse.write("gold.items", source, files=4)

    target = 0
    for point in SCENARIOS[scenario]:
        target = point
        run_and_kill(project, lambda target=target: acknowledged(state) >= target)
    record = complete_run(project)

    assert read_table(dialect, url) == expected(source)
    assert record["rows_delivered"] == ROWS
    assert record["resumed_batches"] >= target  # acknowledged batches were not sent again
    # nothing of the delivery is left in the journal once it is done
    assert acknowledged(state) == 0


# -- REST ---------------------------------------------------------------------------------

REST_ROWS = 6_000
REST_BATCH = 100
REST_BATCHES = REST_ROWS // REST_BATCH


@pytest.fixture
def cpu_load(request: pytest.FixtureRequest) -> Iterator[None]:
    """A CPU-bound process beside the test when the test is marked so: round 1's race
    showed only then."""
    if "under_cpu_load" not in request.node.name:
        yield
        return
    burner = subprocess.Popen(["python3", "-c", "while 1: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


@pytest.mark.parametrize(
    ("concurrency", "kills"),
    [
        pytest.param(1, [10], id="1-once"),
        pytest.param(1, [4, 30], id="1-twice"),
        pytest.param(3, [10], id="3-once"),
        pytest.param(3, [4, 30], id="3-twice"),
        pytest.param(3, [4, 30], id="3-twice-under_cpu_load"),
    ],
)
def test_rest_killed_runs_deliver_every_record_resending_only_in_flight_batches(
    floe_project: FloeProject,
    http_server: RecordingServer,
    concurrency: int,
    kills: list[int],
    cpu_load: None,
) -> None:
    project = floe_project
    project.secret("api", token="t0k-crash")
    project.write_floe(
        [
            {
                "name": "items-api",
                "sink_type": "rest_api",
                "connection_secret_ref": "api",
                "source_table": "gold.items",
                "config": {"url": http_server.url_for("/items"), "max_concurrency": concurrency},
                "batch_size": REST_BATCH,
                "retry": {"initial_wait": 0.01, "jitter": 0.01},
            }
        ]
    )
    source = items(REST_ROWS)
    project.warehouse.write("gold.items", source, files=3)
    if concurrency > 1:
        http_server.delay = 0.005  # keep several batches in flight at a kill

    resent_allowance = 0
    for point in kills:
        victim: list[subprocess.Popen[str]] = []

        def kill_at(applied: int, point: int = point, victim: list[Any] = victim) -> None:
            # runs in the server after a batch was applied and before it is answered: the
            # client dies not knowing it arrived, the worst moment for a duplicate
            if applied >= point and victim:
                os.kill(victim[0].pid, signal.SIGKILL)

        http_server.on_apply = kill_at
        run_and_kill(project, lambda: False, on_start=victim.append)
        resent_allowance += concurrency
    http_server.on_apply = None
    record = complete_run(project)

    applied = sorted(row["id"] for row in http_server.applied)
    assert applied == list(range(REST_ROWS))  # every record, each applied once
    assert http_server.keys_applied_twice == []
    assert len(http_server.applied_per_key) == REST_BATCHES
    sent_again = [key for key, count in http_server.requests_per_key.items() if count > 1]
    # only batches in flight at a kill go again: at most `concurrency` per kill
    assert 1 <= len(sent_again) <= resent_allowance
    assert record["rows_delivered"] == REST_ROWS
    assert record["resumed_batches"] >= kills[-1] - concurrency
