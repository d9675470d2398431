"""Request templates: the template language, parsed without any schema (or pyarrow).

The template language (YAML or any mapping)
-------------------------------------------
A template has a ``record`` (the shape of one record), and optionally ``records_key`` (where the
records go: a key, or a list of keys for a nested place; without it the body is a bare JSON
array) and ``envelope`` (constants beside the records)::

    template:
      records_key: inputs                   # {"inputs": [...records...]}
      envelope: {allOrNone: false}          # ... and {"allOrNone": false} beside them
      record:
        idProperty: email                   # a constant (any YAML scalar)
        id: {column: email, as: string, required: true}
        properties: {remaining: {as: string, on_null: omit}}

A node of ``record`` is one of:

``{column: NAME}``
    The value of a column of the (mapped) table. Options: ``as`` (a conversion, below),
    ``on_null: omit`` (leave the key out of its object where the value is JSON ``null``;
    default ``null``: write ``null``), ``required: true`` (a row whose value is ``null`` is
    invalid: :meth:`CompiledTemplate.required_nulls` finds it, so it can be rejected without
    a request).
``{const: VALUE}``, or a plain scalar (string, number, boolean, ``null``)
    A constant, written as is (``{const: ...}`` takes any JSON value, mappings included).
a mapping of keys to nodes
    A nested object. ``{object: {...}, remaining: ...}`` is the same with the columns the
    template references nowhere else appended (use it when a key is named ``column``,
    ``const``, ``object`` or ``remaining``).
``{remaining: true}`` or ``{remaining: {as: ..., on_null: omit, except: [...]}}``
    An object of every column of the table that no ``column`` node references, keyed by the
    column name (at most one ``remaining`` per template).
a list of nodes
    A JSON array.

Conversions (``as``): ``string`` (any type: values JSON writes as strings stay as they are,
others become the string of their JSON text: ``12`` -> ``"12"``, ``true`` -> ``"true"``),
``integer`` (from integers, booleans, integral floats and decimals, numeric strings),
``number`` (from numbers, decimals, booleans, numeric strings), ``boolean`` (from booleans,
integers (non-zero is true), the strings ``true``/``false``/``1``/``0``), ``epoch_ms``
(timestamps and dates as integer milliseconds since 1970-01-01 UTC, rounded down; a timestamp
without a time zone is taken as UTC).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs

from floe_sink.errors import SinkConfigurationError

if TYPE_CHECKING:
    import pyarrow as pa

    from floe_sink_dlt.saas.template import CompiledTemplate

__all__ = [
    "CONVERSIONS",
    "TEMPLATE_JSON_SCHEMA",
    "ColumnNode",
    "ConstNode",
    "ListNode",
    "Node",
    "ObjectNode",
    "RemainingColumns",
    "RequestTemplate",
    "column_nodes",
]

CONVERSIONS: Final = ("string", "integer", "number", "boolean", "epoch_ms")
"""The values of ``as``."""

_DIRECTIVES: Final = frozenset({"column", "const", "object", "remaining"})
_COLUMN_KEYS: Final = frozenset({"column", "as", "on_null", "required"})
_REMAINING_KEYS: Final = frozenset({"as", "on_null", "except"})
_ON_NULL: Final = ("null", "omit")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_RECORDS_MARKER: Final = "\x00floe-sink:records\x00"
_KEY: Final[dict[str, Any]] = {"type": "string", "minLength": 1}

TEMPLATE_JSON_SCHEMA: Final[dict[str, Any]] = {
    "additionalProperties": False,
    "required": ["record"],
    "properties": {
        "record": {
            "description": f"One record: {{column: NAME, as: {'|'.join(CONVERSIONS)}, "
            "on_null: omit, required: true}, {const: VALUE}, a scalar constant, a mapping of "
            "keys to nodes (a nested object), {object: {...}, remaining: ...}, "
            "{remaining: true | {as, on_null, except}}, or a list of nodes.",
        },
        "records_key": {
            "description": "Where the records go: a key, or a list of keys (a nested place); "
            "without it the body is a bare JSON array.",
            "anyOf": [_KEY, {"type": "array", "minItems": 1, "items": _KEY}],
        },
        "envelope": {"type": "object", "description": "Constants beside the records."},
    },
}
"""The JSON Schema keywords of a template (the grammar above; the shape of ``record`` only
described), for the editor schema of a field holding one. No ``type``: the field's own
annotation says whether ``null`` is allowed."""
_TEMPLATE_KEYS: Final = frozenset(TEMPLATE_JSON_SCHEMA["properties"])

# -- the parsed template ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ConstNode:
    """A constant JSON value."""

    value: Any
    where: str


@attrs.frozen(kw_only=True)
class ColumnNode:
    """The value of one column, optionally converted."""

    name: str
    convert: str | None = None
    omit_null: bool = False
    required: bool = False
    where: str


@attrs.frozen(kw_only=True)
class RemainingColumns:
    """The columns no ``column`` node references, as members of an object."""

    convert: str | None = None
    omit_null: bool = False
    exclude: tuple[str, ...] = ()
    where: str


@attrs.frozen(kw_only=True)
class ObjectNode:
    """A JSON object: fixed members, then (optionally) the remaining columns."""

    fields: tuple[tuple[str, Node], ...]
    remaining: RemainingColumns | None = None
    where: str


@attrs.frozen(kw_only=True)
class ListNode:
    """A JSON array of nodes."""

    items: tuple[Node, ...]
    where: str


Node: TypeAlias = ConstNode | ColumnNode | ObjectNode | ListNode


@attrs.frozen(kw_only=True)
class RequestTemplate:
    """A parsed, schema-independent template: :meth:`parse` it, :meth:`compile` it per schema."""

    record: Node
    records_key: tuple[str, ...] = ()
    envelope: Mapping[str, Any] = attrs.field(factory=dict)
    where: str = "config.template"
    prefix: bytes = b"["
    """The body's bytes before the first record."""
    suffix: bytes = b"]"
    """The body's bytes after the last record."""

    @classmethod
    def parse(cls, spec: Any, *, where: str = "config.template") -> RequestTemplate:
        """Check the shape of a template (see the module docstring) without any schema.

        Args:
            spec: The template as loaded from YAML: a mapping with ``record`` and optionally
                ``records_key`` and ``envelope``.
            where: The template's place in the configuration, the start of every error path.

        Returns:
            The parsed template.

        Raises:
            SinkConfigurationError: The template is malformed; the message starts with the
                path of the offending field (``config.template.record.id: ...``).
        """
        if not isinstance(spec, Mapping):
            raise _error(where, "must be a mapping with 'record' (and 'records_key', 'envelope')")
        _check_keys(spec, _TEMPLATE_KEYS, where, "a template")
        if "record" not in spec:
            raise _error(where, "needs 'record': the shape of one record")
        record = _parse_node(spec["record"], f"{where}.record", in_object=False)
        _check_single_remaining(record)

        raw_key = spec.get("records_key")
        records_key: tuple[str, ...]
        if raw_key is None:
            records_key = ()
        elif isinstance(raw_key, str) and raw_key:
            records_key = (raw_key,)
        elif (
            isinstance(raw_key, list)
            and raw_key
            and all(isinstance(key, str) and key for key in raw_key)
        ):
            records_key = tuple(raw_key)
        else:
            raise _error(
                f"{where}.records_key", "must be a non-empty key, or a list of keys (a path)"
            )

        envelope = spec.get("envelope")
        if envelope is None:
            envelope = {}
        if not isinstance(envelope, Mapping):
            raise _error(f"{where}.envelope", "must be a mapping of constants")
        _check_json(envelope, f"{where}.envelope")
        if envelope and not records_key:
            raise _error(
                f"{where}.envelope",
                "needs 'records_key': without it the body is a bare array, with no room for "
                "constants beside the records",
            )
        prefix, suffix = _envelope_bytes(envelope, records_key, where)
        return cls(
            record=record,
            records_key=records_key,
            envelope=dict(envelope),
            where=where,
            prefix=prefix,
            suffix=suffix,
        )

    def problems(self, schema: pa.Schema) -> list[str]:
        """Every reason the template cannot be compiled for ``schema`` (empty when it can).

        Args:
            schema: The Arrow schema of the batches, after the field mapping.

        Returns:
            One message per problem, each starting with the field's path.
        """
        from floe_sink_dlt.saas.template import template_problems

        return template_problems(self, schema)

    def compile(self, schema: pa.Schema) -> CompiledTemplate:
        """Bind the template to ``schema`` and build its Arrow operations.

        Args:
            schema: The Arrow schema of the batches, after the field mapping.

        Returns:
            The compiled template.

        Raises:
            SinkConfigurationError: A column is missing or cannot be converted as asked; the
                message lists every problem, each with its field's path.
        """
        from floe_sink_dlt.saas.template import compile_template

        return compile_template(self, schema)


# -- parsing ----------------------------------------------------------------------------------


def _error(where: str, problem: str) -> SinkConfigurationError:
    return SinkConfigurationError(f"{where}: {problem}")


def _child(where: str, key: str) -> str:
    return f"{where}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{where}[{json.dumps(key)}]"


def _check_keys(spec: Mapping[Any, Any], allowed: frozenset[str], where: str, what: str) -> None:
    unknown = sorted(str(key) for key in spec if key not in allowed)
    if unknown:
        raise _error(
            where,
            f"unknown key(s) {', '.join(map(repr, unknown))} in {what}; "
            f"allowed: {', '.join(sorted(allowed))}",
        )


def _check_json(value: Any, where: str) -> None:
    """Refuse values that have no JSON form (a template constant is written as is)."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _error(where, f"{value!r} has no JSON form")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _error(where, f"keys must be strings (got {key!r})")
            _check_json(item, _child(where, key))
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    raise _error(where, f"a {type(value).__name__} has no JSON form")


def _parse_node(spec: Any, where: str, *, in_object: bool) -> Node:
    if spec is None or isinstance(spec, bool | int | float | str):
        _check_json(spec, where)
        return ConstNode(value=spec, where=where)
    if isinstance(spec, list):
        return ListNode(
            items=tuple(
                _parse_node(item, f"{where}[{index}]", in_object=False)
                for index, item in enumerate(spec)
            ),
            where=where,
        )
    if not isinstance(spec, Mapping):
        raise _error(where, f"must be a constant, a mapping or a list (got {type(spec).__name__})")
    for key in spec:
        if not isinstance(key, str):
            raise _error(where, f"keys must be strings (got {key!r})")
    if "column" in spec:
        return _parse_column(spec, where, in_object=in_object)
    if "const" in spec:
        _check_keys(spec, frozenset({"const"}), where, "a constant ({const: ...})")
        _check_json(spec["const"], f"{where}.const")
        return ConstNode(value=copy.deepcopy(spec["const"]), where=where)
    if "object" in spec or "remaining" in spec:
        _check_keys(spec, frozenset({"object", "remaining"}), where, "an object")
        fields = spec.get("object") or {}
        if not isinstance(fields, Mapping):
            raise _error(f"{where}.object", "must be a mapping of keys to template nodes")
        remaining = (
            _parse_remaining(spec["remaining"], f"{where}.remaining")
            if "remaining" in spec
            else None
        )
        return _parse_object(fields, where, remaining)
    return _parse_object(spec, where, None)


def _parse_object(
    fields: Mapping[Any, Any], where: str, remaining: RemainingColumns | None
) -> ObjectNode:
    parsed: list[tuple[str, Node]] = []
    for key, value in fields.items():
        if not isinstance(key, str):
            raise _error(where, f"keys must be strings (got {key!r})")
        parsed.append((key, _parse_node(value, _child(where, key), in_object=True)))
    return ObjectNode(fields=tuple(parsed), remaining=remaining, where=where)


def _parse_column(spec: Mapping[str, Any], where: str, *, in_object: bool) -> ColumnNode:
    _check_keys(spec, _COLUMN_KEYS, where, "a column reference")
    name = spec["column"]
    if not isinstance(name, str) or not name:
        raise _error(f"{where}.column", "must be a column name (a non-empty string)")
    convert = _parse_conversion(spec.get("as"), f"{where}.as")
    omit_null = _parse_on_null(spec.get("on_null"), f"{where}.on_null")
    if omit_null and not in_object:
        raise _error(
            f"{where}.on_null",
            "'omit' leaves a key out of its object: it applies only to a member of an object",
        )
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise _error(f"{where}.required", f"must be true or false (got {required!r})")
    if required and omit_null:
        raise _error(where, "'required: true' and 'on_null: omit' contradict each other")
    return ColumnNode(
        name=name, convert=convert, omit_null=omit_null, required=required, where=where
    )


def _parse_remaining(spec: Any, where: str) -> RemainingColumns:
    if spec is True:
        return RemainingColumns(where=where)
    if not isinstance(spec, Mapping):
        raise _error(where, "must be true or a mapping with 'as', 'on_null', 'except'")
    _check_keys(spec, _REMAINING_KEYS, where, "remaining")
    exclude = spec.get("except") or []
    if not isinstance(exclude, list) or not all(isinstance(name, str) for name in exclude):
        raise _error(f"{where}.except", "must be a list of column names")
    return RemainingColumns(
        convert=_parse_conversion(spec.get("as"), f"{where}.as"),
        omit_null=_parse_on_null(spec.get("on_null"), f"{where}.on_null"),
        exclude=tuple(exclude),
        where=where,
    )


def _parse_conversion(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if value not in CONVERSIONS:
        raise _error(where, f"must be one of {', '.join(CONVERSIONS)} (got {value!r})")
    return str(value)


def _parse_on_null(value: Any, where: str) -> bool:
    if value is None:
        return False
    if value not in _ON_NULL:
        raise _error(where, f"must be one of {', '.join(_ON_NULL)} (got {value!r})")
    return bool(value == "omit")


def _walk(node: Node) -> Iterator[Node]:
    yield node
    if isinstance(node, ObjectNode):
        for _, child in node.fields:
            yield from _walk(child)
    elif isinstance(node, ListNode):
        for child in node.items:
            yield from _walk(child)


def _check_single_remaining(record: Node) -> None:
    places = [
        node.remaining.where
        for node in _walk(record)
        if isinstance(node, ObjectNode) and node.remaining is not None
    ]
    if len(places) > 1:
        raise _error(
            places[1],
            f"a template has at most one 'remaining' (the first is at {places[0]})",
        )


def _envelope_bytes(
    envelope: Mapping[str, Any], records_key: tuple[str, ...], where: str
) -> tuple[bytes, bytes]:
    if not records_key:
        return b"[", b"]"
    document: dict[str, Any] = copy.deepcopy(dict(envelope))
    node = document
    path = f"{where}.envelope"
    for key in records_key[:-1]:
        path = _child(path, key)
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise _error(path, "is a constant, so the records cannot be put inside it")
        node = child
    if records_key[-1] in node:
        raise _error(
            _child(path, records_key[-1]),
            "is where records_key puts the records; it cannot also be a constant",
        )
    node[records_key[-1]] = _RECORDS_MARKER
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    before, marker, after = text.partition(json.dumps(_RECORDS_MARKER))
    if not marker or json.dumps(_RECORDS_MARKER) in after:  # pragma: no cover - defensive
        raise _error(f"{where}.envelope", "contains floe-sink's internal records marker")
    return (before + "[").encode(), ("]" + after).encode()


def column_nodes(node: Node) -> Iterator[ColumnNode]:
    """The ``{column: ...}`` nodes under ``node``, in template order."""
    for child in _walk(node):
        if isinstance(child, ColumnNode):
            yield child
