"""What a user sees: common options anywhere, a clean report on stdout, logs on stderr."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from fixtures.command import CommandResult, FloeProject
from fixtures.iceberg import customers


def db_destination(project: FloeProject) -> dict[str, Any]:
    return {
        "name": "ops_db",
        "sink_type": "sql_database",
        "connection_secret_ref": "ops-db",
        "source_table": "gold.customers",
        "config": {"table": "customers"},
        "write_disposition": "merge",
        "primary_key": ["customer_id"],
        "batch_size": 100,
    }


@pytest.fixture
def project(floe_project: FloeProject) -> FloeProject:
    floe_project.warehouse.write("gold.customers", customers(300))
    floe_project.secret("ops-db", url=f"sqlite:///{floe_project.root / 'ops.sqlite'}")
    floe_project.write_floe([db_destination(floe_project)])
    return floe_project


def structlog_lines(text: str) -> list[str]:
    """Lines that look like structlog events, in either rendering."""
    return [
        line
        for line in text.splitlines()
        if line.lstrip().startswith("{") or "[info" in line or "[debug" in line
    ]


# -- common options, before or after the command name -----------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["run", "--version"],
        ["run", "floe.yaml", "--version"],
        ["validate", "--version"],
        ["sinks", "--version"],
        ["schema", "--version"],
    ],
)
def test_version_before_or_after_the_command(floe_project: FloeProject, args: list[str]) -> None:
    result = floe_project.run(*args)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == f"floe-sink, version {version('floe-sink')}"


@pytest.mark.parametrize("where", ["before", "after"])
def test_logging_options_before_or_after_the_command(project: FloeProject, where: str) -> None:
    options = ["-v", "--log-format", "json"]
    args = ["run", "floe.yaml", "--secrets-dir", "secrets", "--dry-run"]
    result = project.run(*(options + args if where == "before" else args + options))
    assert result.code == 0, result.stderr
    events = [json.loads(line)["event"] for line in structlog_lines(result.stderr)]
    assert "run_started" in events
    assert "source_read" in events


# -- the report on stdout, log lines on stderr at the level asked for ---------------------------


def test_a_run_prints_a_clean_report_and_logs_nothing_by_default(project: FloeProject) -> None:
    result = project.run_job()
    assert result.code == 0, result.stderr
    assert structlog_lines(result.stderr) == []
    assert structlog_lines(result.stdout) == []
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok      ops_db (sql_database)")
    assert lines[1].startswith("        checksum sha256:")
    assert lines[2].startswith("        idempotency key ")
    assert lines[3] == "1 destination(s): 1 succeeded, 0 failed"
    assert len(lines) == 4


@pytest.mark.parametrize(
    ("flags", "env", "shown", "hidden"),
    [
        (["-v"], {}, {"run_started", "write_finished", "sql_batch"}, {"source_planned"}),
        (["-vv"], {}, {"run_started", "source_planned"}, set()),
        ([], {"FLOE_SINK_LOG_LEVEL": "info"}, {"run_started", "sql_batch"}, {"source_planned"}),
        (["-q"], {"FLOE_SINK_LOG_LEVEL": "debug"}, set(), {"run_started", "source_planned"}),
    ],
)
def test_the_user_chooses_the_log_level(
    project: FloeProject,
    flags: list[str],
    env: dict[str, str],
    shown: set[str],
    hidden: set[str],
) -> None:
    quiet = project.run_job().stdout  # the report, as printed without log lines
    result = project.run_job(*flags, "--log-format", "json", env=env)
    assert result.code == 0, result.stderr
    events = {json.loads(line)["event"] for line in structlog_lines(result.stderr)}
    assert shown <= events
    assert not hidden & events
    assert structlog_lines(result.stdout) == []
    # the same report, whatever is logged (only the timing differs)
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        line.split(":")[0] for line in quiet.splitlines()
    ]


def test_an_unknown_log_level_is_a_usage_error(project: FloeProject) -> None:
    result = project.run_job("--dry-run", env={"FLOE_SINK_LOG_LEVEL": "chatty"})
    message = result.assert_clean_error(2)
    assert "FLOE_SINK_LOG_LEVEL" in message
    assert "chatty" in message


# -- --output json: one JSON document, also when the command fails ------------------------------


def error_document(result: CommandResult) -> dict[str, Any]:
    """The ``{"error": ...}`` document of a failed ``--output json`` command."""
    assert "Traceback" not in result.stderr, result.stderr
    document = result.json()  # stdout is one JSON document and nothing else
    assert set(document) == {"error"}
    error: dict[str, Any] = document["error"]
    assert set(error) == {"kind", "message", "problems"}
    assert isinstance(error["message"], str)
    assert error["problems"]
    assert all(isinstance(problem, str) for problem in error["problems"])
    return error


@pytest.mark.parametrize("command", ["run", "dry-run"])
def test_a_configuration_error_is_one_json_object_on_stdout(
    project: FloeProject, command: str
) -> None:
    project.write_floe(
        [
            {**db_destination(project), "name": "bad name", "batch_size": 0},
        ]
    )
    args = ["--dry-run"] if command == "dry-run" else []
    result = project.run_job(*args, "--output", "json")
    assert result.code == 2
    error = error_document(result)
    assert error["kind"] == "configuration"
    assert len(error["problems"]) == 2
    assert any("destinations[0].name" in problem for problem in error["problems"])
    assert any("destinations[0].batch_size" in problem for problem in error["problems"])
    # the human message stays on stderr
    assert "floe-sink: error:" in result.stderr
    assert "batch_size" in result.stderr


def test_secret_problems_of_every_destination_are_in_the_json_error(
    project: FloeProject,
) -> None:
    project.write_floe(
        [
            {**db_destination(project), "name": "a", "connection_secret_ref": "missing-a"},
            {**db_destination(project), "name": "b", "connection_secret_ref": "missing-b"},
        ]
    )
    result = project.run_job("--output", "json")
    assert result.code == 2
    error = error_document(result)
    assert error["kind"] == "configuration"
    assert error["message"] == "2 configuration problems"
    assert [("missing-a" in p, "missing-b" in p) for p in error["problems"]] == [
        (True, False),
        (False, True),
    ]


@pytest.mark.parametrize("command", ["plan", "status"])
def test_plan_and_status_report_a_configuration_error_as_json(
    project: FloeProject, command: str
) -> None:
    project.write_floe([{**db_destination(project), "batch_size": 0}])
    result = project.run(command, "floe.yaml", "--secrets-dir", "secrets", "--output", "json")
    assert result.code == 2, result.stderr
    error = error_document(result)
    assert error["kind"] == "configuration"
    assert any("batch_size" in problem for problem in error["problems"])


def test_a_usage_error_is_one_json_object_on_stdout(project: FloeProject) -> None:
    result = project.run("run", "no-such-floe.yaml", "--output", "json")
    assert result.code == 2
    error = error_document(result)
    assert error["kind"] == "usage"
    assert "no-such-floe.yaml" in error["message"]
    assert "no-such-floe.yaml" in result.stderr


def test_sinks_reports_a_strict_plugin_failure_as_json(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    info = site / "broken_sink-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sink\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[floe_sink]\nbroken = floe_sink_no_such.plugin\n")
    result = floe_project.run(
        "sinks",
        "--output",
        "json",
        env={"PYTHONPATH": str(site), "FLOE_SINK_STRICT_PLUGINS": "1"},
    )
    assert result.code == 1
    error = error_document(result)
    assert "broken-sink" in error["message"]
    assert "floe-sink: error:" in result.stderr


def test_without_json_output_an_error_leaves_stdout_empty(project: FloeProject) -> None:
    project.write_floe([{**db_destination(project), "batch_size": 0}])
    result = project.run_job()
    result.assert_clean_error(2)
    assert result.stdout == ""
