"""The ``sql_database`` sink's options: read from a :class:`floe_sink.SinkConfig` and checked
before anything connects.

The keys are an attrs model structured by floe-sink's one converter
(:func:`floe_sink.structuring.structure_options`): unknown keys, wrong types and values outside
their choices are reported together, each naming its key. Nothing here imports pyarrow or a
database driver, so ``floe-sink validate`` checks a destination without loading either.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from floe_sink import SinkConfig
from floe_sink.errors import SinkConfigurationError
from floe_sink.secrets import secret_keys
from floe_sink.structuring import register_checked_class, register_enum, structure_options
from floe_sink_dlt.sql.target import DatabaseUrl, TableName

__all__ = ["SCHEMA_EVOLUTIONS", "WRITE_DISPOSITIONS", "SchemaEvolution", "SqlDatabaseOptions"]

SINK_TYPE = "sql_database"
WRITE_DISPOSITIONS = ("append", "merge", "replace")


class SchemaEvolution(enum.StrEnum):
    """What a write does when the table exists with other columns than the data."""

    EVOLVE = "evolve"
    """Add the new columns and widen the ones that need it (the default)."""
    FREEZE = "freeze"
    """Refuse any difference."""


register_enum(SchemaEvolution)

SCHEMA_EVOLUTIONS = tuple(mode.value for mode in SchemaEvolution)


@attrs.frozen(kw_only=True)
class _Keys:
    """The keys of a ``sql_database`` destination's ``config`` (and its Secret's ``url``).

    Attributes:
        url: The database URL: ``postgresql://user:password@host:port/db``,
            ``sqlite:///path/to/file.db`` or ``duckdb:///path/to/file.duckdb``; a key of the
            destination's Secret, as it holds the password.
        table: The destination table, ``name`` or ``schema.name``.
        schema: The table's schema, when ``table`` is to be taken literally.
        schema_evolution: ``evolve`` (default) or ``freeze``.
        max_rejects_per_batch: Rows of a batch the database may refuse (a constraint they
            violate) and the batch still be written without them, each rejected; ``0``: the
            first refused row fails its batch.
    """

    url: Any = None  # a Secret, or a plain string: DatabaseUrl.parse checks it
    table: str | None = None
    schema: str | None = None
    schema_evolution: SchemaEvolution = SchemaEvolution.EVOLVE
    max_rejects_per_batch: int = attrs.field(default=10, validator=attrs.validators.ge(0))


# a key written with nothing after it (YAML null) means its default
register_checked_class(
    _Keys, null_is_default=frozenset({"schema_evolution", "max_rejects_per_batch"})
)


@attrs.frozen(kw_only=True)
class SqlDatabaseOptions:
    """A ``sql_database`` destination's options, validated.

    Attributes:
        url: Where the database is (the password never shown).
        table: The destination table.
        write_disposition: ``append``, ``merge`` or ``replace``.
        primary_key: The destination's key columns (after ``field_mapping``), or ``None``.
        schema_evolution: ``evolve`` or ``freeze``.
        max_rejects_per_batch: Rows a batch may have refused and still be written.
    """

    url: DatabaseUrl
    table: TableName
    write_disposition: str
    primary_key: list[str] | None
    schema_evolution: str
    max_rejects_per_batch: int = 10

    @classmethod
    def from_config(cls, config: SinkConfig) -> SqlDatabaseOptions:
        """Read and check the options of ``config``; connects to nothing.

        Raises:
            SinkConfigurationError: An unknown key, a missing/invalid ``url`` or ``table``, an
                unknown ``write_disposition`` or ``schema_evolution``, or ``merge`` without
                ``primary_key``; each problem names its key, never the URL's password.
        """
        destination = config.destination or config.sink_type
        keys = structure_options(config, _Keys)

        def fail(key: str, problem: str) -> SinkConfigurationError:
            return SinkConfigurationError(
                f"invalid {key!r}: {problem}", sink_type=SINK_TYPE, destination=destination
            )

        url = DatabaseUrl.parse(
            keys.url,
            destination=destination,
            secret_keys=secret_keys(config.connection_config),
        )
        table = TableName.parse(keys.table, keys.schema, destination=destination)
        if url.dialect == "sqlite" and table.schema not in (None, "main"):
            raise fail(
                "table",
                f"SQLite databases have no schema {table.schema!r}; name the table without one",
            )
        disposition = config.write_disposition or "append"
        if disposition not in WRITE_DISPOSITIONS:
            raise fail(
                "write_disposition",
                f"{disposition!r}; expected one of {', '.join(WRITE_DISPOSITIONS)}",
            )
        return cls(
            url=url,
            table=table,
            write_disposition=disposition,
            primary_key=_primary_key(config, disposition, fail),
            schema_evolution=keys.schema_evolution.value,
            max_rejects_per_batch=keys.max_rejects_per_batch,
        )


def _primary_key(config: SinkConfig, disposition: str, fail: Any) -> list[str] | None:
    raw = config.primary_key
    if raw is None or raw == []:
        if disposition == "merge":
            raise fail(
                "primary_key", "required for write_disposition 'merge' (the columns to upsert on)"
            )
        return None
    columns = [raw] if isinstance(raw, str) else raw
    if not isinstance(columns, list | tuple) or not all(
        isinstance(column, str) and column for column in columns
    ):
        raise fail("primary_key", "expected a list of source column names")
    if len(set(columns)) != len(columns):
        raise fail("primary_key", "a column is named twice")
    mapping = config.field_mapping
    if not mapping:
        return list(columns)
    unmapped = [column for column in columns if column not in mapping]
    if unmapped:
        raise fail(
            "primary_key",
            f"column(s) {', '.join(map(repr, unmapped))} are not in field_mapping, so they "
            "would not reach the destination",
        )
    return [mapping[column] for column in columns]
