"""attrs validators of the configuration models.

Each raises :class:`~floe_sink.config.structuring.ConfigValueError` with a reason a user can act
on. They never read the instance, so the checked structure hook can run them one field at a time
and report every failing field, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from floe_sink.structuring import (
    ConfigValueError,
    ConfigValueErrors,
    describe_value,
    json_schema,
    schema_of,
)

__all__ = [
    "DNS_SUBDOMAIN",
    "check_batch_size",
    "check_column_list",
    "check_field_mapping",
    "check_name",
    "check_non_empty_text",
    "check_projection",
    "check_retry",
    "check_row_filter",
    "check_secret_ref",
    "check_sink_list",
    "check_source_table",
    "optional",
]

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_NAME = re.compile(r"[A-Za-z0-9_-]+")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
"""A Kubernetes object name: a lowercase RFC 1123 subdomain (at most 253 characters)."""
_TABLE_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_$-]*")
_NAMED = {"type": "string", "pattern": r"\S"}  # a column or sink name: not blank


def optional(check: Validator) -> Validator:
    """Run ``check`` unless the value is ``None``."""

    @json_schema(lambda: schema_of(check))
    def run(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            check(instance, attribute, value)

    return run


def _fail(attribute: attrs.Attribute[Any], reason: str, at: tuple[str | int, ...] = ()) -> None:
    raise ConfigValueError(reason, field=attribute.name, at=at)


@json_schema({"pattern": r"^[A-Za-z0-9_-]{1,100}$"})
def check_name(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """A destination name: 1-100 letters, digits, ``-`` or ``_``."""
    if not 1 <= len(value) <= 100:
        _fail(attribute, f"must be 1 to 100 characters long (got {len(value)})")
    elif not _NAME.fullmatch(value):
        _fail(
            attribute,
            f"may contain only letters, digits, '-' and '_' (got {describe_value(value)})",
        )


@json_schema({"pattern": r"^\S(?:[\s\S]*\S)?$"})
def check_non_empty_text(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """A non-empty string without surrounding whitespace."""
    if not value.strip():
        _fail(attribute, "must not be empty")
    elif value != value.strip():
        _fail(attribute, f"must not start or end with whitespace (got {describe_value(value)})")


@json_schema({"maxLength": 253, "pattern": f"^{DNS_SUBDOMAIN.pattern}$"})
def check_secret_ref(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """A Kubernetes Secret name. The value is not echoed: it may be a pasted credential."""
    if len(value) > 253:
        _fail(attribute, f"must be at most 253 characters long (got {len(value)})")
    elif not DNS_SUBDOMAIN.fullmatch(value):
        _fail(
            attribute,
            "must be the name of a Kubernetes Secret: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, e.g. 'crm-api' "
            "(the value is not shown, in case it is a credential)",
        )


@json_schema({"pattern": f"^{_TABLE_PART.pattern}(?:\\.{_TABLE_PART.pattern})+$"})
def check_source_table(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """An Iceberg table identifier ``namespace.table`` (nested namespaces allowed)."""
    parts = value.split(".")
    if len(parts) < 2 or not all(_TABLE_PART.fullmatch(part) for part in parts):
        _fail(
            attribute,
            "must be an Iceberg table identifier 'namespace.table', e.g. 'gold.customers' "
            f"(got {describe_value(value)})",
        )


@json_schema({"minimum": 1})
def check_batch_size(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    """Rows per batch: at least 1."""
    if value < 1:
        _fail(attribute, f"must be >= 1 (got {value})")


@json_schema({"items": _NAMED, "uniqueItems": True})
def check_column_list(_instance: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    """Column names: non-empty strings, each listed once."""
    _check_names(attribute, value, "column", "column names")


@json_schema({"items": _NAMED, "uniqueItems": True, "minItems": 1})
def check_projection(_instance: Any, attribute: attrs.Attribute[Any], value: list[str]) -> None:
    """A column projection: at least one column, each a non-empty name listed once."""
    if not value:
        _fail(attribute, "must name at least one column; omit it to read every column")
    check_column_list(_instance, attribute, value)


@json_schema({"propertyNames": _NAMED, "additionalProperties": _NAMED})
def check_field_mapping(
    _instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, str]
) -> None:
    """Source column -> destination field: non-empty names, no two columns to one field."""
    targets: dict[str, str] = {}
    for source, target in value.items():
        if not source.strip():
            _fail(attribute, "source column names must not be empty")
        if not target.strip():
            _fail(attribute, "destination field names must not be empty", (source,))
        if target in targets:
            _fail(
                attribute,
                f"destination field {target!r} is also the target of {targets[target]!r}; "
                "each destination field can receive one column",
                (source,),
            )
        targets[target] = source


@json_schema({"items": _NAMED, "uniqueItems": True})
def check_sink_list(_instance: Any, attribute: attrs.Attribute[Any], value: Sequence[str]) -> None:
    """Sink type names: non-empty, each listed once."""
    _check_names(attribute, value, "sink type", "sink types")


def _check_names(
    attribute: attrs.Attribute[Any], value: Sequence[str], noun: str, plural: str
) -> None:
    """Each of ``value`` a non-empty ``noun`` (``column``, ``sink type``), listed once."""
    seen: set[str] = set()
    for index, name in enumerate(value):
        if not name.strip():
            _fail(attribute, f"{plural} must not be empty", (index,))
        if name in seen:
            _fail(attribute, f"{noun} {name!r} is listed twice", (index,))
        seen.add(name)


@json_schema({"pattern": r"\S"})  # that it parses, only the loader can tell
def check_row_filter(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    """A pyiceberg row filter expression such as ``status == 'active'``."""
    if not value.strip():
        _fail(attribute, "must not be empty; omit row_filter to deliver every row")
    from floe_sink.row_filter import looks_valid

    if looks_valid(value):  # without pyiceberg: validate must not pay half a second for it
        return
    from floe_sink.source import parse_row_filter, quote_identifiers  # pyiceberg decides

    try:
        parse_row_filter(value)
    except Exception as exc:  # pyparsing's errors are the only way to tell
        # pyparsing's own message spells out its whole grammar: the position is what helps.
        column = getattr(exc, "col", None)
        exact = quote_identifiers(value) == value  # else the position moved
        where = f" at character {column}" if isinstance(column, int) and exact else ""
        _fail(
            attribute,
            f"is not a valid row filter expression (cannot parse it{where}); "
            "write e.g. \"status == 'active' and amount > 0\"",
        )


@json_schema(lambda: _retry_schema())
def check_retry(_instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    """Retry settings, as :meth:`floe_sink.retry.RetryPolicy.from_config` accepts them.

    Every problem of the block is reported, each at its key (unknown keys at the block).
    """
    from floe_sink.retry import RetryPolicy

    problems = RetryPolicy.problems(value)
    if problems:
        raise ConfigValueErrors(
            [
                ConfigValueError(reason, field=attribute.name, at=() if key is None else (key,))
                for key, reason in problems
            ]
        )


def _retry_schema() -> dict[str, Any]:
    from floe_sink.config.schema import model_schema
    from floe_sink.retry import RetryPolicy

    policy = model_schema(RetryPolicy, defaults=False)  # the keys of the block, checked
    return {key: policy[key] for key in ("properties", "additionalProperties")}
