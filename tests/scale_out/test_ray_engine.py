"""The Ray engine on a local 2-CPU cluster: same results as the local engine, exact recovery.

Every data file is a unit of its own here (``unit_bytes=1``), so a table of a dozen files is a
dozen tasks. PostgreSQL (append, merge, replace) and the local HTTP server are the
destinations; the local engine's run of the same snapshot is the reference.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pytest

from fixtures.command import FloeProject, floe_command
from fixtures.http_server import RecordingServer, Reply
from fixtures.iceberg import customers
from fixtures.saas_api import FakeSaasApi
from scale_out.conftest import RayCluster, file_of_each_id, run_job

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.slow]

ROWS = 2_400
FILES = 12
COLUMNS = ["customer_id", "email", "full_name", "country", "lifetime_value", "is_active"]


@pytest.fixture
def source(floe_project: FloeProject) -> pa.Table:
    table = customers(ROWS)
    floe_project.warehouse.write("gold.customers", table, files=FILES)
    return table


def sql_destination(name: str, table: str, disposition: str = "append", **extra: Any) -> dict:
    spec: dict[str, Any] = {
        "name": name,
        "sink_type": "sql_database",
        "connection_secret_ref": "pg",
        "source_table": "gold.customers",
        "config": {"table": table},
        "batch_size": 70,
        "write_disposition": disposition,
    }
    if disposition == "merge":
        spec["primary_key"] = ["customer_id"]
    spec.update(extra)
    return spec


def rest_destination(name: str, url: str, **config: Any) -> dict:
    return {
        "name": name,
        "sink_type": "rest_api",
        "connection_secret_ref": "api",
        "source_table": "gold.customers",
        "config": {"url": url, **config},
        "batch_size": 50,
    }


def pg_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    import psycopg

    columns = ", ".join(f'"{column}"' for column in COLUMNS)
    with psycopg.connect(url) as db:
        return sorted(db.execute(f'SELECT {columns} FROM "{table}"').fetchall())


def source_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True))


def slow_down_batches(url: str, seconds: float) -> None:
    """Make every batch commit take ``seconds`` longer (a trigger on the ledger's inserts)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            'CREATE TABLE IF NOT EXISTS "_floe_sink_batches" ("destination" TEXT NOT NULL, '
            '"load_id" TEXT NOT NULL, "batch_key" TEXT NOT NULL, "rows" BIGINT NOT NULL, '
            '"delivered_at" TEXT NOT NULL, PRIMARY KEY ("destination", "load_id", "batch_key"))'
        )
        db.execute(
            "CREATE OR REPLACE FUNCTION floe_test_slow() RETURNS trigger AS $$ BEGIN "
            f"PERFORM pg_sleep({seconds}); RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        db.execute(
            'CREATE TRIGGER floe_test_slow AFTER INSERT ON "_floe_sink_batches" '
            "FOR EACH ROW EXECUTE FUNCTION floe_test_slow()"
        )


def ledger_rows(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute('SELECT count(*) FROM "_floe_sink_batches"').fetchone()
    return int(row[0]) if row else 0


def wait_for(condition: Any, *, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- same results as the local engine -----------------------------------------------------------


def test_postgres_append_merge_replace_equal_the_source_and_a_local_run(
    ray_cluster: RayCluster, floe_project: FloeProject, source: pa.Table, postgres_url: str
) -> None:
    floe_project.secret("pg", url=postgres_url)
    names = []
    destinations = []
    for disposition in ("append", "merge", "replace"):
        for engine in ("local", "ray"):
            name = f"{disposition}_{engine}"
            names.append(name)
            destinations.append(sql_destination(name, name, disposition))
    floe_project.write_floe(destinations)

    local = run_job(floe_project, engine="local", select=[n for n in names if "local" in n])
    ray = run_job(floe_project, engine="ray", select=[n for n in names if "ray" in n])

    for disposition in ("append", "merge", "replace"):
        here, there = local[f"{disposition}_local"].result, ray[f"{disposition}_ray"].result
        assert here.success, here.errors
        assert there.success, there.errors
        assert there.rows_delivered == here.rows_delivered == ROWS
        assert there.checksum == here.checksum
        assert pg_rows(postgres_url, f"{disposition}_ray") == source_rows(source)
    # a second run of the same snapshot: append adds it again, merge and replace stay exact
    again = run_job(floe_project, engine="ray", select=["merge_ray", "replace_ray"])
    assert all(outcome.result.success for outcome in again.values())
    assert pg_rows(postgres_url, "merge_ray") == source_rows(source)
    assert pg_rows(postgres_url, "replace_ray") == source_rows(source)
    assert again["merge_ray"].result.checksum == local["merge_local"].result.checksum


def test_rest_api_gets_every_record_once_with_unit_scoped_keys_as_a_local_run(
    ray_cluster: RayCluster,
    floe_project: FloeProject,
    source: pa.Table,
    http_server: RecordingServer,
) -> None:
    floe_project.secret("api", token="t0ken")
    floe_project.write_floe(
        [
            rest_destination("crm_local", http_server.url_for("/local")),
            rest_destination("crm_ray", http_server.url_for("/ray"), max_concurrency=2),
        ]
    )
    local = run_job(floe_project, engine="local", select=["crm_local"])["crm_local"].result
    ray = run_job(floe_project, engine="ray", select=["crm_ray"])["crm_ray"].result

    assert ray.success, ray.errors
    assert (ray.rows_delivered, ray.checksum) == (local.rows_delivered, local.checksum)
    assert ray.idempotency_key != local.idempotency_key  # the destination's name is in it
    requests = [r for r in http_server.requests if r.path == "/ray"]
    ids = sorted(row["customer_id"] for r in requests for row in r.json)
    assert ids == list(range(1, ROWS + 1))
    keys = [r.key for r in requests]
    assert len(set(keys)) == len(keys)  # batch keys are scoped by unit and position
    assert len(requests) >= FILES  # batches never straddle units
    assert {r.headers["authorization"] for r in requests} == {"Bearer t0ken"}
    assert http_server.keys_applied_twice == []
    # the same snapshot again: the same unit ids, so the same keys
    again = run_job(floe_project, engine="ray", select=["crm_ray"])["crm_ray"].result
    assert again.success
    resent = [r.key for r in http_server.requests if r.path == "/ray"][len(keys) :]
    assert sorted(resent) == sorted(keys)


def test_max_requests_per_second_holds_across_the_tasks(
    ray_cluster: RayCluster,
    floe_project: FloeProject,
    source: pa.Table,
    http_server: RecordingServer,
) -> None:
    floe_project.secret("api", token="t")
    rate = 40.0
    floe_project.write_floe(
        [
            rest_destination(
                "paced", http_server.url, max_requests_per_second=rate, max_concurrency=2
            )
            | {"batch_size": 100, "row_filter": "customer_id <= 1600"}
        ]
    )
    result = run_job(floe_project, engine="ray")["paced"].result
    assert result.success, result.errors
    arrivals = sorted(request.at for request in http_server.requests)
    assert len(arrivals) >= 16
    # two tasks each pacing on its own would take half as long
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / rate * 0.9


# -- failures -----------------------------------------------------------------------------------


def test_a_worker_killed_mid_unit_is_recovered_and_nothing_is_applied_twice_in_sql(
    ray_cluster: RayCluster, floe_project: FloeProject, source: pa.Table, postgres_url: str
) -> None:
    floe_project.secret("pg", url=postgres_url)
    floe_project.write_floe([sql_destination("pg", "customers", "append", batch_size=40)])
    slow_down_batches(postgres_url, 0.03)
    killed: list[int | None] = []

    def killer() -> None:
        wait_for(lambda: ledger_rows(postgres_url) >= 8, what="batches committed")
        wait_for(lambda: bool(ray_cluster.unit_workers()), what="a unit in flight")
        killed.append(ray_cluster.kill_a_unit_worker())

    thread = threading.Thread(target=killer)
    thread.start()
    result = run_job(floe_project, engine="ray")["pg"].result
    thread.join()

    assert killed
    assert killed[0] is not None
    assert result.success, result.errors
    assert result.rows_delivered == ROWS
    assert pg_rows(postgres_url, "customers") == source_rows(source)  # no row lost or twice


def test_a_worker_killed_mid_unit_resends_only_its_unit_with_the_same_keys(
    ray_cluster: RayCluster,
    floe_project: FloeProject,
    source: pa.Table,
    http_server: RecordingServer,
) -> None:
    floe_project.secret("api", token="t")
    floe_project.write_floe([rest_destination("crm", http_server.url)])
    http_server.delay = 0.01
    killed: list[int | None] = []

    def kill_once(applied: int) -> None:  # in the server, before the answer: mid-request
        if applied == 10 and not killed:
            killed.append(ray_cluster.kill_a_unit_worker())

    http_server.on_apply = kill_once
    result = run_job(floe_project, engine="ray", max_tasks=2)["crm"].result

    assert killed
    assert killed[0] is not None
    assert result.success, result.errors
    applied = sorted(row["customer_id"] for row in http_server.applied)
    assert applied == list(range(1, ROWS + 1))  # every record, each applied once
    assert http_server.keys_applied_twice == []
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for request in http_server.requests:
        bodies[request.key or ""].add(request.body)
    assert all(len(seen) == 1 for seen in bodies.values())  # a key always carries the same rows
    unit_of = file_of_each_id(floe_project, "gold.customers")
    resent_units = {
        unit_of[row["customer_id"]]
        for request in http_server.requests
        if http_server.requests_per_key[request.key or ""] > 1
        for row in request.json
    }
    assert len(resent_units) <= 2  # only units in flight at the kill (max_tasks=2)


def test_a_unit_refused_for_good_fails_the_destination_and_the_rest_goes_on(
    ray_cluster: RayCluster,
    floe_project: FloeProject,
    source: pa.Table,
    http_server: RecordingServer,
) -> None:
    floe_project.secret("api", token="t")
    floe_project.write_floe(
        [
            rest_destination("crm", http_server.url_for("/crm")),
            rest_destination("other", http_server.url_for("/other")),
        ]
    )
    http_server.script(Reply(200, {}, apply=True), Reply(400, {"error": "invalid email"}))
    first = run_job(floe_project, engine="ray")
    crm, other = first["crm"].result, first["other"].result

    assert not crm.success
    assert len(crm.errors) == 1
    assert "unit " in crm.errors[0]
    assert "HTTP 400" in crm.errors[0]
    assert 0 < crm.rows_delivered < ROWS  # the other units were delivered
    assert other.success
    assert other.rows_delivered == ROWS
    # the failed append delivery is resumed: only the refused unit is sent again
    before = len(http_server.requests)
    second = run_job(floe_project, engine="ray", select=["crm"])["crm"].result
    assert second.success, second.errors
    assert second.rows_delivered == ROWS
    assert second.resumed_batches > 0
    assert len(http_server.requests) - before < ROWS / 50 / 2
    applied = Counter(row["customer_id"] for row in http_server.applied)
    assert all(count == 2 for count in applied.values())  # once per destination
    assert len(applied) == ROWS


def test_a_transient_failure_is_retried_by_ray(
    ray_cluster: RayCluster,
    floe_project: FloeProject,
    source: pa.Table,
    http_server: RecordingServer,
) -> None:
    floe_project.secret("api", token="t")
    floe_project.write_floe(
        [rest_destination("crm", http_server.url) | {"retry": {"max_attempts": 1}}]
    )
    http_server.script(Reply(503, "unavailable"))  # the sink does not retry: Ray does
    result = run_job(floe_project, engine="ray")["crm"].result
    assert result.success, result.errors
    assert sorted(row["customer_id"] for row in http_server.applied) == list(range(1, ROWS + 1))
    assert len(http_server.requests) == len(http_server.applied_per_key) + 1  # + the 503


# -- the command --------------------------------------------------------------------------------


def _journal_units(project: FloeProject) -> int:
    path = project.root / ".floe" / "state.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM floe_batches").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_a_stopped_then_killed_driver_is_resumed_exactly_by_the_next_run(
    ray_cluster: RayCluster, floe_project: FloeProject, source: pa.Table, postgres_url: str
) -> None:
    floe_project.secret("pg", url=postgres_url)
    floe_project.write_floe([sql_destination("pg", "customers", "append", batch_size=40)])
    floe_project.write_manifest(
        engine={
            "type": "ray",
            "address": ray_cluster.address,
            "unit_size_mb": 0.000001,
            "max_tasks": 2,
        }
    )
    slow_down_batches(postgres_url, 0.02)
    command = [*floe_command(), "run", "floe.yaml", "--manifest", "manifest.yaml"]
    command += ["--secrets-dir", "secrets", "--output", "json"]

    def run_until(units: int, signal_number: int) -> int:
        driver = subprocess.Popen(
            command,
            cwd=floe_project.root,
            env=floe_project.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: _journal_units(floe_project) >= units, timeout=120, what="units")
            os.kill(driver.pid, signal_number)
        finally:
            driver.communicate(timeout=60)
        return driver.returncode

    # SIGTERM (Kubernetes stopping the pod): the run stops, says so, stays resumable;
    # ray.init's own SIGTERM handler must not have replaced floe-sink's
    assert run_until(2, signal.SIGTERM) == 143
    recorded = _journal_units(floe_project)
    assert 2 <= recorded < FILES
    # SIGKILL: nothing runs after it
    assert run_until(recorded + 2, signal.SIGKILL) == -signal.SIGKILL
    assert ledger_rows(postgres_url) > 0

    rerun = floe_project.run_job("--output", "json", "-v", env={"FLOE_SINK_OTEL": "console"})
    assert rerun.code == 0, rerun.stderr[-3000:]
    (record,) = rerun.json()
    assert record["success"]
    assert record["rows_delivered"] == ROWS
    assert record["resumed_batches"] > 0  # units the stopped and killed drivers had recorded
    assert pg_rows(postgres_url, "customers") == source_rows(source)
    # the tasks' spans joined the run's trace
    lines = [json.loads(line) for line in rerun.stderr.splitlines() if line.startswith('{"')]
    started = [line for line in lines if line.get("event") == "ray_delivery_started"]
    units = [line for line in lines if line.get("event") == "unit_recorded"]
    assert started
    assert units
    assert {line["trace_id"] for line in units} == {started[0]["trace_id"]}
    assert started[0]["trace_id"] != "0" * 32


# -- presets and rejected records ---------------------------------------------------------------


def people(rows: int) -> pa.Table:
    ids = list(range(rows))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "email": [f"person{n}@example.com" for n in ids],
            "first_name": [f"First{n}" for n in ids],
            "score": pa.array([3 * n for n in ids], pa.int64()),
        }
    )


def hubspot_destination(name: str, api: FakeSaasApi) -> dict[str, Any]:
    return {
        "name": name,
        "sink_type": "rest_api",
        "connection_secret_ref": "api",
        "source_table": "gold.people",
        "primary_key": ["id"],
        "batch_size": 40,
        "field_mapping": {"id": "id", "email": "email", "first_name": "firstname"},
        "config": {
            "preset": "hubspot_contacts",
            "url": api.url + "/crm/v3/objects/contacts/batch/upsert",
            "max_requests_per_second": 200,
        },
    }


def test_a_preset_run_with_engine_ray_files_refused_records_as_a_local_run(
    ray_cluster: RayCluster, floe_project: FloeProject, saas_api: FakeSaasApi
) -> None:
    rows, refused = 480, {7: "Property values were not valid", 301: "Email is not allowed"}
    floe_project.warehouse.write("gold.people", people(rows), files=6)
    floe_project.secret("api", token=saas_api.bearer)
    floe_project.write_floe(
        [hubspot_destination("hub-local", saas_api), hubspot_destination("hub-ray", saas_api)]
    )
    # every data file a unit; --engine and --ray-address override the manifest's section
    floe_project.write_manifest(engine={"unit_size_mb": 0.000001, "max_tasks": 2})
    saas_api.refuse = {f"person{n}@example.com": message for n, message in refused.items()}

    def run(name: str, *engine: str) -> dict[str, Any]:
        result = floe_project.run_job("--output", "json", "-v", "-d", name, *engine)
        assert result.code == 0, result.stderr[-3000:]
        assert ("ray_delivery_started" in result.stderr) == bool(engine)
        (record,) = result.json()
        assert record["success"], record["errors"]
        return dict(record)

    local = run("hub-local")
    ray = run("hub-ray", "--engine", "ray", "--ray-address", ray_cluster.address)

    for record in (local, ray):
        assert (record["rows_delivered"], record["rows_rejected"]) == (rows - 2, 2)
    assert ray["checksum"] == local["checksum"]
    assert saas_api.invalid == []
    assert set(saas_api.held) == {f"person{n}@example.com" for n in range(rows)} - set(
        saas_api.refuse
    )
    listed = floe_project.run(
        "rejects", "floe.yaml", "--manifest", "manifest.yaml", "--secrets-dir", "secrets",
        "--output", "json",
    )  # fmt: skip
    assert listed.code == 0, listed.stderr
    by_destination: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for reject in listed.json():
        by_destination[reject["destination"]].append((*reject["key"].values(), reject["reason"]))
    expected = sorted((n, message) for n, message in refused.items())
    assert {name: sorted(found) for name, found in by_destination.items()} == {
        "hub-local": expected,
        "hub-ray": expected,
    }
