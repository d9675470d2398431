"""Request templates compiled to Arrow: the JSON of a batch's records, with no Python per row.

How the delivery loop calls it
------------------------------
Parse the template when the destination is configured, compile it once per Arrow schema (this
needs no data, so ``validate`` and ``plan`` report template errors too), then encode batches::

    template = RequestTemplate.parse(config["template"])   # shape errors, naming the field
    compiled = template.compile(schema)                     # column and type errors
    bad = compiled.required_nulls(batch)                    # rows to reject unsent, or None
    records = compiled.encode_records(batch)                # one JSON text per row
    body = compiled.body(records)                           # the request body (bytes)

``records`` may be cut into several requests first (:mod:`floe_sink_dlt.saas.splitting`): the
body of ``n`` records is ``compiled.envelope_bytes`` plus their lengths plus ``n - 1`` commas.
Every step is a handful of ``pyarrow.compute`` calls over whole columns (no Python per row); the
values are written as :mod:`floe_sink_dlt.json_encoding` says.

The template language is :mod:`floe_sink_dlt.saas.template_syntax` (its
:class:`RequestTemplate` is re-exported here).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.errors import ErrorCategory, SinkConfigurationError, SinkWriteError
from floe_sink_dlt.json_encoding import encode_text, encode_values, join_rows
from floe_sink_dlt.saas.template_syntax import (
    ColumnNode,
    ConstNode,
    ListNode,
    Node,
    ObjectNode,
    RequestTemplate,
    _walk,
)

__all__ = [
    "CompiledTemplate",
    "RequestTemplate",
    "TemplateValueError",
    "compile_template",
    "template_problems",
]

_MAX_LISTED_COLUMNS: Final = 30


class TemplateValueError(SinkWriteError):
    """Raised when a column's values cannot be converted as its ``as`` asks.

    Permanent: the same rows fail the same way. The message names the template field and the
    column, never the values.
    """

    default_category = ErrorCategory.PERMANENT


# -- the compiled template --------------------------------------------------------------------

_Leaf: TypeAlias = Callable[[pa.RecordBatch], pa.Array]
_Piece: TypeAlias = str | _Leaf


@attrs.frozen(kw_only=True)
class CompiledTemplate:
    """A template bound to one schema: encodes its batches. Thread-safe (holds no state)."""

    schema: pa.Schema
    columns: tuple[str, ...]
    """The columns the template reads (referenced and remaining), in schema order."""
    prefix: bytes
    suffix: bytes
    pieces: tuple[_Piece, ...] = attrs.field(repr=False)
    required: tuple[tuple[str, _Leaf], ...] = attrs.field(repr=False)

    @property
    def envelope_bytes(self) -> int:
        """The bytes a body has besides its records and the commas between them."""
        return len(self.prefix) + len(self.suffix)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """The columns of ``required: true`` nodes."""
        return tuple(name for name, _ in self.required)

    def encode_records(self, batch: pa.RecordBatch) -> pa.Array:
        """One JSON text per row of ``batch``, shaped by the template.

        Args:
            batch: Rows with the schema the template was compiled for.

        Returns:
            A string array without nulls, as long as the batch.

        Raises:
            ValueError: ``batch`` has another schema.
            TemplateValueError: A conversion (``as``) failed for some value; the message names
                the field and the column, not the values.
        """
        self._check(batch)
        return _evaluate(self.pieces, batch)

    def body(self, records: pa.Array) -> bytes:
        """The request body around ``records`` (from :meth:`encode_records`, maybe a slice).

        Args:
            records: JSON texts of records.

        Returns:
            The body: envelope, the records joined by commas.
        """
        return join_rows(records, prefix=self.prefix, suffix=self.suffix)

    def encode(self, batch: pa.RecordBatch) -> bytes:
        """The request body of ``batch`` as one request (``body(encode_records(batch))``).

        Raises:
            ValueError: ``batch`` has another schema.
            TemplateValueError: A conversion failed for some value.
        """
        return self.body(self.encode_records(batch))

    def required_nulls(self, batch: pa.RecordBatch) -> pa.Array | None:
        """Where a ``required`` field would be ``null``: the rows to reject without sending.

        Args:
            batch: Rows with the schema the template was compiled for.

        Returns:
            A boolean array (true for an invalid row), or ``None`` when the template has no
            required field. The required fields' conversions run here and again when
            encoding (they are usually one id column).

        Raises:
            ValueError: ``batch`` has another schema.
            TemplateValueError: A conversion failed for some value.
        """
        if not self.required:
            return None
        self._check(batch)
        mask: pa.Array | None = None
        for _, leaf in self.required:
            nulls = pc.is_null(leaf(batch))
            mask = nulls if mask is None else pc.or_(mask, nulls)
        return mask

    def _check(self, batch: pa.RecordBatch) -> None:
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise ValueError(
                "the batch's schema is not the one the template was compiled for: "
                f"columns {batch.schema.names} vs {self.schema.names}"
            )


def template_problems(template: RequestTemplate, schema: pa.Schema) -> list[str]:
    """Every reason ``template`` cannot be compiled for ``schema`` (empty when it can); each
    message starts with the field's path."""
    return _Binder(schema).check(template.record)


def compile_template(template: RequestTemplate, schema: pa.Schema) -> CompiledTemplate:
    """Bind ``template`` to ``schema`` and build its Arrow operations.

    Raises:
        SinkConfigurationError: A column is missing or cannot be converted as asked; the
            message lists every problem, each with its field's path.
    """
    binder = _Binder(schema)
    problems = binder.check(template.record)
    if problems:
        raise SinkConfigurationError("; ".join(problems))
    pieces = _merge(binder.pieces(template.record))
    return CompiledTemplate(
        schema=schema,
        columns=tuple(binder.used),
        prefix=template.prefix,
        suffix=template.suffix,
        pieces=tuple(pieces),
        required=tuple(binder.required),
    )


# -- binding to a schema and building the Arrow operations -----------------------------------


def _value_type(type_: pa.DataType) -> pa.DataType:
    return type_.value_type if pa.types.is_dictionary(type_) else type_


def _is_text(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
    )


def _writes_string(type_: pa.DataType) -> bool:
    """Whether :func:`encode_values` writes values of ``type_`` as JSON strings."""
    type_ = _value_type(type_)
    return bool(
        _is_text(type_)
        or pa.types.is_timestamp(type_)
        or pa.types.is_date(type_)
        or pa.types.is_time(type_)
        or pa.types.is_decimal(type_)
        or pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_fixed_size_binary(type_)
        or pa.types.is_binary_view(type_)
    )


def _is_plain_json(type_: pa.DataType) -> bool:
    """Whether the JSON text of ``type_``'s values needs no escaping inside a string."""
    type_ = _value_type(type_)
    return bool(
        pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_)
    )


def _accepts(convert: str, type_: pa.DataType) -> bool:
    type_ = _value_type(type_)
    if convert == "string" or pa.types.is_null(type_):
        return True
    number = pa.types.is_integer(type_) or pa.types.is_floating(type_)
    if convert in ("integer", "number"):
        return bool(
            number or pa.types.is_boolean(type_) or pa.types.is_decimal(type_) or _is_text(type_)
        )
    if convert == "boolean":
        return bool(pa.types.is_boolean(type_) or pa.types.is_integer(type_) or _is_text(type_))
    return bool(pa.types.is_timestamp(type_) or pa.types.is_date(type_))  # epoch_ms


_ACCEPTED = {
    "integer": "integers, booleans, floats, decimals or strings",
    "number": "integers, booleans, floats, decimals or strings",
    "boolean": "booleans, integers or strings",
    "epoch_ms": "timestamps or dates",
}


class _Binder:
    """Binds the nodes of one template to one schema: checks them, then builds pieces."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.names = list(schema.names)
        self.index = {name: position for position, name in enumerate(self.names)}
        self.used: list[str] = []
        self.required: list[tuple[str, _Leaf]] = []
        self._remaining: list[str] = []

    # checks

    def check(self, record: Node) -> list[str]:
        problems: list[str] = []
        if len(set(self.names)) != len(self.names):
            duplicated = sorted({name for name in self.names if self.names.count(name) > 1})
            problems.append(
                f"the table has duplicated column names ({', '.join(map(repr, duplicated))})"
            )
            return problems
        referenced = {node.name for node in _walk(record) if isinstance(node, ColumnNode)}
        for node in _walk(record):
            if isinstance(node, ColumnNode):
                problems.extend(self._check_column(node))
            elif isinstance(node, ObjectNode) and node.remaining is not None:
                problems.extend(self._check_remaining(node, referenced))
        used = referenced | set(self._remaining)
        self.used = [name for name in self.names if name in used]
        return problems

    def _columns_text(self) -> str:
        shown = ", ".join(self.names[:_MAX_LISTED_COLUMNS])
        more = len(self.names) - _MAX_LISTED_COLUMNS
        return shown + (f", ... ({more} more)" if more > 0 else "") if self.names else "(none)"

    def _check_column(self, node: ColumnNode) -> list[str]:
        if node.name not in self.index:
            return [
                f"{node.where}: column {node.name!r} is not in the table; "
                f"columns: {self._columns_text()}"
            ]
        if node.convert is not None:
            type_ = self.schema.field(node.name).type
            if not _accepts(node.convert, type_):
                return [
                    f"{node.where}: 'as: {node.convert}' needs {_ACCEPTED[node.convert]}; "
                    f"column {node.name!r} is {type_}"
                ]
        return []

    def _check_remaining(self, node: ObjectNode, referenced: set[str]) -> list[str]:
        remaining = node.remaining
        assert remaining is not None
        problems = [
            f"{remaining.where}.except: column {name!r} is not in the table; "
            f"columns: {self._columns_text()}"
            for name in remaining.exclude
            if name not in self.index
        ]
        excluded = set(remaining.exclude)
        self._remaining = [
            name for name in self.names if name not in referenced and name not in excluded
        ]
        keys = {key for key, _ in node.fields}
        for name in self._remaining:
            if name in keys:
                problems.append(
                    f"{node.where}: key {name!r} is both a member of the object and a remaining "
                    "column; rename the member or add the column to 'except'"
                )
            if remaining.convert is not None:
                type_ = self.schema.field(name).type
                if not _accepts(remaining.convert, type_):
                    problems.append(
                        f"{remaining.where}: 'as: {remaining.convert}' needs "
                        f"{_ACCEPTED[remaining.convert]}; column {name!r} is {type_}"
                    )
        return problems

    # building

    def pieces(self, node: Node) -> list[_Piece]:
        if isinstance(node, ConstNode):
            return [_dumps(node.value)]
        if isinstance(node, ColumnNode):
            leaf = self._leaf(node.name, node.convert, node.where)
            if node.required:
                self.required.append((node.name, leaf))
            return [_filled(leaf)]
        if isinstance(node, ListNode):
            pieces: list[_Piece] = ["["]
            for position, item in enumerate(node.items):
                if position:
                    pieces.append(",")
                pieces.extend(self.pieces(item))
            pieces.append("]")
            return pieces
        return self._object(node)

    def _object(self, node: ObjectNode) -> list[_Piece]:
        # (key, pieces of the value, a nullable leaf when the member may be left out)
        members: list[tuple[str, list[_Piece], _Leaf | None]] = []
        for key, child in node.fields:
            if isinstance(child, ColumnNode) and child.omit_null:
                leaf = self._leaf(child.name, child.convert, child.where)
                members.append((key, [], leaf))
            else:
                members.append((key, self.pieces(child), None))
        if node.remaining is not None:
            remaining = node.remaining
            for name in self._remaining:
                leaf = self._leaf(name, remaining.convert, remaining.where)
                members.append(
                    (name, [], leaf) if remaining.omit_null else (name, [_filled(leaf)], None)
                )
        if all(optional is None for _, _, optional in members):
            # no member is ever left out: the object is plain text around its values
            flat: list[_Piece] = ["{"]
            for position, (key, value, _) in enumerate(members):
                flat.append(("," if position else "") + _dumps(key) + ":")
                flat.extend(value)
            flat.append("}")
            return flat
        parts: list[_Leaf] = []
        for key, value, optional in members:
            opener = _dumps(key) + ":"
            if optional is not None:
                parts.append(_member(opener, optional))
            else:
                parts.append(_text_of(_merge([opener, *value])))
        always_present = any(optional is None for _, _, optional in members)
        return ["{", _joined(parts, always_present=always_present), "}"]

    def _leaf(self, name: str, convert: str | None, where: str) -> _Leaf:
        position = self.index[name]
        type_ = self.schema.field(name).type
        return _conversion_leaf(position, type_, convert, where=where, name=name)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _merge(pieces: Sequence[_Piece]) -> list[_Piece]:
    """``pieces`` with adjacent constant texts merged (fewer, longer join arguments)."""
    merged: list[_Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + piece
        elif piece != "":
            merged.append(piece)
    return merged


def _evaluate(pieces: Sequence[_Piece], batch: pa.RecordBatch) -> pa.Array:
    if not pieces:  # pragma: no cover - a record always has at least one piece
        return pa.repeat(pa.scalar(""), batch.num_rows)
    if len(pieces) == 1:
        only = pieces[0]
        if isinstance(only, str):
            return pa.repeat(pa.scalar(only), batch.num_rows)
        return only(batch)
    texts = [piece for piece in pieces if isinstance(piece, str)]
    if len(texts) == len(pieces):
        return pa.repeat(pa.scalar("".join(texts)), batch.num_rows)
    arguments = [pa.scalar(piece) if isinstance(piece, str) else piece(batch) for piece in pieces]
    return pc.binary_join_element_wise(*arguments, "")


def _text_of(pieces: list[_Piece]) -> _Leaf:
    frozen = tuple(pieces)

    def text(batch: pa.RecordBatch) -> pa.Array:
        return _evaluate(frozen, batch)

    return text


def _filled(leaf: _Leaf) -> _Leaf:
    def filled(batch: pa.RecordBatch) -> pa.Array:
        text = leaf(batch)
        return pc.fill_null(text, "null") if text.null_count else text

    return filled


def _member(opener: str, leaf: _Leaf) -> _Leaf:
    """``"key":value``, null where the value is JSON null (the member is left out there)."""
    key = pa.scalar(opener)

    def member(batch: pa.RecordBatch) -> pa.Array:
        return pc.binary_join_element_wise(key, leaf(batch), "")

    return member


def _joined(parts: list[_Leaf], *, always_present: bool) -> _Leaf:
    """The members joined by commas, the null ones (left-out members) skipped."""

    def joined(batch: pa.RecordBatch) -> pa.Array:
        arrays = [part(batch) for part in parts]
        # a member that is never left out means no row loses every member: nothing to check
        if not always_present and all(array.null_count for array in arrays):
            # pyarrow drops the rows where every argument is null when skipping nulls
            # (pyarrow 26): make one argument an empty text there, so that no row is lost.
            empty = pc.is_null(arrays[0])
            for array in arrays[1:]:
                empty = pc.and_(empty, pc.is_null(array))
            if pc.any(empty).as_py():
                arrays[0] = pc.if_else(empty, "", arrays[0])
        if len(arrays) == 1:
            return arrays[0]
        return pc.binary_join_element_wise(*arrays, ",", null_handling="skip")

    return joined


# -- conversions --------------------------------------------------------------------------------


def _conversion_leaf(
    position: int, type_: pa.DataType, convert: str | None, *, where: str, name: str
) -> _Leaf:
    """The JSON text of column ``position``, converted, with nulls where the JSON is null."""
    if convert is None:
        return lambda batch: encode_values(batch.column(position))
    if convert == "string":
        if _writes_string(type_):
            return lambda batch: encode_values(batch.column(position))
        if _is_plain_json(type_):
            return lambda batch: _quote(encode_values(batch.column(position)))
        return lambda batch: encode_text(encode_values(batch.column(position)))
    convert_values = _CONVERTERS[convert]

    def converted(batch: pa.RecordBatch) -> pa.Array:
        column = batch.column(position)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        if pa.types.is_null(column.type):
            return pa.nulls(len(column), pa.string())
        try:
            values = convert_values(column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # Arrow's message quotes the value: raise outside, so that it is not chained
        else:
            return encode_values(values)
        raise TemplateValueError(
            f"{where}: column {name!r} has values that 'as: {convert}' cannot convert "
            "(the values are not shown)"
        )

    return converted


def _quote(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _finite(column: pa.Array) -> pa.Array:
    return pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))


def _to_integer(column: pa.Array) -> pa.Array:
    type_ = column.type
    if pa.types.is_integer(type_):
        return column
    if pa.types.is_boolean(type_):
        return pc.cast(column, pa.int8())
    if pa.types.is_floating(type_):
        column = _finite(column)
    return pc.cast(column, pa.int64())


def _to_number(column: pa.Array) -> pa.Array:
    type_ = column.type
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return column
    if pa.types.is_boolean(type_):
        return pc.cast(column, pa.int8())
    return pc.cast(column, pa.float64())


def _to_boolean(column: pa.Array) -> pa.Array:
    type_ = column.type
    if pa.types.is_boolean(type_):
        return column
    if pa.types.is_integer(type_):
        return pc.not_equal(column, 0)
    return pc.cast(column, pa.bool_())


_MS_PER_UNIT = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def _to_epoch_ms(column: pa.Array) -> pa.Array:
    type_ = column.type
    if pa.types.is_date32(type_):
        return pc.multiply(pc.cast(column.view(pa.int32()), pa.int64()), 86_400_000)
    if pa.types.is_date64(type_):
        return column.view(pa.int64())
    # a zoned timestamp stores UTC; a naive one is taken as UTC: both are counts since epoch
    ticks = pc.cast(column.view(pa.timestamp(type_.unit)), pa.int64())
    multiply, divide = _MS_PER_UNIT[type_.unit]
    if multiply != 1:
        return pc.multiply(ticks, multiply)
    if divide == 1:
        return ticks
    quotient = pc.divide(ticks, divide)  # truncates towards zero
    below = pc.less(ticks, pc.multiply(quotient, divide))  # negative with a remainder
    return pc.subtract(quotient, pc.cast(below, pa.int64()))


_CONVERTERS: dict[str, Callable[[pa.Array], pa.Array]] = {
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "epoch_ms": _to_epoch_ms,
}
