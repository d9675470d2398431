"""Delivery state through the command: identity, locks, interrupts, checks before sending.

Each test reproduces one finding of the delivery-guarantees issue with the shipped command.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fixtures.command import FloeProject, floe_command
from fixtures.http_server import RecordingServer

pytestmark = [pytest.mark.slow]

TOKEN = "tok-7f3e9b21c4d8"


def items(rows: int, *, first_id: int = 0) -> pa.Table:
    ids = pa.array(range(first_id, first_id + rows), pa.int64())
    return pa.table(
        {"id": ids, "label": pc.binary_join_element_wise("x-", pc.cast(ids, pa.string()), "")}
    )


def api_destination(name: str, table: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "sink_type": "rest_api",
        "connection_secret_ref": "api",
        "source_table": table,
        "config": {"url": url},
        "batch_size": 100,
        "retry": {"initial_wait": 0.01, "jitter": 0.01},
        **extra,
    }


def start(project: FloeProject, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*floe_command(), "run", "floe.yaml", "--secrets-dir", "secrets", *args],
        cwd=project.root,
        env=project.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Any, child: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.005)


@pytest.mark.requirement("4G-FR-008")
def test_names_differing_only_by_dash_and_underscore_never_share_state(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.first", items(2_000))
    project.warehouse.write("gold.second", items(300, first_id=50_000))
    project.write_floe(
        [
            api_destination("crm-contacts", "gold.first", http_server.url_for("/first")),
            api_destination("crm_contacts", "gold.second", http_server.url_for("/second")),
        ]
    )
    victim: list[subprocess.Popen[str]] = []

    def kill_first(applied: int) -> None:
        if applied == 5 and victim:
            os.kill(victim[0].pid, signal.SIGKILL)

    http_server.on_apply = kill_first
    victim.append(start(project, "--destination", "crm-contacts"))
    victim[0].communicate(timeout=120)
    assert victim[0].returncode == -signal.SIGKILL
    http_server.on_apply = None

    second = project.run_job("--destination", "crm_contacts", "--output", "json")
    assert second.code == 0, second.stderr
    assert second.json()[0]["resumed_batches"] == 0
    to_second = [r for r in http_server.requests if r.path == "/second"]
    assert sorted(row["id"] for r in to_second for row in r.json) == list(range(50_000, 50_300))

    first = project.run_job("--destination", "crm-contacts", "--output", "json")
    assert first.code == 0, first.stderr
    assert first.json()[0]["resumed_batches"] >= 4
    applied_first = {
        row["id"] for r in http_server.requests if r.path == "/first" for row in r.json
    }
    assert applied_first == set(range(2_000))
    locks = sorted(path.name for path in (project.root / ".floe" / "locks").iterdir())
    assert len(locks) == 2


@pytest.mark.requirement("4G-FR-008")
def test_a_resumed_run_reports_the_bytes_it_sent(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.items", items(3_000))
    project.write_floe([api_destination("items", "gold.items", http_server.url_for("/i"))])
    victim: list[subprocess.Popen[str]] = []

    def kill(applied: int) -> None:
        if applied == 10 and victim:
            os.kill(victim[0].pid, signal.SIGKILL)

    http_server.on_apply = kill
    victim.append(start(project))
    victim[0].communicate(timeout=120)
    http_server.on_apply = None
    before = http_server.bytes_received

    resumed = project.run_job("--output", "json")
    assert resumed.code == 0, resumed.stderr
    (record,) = resumed.json()
    assert record["rows_delivered"] == 3_000
    assert record["resumed_batches"] >= 9
    assert 0 < record["bytes_transmitted"] == http_server.bytes_received - before


@pytest.mark.parametrize(
    ("signal_number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_a_signal_stops_after_the_batch_in_flight_and_the_next_run_resumes(
    floe_project: FloeProject, http_server: RecordingServer, signal_number: int, code: int
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.items", items(5_000))
    project.write_floe([api_destination("items", "gold.items", http_server.url_for("/i"))])
    http_server.delay = 0.02
    child = start(project)
    wait_for(lambda: len(http_server.applied_per_key) >= 5, child)
    started = time.monotonic()
    child.send_signal(signal_number)
    _, stderr = child.communicate(timeout=60)
    assert time.monotonic() - started < 5  # stops after the batch in flight, not at the end
    assert child.returncode == code, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "floe-sink: error:" in line]
    assert len(errors) == 1, stderr
    assert "interrupted" in errors[0]
    sent = len(http_server.applied_per_key)
    assert sent < 50

    http_server.delay = 0
    again = project.run_job("--output", "json")
    assert again.code == 0, again.stderr
    assert again.json()[0]["resumed_batches"] == sent  # each answered batch was recorded
    assert sorted(row["id"] for row in http_server.applied) == list(range(5_000))
    assert max(http_server.requests_per_key.values()) == 1  # nothing was in flight twice


def test_a_second_concurrent_run_of_a_destination_fails_at_once_naming_the_holder(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.items", items(2_000))
    project.write_floe([api_destination("items", "gold.items", http_server.url_for("/i"))])
    http_server.delay = 0.5  # 20 batches: the first run holds the lock for ~10 s
    first = start(project)
    try:
        wait_for(lambda: len(http_server.applied_per_key) >= 2, first)
        second = project.run_job("--output", "json", timeout=60)
        assert second.code == 1, second.stderr
        (record,) = second.json()
        assert not record["success"]
        (error,) = record["errors"]
        assert "is being delivered by process" in error
        assert str(first.pid) in error
    finally:
        http_server.delay = 0
        first.communicate(timeout=120)
    assert first.returncode == 0
    # the first run's delivery was not disturbed: every row once
    assert sorted(row["id"] for row in http_server.applied) == list(range(2_000))
    assert http_server.keys_applied_twice == []


def test_a_killed_runs_lock_is_taken_over_by_the_next_run(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.items", items(2_000))
    project.write_floe([api_destination("items", "gold.items", http_server.url_for("/i"))])
    http_server.delay = 0.02
    child = start(project)
    wait_for(lambda: len(http_server.applied_per_key) >= 2, child)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    http_server.delay = 0
    again = project.run_job()
    assert again.code == 0, again.stderr


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"urll": "http://127.0.0.1:9/x"}, "urll"),
        ({"method": "GET"}, "method"),
    ],
)
def test_validate_dry_run_and_run_refuse_a_bad_sink_config_before_anything_is_sent(
    floe_project: FloeProject, http_server: RecordingServer, config: dict[str, Any], named: str
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.warehouse.write("gold.items", items(500))
    good = api_destination("good", "gold.items", http_server.url_for("/good"))
    bad = api_destination("bad", "gold.items", http_server.url_for("/bad"))
    bad["config"] = {**bad["config"], **config}
    if named == "urll":
        bad["config"].pop("url")
    project.write_floe([good, bad])

    validate = project.run("validate", "floe.yaml", "--secrets-dir", "secrets")
    assert named in validate.assert_clean_error(2)
    dry = project.run_job("--dry-run")
    assert named in dry.assert_clean_error(2)
    run = project.run_job()
    assert named in run.assert_clean_error(2)
    assert http_server.requests == []  # the good destination sent nothing either


def test_merge_on_rest_api_and_a_misspelt_sql_table_key_are_refused_by_validate(
    floe_project: FloeProject,
) -> None:
    project = floe_project
    project.secret("api", token=TOKEN)
    project.secret("db", url=f"sqlite:///{project.root / 'd.db'}")
    project.warehouse.write("gold.items", items(10))
    merge = api_destination(
        "merge-api", "gold.items", "http://127.0.0.1:9/x", write_disposition="merge"
    )
    merge["primary_key"] = ["id"]
    sql = {
        "name": "db",
        "sink_type": "sql_database",
        "connection_secret_ref": "db",
        "source_table": "gold.items",
        "config": {"tabel": "items"},
    }
    project.write_floe([merge, sql])
    message = project.run("validate", "floe.yaml", "--secrets-dir", "secrets").assert_clean_error(2)
    assert "write_disposition" in message
    assert "tabel" in message


def test_the_state_directory_stays_small_after_many_runs(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    project = floe_project
    database = tmp_path / "dest.db"
    project.secret("db", url=f"sqlite:///{database}")
    project.warehouse.write("gold.items", items(50_000), files=2)
    project.write_floe(
        [
            {
                "name": "db",
                "sink_type": "sql_database",
                "connection_secret_ref": "db",
                "source_table": "gold.items",
                "config": {"table": "items"},
                "write_disposition": "replace",
                "batch_size": 1_000,
            }
        ]
    )
    state = project.root / ".floe"
    for _ in range(3):
        result = project.run_job()
        assert result.code == 0, result.stderr
    size = sum(path.stat().st_size for path in state.rglob("*") if path.is_file())
    assert size < 200_000, f"state directory holds {size} bytes"
    with sqlite3.connect(state / "state.db") as db:
        assert db.execute("SELECT count(*) FROM floe_batches").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM floe_runs").fetchone() == (3,)
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (50_000,)


@pytest.mark.parametrize("problem", ["null", "duplicate"])
def test_null_or_duplicate_merge_keys_are_refused_before_anything_is_sent(
    floe_project: FloeProject, tmp_path: Path, problem: str
) -> None:
    project = floe_project
    database = tmp_path / "dest.db"
    project.secret("db", url=f"sqlite:///{database}")
    ids: list[int | None] = list(range(100))
    if problem == "null":
        ids[4] = ids[6] = None
    else:
        ids[7] = ids[8] = 3
    secret_email = "someone-private@example.com"
    project.warehouse.write(
        "gold.items",
        pa.table({"id": pa.array(ids, pa.int64()), "email": [secret_email] * 100}),
    )
    merge = {
        "name": "db",
        "sink_type": "sql_database",
        "connection_secret_ref": "db",
        "source_table": "gold.items",
        "config": {"table": "items"},
        "write_disposition": "merge",
        "primary_key": ["id"],
    }
    project.write_floe([merge])
    message = project.run_job().assert_clean_error(2)
    assert "'db'" in message
    assert "primary_key id must be unique and never NULL" in message
    assert ("2 rows" in message) if problem == "null" else ("3" in message)
    assert secret_email not in message  # key values only, never other columns
    assert not database.exists() or sqlite3.connect(database).execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 'items'"
    ).fetchone() == (0,)
