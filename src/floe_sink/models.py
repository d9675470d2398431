"""The records a sink receives and returns: :class:`SinkConfig` and :class:`EgressResult`.

Both are frozen, keyword-only attrs classes. :data:`converter` structures them from plain
dicts (YAML, JSON) and refuses unknown keys; :func:`structure` wraps it so that a bad input
becomes one :class:`~floe_sink.errors.SinkConfigurationError` listing every problem with its path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, get_origin

import attrs
import cattrs
import cattrs.v
from cattrs.cols import list_structure_factory
from cattrs.errors import (
    CattrsError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from floe_sink.errors import SinkConfigurationError

__all__ = ["EgressResult", "SinkConfig", "converter", "format_structure_error", "structure"]

T = TypeVar("T")


def _redacted_mapping(value: Mapping[str, Any]) -> str:
    # connection_config holds resolved secrets: a repr (in a log line, a traceback, a
    # notebook) shows which keys are set, never their values.
    return "{" + ", ".join(f"{key!r}: '***'" for key in value) + "}"


def _not_empty(_instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


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


converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
"""The one cattrs converter of floe-sink: unknown keys are refused, errors carry paths.

Scalars are structured strictly: YAML already gives native types, so ``batch_size: 1.5`` or
``success: "maybe"`` is a mistake to report, not a value to coerce (cattrs' defaults would
turn them into ``1`` and ``True``). A string is not accepted where a list is expected.
"""


def _strict_scalar(kind: type, accepted: tuple[type, ...]) -> Callable[[Any, type], Any]:
    def structure_scalar(value: Any, _type: type) -> Any:
        # bool is an int subclass: `batch_size: true` is refused for an int field too.
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got bool")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return structure_scalar


converter.register_structure_hook(str, _strict_scalar(str, (str,)))
converter.register_structure_hook(int, _strict_scalar(int, (int,)))
converter.register_structure_hook(float, _strict_scalar(float, (int, float)))
converter.register_structure_hook(bool, _strict_scalar(bool, (bool,)))


def _is_list(type_: Any) -> bool:
    return type_ is list or get_origin(type_) is list


@converter.register_structure_hook_factory(_is_list)
def _list_hook(type_: Any) -> Callable[[Any, Any], Any]:
    base = list_structure_factory(type_, converter)

    def structure_list(value: Any, target: Any) -> Any:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return base(value, target)

    return structure_list


def _format_exception(exc: BaseException, type_: type | None) -> str:
    # An attrs validator's ValueError says exactly what is wrong ("batch_size must be >= 1");
    # cattrs' default would reduce it to "invalid value". Our scalar hooks' TypeErrors too.
    own_words = isinstance(exc, TypeError) or (isinstance(exc, ValueError) and type_ is None)
    if own_words and str(exc) and not isinstance(exc, CattrsError):
        return f"invalid value: {exc}"
    return cattrs.v.format_exception(exc, type_)


def format_structure_error(exc: BaseException, path: str = "$") -> list[str]:
    """Turn a cattrs structuring failure into messages such as ``$.batch_size: must be >= 1``.

    Args:
        exc: The exception raised by :data:`converter`.
        path: The name of the root object in the messages.

    Returns:
        One message per problem, each starting with the path of the offending value.
    """
    if isinstance(exc, ClassValidationError | IterableValidationError | ForbiddenExtraKeysError):
        return [
            _tidy(message)
            for message in cattrs.transform_error(
                exc, path=path, format_exception=_format_exception
            )
        ]
    return [f"{path}: {exc}"]


def _tidy(message: str) -> str:
    # cattrs says "invalid value for type, expected int @ $.batch_size"; users read
    # "$.batch_size: invalid value for type, expected int".
    if " @ " in message:
        reason, _, where = message.rpartition(" @ ")
        return f"{where}: {reason}"
    return message


_Path = tuple[str | int, ...]


def _extra_keys(exc: BaseException, path: _Path = ()) -> list[tuple[_Path, set[str]]]:
    """Where in the input cattrs found unknown keys: (path of the mapping, the keys)."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [(path, set(exc.extra_fields))]
    found: list[tuple[_Path, set[str]]] = []
    if isinstance(exc, ClassValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            found += _extra_keys(sub, (*path, note.name))
        for sub in without_notes:
            found += _extra_keys(sub, path)
    elif isinstance(exc, IterableValidationError):
        with_index, without_index = exc.group_exceptions()
        for sub, index_note in with_index:
            found += _extra_keys(sub, (*path, index_note.index))
        for sub in without_index:
            found += _extra_keys(sub, path)
    return found


def _without_keys(data: Any, path: _Path, keys: set[str]) -> Any:
    """A copy of ``data`` with ``keys`` removed from the mapping at ``path``."""
    if not path:
        if isinstance(data, Mapping):
            return {key: value for key, value in data.items() if key not in keys}
        return data
    head, rest = path[0], path[1:]
    if isinstance(data, Mapping) and head in data:
        return {**data, head: _without_keys(data[head], rest, keys)}
    if isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data):
        copy = list(data)
        copy[head] = _without_keys(copy[head], rest, keys)
        return copy
    return data


def _all_problems(data: Any, cls: type[Any], exc: BaseException) -> list[str]:
    """Every problem with ``data``: unknown keys *and* the invalid values next to them.

    cattrs stops at unknown keys (the class is never built, so its validators never run);
    structuring again without those keys reports the remaining problems in the same message.
    """
    problems = format_structure_error(exc)
    extras = _extra_keys(exc)
    if not extras:
        return problems
    for where, keys in extras:
        data = _without_keys(data, where, keys)
    try:
        converter.structure(data, cls)
    except (CattrsError, ValueError, TypeError) as again:
        problems += [p for p in format_structure_error(again) if p not in problems]
    return problems


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
    label = what or cls.__name__
    if attrs.has(cls) and not isinstance(data, Mapping):
        raise SinkConfigurationError(
            f"Invalid {label}: $: expected a mapping, got {type(data).__name__}"
        )
    try:
        return converter.structure(data, cls)
    except (CattrsError, ValueError, TypeError) as exc:
        problems = _all_problems(data, cls, exc)
        raise SinkConfigurationError(f"Invalid {label}: " + "; ".join(problems)) from exc
