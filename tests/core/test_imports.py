"""`import floe_sink` is fast, needs no dlt, and loads none of the heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fixtures.command import FloeProject
from fixtures.http_server import RecordingServer
from fixtures.iceberg import customers

HEAVY = ("pyarrow", "structlog", "yaml", "dlt", "tenacity", "pyiceberg", "sqlalchemy", "httpx")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_import_works_without_dlt() -> None:
    completed = _python(
        """
        import importlib.abc, sys

        class NoDlt(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "dlt" or name.startswith("dlt."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, NoDlt())
        try:
            import dlt
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("the blocker did not block dlt")
        import floe_sink
        manager = floe_sink.get_plugin_manager(load_entrypoints=False)
        print(manager.list_available_sinks())
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_import_loads_no_heavy_dependency() -> None:
    completed = _python(
        f"""
        import sys
        import floe_sink
        import floe_sink.testing
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_lazy_names_load_on_first_use() -> None:
    completed = _python(
        """
        import sys
        import floe_sink
        assert "pyarrow" not in sys.modules
        floe_sink.checksum_of
        assert "pyarrow" in sys.modules
        floe_sink.retrying
        assert "tenacity" in sys.modules
        print("ok")
        """
    )
    assert completed.returncode == 0, completed.stderr


# -- each command imports only what it needs ---------------------------------------------------
#
# The command runs in a subprocess through a tiny wrapper that writes the names of the modules
# it imported when the process exits: what a user's `floe-sink COMMAND` pays for.

COMMAND_WRAPPER = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "floe-sink"
from floe_sink.cli import main
main()
"""
NEVER_LIGHT = ("pyarrow", "dlt", "duckdb", "pyiceberg", "sqlalchemy")
"""What validate, schema, sinks, status and rejects never import."""
DRIVERS = ("duckdb", "adbc_driver_postgresql", "adbc_driver_manager", "psycopg", "sqlalchemy")


def _imported_by(project: FloeProject, *args: str) -> set[str]:
    out = project.root / "modules.json"
    completed = subprocess.run(
        [sys.executable, "-c", COMMAND_WRAPPER, str(out), *args],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    modules: list[str] = json.loads(out.read_text())
    return {*modules, *(name.split(".")[0] for name in modules)}  # packages and modules


@pytest.fixture
def sql_project(floe_project: FloeProject) -> FloeProject:
    floe_project.warehouse.write("gold.customers", customers(5))
    floe_project.secret("ops-db", url=f"sqlite:///{floe_project.root / 'ops.sqlite'}")
    floe_project.write_floe(
        [
            {
                "name": "ops_db",
                "sink_type": "sql_database",
                "connection_secret_ref": "ops-db",
                "source_table": "gold.customers",
                "row_filter": "customer_id > 0 and country in ('FR', 'DE', 'US', 'GB', 'ES', 'JP')",
                "config": {"table": "customers"},
                "write_disposition": "merge",
                "primary_key": ["customer_id"],
            }
        ]
    )
    return floe_project


COMMON = ("floe.yaml", "--manifest", "manifest.yaml", "--secrets-dir", "secrets")


@pytest.mark.parametrize(
    "args",
    [
        ("validate", *COMMON),
        ("schema",),
        ("sinks",),
        ("status", *COMMON),
        ("rejects", *COMMON),
    ],
    ids=lambda args: args[0],
)
def test_the_light_commands_import_no_arrow_iceberg_or_driver(
    sql_project: FloeProject, args: tuple[str, ...]
) -> None:
    imported = _imported_by(sql_project, *args)
    assert not imported & {*NEVER_LIGHT, *DRIVERS, "httpx", "structlog"}, sorted(
        imported & {*NEVER_LIGHT, *DRIVERS, "httpx", "structlog"}
    )


def test_validate_of_a_rest_api_destination_imports_no_arrow_or_http_client(
    floe_project: FloeProject,
) -> None:
    floe_project.secret("crm", token="t0ken")
    floe_project.write_floe(
        [
            {
                "name": "crm",
                "sink_type": "rest_api",
                "connection_secret_ref": "crm",
                "source_table": "gold.customers",
                "config": {"url": "https://crm.example.com/contacts"},
            }
        ]
    )
    imported = _imported_by(floe_project, "validate", *COMMON)
    assert "floe_sink_dlt.rest" in imported  # the sink was created: its options were checked
    assert not imported & {"pyarrow", "httpx"}, sorted(imported & {"pyarrow", "httpx"})


def test_run_into_sqlite_imports_no_http_client_other_driver_or_sqlalchemy(
    sql_project: FloeProject,
) -> None:
    imported = _imported_by(sql_project, "run", *COMMON, "--output", "json")
    assert (sql_project.root / "ops.sqlite").is_file()
    assert {"pyarrow", "pyiceberg", "floe_sink_dlt.sql.sqlite"} <= imported
    unwanted = {*DRIVERS, "httpx", "dlt", "floe_sink_dlt.rest"}
    assert not imported & unwanted, sorted(imported & unwanted)


def test_run_into_http_imports_no_database_driver_or_sql_sink(
    floe_project: FloeProject, http_server: RecordingServer
) -> None:
    floe_project.warehouse.write("gold.customers", customers(5))
    floe_project.secret("crm", token="t0ken")
    floe_project.write_floe(
        [
            {
                "name": "crm",
                "sink_type": "rest_api",
                "connection_secret_ref": "crm",
                "source_table": "gold.customers",
                "config": {"url": http_server.url_for("/contacts")},
            }
        ]
    )
    imported = _imported_by(floe_project, "run", *COMMON, "--output", "json")
    assert len(http_server.requests) == 1
    assert {"pyarrow", "pyiceberg", "httpx"} <= imported
    unwanted = {*DRIVERS, "dlt", "floe_sink_dlt.sql", "floe_sink_dlt.sql.sqlite"}
    assert not imported & unwanted, sorted(imported & unwanted)
