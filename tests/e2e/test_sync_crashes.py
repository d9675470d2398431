"""Change-aware runs SIGKILLed at random points through the real command, then run again.

SQL (SQLite, DuckDB, PostgreSQL; merge) x ``changes`` / ``mirror``, in rounds: the first
load, then a dbt-style rebuild (rows changed, removed and added, every data file new), then
for ``mirror`` a second rebuild. Runs are killed at points drawn from an RNG seeded with the
test id: after the n-th acknowledged upsert batch (``changes``: the first load and the
rebuild, once each) or the n-th acknowledged delete batch (journal positions from
``floe_sink.sync.DELETE_POSITIONS``; ``mirror``: the first rebuild in its upserts and then in
its deletes, the second twice in its deletes); then a run completes. After every round the
destination equals the source (``changes``: holds every source row, and the removed rows it
had) and the journal holds nothing; at the end ``plan`` reports nothing left to do.

REST (``changes``, max_concurrency 1 and 3): killed from inside the server after it applied a
batch and before it answered (the worst moment for a duplicate). Every record of a round
arrives, each applied exactly once (the server honours Idempotency-Key), and a batch is sent
twice only if it was in flight at a kill: at most ``max_concurrency`` batches per kill.
"""

from __future__ import annotations

import contextlib
import os
import random
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
from floe_sink.sync import DELETE_POSITIONS

pytestmark = [pytest.mark.slow, pytest.mark.requirement("4G-FR-008")]

ROWS = 2_000
BATCH = 20  # the first load: 100 batches; a rebuild: about 10 upsert and 10 delete batches
TABLE = "gold.items"


def items(ids: list[int], *, version: int = 0) -> pa.Table:
    keys = pa.array(ids, pa.int64())
    return pa.table(
        {
            "id": keys,
            "label": pc.binary_join_element_wise(f"v{version}-", pc.cast(keys, pa.string()), ""),
            "internal": pa.array([f"build-{version}"] * len(ids)),  # read, never sent
        }
    )


def rebuild(source: pa.Table, rng: random.Random, version: int) -> tuple[pa.Table, set[int]]:
    """5% of the rows changed, 10% removed, 5% added, all of it in new data files; returns the
    new source and the keys removed."""
    ids = source.column("id").to_pylist()
    labels = dict(zip(ids, source.column("label").to_pylist(), strict=True))
    removed = set(rng.sample(ids, len(ids) // 10))
    kept = [i for i in ids if i not in removed]
    changed = set(rng.sample(kept, len(ids) // 20))
    first_new = max(ids) + 1
    added = list(range(first_new, first_new + len(ids) // 20))
    table = items(kept + added, version=version)
    same = [labels[i] if i in labels and i not in changed else None for i in kept + added]
    label = pc.coalesce(pa.array(same, pa.string()), table.column("label"))
    return table.set_column(1, "label", label), removed


def journal(state_dir: Path) -> tuple[int, int]:
    """Upsert and delete batches the journal holds as acknowledged."""
    path = state_dir / "state.db"
    if not path.exists():
        return 0, 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            row = db.execute(
                "SELECT count(*) FILTER (WHERE position < ?), "
                "count(*) FILTER (WHERE position >= ?) FROM floe_batches",
                (DELETE_POSITIONS, DELETE_POSITIONS),
            ).fetchone()
    except sqlite3.Error:  # not created yet, or busy
        return 0, 0
    return int(row[0]), int(row[1])


def plan(project: FloeProject) -> tuple[int, int, int]:
    result = project.run("plan", "floe.yaml", "--secrets-dir", "secrets", "--output", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    return record["inserts"], record["updates"], record["deletes"]


# -- SQL ----------------------------------------------------------------------------------


def read_rows(dialect: str, url: str) -> dict[int, str]:
    query = 'SELECT "id", "name" FROM "items"'
    if dialect == "sqlite":
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            rows = list(db.execute(query))
    elif dialect == "duckdb":
        with duckdb.connect(url.removeprefix("duckdb:///")) as db:
            rows = db.execute(query).fetchall()
    else:
        import psycopg

        with psycopg.connect(url) as db:
            rows = db.execute(query).fetchall()
    found = dict(rows)
    assert len(found) == len(rows), "a key twice at the destination"
    return found


def as_rows(table: pa.Table) -> dict[int, str]:
    return dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True))


@pytest.fixture(params=["sqlite", "duckdb", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "postgresql":
        yield "postgresql", request.getfixturevalue("postgres_url")
    elif request.param == "sqlite":
        yield "sqlite", f"sqlite:///{tmp_path / 'dest.db'}"
    else:
        yield "duckdb", f"duckdb:///{tmp_path / 'dest.duckdb'}"


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["changes", "mirror"])
def test_sql_killed_change_aware_runs_end_with_the_source(
    floe_project: FloeProject, database: tuple[str, str], mode: str
) -> None:
    dialect, url = database
    seed = f"{dialect}-{mode}"
    rng = random.Random(seed)
    project = floe_project
    project.secret("db", url=url)
    project.write_floe(
        [
            {
                "name": "items_db",
                "sink_type": "sql_database",
                "connection_secret_ref": "db",
                "source_table": TABLE,
                "config": {"table": "items"},
                "field_mapping": {"id": "id", "label": "name"},
                "write_disposition": "merge",
                "primary_key": ["id"],
                "sync": mode,
                "batch_size": BATCH,
            }
        ]
    )
    state = project.root / ".floe"
    source = items(list(range(ROWS)))
    project.warehouse.write(TABLE, source, files=3)
    expected = as_rows(source)
    removed_ever: set[int] = set()

    rounds = 3 if mode == "mirror" else 2
    for round_ in range(rounds):
        if round_:
            source, removed = rebuild(source, rng, version=round_)
            project.warehouse.overwrite(TABLE, source)
            removed_ever |= removed
            expected = as_rows(source)
        if mode == "changes":  # the first load, then a rebuild (about 10 upsert batches)
            kills = [
                ("upsert", rng.randint(2, ROWS // BATCH - 3) if round_ == 0 else rng.randint(2, 7))
            ]
        elif round_ == 1:  # in the upserts of a rebuild, then in its deletes (about 10)
            kills = [("upsert", rng.randint(2, 7)), ("delete", rng.randint(5, 8))]
        elif round_ == 2:  # twice in the deletes of a rebuild
            kills = [("delete", rng.randint(1, 4)), ("delete", rng.randint(5, 8))]
        else:  # the first load completes
            kills = []
        held = (0, 0)
        for phase, point in kills:
            index = 0 if phase == "upsert" else 1

            def reached(point: int = point, index: int = index) -> bool:
                return journal(state)[index] >= point

            run_and_kill(project, reached)
            held = journal(state)
            assert held[index] >= point, (seed, round_, phase, point, held)
        record = complete_run(project)
        # the acknowledged batches were not sent again
        assert record["resumed_batches"] >= held[0], (seed, round_, kills, held)

        actual = read_rows(dialect, url)
        if mode == "mirror":
            assert actual == expected, (seed, round_, kills)
        else:  # changes: every source row, and the removed ones stay
            assert {key: actual.get(key) for key in expected} == expected, (seed, round_)
            assert set(actual) - set(expected) == removed_ever, (seed, round_)
        assert journal(state) == (0, 0)  # the delivery is done: nothing left in the journal
    assert plan(project) == (0, 0, 0), seed  # the sync state is what the destination holds


# -- REST ---------------------------------------------------------------------------------

REST_ROWS = 1_500
REST_BATCH = 10  # the first load: 150 batches; a rebuild: 150 rows to send, 15 batches


@pytest.mark.parametrize("concurrency", [1, 3])
def test_rest_killed_changes_runs_deliver_every_changed_record_once(
    floe_project: FloeProject, http_server: RecordingServer, concurrency: int
) -> None:
    rng = random.Random(f"rest-{concurrency}")
    project = floe_project
    project.secret("api", token="t0k-sync-crash")
    project.write_floe(
        [
            {
                "name": "items-api",
                "sink_type": "rest_api",
                "connection_secret_ref": "api",
                "source_table": TABLE,
                "config": {"url": http_server.url_for("/items"), "max_concurrency": concurrency},
                "field_mapping": {"id": "id", "label": "name"},
                "primary_key": ["id"],
                "sync": "changes",
                "batch_size": REST_BATCH,
                "retry": {"initial_wait": 0.01, "jitter": 0.01},
            }
        ]
    )
    if concurrency > 1:
        http_server.delay = 0.005  # keep several batches in flight at a kill
    source = items(list(range(REST_ROWS)))
    project.warehouse.write(TABLE, source, files=3)
    previous: dict[int, str] = {}

    # kill points: batches applied since the run started (a resumed run has fewer to send)
    for round_, most in enumerate([60, 4]):
        if round_:
            source, _removed = rebuild(source, rng, version=round_)
            project.warehouse.overwrite(TABLE, source)
        current = as_rows(source)
        to_send = {key for key, label in current.items() if previous.get(key) != label}
        applied_before = len(http_server.applied)
        keys_before = set(http_server.requests_per_key)
        points = [rng.randint(1, most), rng.randint(1, most)]
        for point in points:
            victim: list[subprocess.Popen[str]] = []
            start = len(http_server.applied_per_key)

            def kill_at(
                applied: int, point: int = point, start: int = start, victim: list[Any] = victim
            ) -> None:
                # in the server, after the batch was applied and before it is answered
                if applied - start >= point and victim:
                    os.kill(victim[0].pid, signal.SIGKILL)

            http_server.on_apply = kill_at
            run_and_kill(project, lambda: False, on_start=victim.append)
        http_server.on_apply = None
        record = complete_run(project)

        arrived = http_server.applied[applied_before:]
        ids = [row["id"] for row in arrived]
        assert sorted(ids) == sorted(to_send), (round_, points)  # each changed record, once
        assert {row["id"]: row["name"] for row in arrived} == {k: current[k] for k in to_send}
        assert http_server.keys_applied_twice == []
        round_keys = set(http_server.requests_per_key) - keys_before
        sent_again = [key for key in round_keys if http_server.requests_per_key[key] > 1]
        # only a batch in flight at a kill goes again (same key): at most `concurrency` a kill
        assert len(points) <= len(sent_again) <= concurrency * len(points), (round_, points)
        assert record["rows_delivered"] == len(to_send)
        previous = current
    assert plan(project) == (0, 0, 0)
