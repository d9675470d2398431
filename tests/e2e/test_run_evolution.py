"""Schema evolution through the real command: the Iceberg table's schema is evolved with
pyiceberg between two ``floe-sink run``s, and the PostgreSQL table follows (``evolve``), or the
run is refused before a row is written (``freeze``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from fixtures.command import FloeProject

pytestmark = [pytest.mark.slow, pytest.mark.requirement("4G-SC-004")]

BIG = 2**31 + 11


def pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as connection:
        return list(connection.execute(sql).fetchall())


def pg_types(url: str) -> dict[str, str]:
    rows = pg(
        url,
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped",
    )
    return dict(rows)


def destination(**config: Any) -> dict[str, Any]:
    return {
        "name": "ops",
        "sink_type": "sql_database",
        "connection_secret_ref": "ops-postgres",
        "source_table": "gold.accounts",
        "config": {"table": "accounts", **config},
        "write_disposition": "merge",
        "primary_key": ["id"],
    }


def test_evolving_the_iceberg_schema_evolves_the_postgres_table(
    floe_project: FloeProject, postgres_url: str
) -> None:
    from pyiceberg.types import DecimalType, DoubleType, LongType, StringType

    first = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "balance": pa.array([0.5, 1.25], pa.float32()),
            "price": pa.array([Decimal("1.50"), Decimal("9999999.99")], pa.decimal128(9, 2)),
            "name": ["a", "b"],
        }
    )
    table = floe_project.warehouse.write("gold.accounts", first)
    floe_project.write_manifest(approved_sinks=["sql_database"])
    floe_project.secret("ops-postgres", url=postgres_url)
    floe_project.write_floe([destination()])

    run = floe_project.run_job("--output", "json", "-v")
    assert run.code == 0, run.stderr
    assert pg_types(postgres_url) == {
        "id": "integer",
        "balance": "real",
        "price": "numeric(9,2)",
        "name": "text",
    }

    # legal Iceberg changes: int -> long, float -> double, decimal(9,2) -> (12,2), a new column
    with table.update_schema() as update:
        update.update_column("id", LongType())
        update.update_column("balance", DoubleType())
        update.update_column("price", DecimalType(12, 2))
        update.add_column("tier", StringType())
    arrow_schema = table.schema().as_arrow()
    table.append(
        pa.table(
            {
                "id": pa.array([BIG], pa.int64()),
                "balance": pa.array([0.1], pa.float64()),
                "price": pa.array([Decimal("1234567890.12")], pa.decimal128(12, 2)),
                "name": ["c"],
                "tier": ["gold"],
            }
        ).cast(arrow_schema)
    )
    run = floe_project.run_job("--output", "json", "-v")
    assert run.code == 0, run.stdout + run.stderr
    (record,) = run.json()
    assert record["success"] is True
    assert record["rows_delivered"] == 3
    (event,) = [line for line in run.stderr.splitlines() if '"schema_evolved"' in line]
    assert '"added_columns": {"tier": "TEXT"}' in event
    assert str(BIG) not in event
    assert pg_types(postgres_url) == {
        "id": "bigint",
        "balance": "double precision",
        "price": "numeric(12,2)",
        "name": "text",
        "tier": "text",
    }
    assert pg(postgres_url, "SELECT id, balance, price, name, tier FROM accounts ORDER BY id") == [
        (1, 0.5, Decimal("1.50"), "a", None),
        (2, 1.25, Decimal("9999999.99"), "b", None),
        (BIG, 0.1, Decimal("1234567890.12"), "c", "gold"),
    ]

    # freeze: another new column is refused before anything is written
    with table.update_schema() as update:
        update.add_column("region", StringType())
    table.append(
        pa.table(
            {
                "id": pa.array([BIG + 1], pa.int64()),
                "balance": pa.array([2.0], pa.float64()),
                "price": pa.array([Decimal("1.00")], pa.decimal128(12, 2)),
                "name": ["d"],
                "tier": ["silver"],
                "region": ["eu-secret-value"],
            }
        ).cast(table.schema().as_arrow())
    )
    floe_project.write_floe([destination(schema_evolution="freeze")])
    before = pg(postgres_url, "SELECT * FROM accounts ORDER BY id")
    run = floe_project.run_job("--output", "json", "-v")
    assert run.code == 2, run.stdout + run.stderr
    (record,) = run.json()
    (error,) = record["errors"]
    assert "schema_evolution is 'freeze'" in error
    assert "new column(s) 'region'" in error
    assert "eu-secret-value" not in run.stdout + run.stderr
    assert "region" not in pg_types(postgres_url)
    assert pg(postgres_url, "SELECT * FROM accounts ORDER BY id") == before
