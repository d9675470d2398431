"""floe.yaml's part owned by floe-sink: the ``destinations:`` list.

A data engineer declares where a Gold table goes::

    destinations:
      - name: crm-contacts
        sink_type: rest_api
        connection_secret_ref: crm-api
        source_table: gold.customers
        config: {url: "https://crm.example.com/api/contacts"}
        field_mapping: {customer_id: id, email: email}
        batch_size: 500

Every other top-level section of floe.yaml (``transforms``, ``schedule``, ``outputPorts``, ...)
belongs to another floe component and is left alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from floe_sink.config.credential_scan import credential_problems
from floe_sink.config.validators import (
    check_batch_size,
    check_column_list,
    check_field_mapping,
    check_name,
    check_non_empty_text,
    check_projection,
    check_retry,
    check_row_filter,
    check_secret_ref,
    check_source_table,
    optional,
)
from floe_sink.models import SinkConfig
from floe_sink.secrets import Secret
from floe_sink.structuring import (
    ConfigValueError,
    json_schema,
    near_miss,
    register_checked_class,
    register_enum,
)

__all__ = ["DestinationConfig", "FloeSpec", "GuardsConfig", "SyncMode", "WriteDisposition"]


class WriteDisposition(enum.StrEnum):
    """How delivered rows combine with what the destination already holds."""

    APPEND = "append"
    """Add the rows (the default)."""
    MERGE = "merge"
    """Upsert on ``primary_key``: update matching rows, insert the others."""
    REPLACE = "replace"
    """Replace the destination's content with the delivered rows."""


register_enum(WriteDisposition)


class SyncMode(enum.StrEnum):
    """What each run sends (see ``docs/syncs.md``)."""

    FULL = "full"
    """Every run delivers the table's current snapshot (the default)."""
    CHANGES = "changes"
    """Only rows new or changed since the last confirmed delivery, matched on primary_key."""
    MIRROR = "mirror"
    """``changes``, plus deleting the rows floe-sink delivered whose key left the source."""


register_enum(SyncMode)


@json_schema({"minimum": 0, "maximum": 1})
def _fraction(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not 0 <= value <= 1:
        raise ConfigValueError(f"must be between 0 and 1 (got {value!r})")


@json_schema({"minimum": 0})
def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 0:
        raise ConfigValueError(f"must be >= 0 (got {value!r})")


@attrs.frozen(kw_only=True)
class GuardsConfig:
    """Limits that stop a change-aware run before it sends anything.

    Fractions are of the rows the destination holds from floe-sink (its sync state).

    Attributes:
        max_deletes: The most rows a ``mirror`` run may delete.
        max_delete_fraction: The largest share of the destination's rows a run may delete.
        max_update_fraction: The largest share of the destination's rows a run may update.
        max_rejected_fraction: The largest share of a run's records the destination may
            refuse one by one; a run over it is reported failed (the records are filed in the
            dead-letter store either way).
    """

    max_deletes: int | None = attrs.field(default=None, validator=_non_negative)
    max_delete_fraction: float | None = attrs.field(default=None, validator=_fraction)
    max_update_fraction: float | None = attrs.field(default=None, validator=_fraction)
    max_rejected_fraction: float | None = attrs.field(default=None, validator=_fraction)


register_checked_class(GuardsConfig)


CREDENTIALS_HINT = (
    "credentials must not be written in floe.yaml; store them in a Kubernetes Secret and "
    "reference it with connection_secret_ref"
)


@attrs.frozen(kw_only=True)
class DestinationConfig:
    """One reverse-ETL destination of floe.yaml.

    Attributes:
        name: Unique name of the destination: 1-100 letters, digits, ``-`` or ``_``.
        sink_type: The sink type (``rest_api``, ``sql_database``, or a plugin's own).
        connection_secret_ref: Name of the Kubernetes Secret that holds the credentials.
        source_table: Iceberg table to read, ``namespace.table``.
        config: Sink-specific settings (``url``, ``table``, ...); never credentials.
        field_mapping: Source column -> destination field; only mapped columns are delivered.
            ``None`` delivers every column under its own name.
        batch_size: Rows per delivered batch (>= 1); ``None`` uses the sink's default.
        write_disposition: ``append`` (default), ``merge`` (upsert on ``primary_key``) or
            ``replace``.
        primary_key: Source columns identifying a row; required for ``merge``.
        enabled: ``false`` keeps the destination declared but skips it when running.
        description: Free text for people reading floe.yaml.
        row_filter: A pyiceberg row filter, e.g. ``"status == 'active'"``: only matching rows
            are delivered.
        columns: Source columns to read (a projection); ``None`` reads all.
        retry: Retry settings: ``max_attempts``, ``initial_wait``, ``max_wait``,
            ``multiplier``, ``jitter``, ``timeout`` (see :class:`floe_sink.retry.RetryPolicy`).
        sync: ``full`` (default), ``changes`` or ``mirror`` (see ``docs/syncs.md``);
            ``changes`` and ``mirror`` need ``primary_key``.
        guards: Limits on deletes and updates that stop a change-aware run before it sends.
    """

    name: str = attrs.field(validator=check_name)
    sink_type: str = attrs.field(validator=check_non_empty_text)
    connection_secret_ref: str = attrs.field(validator=check_secret_ref)
    source_table: str | None = attrs.field(default=None, validator=optional(check_source_table))
    config: dict[str, Any] = attrs.field(factory=dict)
    field_mapping: dict[str, str] | None = attrs.field(
        default=None, validator=optional(check_field_mapping)
    )
    batch_size: int | None = attrs.field(default=None, validator=optional(check_batch_size))
    write_disposition: WriteDisposition = WriteDisposition.APPEND
    primary_key: list[str] = attrs.field(factory=list, validator=check_column_list)
    enabled: bool = True
    description: str | None = None
    row_filter: str | None = attrs.field(default=None, validator=optional(check_row_filter))
    columns: list[str] | None = attrs.field(default=None, validator=optional(check_projection))
    retry: dict[str, Any] | None = attrs.field(default=None, validator=optional(check_retry))
    sync: SyncMode = SyncMode.FULL
    guards: GuardsConfig | None = None

    def __attrs_post_init__(self) -> None:
        problems = _destination_rules(attrs.asdict(self, recurse=False))
        if problems:
            raise ConfigValueError("; ".join(str(problem) for problem in problems))

    def to_sink_config(self, secret: Mapping[str, Secret] | None = None) -> SinkConfig:
        """The :class:`~floe_sink.models.SinkConfig` a plugin's ``create_sink`` receives.

        Args:
            secret: The resolved ``connection_secret_ref`` (see
                :func:`~floe_sink.config.resolve_secret`); its values stay wrapped in
                :class:`~floe_sink.secrets.Secret` (plugins call
                :func:`floe_sink.secrets.reveal`).

        Returns:
            ``config`` merged with the secret's keys, plus the mapping, batch size, retry,
            the destination's name, write disposition and primary key.

        Raises:
            ConfigValueError: A secret key also appears in ``config`` (which one wins would be
                a guess).
        """
        secret = dict(secret or {})
        clash = sorted(set(secret) & set(self.config))
        if clash:
            raise ConfigValueError(
                f"key(s) {', '.join(clash)} appear both in config and in Secret "
                f"{self.connection_secret_ref!r}; keep each in one place",
                field="config",
            )
        return SinkConfig(
            sink_type=self.sink_type,
            connection_config={**self.config, **secret},
            field_mapping=self.field_mapping,
            retry_config=self.retry,
            batch_size=self.batch_size,
            destination=self.name,
            write_disposition=str(self.write_disposition.value),
            primary_key=list(self.primary_key) or None,
            sync=str(self.sync.value),
        )


_KEY_REQUIRED: dict[str, Any] = {"minItems": 1}


@json_schema(
    {
        "allOf": [
            {
                "if": {
                    "required": ["write_disposition"],
                    "properties": {"write_disposition": {"const": "merge"}},
                },
                "then": {"required": ["primary_key"], "properties": {"primary_key": _KEY_REQUIRED}},
            },
            {
                "if": {
                    "required": ["sync"],
                    "properties": {"sync": {"enum": ["changes", "mirror"]}},
                },
                "then": {
                    "required": ["primary_key"],
                    "properties": {
                        "primary_key": _KEY_REQUIRED,
                        "write_disposition": {"not": {"const": "replace"}},
                    },
                },
            },
        ]
    }
)
def _destination_rules(values: Mapping[str, Any]) -> list[ConfigValueError]:
    """Rules between fields; each problem points at the field to change."""
    problems: list[ConfigValueError] = []
    disposition = values.get("write_disposition", WriteDisposition.APPEND)
    primary_key: list[str] = values.get("primary_key") or []
    mapping: dict[str, str] | None = values.get("field_mapping")
    columns: list[str] | None = values.get("columns")
    sync = values.get("sync", SyncMode.FULL)
    keyed_sync = sync in (SyncMode.CHANGES, SyncMode.MIRROR)
    if keyed_sync and not primary_key:
        problems.append(
            ConfigValueError(
                f"required when sync is {sync}: list the source column(s) that identify a "
                "row, e.g. primary_key: [customer_id]; changes are matched on them",
                at=("primary_key",),
            )
        )
    if keyed_sync and disposition == WriteDisposition.REPLACE:
        problems.append(
            ConfigValueError(
                f"sync {sync} sends only the rows that changed: it cannot replace the "
                "destination's content; use write_disposition merge (or append)",
                at=("write_disposition",),
            )
        )
    if disposition == WriteDisposition.MERGE and not primary_key and not keyed_sync:
        problems.append(
            ConfigValueError(
                "required when write_disposition is merge: list the source column(s) that "
                "identify a row, e.g. primary_key: [customer_id]",
                at=("primary_key",),
            )
        )
    for index, column in enumerate(primary_key):
        if mapping is not None and column not in mapping:
            problems.append(
                ConfigValueError(
                    f"column {column!r} is not a key of field_mapping; only mapped columns are "
                    "delivered, so map it too",
                    at=("primary_key", index),
                )
            )
        if columns is not None and column not in columns:
            problems.append(
                ConfigValueError(
                    f"column {column!r} is not in columns; add it to the projection",
                    at=("primary_key", index),
                )
            )
    if mapping is not None and columns is not None:
        problems.extend(
            ConfigValueError(
                f"column {source!r} is mapped but not read: add it to columns",
                at=("field_mapping", source),
            )
            for source in mapping
            if source not in columns
        )
    return problems


def _destination_credentials(data: Mapping[str, Any]) -> tuple[list[ConfigValueError], set[str]]:
    # field_mapping, columns and primary_key hold column names, not settings: a column may
    # well be called "token_count".
    skip = frozenset({"field_mapping", "columns", "primary_key"})
    return credential_problems(data, CREDENTIALS_HINT, skip=skip)


register_checked_class(
    DestinationConfig,
    pre_check=_destination_credentials,
    cross_check=_destination_rules,
    null_is_default=frozenset({"config", "primary_key"}),
)


@attrs.frozen(kw_only=True)
class FloeSpec:
    """The part of floe.yaml that floe-sink owns.

    Attributes:
        destinations: The reverse-ETL destinations, with unique names. Optional: a floe.yaml
            without ``destinations:`` is valid and delivers nothing.
    """

    destinations: list[DestinationConfig] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        problems = _unique_names(attrs.asdict(self, recurse=False))
        if problems:
            raise ConfigValueError("; ".join(str(problem) for problem in problems))

    def destination(self, name: str) -> DestinationConfig:
        """The destination called ``name``.

        Raises:
            KeyError: No destination has that name (the message lists the names).
        """
        for destination in self.destinations:
            if destination.name == name:
                return destination
        known = ", ".join(d.name for d in self.destinations) or "none"
        raise KeyError(f"no destination named {name!r} in floe.yaml (destinations: {known})")


def _unique_names(values: Mapping[str, Any]) -> list[ConfigValueError]:
    first: dict[str, int] = {}
    problems: list[ConfigValueError] = []
    for index, destination in enumerate(values.get("destinations") or []):
        if destination.name in first:
            problems.append(
                ConfigValueError(
                    f"duplicate destination name {destination.name!r} (first used by "
                    f"destinations[{first[destination.name]}]); names must be unique",
                    at=("destinations", index, "name"),
                )
            )
        else:
            first[destination.name] = index
    return problems


def _floe_yaml_near_misses(data: Mapping[str, Any]) -> tuple[list[ConfigValueError], set[str]]:
    # Other components' sections are ignored, so a misspelt "destination:" would silently
    # deliver nothing: catch the near misses of the one key floe-sink owns.
    problems = [
        ConfigValueError(f"unknown top-level key; did you mean {hint!r}?", at=(key,))
        for key in data
        if (hint := near_miss(key, ["destinations"])) is not None
    ]
    return problems, set()


register_checked_class(
    FloeSpec,
    extra_keys="ignore",
    pre_check=_floe_yaml_near_misses,
    cross_check=_unique_names,
    null_is_default=frozenset({"destinations"}),
)
