"""The records a sink receives and returns: :class:`SinkConfig` and :class:`EgressResult`.

Both are frozen, keyword-only attrs classes. They are structured from plain dicts (YAML, JSON)
by floe-sink's one converter (:mod:`floe_sink.structuring`), which refuses unknown keys;
:func:`structure` turns a bad input into one :class:`~floe_sink.errors.ProblemsError` (a
:class:`~floe_sink.errors.SinkConfigurationError`) listing every problem with its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from floe_sink.structuring import (
    ConfigValueError,
    collect_problems,
    converter,
    json_schema,
    problem_lines,
    register_checked_class,
    structure,
)

__all__ = ["EgressResult", "SinkConfig", "converter", "format_structure_error", "structure"]


def _redacted_mapping(value: Mapping[str, Any]) -> str:
    # connection_config holds resolved secrets: a repr (in a log line, a traceback, a
    # notebook) shows which keys are set, never their values.
    return "{" + ", ".join(f"{key!r}: '***'" for key in value) + "}"


@json_schema({"minLength": 1})
def _not_empty(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value:
        raise ConfigValueError("must not be empty", field=attribute.name)


@json_schema({"minimum": 1})
def _positive_or_none(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 1:
        raise ConfigValueError(f"must be >= 1 (got {value})", field=attribute.name)


@attrs.frozen(kw_only=True)
class SinkConfig:
    """What a plugin needs to build a sink.

    Attributes:
        sink_type: The sink type, one of those listed by ``list_available_sinks``.
        connection_config: Sink-specific settings merged with the resolved secret values.
            Its values are never shown by ``repr``.
        field_mapping: Source column -> destination field; ``None`` keeps the names.
        retry_config: Retry settings (``max_attempts``, ``initial_wait``, ``max_wait``, ...);
            ``None`` uses the sink's defaults.
        batch_size: Rows per delivered batch; ``None`` uses the sink's default.
        destination: The destination's name in floe.yaml (``None`` outside the command):
            what logs, ledgers and idempotency keys are keyed by.
        write_disposition: ``append`` (default), ``merge`` or ``replace``.
        primary_key: The source columns identifying a row (``merge`` and change-aware syncs).
        sync: ``full`` (default), ``changes`` or ``mirror``.
        state_dir: Where the command keeps its state (``None`` outside the command); a sink
            that needs local files of its own keeps them below it.
    """

    sink_type: str = attrs.field(validator=_not_empty)
    connection_config: dict[str, Any] = attrs.field(factory=dict, repr=_redacted_mapping)
    field_mapping: dict[str, str] | None = None
    retry_config: dict[str, Any] | None = None
    batch_size: int | None = attrs.field(default=None, validator=_positive_or_none)
    destination: str | None = None
    write_disposition: str = "append"
    primary_key: list[str] | None = None
    sync: str = "full"
    state_dir: str | None = None


@attrs.frozen(kw_only=True)
class EgressResult:
    """The outcome of one ``write``.

    Attributes:
        success: True when every row was delivered.
        rows_delivered: Rows the destination accepted (0 is valid: an empty table).
        bytes_transmitted: Bytes sent over the wire (or written), as the sink measures them.
        duration_seconds: Wall-clock time of the write.
        checksum: SHA-256 hex digest of the delivered content (see :mod:`floe_sink.checksum`).
        delivery_timestamp: When the write finished, ISO-8601 UTC.
        idempotency_key: Key of the whole delivery: the same data to the same destination gives
            the same key.
        destination_record_ids: IDs the destination returned for the records, where it does.
        errors: Human-readable errors; empty on success.
        delivery_id: The delivery this write belongs to (the same for the runs that resume
            it); empty outside the command.
        resumed_batches: Batches not sent because an interrupted run of the same delivery had
            delivered them (their rows count in ``rows_delivered``).
        snapshot_id: The Iceberg snapshot delivered (``None`` outside the command, or for a
            table without snapshots).
        sync: The sync mode of the run: ``full``, ``changes`` or ``mirror``.
        rows_inserted, rows_updated: Rows written that were new to, or changed at, the
            destination since the last confirmed delivery (change-aware syncs; ``full``
            counts every row written as inserted).
        rows_deleted: Rows deleted at the destination (``mirror``).
        rows_unchanged: Rows of the snapshot not sent because the destination has them.
        rows_rejected: Rows the destination refused one by one.
    """

    success: bool
    rows_delivered: int = 0
    bytes_transmitted: int = 0
    duration_seconds: float = 0.0
    checksum: str = ""
    delivery_timestamp: str = ""
    idempotency_key: str = ""
    destination_record_ids: list[str] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    delivery_id: str = ""
    resumed_batches: int = 0
    snapshot_id: int | None = None
    sync: str = "full"
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_deleted: int = 0
    rows_unchanged: int = 0
    rows_rejected: int = 0


register_checked_class(SinkConfig)
register_checked_class(EgressResult)


def format_structure_error(exc: BaseException) -> list[str]:
    """Turn a structuring failure of :data:`converter` into ``path: reason`` lines."""
    return problem_lines(collect_problems(exc))
