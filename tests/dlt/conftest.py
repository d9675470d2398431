"""Fixtures of the sql_database tests: one real database per test, in each dialect."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from floe_sink import SinkConfig
from floe_sink_dlt.sql import SqlDatabaseSink

DIALECTS = ["postgresql", "sqlite", "duckdb"]


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@attrs.define
class Database:
    """A test database: its URL, and plain-driver helpers to look at what the sink wrote."""

    dialect: str
    url: str
    tmp_path: Path

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dialect == "postgresql":
            import psycopg

            with psycopg.connect(self.url) as conn:
                return list(conn.execute(sql).fetchall())
        if self.dialect == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                return list(conn.execute(sql).fetchall())
            finally:
                conn.close()
        import duckdb

        with duckdb.connect(self.url.removeprefix("duckdb:///")) as conn:
            return list(conn.execute(sql).fetchall())

    def execute(self, sql: str) -> None:
        if self.dialect == "postgresql":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(sql)
        elif self.dialect == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                conn.executescript(sql)
            finally:
                conn.close()
        else:
            import duckdb

            with duckdb.connect(self.url.removeprefix("duckdb:///")) as conn:
                conn.execute(sql)

    def rows(self, table: str, columns: str = "*", order: str = "1") -> list[tuple[Any, ...]]:
        return self.query(f"SELECT {columns} FROM {quote(table)} ORDER BY {order}")

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT count(*) FROM {quote(table)}")[0][0])

    def tables(self) -> set[str]:
        if self.dialect == "sqlite":
            return {
                row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type='table'")
            }
        return {
            row[0]
            for row in self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema NOT IN "
                "('pg_catalog', 'information_schema')"
            )
        }

    def sink(
        self,
        table: str = "target",
        *,
        write_disposition: str = "append",
        primary_key: list[str] | None = None,
        batch_size: int | None = None,
        field_mapping: dict[str, str] | None = None,
        destination: str = "dest",
        retry_config: dict[str, Any] | None = None,
        **extra: Any,
    ) -> SqlDatabaseSink:
        connection: dict[str, Any] = {"url": self.url, "table": table, **extra}
        config = SinkConfig(
            sink_type="sql_database",
            connection_config=connection,
            batch_size=batch_size,
            field_mapping=field_mapping,
            retry_config=retry_config or {"max_attempts": 3, "initial_wait": 0.01, "jitter": 0},
            destination=destination,
            write_disposition=write_disposition,
            primary_key=primary_key,
        )
        return SqlDatabaseSink.from_config(config)


def make_database(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> Database:
    if dialect == "postgresql":
        url = request.getfixturevalue("postgres_url")
    elif dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = f"duckdb:///{tmp_path / 'test.duckdb'}"
    return Database(dialect=dialect, url=url, tmp_path=tmp_path)


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database in each dialect (PostgreSQL from the session's throwaway cluster)."""
    return make_database(request, request.param, tmp_path)


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A fresh PostgreSQL database."""
    return make_database(request, "postgresql", tmp_path)


@pytest.fixture
def lite(tmp_path: Path) -> Database:
    """A fresh SQLite file."""
    return Database(dialect="sqlite", url=f"sqlite:///{tmp_path / 'test.db'}", tmp_path=tmp_path)


SinkFactory = Callable[..., SqlDatabaseSink]
