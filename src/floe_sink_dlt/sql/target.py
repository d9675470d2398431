"""Where a ``sql_database`` sink writes: the database URL (redacted in every message) and the
table name, parsed and validated from the sink's configuration."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import attrs

from floe_sink.errors import SinkConfigurationError
from floe_sink.secrets import Secret, redact_url, reveal, scrub_text

__all__ = ["DIALECTS", "STAGING_SUFFIX", "DatabaseUrl", "TableName"]

DIALECTS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgresql+psycopg2": "postgresql",
    "postgresql+adbc": "postgresql",
    "sqlite": "sqlite",
    "duckdb": "duckdb",
}
"""URL schemes accepted, and the dialect each one names."""

_SINK_TYPE = "sql_database"

STAGING_SUFFIX = "__floe_staging"
"""Appended to the target table's name for the staging table of ``replace``."""


@attrs.frozen(kw_only=True)
class DatabaseUrl:
    """A parsed database URL. ``str()`` and ``repr()`` never show the password.

    Attributes:
        dialect: ``postgresql``, ``sqlite`` or ``duckdb``.
        path: The database file (SQLite, DuckDB).
        host, port, database, user: Where a server database is (PostgreSQL).
    """

    dialect: str
    _url: Secret = attrs.field(alias="url", repr=False)
    path: Path | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None

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
        raw = reveal(value)
        if not isinstance(raw, str):
            raise fail(f"expected a string, got {type(raw).__name__}")
        try:
            parts = urlsplit(raw.strip())
            port = parts.port
        except ValueError as exc:
            raise fail(f"not a valid URL ({scrub_text(str(exc), (raw,))})") from None
        scheme = parts.scheme.lower()
        dialect = DIALECTS.get(scheme)
        if dialect is None:
            shown = f"{scheme}://" if scheme else redact_url(raw)
            raise fail(
                f"unsupported scheme {shown!r}; use postgresql://user@host:port/db, "
                "sqlite:///path/to/file.db or duckdb:///path/to/file.duckdb"
            )
        if dialect == "postgresql":
            return cls._server(dialect, parts, port, fail)
        return cls._file(dialect, parts, fail)

    @classmethod
    def _server(cls, dialect: str, parts: SplitResult, port: int | None, fail: Any) -> DatabaseUrl:
        database = parts.path.lstrip("/")
        if not parts.hostname:
            raise fail("no host; expected postgresql://user:password@host:port/database")
        if not database:
            raise fail(f"no database name in {redact_url(parts.geturl())!r}")
        # libpq wants the plain scheme; SQLAlchemy-style driver suffixes are dropped
        plain = urlunsplit(parts._replace(scheme="postgresql"))
        return cls(
            dialect=dialect,
            url=Secret(plain),
            host=parts.hostname,
            port=port or 5432,
            database=database,
            user=parts.username,
        )

    @classmethod
    def _file(cls, dialect: str, parts: SplitResult, fail: Any) -> DatabaseUrl:
        if parts.netloc:
            raise fail(
                f"{dialect} URLs name a file: {dialect}:///relative/path or "
                f"{dialect}:////absolute/path (got host {parts.netloc!r})"
            )
        raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not raw_path or raw_path == ":memory:":
            raise fail(f"{dialect} URL names no database file (in-memory databases do not last)")
        path = Path(raw_path)
        return cls(dialect=dialect, url=Secret(parts.geturl()), path=path)

    def reveal(self) -> str:
        """The URL with its password: for the driver only."""
        return self._url.reveal()

    @property
    def password(self) -> str | None:
        """The password, for scrubbing driver messages (never log it)."""
        return urlsplit(self.reveal()).password

    @property
    def where(self) -> str:
        """A secret-free description: ``host:port/database`` or the file path."""
        if self.path is not None:
            return str(self.path)
        return f"{self.host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        return redact_url(self.reveal())

    def scrub(self, text: str) -> str:
        """``text`` without the password or the full URL (for driver error messages)."""
        secrets = (self.reveal(), self.password or "")
        return scrub_text(text, secrets)


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
