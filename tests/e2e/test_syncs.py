"""Change-aware syncs through the command: changes and mirror, plan, guards, status, reset."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fixtures.command import FloeProject
from fixtures.http_server import RecordingServer

pytestmark = [pytest.mark.slow]

ROWS = 2_000
TOKEN = "tok-sync-5e1d2c"


def customers(ids: range | list[int], *, version: int = 1) -> pa.Table:
    keys = pa.array(list(ids), pa.int64())
    return pa.table(
        {
            "id": keys,
            "email": pc.binary_join_element_wise("c", pc.cast(keys, pa.string()), "@x.io", ""),
            "score": pc.multiply(keys.cast(pa.float64()), float(version)),
            "internal": pa.array([f"v{version}"] * len(keys)),  # read, never sent
        }
    )


def rebuilt(base: pa.Table) -> tuple[pa.Table, set[int], set[int], set[int]]:
    """A dbt-style rebuild: 1% of rows changed, 0.5% removed, 0.5% added, every file new."""
    ids = base.column("id").to_pylist()
    changed = set(ids[::100])  # 1%
    removed = set(ids[1::200])  # 0.5%
    added = set(range(ROWS * 10, ROWS * 10 + len(ids) // 200))  # 0.5%
    kept = [i for i in ids if i not in removed]
    table = customers(kept + sorted(added))
    score = [
        (s * 3 + 1 if i in changed else s)
        for i, s in zip(
            table.column("id").to_pylist(), table.column("score").to_pylist(), strict=True
        )
    ]
    # a change in a column that is not sent is no change: every row's `internal` differs
    table = table.set_column(2, "score", pa.array(score, pa.float64()))
    table = table.set_column(3, "internal", pa.array(["v2"] * table.num_rows))
    return table, changed - removed, removed, added


def sql_destination(mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "crm_db",
        "sink_type": "sql_database",
        "connection_secret_ref": "db",
        "source_table": "gold.customers",
        "config": {"table": "customers"},
        "field_mapping": {"id": "id", "email": "email", "score": "score"},
        "write_disposition": "merge",
        "primary_key": ["id"],
        "sync": mode,
        "batch_size": 250,
        **extra,
    }


def db_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT id, email, score FROM customers"))


def expected(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(
        zip(*(table.column(name).to_pylist() for name in ("id", "email", "score")), strict=True)
    )


def run_json(project: FloeProject, *args: str) -> dict[str, Any]:
    result = project.run_job("--output", "json", *args)
    assert result.code == 0, result.stderr
    (record,) = result.json()
    assert record["success"], record["errors"]
    return dict(record)


def plan_json(project: FloeProject) -> dict[str, Any]:
    result = project.run("plan", "floe.yaml", "--secrets-dir", "secrets", "--output", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    return dict(record)


@pytest.fixture
def sql_project(floe_project: FloeProject, tmp_path: Path) -> tuple[FloeProject, Path]:
    database = tmp_path / "crm.db"
    floe_project.secret("db", url=f"sqlite:///{database}")
    floe_project.warehouse.write("gold.customers", customers(range(ROWS)), files=2)
    return floe_project, database


@pytest.mark.parametrize("mode", ["changes", "mirror"])
def test_a_rebuild_sends_exactly_what_changed(
    sql_project: tuple[FloeProject, Path], mode: str
) -> None:
    project, database = sql_project
    project.write_floe([sql_destination(mode)])
    first = run_json(project)
    assert (first["sync"], first["rows_inserted"], first["rows_updated"]) == (mode, ROWS, 0)
    assert first["rows_delivered"] == ROWS

    source, changed, removed, added = rebuilt(customers(range(ROWS)))
    project.warehouse.overwrite("gold.customers", source)
    plan = plan_json(project)
    assert plan["inserts"] == len(added)
    assert plan["updates"] == len(changed)
    assert plan["deletes"] == (len(removed) if mode == "mirror" else 0)
    assert plan["unchanged"] == ROWS - len(removed) - len(changed)
    assert plan["guard_violations"] == []
    assert db_rows(database) == expected(customers(range(ROWS)))  # plan sent nothing

    second = run_json(project)
    assert second["rows_inserted"] == len(added)
    assert second["rows_updated"] == len(changed)
    assert second["rows_delivered"] == len(added) + len(changed)
    assert second["rows_deleted"] == (len(removed) if mode == "mirror" else 0)
    assert second["rows_unchanged"] == plan["unchanged"]
    if mode == "mirror":
        assert db_rows(database) == expected(source)
    else:  # removed rows stay at the destination
        kept = {row[0] for row in db_rows(database)}
        assert kept == set(range(ROWS)) | added

    third = run_json(project)  # unchanged: nothing to send
    assert (third["rows_delivered"], third["rows_deleted"]) == (0, 0)
    assert third["rows_unchanged"] == source.num_rows

    status = project.run("status", "floe.yaml", "--output", "json")
    assert status.code == 0, status.stderr
    history = status.json()
    assert [run["rows_delivered"] for run in history] == [0, len(added) + len(changed), ROWS]
    assert all(run["success"] for run in history)
    assert {run["sync"] for run in history} == {mode}

    reset = project.run("reset", "floe.yaml", "--destination", "crm_db")
    assert reset.code == 0, reset.stderr
    again = run_json(project)
    assert again["rows_inserted"] == source.num_rows  # compares against nothing


def test_guards_stop_a_mirror_run_before_anything_is_sent(
    sql_project: tuple[FloeProject, Path],
) -> None:
    project, database = sql_project
    project.write_floe([sql_destination("mirror", guards={"max_delete_fraction": 0.1})])
    run_json(project)
    project.warehouse.overwrite("gold.customers", customers(range(ROWS // 2)))  # half gone

    plan = plan_json(project)
    (violation,) = plan["guard_violations"]
    assert "max_delete_fraction" in violation
    stopped = project.run_job("--output", "json")
    assert stopped.code == 1
    (record,) = stopped.json()
    assert not record["success"]
    assert "max_delete_fraction" in record["errors"][0]
    assert len(db_rows(database)) == ROWS  # nothing deleted

    forced = run_json(project, "--ignore-guards")
    assert forced["rows_deleted"] == ROWS // 2
    assert len(db_rows(database)) == ROWS // 2


def test_mirror_on_a_sink_that_cannot_delete_is_refused_by_validate(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.customers", customers(range(10)))
    project.write_floe(
        [
            {
                "name": "crm-api",
                "sink_type": "rest_api",
                "connection_secret_ref": "api",
                "source_table": "gold.customers",
                "config": {"url": http_server.url},
                "primary_key": ["id"],
                "sync": "mirror",
            }
        ]
    )
    message = project.run("validate", "floe.yaml", "--secrets-dir", "secrets").assert_clean_error()
    assert "cannot delete" in message
    assert "sync: changes" in message


def test_changes_over_rest_sends_only_changed_records_counted_at_the_server(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.customers", customers(range(ROWS)), files=2)
    project.write_floe(
        [
            {
                "name": "crm-api",
                "sink_type": "rest_api",
                "connection_secret_ref": "api",
                "source_table": "gold.customers",
                "config": {"url": http_server.url_for("/contacts")},
                "field_mapping": {"id": "id", "email": "email", "score": "score"},
                "primary_key": ["id"],
                "sync": "changes",
                "batch_size": 100,
            }
        ]
    )
    run_json(project)
    assert len(http_server.applied) == ROWS
    source, changed, _removed, added = rebuilt(customers(range(ROWS)))
    project.warehouse.overwrite("gold.customers", source)
    before = len(http_server.applied)
    second = run_json(project)
    sent = {row["id"] for row in http_server.applied[before:]}
    assert sent == changed | added
    assert second["rows_delivered"] == len(changed | added)
    run_json(project)
    assert len(http_server.applied) == before + len(changed | added)  # unchanged: no request


@pytest.mark.parametrize("mode", ["changes", "mirror"])
def test_an_appended_snapshot_is_diffed_from_the_appended_files_only(
    sql_project: tuple[FloeProject, Path], mode: str
) -> None:
    project, database = sql_project
    project.write_floe([sql_destination(mode)])
    run_json(project)
    appended = customers(range(ROWS, ROWS + ROWS // 100))
    project.warehouse.append("gold.customers", appended)

    result = project.run_job("--output", "json", "-v", "--log-format", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    assert record["rows_inserted"] == ROWS // 100
    assert (record["rows_updated"], record["rows_deleted"]) == (0, 0)
    assert record["rows_unchanged"] == ROWS
    diff_events = [line for line in result.stderr.splitlines() if '"sync_diff"' in line]
    assert len(diff_events) == 1
    assert '"incremental": true' in diff_events[0]
    assert db_rows(database) == expected(customers(range(ROWS + ROWS // 100)))

    again = run_json(project)  # the state now stands for the appended snapshot
    assert (again["rows_delivered"], again["rows_unchanged"]) == (0, ROWS + ROWS // 100)
    # a rebuild after the appends is diffed in full, deletes included
    project.warehouse.overwrite("gold.customers", customers(range(ROWS // 2)))
    rebuilt_run = run_json(project)
    assert rebuilt_run["rows_deleted"] == (ROWS // 2 + ROWS // 100 if mode == "mirror" else 0)


@pytest.mark.parametrize("where", ["in_the_appended_files", "against_the_synced_rows"])
def test_duplicate_keys_brought_by_an_append_are_refused(
    sql_project: tuple[FloeProject, Path], where: str
) -> None:
    """After a synced snapshot only the appended files' keys are read for the key check;
    a key repeated among them, or one the synced snapshot already holds, is still refused."""
    project, database = sql_project
    project.write_floe([sql_destination("changes")])
    run_json(project)
    assert run_json(project)["rows_delivered"] == 0  # the unchanged snapshot: no key read
    if where == "in_the_appended_files":
        appended = customers([ROWS + 1, ROWS + 2, ROWS + 1])
    else:
        appended = customers([ROWS + 1, 17])
    project.warehouse.append("gold.customers", appended)
    message = project.run_job().assert_clean_error(2)
    assert "'crm_db'" in message
    assert "primary_key id must be unique and never NULL" in message
    assert str(ROWS + 1 if where == "in_the_appended_files" else 17) in message
    assert db_rows(database) == expected(customers(range(ROWS)))
