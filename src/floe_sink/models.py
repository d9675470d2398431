"""The records a sink receives and returns: :class:`SinkConfig` and :class:`EgressResult`.

Both are frozen, keyword-only attrs classes. :data:`converter` structures them from plain
dicts (YAML, JSON) and refuses unknown keys; :func:`structure` wraps it so that a bad input
becomes one :class:`~floe_sink.errors.SinkConfigurationError` listing every problem with its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from floe_sink.errors import SinkConfigurationError

__all__ = ["EgressResult", "SinkConfig", "converter", "format_structure_error", "structure"]

T = TypeVar("T")


def _redacted_mapping(value: Mapping[str, Any]) -> str:
    # connection_config holds resolved secrets: a repr (in a log line, a traceback, a
    # notebook) shows which keys are set, never their values.
    return "{" + ", ".join(f"{key!r}: '***'" for key in value) + "}"


def _positive_or_none(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 (got {value})")


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
    """

    sink_type: str = attrs.field(validator=attrs.validators.min_len(1))
    connection_config: dict[str, Any] = attrs.field(factory=dict, repr=_redacted_mapping)
    field_mapping: dict[str, str] | None = None
    retry_config: dict[str, Any] | None = None
    batch_size: int | None = attrs.field(default=None, validator=_positive_or_none)


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


converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
"""The one cattrs converter of floe-sink: unknown keys are refused, errors carry paths."""


def format_structure_error(exc: BaseException, path: str = "$") -> list[str]:
    """Turn a cattrs structuring failure into messages such as ``$.batch_size: must be >= 1``.

    Args:
        exc: The exception raised by :data:`converter`.
        path: The name of the root object in the messages.

    Returns:
        One message per problem, each starting with the path of the offending value.
    """
    if isinstance(exc, ClassValidationError | ForbiddenExtraKeysError):
        return [_tidy(message) for message in cattrs.transform_error(exc, path=path)]
    return [f"{path}: {exc}"]


def _tidy(message: str) -> str:
    # cattrs says "invalid value for type, expected int @ $.batch_size"; users read
    # "$.batch_size: invalid value for type, expected int".
    if " @ " in message:
        reason, _, where = message.rpartition(" @ ")
        return f"{where}: {reason}"
    return message


def structure(data: Any, cls: type[T], *, what: str | None = None) -> T:
    """Structure ``data`` into ``cls`` with :data:`converter`.

    Args:
        data: Plain data (dicts, lists, scalars), e.g. parsed YAML.
        cls: The attrs class to build.
        what: The name of the input in error messages (defaults to the class name).

    Returns:
        The structured instance.

    Raises:
        SinkConfigurationError: Listing every problem, each with its path.
    """
    try:
        return converter.structure(data, cls)
    except (ClassValidationError, ForbiddenExtraKeysError, ValueError, TypeError) as exc:
        problems = format_structure_error(exc)
        label = what or cls.__name__
        raise SinkConfigurationError(f"Invalid {label}: " + "; ".join(problems)) from exc
