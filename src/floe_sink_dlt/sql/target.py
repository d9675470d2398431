"""Where a ``sql_database`` sink writes: the database URL (redacted in every message) and the
table name, parsed and validated from the sink's configuration."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from floe_sink.database_url import DIALECTS
from floe_sink.database_url import DatabaseUrl as CoreDatabaseUrl
from floe_sink.errors import SinkConfigurationError

__all__ = ["DIALECTS", "STAGING_SUFFIX", "DatabaseUrl", "TableName"]


_SINK_TYPE = "sql_database"

STAGING_SUFFIX = "__floe_staging"
"""Appended to the target table's name for the staging table of ``replace``."""


class DatabaseUrl(CoreDatabaseUrl):
    """A parsed database URL. ``str()`` and ``repr()`` never show the password.

    Attributes:
        dialect: ``postgresql``, ``sqlite`` or ``duckdb``.
        path: The database file (SQLite, DuckDB).
        host, port, database, user: Where a server database is (PostgreSQL).
    """

    def database_file(self) -> Path:
        """The database file (SQLite, DuckDB), its folder created when missing.

        Raises:
            OSError: The folder cannot be created.
        """
        path = self.path
        assert path is not None, "a file database's URL has a path (checked by parse)"
        if path.parent != path and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @classmethod
    def parse(
        cls, value: Any, *, destination: str | None = None, secret_keys: Sequence[str] = ()
    ) -> DatabaseUrl:
        """Validate and parse the ``url`` secret (a :class:`Secret` or a plain string).

        ``secret_keys`` are the keys the destination's Secret does have, named (never their
        values) when ``url`` is missing.

        Raises:
            SinkConfigurationError: Missing, not a URL, an unsupported scheme or no path;
                the message names ``url`` and never contains the password.
        """

        def fail(problem: str) -> SinkConfigurationError:
            return SinkConfigurationError(
                f"invalid 'url': {problem}",
                sink_type=_SINK_TYPE,
                destination=destination,
            )

        if value is None or value == "":
            found = (
                f"the destination's Secret has no key 'url' (keys found: {', '.join(secret_keys)})"
                if secret_keys
                else "no database URL given"
            )
            raise fail(
                f"missing: {found}. Set the secret key 'url' to a database URL "
                "(postgresql://..., sqlite:///... or duckdb:///...)"
            )
        return cls.parse_url(
            value,
            fail=fail,
            examples="postgresql://user@host:port/db, sqlite:///path/to/file.db or "
            "duckdb:///path/to/file.duckdb",
            in_memory="in-memory databases do not last",
        )


_IDENTIFIER_PROBLEM = re.compile(r"[\x00]")


@attrs.frozen(kw_only=True)
class TableName:
    """A table, optionally in a schema. Any characters are allowed except NUL: names are
    always quoted, never interpreted."""

    name: str
    schema: str | None = None

    @classmethod
    def parse(cls, table: Any, schema: Any = None, *, destination: str | None = None) -> TableName:
        """``table`` (``name`` or ``schema.name``), or ``table`` taken literally with ``schema``.

        Raises:
            SinkConfigurationError: Missing, empty or not a string (naming the key).
        """

        def fail(key: str, problem: str) -> SinkConfigurationError:
            return SinkConfigurationError(
                f"invalid '{key}': {problem}", sink_type=_SINK_TYPE, destination=destination
            )

        if table is None:
            raise fail("table", "missing; name the destination table (optionally schema.table)")
        if not isinstance(table, str) or not table.strip():
            raise fail("table", "must be a non-empty string")
        if schema is not None and (not isinstance(schema, str) or not schema.strip()):
            raise fail("schema", "must be a non-empty string")
        if schema is None and "." in table:
            schema, table = table.split(".", 1)
            if not schema or not table:
                raise fail("table", f"{table!r} is not 'name' or 'schema.name'")
        for key, value in (("table", table), ("schema", schema)):
            if value is not None and _IDENTIFIER_PROBLEM.search(value):
                raise fail(key, "contains a NUL character")
        return cls(name=table, schema=schema)

    def sibling(self, name: str) -> TableName:
        """Another table in the same schema."""
        return TableName(name=name, schema=self.schema)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name
