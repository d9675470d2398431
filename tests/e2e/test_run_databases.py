"""End to end through the real command: Iceberg -> floe-sink run -> a database.

The JSON output is parsed and checked against what the database holds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fixtures.command import FloeProject
from fixtures.iceberg import customers

pytestmark = pytest.mark.slow

MAPPING = {
    "customer_id": "id",
    "email": "email_address",
    "country": "country_code",
    "lifetime_value": "ltv",
}


def destination(name: str, ref: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "sink_type": "sql_database",
        "connection_secret_ref": ref,
        "source_table": "gold.customers",
        "config": {"table": "customers"},
        "field_mapping": MAPPING,
        "write_disposition": "merge",
        "primary_key": ["customer_id"],
        "batch_size": 500,
    }
    spec.update(overrides)
    return spec


def sqlite_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT id, email_address, country_code, ltv FROM customers"))


def expected_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [table.column(name).to_pylist() for name in MAPPING]
    return sorted(zip(*columns, strict=True))


@pytest.fixture
def project(floe_project: FloeProject) -> FloeProject:
    floe_project.warehouse.write("gold.customers", customers(2_000), files=2)
    floe_project.write_manifest(approved_sinks=["sql_database", "rest_api"])
    return floe_project


def test_sqlite_merge_end_to_end_and_rerun(project: FloeProject) -> None:
    database = project.root / "ops.sqlite"
    project.secret("ops-sqlite", url=f"sqlite:///{database}")
    project.write_floe([destination("ops", "ops-sqlite")])

    result = project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    assert record["destination"] == "ops"
    assert record["success"] is True
    assert record["rows_delivered"] == 2_000
    assert len(record["checksum"]) == 64
    assert record["errors"] == []
    assert sqlite_rows(database) == expected_rows(customers(2_000))

    # the source changes: 100 rows updated, 500 new; a second run leaves exactly the source
    changed = customers(2_500)
    changed = changed.set_column(
        changed.schema.get_field_index("country"),
        "country",
        pc.if_else(pc.less_equal(changed["customer_id"], 100), "XX", changed["country"]),
    )
    project.warehouse.write("gold.customers", changed, files=3)
    again = project.run_job("--output", "json")
    assert again.code == 0, again.stderr
    assert again.json()[0]["rows_delivered"] == 2_500
    assert sqlite_rows(database) == expected_rows(changed)


def test_duckdb_append_end_to_end(project: FloeProject) -> None:
    import duckdb

    database = project.root / "ops.duckdb"
    project.secret("ops-duckdb", url=f"duckdb:///{database}")
    project.write_floe(
        [
            destination(
                "analytics",
                "ops-duckdb",
                write_disposition="append",
                primary_key=[],
                row_filter="country = 'FR'",
            )
        ]
    )
    result = project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    (record,) = result.json()
    source = customers(2_000)
    french = source.filter(pc.equal(source["country"], "FR"))
    assert record["rows_delivered"] == french.num_rows
    with duckdb.connect(str(database), read_only=True) as db:
        (table,) = db.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_name = 'customers'"
        ).fetchone()
        rows = sorted(
            db.execute(f"SELECT id, email_address, country_code, ltv FROM {table}").fetchall()
        )
    assert rows == expected_rows(french)


def test_text_output_and_exit_code_with_one_failing_destination(project: FloeProject) -> None:
    database = project.root / "ops.sqlite"
    project.secret("ops-sqlite", url=f"sqlite:///{database}")
    # a database that cannot be reached: nothing listens on port 9
    project.secret("down-db", url="postgresql://app:pw-not-shown@127.0.0.1:9/ops")
    project.write_floe([destination("down", "down-db"), destination("ops", "ops-sqlite")])
    result = project.run_job()
    assert result.code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "FAILED  down (sql_database)" in result.stdout
    assert "ok      ops (sql_database)" in result.stdout
    assert "1 succeeded, 1 failed" in result.stdout
    assert "pw-not-shown" not in result.stdout + result.stderr
    assert sqlite_rows(database) == expected_rows(customers(2_000))  # the other one ran


def test_unreachable_database_json(project: FloeProject) -> None:
    project.secret("down-db", url="postgresql://app:pw-not-shown@127.0.0.1:9/ops")
    project.write_floe([destination("down", "down-db", retry={"max_attempts": 1})])
    result = project.run_job("--output", "json")
    assert result.code == 1, result.stderr
    (record,) = result.json()
    assert record["success"] is False
    assert record["errors"]
    assert "pw-not-shown" not in result.stdout + result.stderr


def test_dry_run_writes_nothing_to_the_database(project: FloeProject) -> None:
    database = project.root / "ops.sqlite"
    project.secret("ops-sqlite", url=f"sqlite:///{database}")
    project.write_floe([destination("ops", "ops-sqlite")])
    assert project.run_job().code == 0
    before = sqlite_rows(database)
    project.warehouse.write("gold.customers", customers(3_000))
    dry = project.run_job("--dry-run", "--output", "json")
    assert dry.code == 0, dry.stderr
    assert dry.json()[0]["rows"] == 3_000
    assert sqlite_rows(database) == before


@pytest.mark.requirement("4G-FR-013")
@pytest.mark.parametrize("damaged", [0, 1])  # read before the first batch, or half-way
@pytest.mark.parametrize("dry", [False, True])
def test_a_corrupt_data_file_names_the_file_and_the_table(
    project: FloeProject, damaged: int, dry: bool
) -> None:
    from urllib.parse import urlparse

    database = project.root / "ops.sqlite"
    project.secret("ops-sqlite", url=f"sqlite:///{database}")
    project.write_floe([destination("ops", "ops-sqlite", batch_size=100)])
    table = project.warehouse.catalog.load_table("gold.customers")
    path = sorted(task.file.file_path for task in table.scan().plan_files())[damaged]
    Path(urlparse(path).path).write_bytes(b"\x00garbage, not parquet\x00" * 100)

    result = project.run_job("--dry-run") if dry else project.run_job("--output", "json")
    assert result.code == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    named = f"Cannot read data file '{path}' of Iceberg table 'gold.customers': ArrowInvalid"
    if dry:  # the command's error, or (once plans read the data) the destination's failure
        assert named in result.stdout + result.stderr
    else:
        (record,) = result.json()
        assert record["success"] is False
        assert any(named in error for error in record["errors"]), record["errors"]
