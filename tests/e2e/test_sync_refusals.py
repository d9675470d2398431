"""A batch the destination refuses leaves its rows unsynced; the next run sends exactly them.

Through the command, after a first load and a rebuild that changes rows: the destination
refuses one batch (an HTTP 422 from the local server; a CHECK constraint added to the
PostgreSQL table; a trigger raising a constraint error in SQLite; a foreign key that keeps
PostgreSQL from deleting a row). The run fails; the batches acknowledged before the refusal
stay synced. Once the destination accepts, the next run sends the refused batch and what
came after it, and nothing the destination had accepted: counted at the destination (the
server's requests; a ``BEFORE INSERT`` trigger logging every row the sink writes, which
fires for an upsert's updates too, and rolls back with a refused batch).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fixtures.command import CommandResult, FloeProject
from fixtures.http_server import NORMAL, RecordingServer, Reply

pytestmark = [pytest.mark.slow, pytest.mark.requirement("4G-FR-008")]

TABLE = "gold.items"
ROWS = 200
BATCH = 20


def items(scores: dict[int, int]) -> pa.Table:
    ids = sorted(scores)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "score": pa.array([scores[i] for i in ids], pa.int64()),
        }
    )


def destination(mode: str, **entry: Any) -> dict[str, Any]:
    return {
        "name": "items",
        "connection_secret_ref": "dest",
        "source_table": TABLE,
        "primary_key": ["id"],
        "sync": mode,
        "batch_size": BATCH,
        "retry": {"max_attempts": 2, "initial_wait": 0.01, "jitter": 0},
        **entry,
    }


def run(project: FloeProject) -> tuple[CommandResult, dict[str, Any]]:
    result = project.run("run", "floe.yaml", "--secrets-dir", "secrets", "--output", "json")
    (record,) = result.json()
    return result, dict(record)


def succeeds(project: FloeProject) -> dict[str, Any]:
    result, record = run(project)
    assert result.code == 0, result.stderr
    assert record["success"], record["errors"]
    return record


def refused(project: FloeProject, *, mentioning: str) -> dict[str, Any]:
    result, record = run(project)
    assert result.code == 1, result.stderr
    assert not record["success"]
    assert mentioning in " ".join(record["errors"]), record["errors"]
    return record


def plan(project: FloeProject) -> tuple[int, int, int]:
    result = project.run("plan", "floe.yaml", "--secrets-dir", "secrets", "--output", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    return record["inserts"], record["updates"], record["deletes"]


# -- REST ---------------------------------------------------------------------------------


def test_rest_a_refused_batch_is_sent_again_once_accepted_and_nothing_else(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("dest", token="t0k-refusals")
    scores = dict.fromkeys(range(ROWS), 0)
    project.warehouse.write(TABLE, items(scores))
    entry = {"sink_type": "rest_api", "config": {"url": http_server.url_for("/items")}}
    project.write_floe([destination("changes", **entry)])
    succeeds(project)
    assert len(http_server.applied) == ROWS

    changed = list(range(0, ROWS, 4))  # 50 rows: batches of 20, 20 and 10
    scores.update(dict.fromkeys(changed, 1))
    project.warehouse.overwrite(TABLE, items(scores))
    http_server.script(NORMAL, Reply(422, {"error": "invalid score"}))  # the 2nd batch
    before = len(http_server.applied)
    refused(project, mentioning="422")
    accepted = [row["id"] for row in http_server.applied[before:]]
    assert accepted == changed[:BATCH]  # the first batch only: the loop stopped at the refusal

    before = len(http_server.applied)
    record = succeeds(project)
    sent = [row["id"] for row in http_server.applied[before:]]
    assert sent == changed[BATCH:]  # the refused batch and the one after it, nothing accepted
    assert record["rows_updated"] == len(changed) - BATCH
    assert http_server.keys_applied_twice == []
    assert plan(project) == (0, 0, 0)


# -- SQL ----------------------------------------------------------------------------------


# The default isolates a refused row and writes the rest of its batch (tests/dlt/
# test_sql_rejects.py); these tests are of a batch the destination refuses as a whole.
REFUSE_WHOLE_BATCHES = {"table": "items", "max_rejects_per_batch": 0}


def pg_execute(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        for statement in statements:
            db.execute(statement)


def pg_query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as db:
        return list(db.execute(sql).fetchall())


@pytest.mark.postgres
def test_postgresql_refused_upserts_and_deletes_are_sent_again_once_accepted(
    floe_project: FloeProject, postgres_url: str
) -> None:
    url = postgres_url
    project = floe_project
    project.secret("dest", url=url)
    scores = dict.fromkeys(range(ROWS), 0)
    project.warehouse.write(TABLE, items(scores))
    entry = {"sink_type": "sql_database", "config": REFUSE_WHOLE_BATCHES}
    project.write_floe([destination("mirror", write_disposition="merge", **entry)])
    succeeds(project)
    # every row the sink writes (an upsert's updates too) is logged, in its transaction
    pg_execute(
        url,
        "CREATE TABLE sent (id BIGINT NOT NULL)",
        "CREATE FUNCTION log_sent() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO sent VALUES (NEW.id); RETURN NEW; END $$",
        "CREATE TRIGGER log_sent BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION log_sent()",
    )

    # 1. an upsert batch violates a CHECK constraint
    changed = list(range(60))  # batches of ids 0-19, 20-39 (holds the 13), 40-59
    scores.update({i: 13 if i == 30 else 1 for i in changed})
    project.warehouse.overwrite(TABLE, items(scores))
    pg_execute(url, 'ALTER TABLE items ADD CONSTRAINT no_13 CHECK ("score" <> 13)')
    refused(project, mentioning="no_13")
    assert sorted(i for (i,) in pg_query(url, "SELECT id FROM sent")) == changed[:BATCH]
    pg_execute(url, "DELETE FROM sent", "ALTER TABLE items DROP CONSTRAINT no_13")
    record = succeeds(project)
    assert sorted(i for (i,) in pg_query(url, "SELECT id FROM sent")) == changed[BATCH:]
    assert (record["rows_updated"], record["rows_deleted"]) == (len(changed) - BATCH, 0)

    # 2. a delete batch violates a foreign key: another table still references a row
    removed = list(range(100, 160))  # delete batches of ids 100-119, 120-139 (135), 140-159
    for key in removed:
        del scores[key]
    project.warehouse.overwrite(TABLE, items(scores))
    pg_execute(
        url,
        'CREATE TABLE orders (item BIGINT REFERENCES items ("id"))',
        "INSERT INTO orders VALUES (135)",
    )
    refused(project, mentioning="orders")
    left = {i for (i,) in pg_query(url, "SELECT id FROM items")}
    assert left & set(removed) == set(removed[BATCH:])  # the first delete batch went through
    pg_execute(url, "DELETE FROM orders", "DELETE FROM sent")
    record = succeeds(project)
    assert record["rows_deleted"] == len(removed) - BATCH  # only the refused and later ones
    assert (record["rows_inserted"], record["rows_updated"]) == (0, 0)
    assert pg_query(url, "SELECT count(*) FROM sent") == [(0,)]
    rows = pg_query(url, "SELECT id, score FROM items ORDER BY id")
    assert rows == sorted(scores.items())
    assert plan(project) == (0, 0, 0)


def test_sqlite_a_batch_refused_by_a_constraint_is_sent_again_once_accepted(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    path = tmp_path / "dest.db"
    project = floe_project
    project.secret("dest", url=f"sqlite:///{path}")
    scores = dict.fromkeys(range(ROWS), 0)
    project.warehouse.write(TABLE, items(scores))
    entry = {"sink_type": "sql_database", "config": REFUSE_WHOLE_BATCHES}
    project.write_floe([destination("changes", write_disposition="merge", **entry)])
    succeeds(project)

    def sqlite(*statements: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            for statement in statements[:-1]:
                db.execute(statement)
            return list(db.execute(statements[-1]))

    sqlite(
        "CREATE TABLE sent (id INTEGER NOT NULL)",
        "CREATE TRIGGER log_sent BEFORE INSERT ON items BEGIN "
        "INSERT INTO sent VALUES (NEW.id); END",
        "CREATE TRIGGER no_13 BEFORE INSERT ON items WHEN NEW.score = 13 BEGIN "
        "SELECT RAISE(ABORT, 'constraint no_13 failed'); END",
    )
    changed = list(range(ROWS - 50, ROWS))  # batches: 150-169, 170-189 (holds the 13), 190-199
    scores.update({i: 13 if i == 175 else 2 for i in changed})
    project.warehouse.overwrite(TABLE, items(scores))
    refused(project, mentioning="no_13")
    assert sorted(i for (i,) in sqlite("SELECT id FROM sent")) == changed[:BATCH]
    sqlite("DROP TRIGGER no_13", "DELETE FROM sent")
    record = succeeds(project)
    assert sorted(i for (i,) in sqlite("SELECT id FROM sent")) == changed[BATCH:]
    assert record["rows_updated"] == len(changed) - BATCH
    assert sqlite("SELECT id, score FROM items ORDER BY id") == sorted(scores.items())
    assert plan(project) == (0, 0, 0)
