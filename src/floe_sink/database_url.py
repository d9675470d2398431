"""Database URLs of PostgreSQL, SQLite and DuckDB: parsed once, the password never shown.

One parser for the ``sql`` state store (:class:`floe_sink.sqlstate.StateUrl`) and the
``sql_database`` sink (:class:`floe_sink_dlt.sql.target.DatabaseUrl`): each says how its
messages start (the key it reads) through the ``fail`` function it passes, the URL rules are
the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import attrs

from floe_sink.secrets import Secret, redact_url, reveal, scrub_text

__all__ = ["DIALECTS", "DatabaseUrl"]

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

Fail = Callable[[str], Exception]


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
    def parse_url(cls, value: Any, *, fail: Fail, examples: str, in_memory: str) -> Self:
        """Parse ``value`` (a :class:`Secret` or a string).

        Args:
            value: The URL.
            fail: Makes the exception to raise from a problem (it names the key read).
            examples: The accepted forms, for an unsupported scheme's message.
            in_memory: Why an in-memory database is refused (``in-memory databases do not
                last``).

        Raises:
            Exception: ``fail(problem)``: not a string or a URL, an unsupported scheme, no
                host, database or file; the problem never contains the password.
        """
        raw = reveal(value)
        if not isinstance(raw, str):
            raise fail(f"expected a string, got {type(raw).__name__}")
        raw = raw.strip()
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as exc:
            raise fail(f"not a valid URL ({scrub_text(str(exc), (raw,))})") from None
        scheme = parts.scheme.lower()
        dialect = DIALECTS.get(scheme)
        if dialect is None:
            shown = f"{scheme}://" if scheme else redact_url(raw)
            raise fail(f"unsupported scheme {shown!r}; use {examples}")
        if dialect == "postgresql":
            return cls._server(parts, port, fail)
        return cls._file(dialect, parts, fail, in_memory)

    @classmethod
    def _server(cls, parts: SplitResult, port: int | None, fail: Fail) -> Self:
        database = parts.path.lstrip("/")
        if not parts.hostname:
            raise fail("no host; expected postgresql://user:password@host:port/database")
        if not database:
            raise fail(f"no database name in {redact_url(parts.geturl())!r}")
        # libpq wants the plain scheme; SQLAlchemy-style driver suffixes are dropped
        plain = urlunsplit(parts._replace(scheme="postgresql"))
        return cls(
            dialect="postgresql",
            url=Secret(plain),
            host=parts.hostname,
            port=port or 5432,
            database=database,
            user=parts.username,
        )

    @classmethod
    def _file(cls, dialect: str, parts: SplitResult, fail: Fail, in_memory: str) -> Self:
        if parts.netloc:
            raise fail(
                f"{dialect} URLs name a file: {dialect}:///relative/path or "
                f"{dialect}:////absolute/path (got host {parts.netloc!r})"
            )
        raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not raw_path or raw_path == ":memory:":
            raise fail(f"{dialect} URL names no database file ({in_memory})")
        return cls(dialect=dialect, url=Secret(parts.geturl()), path=Path(raw_path))

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

    def scrub(self, text: str) -> str:
        """``text`` without the URL or its password (for driver error messages)."""
        password = self.password or ""
        return scrub_text(text, (self.reveal(), password, unquote(password)))

    def __str__(self) -> str:
        return redact_url(self.reveal())
