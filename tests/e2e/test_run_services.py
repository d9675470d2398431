"""End to end through the real command against live services on 127.0.0.1.

Iceberg (pyiceberg SQL catalog in a temp dir) -> ``floe-sink run`` -> the test PostgreSQL
cluster (merge: a second run leaves exactly the source rows) and the local HTTP server
(rest_api: field mapping and bearer token checked at the server). Secret values (the token,
the database password) must appear in none of stdout, stderr (logs, console spans) or the
delivery state on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from fixtures.command import FloeProject
from fixtures.iceberg import customers

pytestmark = pytest.mark.slow

TOKEN = "crm-tok-5b8f1c2d9e-secret"


def assert_secret_nowhere(secret: str, project: FloeProject, *outputs: str) -> None:
    for output in outputs:
        assert secret not in output
    for path in (project.root / ".floe").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# -- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("postgres_url")
    return url


def pg_rows(url: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT id, email_address, country_code FROM customers"
        ).fetchall()
    return sorted(rows)


def source_rows(table: Any) -> list[tuple[Any, ...]]:
    columns = [table.column(name).to_pylist() for name in ("customer_id", "email", "country")]
    return sorted(zip(*columns, strict=True))


def pg_destination(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "ops_postgres",
        "sink_type": "sql_database",
        "connection_secret_ref": "ops-postgres",
        "source_table": "gold.customers",
        "config": {"table": "customers"},
        "field_mapping": {
            "customer_id": "id",
            "email": "email_address",
            "country": "country_code",
        },
        "write_disposition": "merge",
        "primary_key": ["customer_id"],
        "batch_size": 1_000,
    }
    spec.update(overrides)
    return spec


def test_postgres_merge_end_to_end(floe_project: FloeProject, pg_url: str) -> None:
    from urllib.parse import urlparse

    password = urlparse(pg_url).password or ""
    assert password
    floe_project.warehouse.write("gold.customers", customers(5_000), files=3)
    floe_project.secret("ops-postgres", url=pg_url)
    floe_project.write_floe([pg_destination()])

    first = floe_project.run_job("--output", "json", "--otel-console", "-v")
    assert first.code == 0, first.stderr
    (record,) = first.json()
    assert record["success"] is True
    assert record["rows_delivered"] == 5_000
    assert pg_rows(pg_url) == source_rows(customers(5_000))

    # updated and new rows; a second run leaves exactly the source rows
    changed = customers(6_000)
    changed = changed.set_column(
        changed.schema.get_field_index("country"),
        "country",
        pc.if_else(pc.less_equal(changed["customer_id"], 50), "XX", changed["country"]),
    )
    floe_project.warehouse.write("gold.customers", changed, files=2)
    second = floe_project.run_job("--output", "json")
    assert second.code == 0, second.stderr
    assert second.json()[0]["rows_delivered"] == 6_000
    assert pg_rows(pg_url) == source_rows(changed)
    assert_secret_nowhere(
        password, floe_project, first.stdout, first.stderr, second.stdout, second.stderr
    )


def test_postgres_dry_run_writes_nothing(floe_project: FloeProject, pg_url: str) -> None:
    import psycopg

    floe_project.warehouse.write("gold.customers", customers(500))
    floe_project.secret("ops-postgres", url=pg_url)
    floe_project.write_floe([pg_destination()])
    result = floe_project.run_job("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    assert result.json()[0]["rows"] == 500
    with psycopg.connect(pg_url) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'customers'"
        ).fetchone()
    assert tables == (0,)


# -- rest_api -----------------------------------------------------------------------------------


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue("http_server")


def rest_destination(url: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "crm_contacts",
        "sink_type": "rest_api",
        "connection_secret_ref": "crm-api",
        "source_table": "gold.customers",
        "config": {"url": url},
        "field_mapping": {"customer_id": "external_id", "email": "email_address"},
        "batch_size": 250,
        "row_filter": "customer_id <= 1000",
    }
    spec.update(overrides)
    return spec


def test_rest_api_end_to_end(floe_project: FloeProject, server: Any) -> None:
    floe_project.warehouse.write("gold.customers", customers(1_500), files=2)
    floe_project.secret("crm-api", token=TOKEN)
    floe_project.write_floe([rest_destination(server.url_for("/contacts"))])

    result = floe_project.run_job("--output", "json", "--otel-console", "-v")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    assert record["success"] is True
    assert record["rows_delivered"] == 1_000

    assert server.requests, "the server saw no request"
    assert len(server.requests) == 4  # 1,000 rows in batches of 250
    for request in server.requests:
        assert request.method == "POST"
        assert request.path == "/contacts"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.key
    rows = server.applied
    assert len(rows) == 1_000
    assert {tuple(sorted(row)) for row in rows} == {("email_address", "external_id")}
    assert sorted(row["external_id"] for row in rows) == list(range(1, 1_001))
    assert all(row["email_address"] == f"user{row['external_id']}@example.com" for row in rows)
    assert_secret_nowhere(TOKEN, floe_project, result.stdout, result.stderr)


@pytest.mark.requirement("4G-FR-018")
def test_rest_api_secret_without_token_is_a_configuration_error(
    floe_project: FloeProject, server: Any
) -> None:
    floe_project.warehouse.write("gold.customers", customers(100))
    floe_project.secret("crm-api", tokn=TOKEN)
    floe_project.write_floe([rest_destination(server.url_for("/contacts"))])
    result = floe_project.run_job()
    message = result.assert_clean_error(2)
    assert "destination 'crm_contacts': the destination's Secret has no key 'token'" in message
    assert "(keys found: tokn)" in message
    assert server.request_count == 0
    assert_secret_nowhere(TOKEN, floe_project, result.stdout, result.stderr)


def test_rest_api_dry_run_sends_nothing(floe_project: FloeProject, server: Any) -> None:
    floe_project.warehouse.write("gold.customers", customers(1_500))
    floe_project.secret("crm-api", token=TOKEN)
    floe_project.write_floe([rest_destination(server.url_for("/contacts"))])
    result = floe_project.run_job("--dry-run", "--output", "json", "-v")
    assert result.code == 0, result.stderr
    (report,) = result.json()
    assert report["rows"] == 1_000
    assert report["batches"] == 4
    assert server.request_count == 0
    assert TOKEN not in result.stdout + result.stderr


def test_one_failing_destination_does_not_stop_the_other(
    floe_project: FloeProject, server: Any, tmp_path: Path
) -> None:
    database = tmp_path / "ops.sqlite"
    floe_project.warehouse.write("gold.customers", customers(300))
    floe_project.secret("crm-api", token=TOKEN)
    floe_project.secret("ops-sqlite", url=f"sqlite:///{database}")
    floe_project.write_floe(
        [
            # nothing listens on port 9: connection refused, retried, then failed
            rest_destination(
                "http://127.0.0.1:9/contacts",
                retry={"max_attempts": 2, "initial_wait": 0.01, "max_wait": 0.02},
            ),
            pg_destination(name="ops", connection_secret_ref="ops-sqlite"),
        ]
    )
    result = floe_project.run_job("--output", "json")
    assert result.code == 1, result.stderr
    records = {record["destination"]: record for record in result.json()}
    assert records["crm_contacts"]["success"] is False
    assert records["crm_contacts"]["errors"]
    assert records["ops"]["success"] is True
    assert records["ops"]["rows_delivered"] == 300
    assert "Traceback" not in result.stderr, result.stderr
    assert TOKEN not in result.stdout + result.stderr
