"""Request templates (floe_sink_dlt.saas.template): parsing, validation, and the compiled
encoding against a straightforward per-row reference implementation."""

from __future__ import annotations

import base64
import copy
import datetime
import decimal
import json
import math
from typing import Any

import attrs
import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from floe_sink.errors import SinkConfigurationError
from floe_sink_dlt.saas.template import RequestTemplate, TemplateValueError
from strategies import delivery_tables, request_templates

# -- a per-row reference implementation -------------------------------------------------------

_UTC = datetime.UTC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_FRACTION = {"s": lambda d: "", "ms": lambda d: f".{d.microsecond // 1000:03d}"}


@attrs.frozen
class FloatText:
    """Expected: a JSON string holding the text of this float (Arrow's shortest form)."""

    value: float


def _timestamp_text(value: datetime.datetime, type_: pa.TimestampType) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(_UTC)
    fraction = _FRACTION.get(type_.unit, lambda d: f".{d.microsecond:06d}")(value)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{fraction}"
    )
    return text + ("Z" if type_.tz is not None else "")


def _plain(value: Any, type_: pa.DataType) -> Any:
    """The JSON value the encoder writes for ``value`` (from ``to_pylist``)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if value is None:
        return None
    if pa.types.is_floating(type_):
        return value if math.isfinite(value) else None
    if pa.types.is_timestamp(type_):
        return _timestamp_text(value, type_)
    if pa.types.is_date(type_):
        return value.isoformat()
    if pa.types.is_decimal(type_):
        return format(value, "f")
    if pa.types.is_binary(type_):
        return base64.b64encode(value).decode()
    return value


def _converted(value: Any, type_: pa.DataType, convert: str | None) -> Any:
    plain = _plain(value, type_)
    if convert is None or plain is None:
        return plain
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if convert == "string":
        if isinstance(plain, str):
            return plain
        if isinstance(plain, bool):
            return "true" if plain else "false"
        if isinstance(plain, float):
            return FloatText(plain)
        return json.dumps(plain, separators=(",", ":"))
    if convert == "integer":
        return int(value)
    if convert == "number":
        if isinstance(value, decimal.Decimal):
            return FloatText(float(value))  # compared as a number below
        return int(value) if isinstance(value, bool) else value
    if convert == "boolean":
        return bool(value)
    assert convert == "epoch_ms"
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
        return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)
    return (value - datetime.date(1970, 1, 1)).days * 86_400_000


def _references(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(_references, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    if "column" in node:
        return {node["column"]}
    if "const" in node:
        return set()
    fields = node.get("object") or {} if ("object" in node or "remaining" in node) else node
    return set().union(*map(_references, fields.values())) if fields else set()


def _render(node: Any, row: dict[str, Any], types: dict[str, pa.DataType], rest: list[str]) -> Any:
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if isinstance(node, list):
        return [_render(item, row, types, rest) for item in node]
    if "column" in node:
        return _converted(row[node["column"]], types[node["column"]], node.get("as"))
    if "const" in node:
        return node["const"]
    explicit = "object" in node or "remaining" in node
    fields = (node.get("object") or {}) if explicit else node
    out: dict[str, Any] = {}
    for key, child in fields.items():
        value = _render(child, row, types, rest)
        if isinstance(child, dict) and child.get("on_null") == "omit" and value is None:
            continue
        out[key] = value
    remaining = node.get("remaining") if explicit else None
    if remaining is not None:
        options = remaining if isinstance(remaining, dict) else {}
        excluded = set(options.get("except", []))
        for name in rest:
            if name in excluded:
                continue
            value = _converted(row[name], types[name], options.get("as"))
            if value is None and options.get("on_null") == "omit":
                continue
            out[name] = value
    return out


def reference_body(spec: dict[str, Any], batch: pa.RecordBatch) -> Any:
    """The decoded body the template should produce, built row by row in Python."""
    types = {field.name: field.type for field in batch.schema}
    referenced = _references(spec["record"])
    rest = [name for name in batch.schema.names if name not in referenced]
    records = [_render(spec["record"], row, types, rest) for row in batch.to_pylist()]
    key = spec.get("records_key")
    if key is None:
        return records
    path = [key] if isinstance(key, str) else key
    document = copy.deepcopy(spec.get("envelope") or {})
    node = document
    for step in path[:-1]:
        node = node.setdefault(step, {})
    node[path[-1]] = records
    return document


def assert_same(got: Any, want: Any, where: str = "$") -> None:
    """Equal JSON, object key order included; FloatText compares the float's value."""
    if isinstance(want, FloatText):
        number = float(got) if isinstance(got, str) else got
        assert isinstance(number, int | float), where
        assert math.isclose(number, want.value, rel_tol=1e-15, abs_tol=0.0), (where, got, want)
        return
    if isinstance(want, dict):
        assert isinstance(got, dict), (where, got)
        assert list(got) == list(want), (where, list(got), list(want))
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
        return
    if isinstance(want, list):
        assert isinstance(got, list), (where, got)
        assert len(got) == len(want), (where, got, want)
        for index, (item, expected) in enumerate(zip(got, want, strict=True)):
            assert_same(item, expected, f"{where}[{index}]")
        return
    assert type(got) is type(want) or {type(got), type(want)} <= {int, float}, (where, got, want)
    assert got == want, (where, got, want)


# -- the property -----------------------------------------------------------------------------

KINDS = (
    "int64",
    "int32",
    "uint8",
    "float64",
    "string",
    "large_string",
    "bool",
    "timestamp_tz",
    "timestamp_paris",
    "timestamp_naive",
    "timestamp_s",
    "date",
    "decimal",
    "binary",
    "category",
    "list_int",
)


@st.composite
def tables_and_templates(draw: st.DrawFn) -> tuple[pa.Table, dict[str, Any]]:
    table = draw(delivery_tables(kinds=KINDS, max_rows=12, max_columns=5))
    return table, draw(request_templates(table.schema))


@given(tables_and_templates())
def test_compiled_templates_match_a_per_row_reference(
    case: tuple[pa.Table, dict[str, Any]],
) -> None:
    table, spec = case
    template = RequestTemplate.parse(spec)
    assume(not template.problems(table.schema))  # e.g. a member named like a remaining column
    compiled = template.compile(table.schema)
    batches = table.combine_chunks().to_batches() or [
        pa.RecordBatch.from_pylist([], schema=table.schema)
    ]
    for batch in batches:
        for part in (batch, batch.slice(1)):  # a zero-copy slice, as the chunker hands them
            body = compiled.encode(part)
            assert_same(json.loads(body), reference_body(spec, part))
            records = compiled.encode_records(part)
            assert len(records) == part.num_rows
            assert records.null_count == 0
            sizes = sum(len(text.as_py().encode()) for text in records)
            assert len(body) == compiled.envelope_bytes + sizes + max(part.num_rows - 1, 0)


# -- examples ---------------------------------------------------------------------------------

CUSTOMERS = pa.schema(
    [
        ("email", pa.string()),
        ("first_name", pa.string()),
        ("age", pa.int64()),
        ("vip", pa.bool_()),
        ("signed_up", pa.timestamp("us", tz="UTC")),
    ]
)


def customers(**overrides: list[Any]) -> pa.RecordBatch:
    columns: dict[str, list[Any]] = {
        "email": ["a@example.com", "b@example.com"],
        "first_name": ["Ann", None],
        "age": [41, None],
        "vip": [True, False],
        "signed_up": [datetime.datetime(2024, 5, 1, 12, tzinfo=_UTC), None],
    }
    columns.update(overrides)
    return pa.RecordBatch.from_pydict(columns, schema=CUSTOMERS)


HUBSPOT_LIKE = {
    "records_key": "inputs",
    "record": {
        "idProperty": "email",
        "id": {"column": "email", "as": "string", "required": True},
        "properties": {"remaining": {"as": "string", "on_null": "omit"}},
    },
}


def test_a_hubspot_shaped_template_encodes_nested_string_properties() -> None:
    compiled = RequestTemplate.parse(HUBSPOT_LIKE).compile(CUSTOMERS)
    assert json.loads(compiled.encode(customers())) == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "a@example.com",
                "properties": {
                    "first_name": "Ann",
                    "age": "41",
                    "vip": "true",
                    "signed_up": "2024-05-01T12:00:00.000000Z",
                },
            },
            {"idProperty": "email", "id": "b@example.com", "properties": {"vip": "false"}},
        ]
    }
    assert compiled.columns == tuple(CUSTOMERS.names)
    assert compiled.required_columns == ("email",)


def test_a_missing_column_names_the_field_and_the_table_columns() -> None:
    spec = {"records_key": "inputs", "record": {"properties": {"email": {"column": "emial"}}}}
    template = RequestTemplate.parse(spec)
    expected = (
        "config.template.record.properties.email: column 'emial' is not in the table; "
        "columns: email, first_name, age, vip, signed_up"
    )
    assert template.problems(CUSTOMERS) == [expected]
    with pytest.raises(SinkConfigurationError, match="column 'emial' is not in the table"):
        template.compile(CUSTOMERS)


def test_every_problem_is_reported_at_once() -> None:
    spec = {
        "record": {
            "a": {"column": "nope"},
            "b": {"column": "email", "as": "epoch_ms"},
            "c": {"object": {"age": 1}, "remaining": {"except": ["missing"]}},
        }
    }
    problems = RequestTemplate.parse(spec).problems(CUSTOMERS)
    assert problems == [
        "config.template.record.a: column 'nope' is not in the table; "
        "columns: email, first_name, age, vip, signed_up",
        "config.template.record.b: 'as: epoch_ms' needs timestamps or dates; "
        "column 'email' is string",
        "config.template.record.c.remaining.except: column 'missing' is not in the table; "
        "columns: email, first_name, age, vip, signed_up",
        "config.template.record.c: key 'age' is both a member of the object and a remaining "
        "column; rename the member or add the column to 'except'",
    ]


def test_a_long_column_list_is_cut_in_the_message() -> None:
    schema = pa.schema([(f"c{n}", pa.int64()) for n in range(40)])
    [problem] = RequestTemplate.parse({"record": {"x": {"column": "zz"}}}).problems(schema)
    assert problem.endswith("c29, ... (10 more)")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "config.template: must be a mapping"),
        ({}, "config.template: needs 'record'"),
        ({"record": {}, "extra": 1}, "config.template: unknown key(s) 'extra' in a template"),
        ({"record": {"a": {"column": ""}}}, "config.template.record.a.column: must be a column"),
        ({"record": {"a": {"column": "x", "as": "text"}}}, "config.template.record.a.as: must"),
        (
            {"record": {"a": {"column": "x", "on_null": "drop"}}},
            "config.template.record.a.on_null: must be one of null, omit",
        ),
        ({"record": {"column": "x", "on_null": "omit"}}, "config.template.record.on_null: 'omit'"),
        ({"record": [{"column": "x", "on_null": "omit"}]}, "config.template.record[0].on_null"),
        ({"record": {"a": {"column": "x", "requred": True}}}, "unknown key(s) 'requred'"),
        ({"record": {"a": {"column": "x", "required": "yes"}}}, "record.a.required: must be"),
        (
            {"record": {"a": {"column": "x", "required": True, "on_null": "omit"}}},
            "config.template.record.a: 'required: true' and 'on_null: omit' contradict",
        ),
        ({"record": {"a": {"const": 1, "x": 2}}}, "record.a: unknown key(s) 'x' in a constant"),
        ({"record": {"a": float("nan")}}, "config.template.record.a: nan has no JSON form"),
        ({"record": {"a": {"const": {"b": [1, float("inf")]}}}}, "record.a.const.b[1]: inf"),
        ({"record": {"a b": {"const": {1: 2}}}}, 'record["a b"].const: keys must be strings'),
        ({"record": {"a": {"remaining": "yes"}}}, "record.a.remaining: must be true or"),
        ({"record": {"a": {"remaining": {"except": "x"}}}}, "remaining.except: must be a list"),
        (
            {"record": {"a": {"remaining": True}, "b": {"remaining": True}}},
            "config.template.record.b.remaining: a template has at most one 'remaining' "
            "(the first is at config.template.record.a.remaining)",
        ),
        ({"record": {"a": {"object": [1]}}}, "config.template.record.a.object: must be a mapping"),
        ({"record": {}, "records_key": ""}, "config.template.records_key: must be a non-empty"),
        ({"record": {}, "records_key": ["a", 1]}, "config.template.records_key: must be"),
        ({"record": {}, "envelope": {"a": 1}}, "config.template.envelope: needs 'records_key'"),
        ({"record": {}, "envelope": [1], "records_key": "r"}, "envelope: must be a mapping"),
        (
            {"record": {}, "records_key": "r", "envelope": {"r": 1}},
            "config.template.envelope.r: is where records_key puts the records",
        ),
        (
            {"record": {}, "records_key": ["d", "r"], "envelope": {"d": 1}},
            "config.template.envelope.d: is a constant, so the records cannot be put inside it",
        ),
        ({"record": {"a": {1, 2}}}, "config.template.record.a: must be a constant"),
    ],
)
def test_malformed_templates_are_refused_naming_the_field(spec: Any, message: str) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        RequestTemplate.parse(spec)
    assert message in str(caught.value)


def test_the_error_path_starts_where_the_caller_says() -> None:
    with pytest.raises(SinkConfigurationError, match=r"^destinations\[0\]\.config\.template\."):
        RequestTemplate.parse(
            {"record": {"a": {"column": 3}}}, where="destinations[0].config.template"
        )


def test_the_envelope_and_a_nested_records_key() -> None:
    spec = {
        "records_key": ["data", "items"],
        "envelope": {"data": {"kind": "contact"}, "allOrNone": False},
        "record": {"email": {"column": "email"}},
    }
    compiled = RequestTemplate.parse(spec).compile(CUSTOMERS)
    body = compiled.encode(customers())
    assert body == (
        b'{"data":{"kind":"contact","items":[{"email":"a@example.com"},'
        b'{"email":"b@example.com"}]},"allOrNone":false}'
    )
    assert compiled.encode(customers().slice(0, 0)) == (
        b'{"data":{"kind":"contact","items":[]},"allOrNone":false}'
    )
    assert compiled.envelope_bytes == len(body) - len(
        b'{"email":"a@example.com"},{"email":"b@example.com"}'
    )


def test_a_record_can_be_a_bare_value_or_a_list() -> None:
    ids = RequestTemplate.parse({"records_key": "external_ids", "record": {"column": "email"}})
    assert ids.compile(CUSTOMERS).encode(customers()) == (
        b'{"external_ids":["a@example.com","b@example.com"]}'
    )
    pair = RequestTemplate.parse({"record": [{"column": "age"}, "x", {"const": {"k": [1]}}]})
    assert json.loads(pair.compile(CUSTOMERS).encode(customers())) == [
        [41, "x", {"k": [1]}],
        [None, "x", {"k": [1]}],
    ]
    constant = RequestTemplate.parse({"record": {"a": 1}}).compile(CUSTOMERS)
    assert constant.encode(customers()) == b'[{"a":1},{"a":1}]'


def test_keys_named_like_directives_use_the_object_form() -> None:
    spec = {"record": {"object": {"column": {"column": "email"}, "const": {"const": 2}}}}
    compiled = RequestTemplate.parse(spec).compile(CUSTOMERS)
    assert json.loads(compiled.encode(customers().slice(0, 1))) == [
        {"column": "a@example.com", "const": 2}
    ]


def test_rows_whose_members_are_all_left_out_are_kept_as_empty_objects() -> None:
    # pyarrow drops such rows in a null-skipping join unless the compiler guards against it
    spec = {"record": {"p": {"remaining": {"on_null": "omit", "except": ["email", "vip"]}}}}
    compiled = RequestTemplate.parse(spec).compile(CUSTOMERS)
    batch = customers(first_name=[None, None], age=[None, 3], signed_up=[None, None])
    assert json.loads(compiled.encode(batch)) == [{"p": {}}, {"p": {"age": 3}}]
    only = RequestTemplate.parse({"record": {"a": {"column": "age", "on_null": "omit"}}})
    assert json.loads(only.compile(CUSTOMERS).encode(batch)) == [{}, {"a": 3}]


def test_omitted_members_keep_the_commas_right() -> None:
    spec = {
        "record": {
            "a": {"column": "first_name", "on_null": "omit"},
            "b": 1,
            "c": {"column": "age", "on_null": "omit"},
        }
    }
    compiled = RequestTemplate.parse(spec).compile(CUSTOMERS)
    assert compiled.encode(customers()) == b'[{"a":"Ann","b":1,"c":41},{"b":1}]'


def test_required_nulls_are_found_before_sending() -> None:
    compiled = RequestTemplate.parse(
        {"record": {"id": {"column": "age", "required": True}, "n": {"column": "first_name"}}}
    ).compile(CUSTOMERS)
    mask = compiled.required_nulls(customers())
    assert mask is not None
    assert mask.to_pylist() == [False, True]
    assert RequestTemplate.parse(HUBSPOT_LIKE).compile(CUSTOMERS).required_nulls(
        customers()
    ).to_pylist() == [False, False]
    plain = RequestTemplate.parse({"record": {"n": {"column": "age"}}}).compile(CUSTOMERS)
    assert plain.required_nulls(customers()) is None


def test_nan_is_a_json_null_for_omission_and_required() -> None:
    schema = pa.schema([("x", pa.float64())])
    batch = pa.RecordBatch.from_pydict({"x": [1.5, float("nan"), None]}, schema=schema)
    omit = RequestTemplate.parse({"record": {"x": {"column": "x", "on_null": "omit"}}})
    assert omit.compile(schema).encode(batch) == b'[{"x":1.5},{},{}]'
    required = RequestTemplate.parse({"record": {"x": {"column": "x", "required": True}}})
    assert required.compile(schema).required_nulls(batch).to_pylist() == [False, True, True]


STRINGS = pa.schema([("s", pa.string())])


@pytest.mark.parametrize(
    ("convert", "values", "expected"),
    [
        ("integer", ["12", "-3", None], [12, -3, None]),
        ("number", ["1.5", "2", None], [1.5, 2.0, None]),
        ("boolean", ["true", "false", "1"], [True, False, True]),
        ("string", ['a"b', "\n", None], ['a"b', "\n", None]),
    ],
)
def test_strings_convert_to_numbers_and_booleans(
    convert: str, values: list[Any], expected: list[Any]
) -> None:
    compiled = RequestTemplate.parse({"record": {"v": {"column": "s", "as": convert}}})
    batch = pa.RecordBatch.from_pydict({"s": values}, schema=STRINGS)
    assert [row["v"] for row in json.loads(compiled.compile(STRINGS).encode(batch))] == expected


def test_more_conversions() -> None:
    schema = pa.schema(
        [
            ("f", pa.float64()),
            ("d", pa.decimal128(10, 0)),
            ("b", pa.bool_()),
            ("c", pa.dictionary(pa.int32(), pa.string())),
            ("day", pa.date32()),
            ("ns", pa.timestamp("ns")),
            ("n", pa.null()),
        ]
    )
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([2.0, float("inf")]),
            pa.array([decimal.Decimal(7), None], pa.decimal128(10, 0)),
            pa.array([True, None]),
            pa.array(["4", None]).dictionary_encode(),
            pa.array([datetime.date(1969, 12, 31), None]),
            pa.array([-1, 1_500_000], pa.timestamp("ns")),
            pa.nulls(2),
        ],
        schema=schema,
    )
    spec = {
        "record": {
            "f": {"column": "f", "as": "integer"},
            "d": {"column": "d", "as": "integer"},
            "b": {"column": "b", "as": "number"},
            "c": {"column": "c", "as": "integer"},
            "cs": {"column": "c", "as": "string"},
            "day": {"column": "day", "as": "epoch_ms"},
            "ns": {"column": "ns", "as": "epoch_ms"},
            "n": {"column": "n", "as": "boolean"},
            "ns_text": {"column": "n", "as": "string"},
        }
    }
    compiled = RequestTemplate.parse(spec).compile(schema)
    assert json.loads(compiled.encode(batch)) == [
        {
            "f": 2,
            "d": 7,
            "b": 1,
            "c": 4,
            "cs": "4",
            "day": -86_400_000,
            "ns": -1,
            "n": None,
            "ns_text": None,
        },
        {
            "f": None,
            "d": None,
            "b": None,
            "c": None,
            "cs": None,
            "day": None,
            "ns": 1,
            "n": None,
            "ns_text": None,
        },
    ]


@pytest.mark.parametrize(
    ("type_", "value", "convert"),
    [
        (pa.string(), "secret-row-value", "integer"),
        (pa.string(), "secret-row-value", "number"),
        (pa.string(), "secret-row-value", "boolean"),
        (pa.float64(), 1.25, "integer"),
        (pa.decimal128(6, 2), decimal.Decimal("1.25"), "integer"),
    ],
)
def test_a_failed_conversion_names_the_field_not_the_values(
    type_: pa.DataType, value: Any, convert: str
) -> None:
    schema = pa.schema([("v", type_)])
    compiled = RequestTemplate.parse({"record": {"x": {"column": "v", "as": convert}}})
    batch = pa.RecordBatch.from_pydict({"v": [value]}, schema=schema)
    with pytest.raises(TemplateValueError) as caught:
        compiled.compile(schema).encode(batch)
    error = caught.value
    assert str(error).startswith(
        f"config.template.record.x: column 'v' has values that 'as: {convert}' cannot convert"
    )
    assert str(value) not in str(error)
    assert error.__context__ is None
    assert error.__cause__ is None
    assert not error.retryable


def test_a_batch_of_another_schema_is_refused() -> None:
    compiled = RequestTemplate.parse(HUBSPOT_LIKE).compile(CUSTOMERS)
    with pytest.raises(ValueError, match="schema is not the one the template was compiled for"):
        compiled.encode_records(pa.record_batch({"email": ["x"]}))


def test_duplicated_column_names_are_a_problem() -> None:
    schema = pa.schema([("a", pa.int64()), ("a", pa.string())])
    assert RequestTemplate.parse({"record": {"remaining": True}}).problems(schema) == [
        "the table has duplicated column names ('a')"
    ]


def test_compiling_needs_no_data_and_keeps_no_state() -> None:
    template = RequestTemplate.parse(HUBSPOT_LIKE)
    first, second = template.compile(CUSTOMERS), template.compile(CUSTOMERS)
    assert first.encode(customers()) == second.encode(customers())
    assert "pieces" not in repr(first)
