"""The ``floe-sink`` command through a subprocess: sinks, schema, validate, run --dry-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixtures.command import FloeProject
from fixtures.iceberg import customers

TOKEN = "tok-3f9c2a7e-very-secret"
DB_PASSWORD = "pw-8d1e55b0-very-secret"


def crm_destination(**overrides: Any) -> dict[str, Any]:
    destination: dict[str, Any] = {
        "name": "crm_contacts",
        "sink_type": "rest_api",
        "connection_secret_ref": "crm-api",
        "source_table": "gold.customers",
        "config": {"url": "http://127.0.0.1:9/contacts"},
        "field_mapping": {"customer_id": "id", "email": "email_address"},
        "batch_size": 100,
    }
    destination.update(overrides)
    return destination


def db_destination(project: FloeProject, **overrides: Any) -> dict[str, Any]:
    destination: dict[str, Any] = {
        "name": "ops_db",
        "sink_type": "sql_database",
        "connection_secret_ref": "ops-db",
        "source_table": "gold.customers",
        "config": {"table": "customers"},
        "write_disposition": "merge",
        "primary_key": ["customer_id"],
    }
    destination.update(overrides)
    return destination


@pytest.fixture
def project(floe_project: FloeProject) -> FloeProject:
    """Two destinations over a 1,000-row Gold table, with their secrets mounted."""
    floe_project.warehouse.write("gold.customers", customers(1_000), files=3)
    floe_project.secret("crm-api", token=TOKEN)
    db = floe_project.root / "ops.sqlite"
    floe_project.secret("ops-db", url=f"sqlite:///{db}")
    floe_project.write_floe([crm_destination(), db_destination(floe_project)])
    floe_project.write_manifest(approved_sinks=["rest_api", "sql_database"])
    return floe_project


# -- sinks --------------------------------------------------------------------------------------


def test_sinks_lists_the_reference_sinks_with_their_distribution(floe_project: FloeProject) -> None:
    result = floe_project.run("sinks")
    assert result.code == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "plugin dlt (floe-sink " in lines["rest_api"]
    assert "plugin dlt (floe-sink " in lines["sql_database"]


def test_sinks_json(floe_project: FloeProject) -> None:
    result = floe_project.run("sinks", "--output", "json")
    assert result.code == 0, result.stderr
    document = result.json()
    by_type = {record["sink_type"]: record for record in document["sinks"]}
    assert by_type["rest_api"]["plugin"] == "dlt"
    assert by_type["rest_api"]["distribution"] == "floe-sink"
    assert by_type["sql_database"]["version"]
    assert document["failed_plugins"] == []


def test_sinks_reports_a_plugin_that_fails_to_load(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    info = site / "broken_sink-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sink\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[floe_sink]\nbroken = floe_sink_no_such_module.plugin\n"
    )
    result = floe_project.run("sinks", env={"PYTHONPATH": str(site)})
    assert result.code == 0, result.stderr
    assert "rest_api" in result.stdout
    failure = next(line for line in result.stdout.splitlines() if "failed to load" in line)
    assert "broken" in failure
    assert "broken-sink" in failure
    assert "ModuleNotFoundError" in failure


# -- schema -------------------------------------------------------------------------------------


def test_schema_prints_both_json_schemas(floe_project: FloeProject) -> None:
    result = floe_project.run("schema")
    assert result.code == 0, result.stderr
    document = result.json()
    assert set(document) == {"floe.yaml", "manifest.yaml"}
    assert all(isinstance(schema, dict) for schema in document.values())


@pytest.mark.parametrize("kind", ["floe", "manifest"])
def test_schema_prints_one_json_schema(floe_project: FloeProject, kind: str) -> None:
    result = floe_project.run("schema", kind)
    assert result.code == 0, result.stderr
    assert isinstance(result.json(), dict)


# -- validate -----------------------------------------------------------------------------------


def test_validate_accepts_a_valid_project(project: FloeProject) -> None:
    result = project.run(
        "validate", "floe.yaml", "--manifest", "manifest.yaml", "--secrets-dir", "secrets"
    )
    assert result.code == 0, result.stderr
    assert "valid" in result.stdout
    assert "crm_contacts" in result.stdout
    assert "ops_db" in result.stdout


def test_validate_finds_the_manifest_beside_floe_yaml(project: FloeProject) -> None:
    project.write_manifest(approved_sinks=["sql_database"])
    result = project.run("validate", "floe.yaml")
    message = result.assert_clean_error(2)
    assert "rest_api" in message
    assert "approved" in message


def test_validate_refuses_an_invalid_floe_yaml(project: FloeProject) -> None:
    project.write_floe([crm_destination(batch_size=0)])
    result = project.run("validate", "floe.yaml", "--manifest", "manifest.yaml")
    message = result.assert_clean_error(2)
    assert "floe.yaml" in message
    assert "batch_size" in message


def test_validate_refuses_an_unknown_sink_type(project: FloeProject) -> None:
    project.write_floe([crm_destination(sink_type="carrier_pigeon")])
    project.write_manifest()
    result = project.run("validate", "floe.yaml", "--manifest", "manifest.yaml")
    message = result.assert_clean_error(2)
    assert "carrier_pigeon" in message


def test_validate_accepts_a_floe_yaml_without_destinations(floe_project: FloeProject) -> None:
    floe_project.write_floe(None, transforms={"owned_by": "another floe component"})
    result = floe_project.run("validate", "floe.yaml")
    assert result.code == 0, result.stderr
    assert "0 destination" in result.stdout


def test_missing_file_is_a_usage_error(floe_project: FloeProject) -> None:
    result = floe_project.run("validate", "nope.yaml")
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert "nope.yaml" in result.stderr


def test_help_and_version(floe_project: FloeProject) -> None:
    result = floe_project.run("--help")
    assert result.code == 0
    for command in ("run", "validate", "sinks", "schema"):
        assert command in result.stdout
    version = floe_project.run("--version")
    assert version.code == 0
    assert "floe-sink" in version.stdout


# -- run --dry-run ------------------------------------------------------------------------------


def test_dry_run_reports_rows_batches_schema_and_sample(project: FloeProject) -> None:
    result = project.run_job("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    reports = {report["destination"]: report for report in result.json()}
    crm = reports["crm_contacts"]
    assert crm["dry_run"] is True
    assert crm["rows"] == 1_000
    assert crm["batches"] == 10
    assert crm["batch_size"] == 100
    assert [field["name"] for field in crm["schema"]] == ["id", "email_address"]
    assert len(crm["sample"]) == 3  # an Iceberg table has no row order: any 3 rows
    for row in crm["sample"]:
        assert row == {"id": row["id"], "email_address": f"user{row['id']}@example.com"}
    ops = reports["ops_db"]
    assert ops["rows"] == 1_000
    assert ops["batches"] is None  # the sink's default batch size applies
    assert "country" in [field["name"] for field in ops["schema"]]
    assert len(ops["sample"]) == 3


def test_dry_run_sends_nothing(project: FloeProject) -> None:
    result = project.run_job("--dry-run")
    assert result.code == 0, result.stderr
    assert "nothing was sent" in result.stdout
    assert "would send 1,000 rows in 10 batch(es) of 100" in result.stdout
    assert not (project.root / "ops.sqlite").exists()
    assert not (project.root / ".floe" / "pipelines").exists()


def test_dry_run_applies_row_filter_and_projection(project: FloeProject) -> None:
    project.write_floe(
        [
            crm_destination(
                row_filter="customer_id <= 250 and country != 'ZZ'",
                field_mapping=None,
                columns=["customer_id", "country"],
            )
        ]
    )
    result = project.run_job("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    (report,) = result.json()
    assert report["rows"] == 250
    assert [field["name"] for field in report["schema"]] == ["customer_id", "country"]


def test_dry_run_selects_destinations(project: FloeProject) -> None:
    result = project.run_job("--dry-run", "--output", "json", "--destination", "ops_db")
    assert result.code == 0, result.stderr
    assert [report["destination"] for report in result.json()] == ["ops_db"]


def test_dry_run_skips_disabled_destinations(project: FloeProject) -> None:
    project.write_floe([crm_destination(enabled=False), db_destination(project)])
    result = project.run_job("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    assert [report["destination"] for report in result.json()] == ["ops_db"]


def test_no_destinations_is_a_successful_empty_run(floe_project: FloeProject) -> None:
    floe_project.write_floe(None)
    result = floe_project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    assert result.json() == []


def test_progress_bar_when_asked(project: FloeProject) -> None:
    result = project.run_job("--dry-run", "--progress", "-d", "crm_contacts")
    assert result.code == 0, result.stderr
    assert "rows/s" in result.stderr
    assert "batches" in result.stderr


def test_log_lines_without_a_terminal(project: FloeProject) -> None:
    result = project.run_job("--dry-run", "-d", "crm_contacts", "-v")
    assert result.code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    read = next(event for event in events if event["event"] == "source_read")
    assert read["rows"] == 1_000
    assert read["destination"] == "crm_contacts"


def test_otel_console_prints_spans_on_stderr_and_keeps_stdout_json(project: FloeProject) -> None:
    result = project.run_job("--dry-run", "--output", "json", "--otel-console")
    assert result.code == 0, result.stderr
    assert len(result.json()) == 2  # stdout is only the results
    assert '"name": "floe_sink.run"' in result.stderr
    assert '"name": "floe_sink.source.plan"' in result.stderr


def test_otel_console_from_the_environment(project: FloeProject) -> None:
    result = project.run_job("--dry-run", "-q", env={"FLOE_SINK_OTEL": "console"})
    assert result.code == 0, result.stderr
    assert '"name": "floe_sink.run"' in result.stderr


def test_secret_values_appear_nowhere(project: FloeProject) -> None:
    project.secret("ops-db", url=f"postgresql://app:{DB_PASSWORD}@127.0.0.1:1/ops")
    result = project.run_job("--dry-run", "-vv", "--otel-console", "--output", "json")
    assert result.code == 0, result.stderr
    for secret in (TOKEN, DB_PASSWORD):
        assert secret not in result.stdout
        assert secret not in result.stderr
