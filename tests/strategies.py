"""Hypothesis strategies shared by the test suite.

Each feature keeps its strategies in its own headed section below.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import string
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from floe_sink.config import (
    CatalogConfig,
    CatalogType,
    DestinationConfig,
    FloeSpec,
    ManifestScope,
    PlatformManifest,
    WriteDisposition,
)

# =============================================================================================
# Configuration: floe.yaml destinations and manifest.yaml governance (floe_sink.config)
# =============================================================================================

_NAME_CHARS = string.ascii_letters + string.digits + "-_"
_DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
_IDENT = st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z")

destination_names = st.text(_NAME_CHARS, min_size=1, max_size=100)
"""Valid destination names: 1-100 letters, digits, '-' and '_'."""

secret_refs = st.lists(_DNS_LABEL, min_size=1, max_size=3).map(".".join)
"""Valid Kubernetes Secret names (lowercase RFC 1123 subdomains)."""

source_tables = st.lists(_IDENT, min_size=2, max_size=3).map(".".join)
"""Valid Iceberg identifiers ``namespace.table``."""

sink_types = st.sampled_from(["rest_api", "sql_database", "hubspot", "salesforce-v2"])

column_names = st.sampled_from(["id", "email", "name", "amount", "status", "created_at"])

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(string.ascii_letters + " /:.", max_size=20),
)
# Keys that are obviously not credentials (the loader refuses credential-looking ones).
_config_keys = st.sampled_from(["url", "table", "method", "records_key", "region", "schema"])
sink_settings = st.dictionaries(
    _config_keys,
    st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5),
    max_size=4,
)
"""Sink-specific ``config`` mappings with no credential-looking keys."""

retry_settings = st.fixed_dictionaries(
    {},
    optional={
        "max_attempts": st.integers(1, 10),
        "initial_wait": st.floats(0, 5),
        "max_wait": st.floats(0, 60),
        "multiplier": st.floats(0.1, 4),
        "jitter": st.floats(0, 2),
        "timeout": st.floats(0.1, 60),
    },
)


@st.composite
def destination_configs(draw: st.DrawFn, name: str | None = None) -> DestinationConfig:
    """Valid destinations, with every optional field sometimes set."""
    columns = draw(st.none() | st.lists(column_names, min_size=1, max_size=6, unique=True))
    available = columns or ["id", "email", "name", "amount", "status", "created_at"]
    mapping = draw(
        st.none()
        | st.lists(st.sampled_from(available), min_size=1, unique=True).map(
            lambda cols: {col: f"dst_{col}" for col in cols}
        )
    )
    key_pool = sorted(mapping) if mapping is not None else available
    disposition = draw(st.sampled_from(list(WriteDisposition)))
    primary_key = draw(
        st.lists(
            st.sampled_from(key_pool),
            min_size=1 if disposition is WriteDisposition.MERGE else 0,
            max_size=2,
            unique=True,
        )
    )
    return DestinationConfig(
        name=name if name is not None else draw(destination_names),
        sink_type=draw(sink_types),
        connection_secret_ref=draw(secret_refs),
        source_table=draw(st.none() | source_tables),
        config=draw(sink_settings),
        field_mapping=mapping,
        batch_size=draw(st.none() | st.integers(1, 100_000)),
        write_disposition=disposition,
        primary_key=primary_key,
        enabled=draw(st.booleans()),
        description=draw(st.none() | st.text(max_size=30)),
        row_filter=draw(st.none() | st.sampled_from(["status == 'active'", "amount > 10"])),
        columns=columns,
        retry=draw(st.none() | retry_settings),
    )


@st.composite
def floe_specs(draw: st.DrawFn) -> FloeSpec:
    """Valid floe.yaml specs (unique destination names)."""
    names = draw(st.lists(destination_names, max_size=4, unique=True))
    return FloeSpec(destinations=[draw(destination_configs(name=name)) for name in names])


catalog_configs = st.builds(
    CatalogConfig,
    name=st.text(string.ascii_letters, min_size=1, max_size=10),
    type=st.just(CatalogType.REST),
    uri=st.just("https://polaris.example.com/api/catalog"),
    warehouse=st.none() | st.just("analytics"),
    credential_secret_ref=st.none() | secret_refs,
    properties=st.dictionaries(
        st.sampled_from(["s3.endpoint", "py-io-impl", "s3.path-style-access", "scope"]),
        st.one_of(st.text(string.ascii_letters, max_size=10), st.booleans(), st.integers()),
        max_size=3,
    ),
) | st.builds(CatalogConfig, type=st.just(CatalogType.SQL), uri=st.none() | st.just("sqlite:///x"))
"""Valid catalog sections."""


@st.composite
def platform_manifests(draw: st.DrawFn) -> PlatformManifest:
    """Valid manifests: approved_sinks only with scope enterprise."""
    scope = draw(st.sampled_from(list(ManifestScope)))
    approved = (
        draw(st.none() | st.lists(sink_types, unique=True))
        if scope is ManifestScope.ENTERPRISE
        else None
    )
    return PlatformManifest(
        scope=scope, approved_sinks=approved, catalog=draw(st.none() | catalog_configs)
    )


yaml_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.sampled_from(["destinations", "name", "sink_type", "merge", "rest_api", "gold.t"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "destinations",
                    "name",
                    "sink_type",
                    "connection_secret_ref",
                    "batch_size",
                    "write_disposition",
                    "primary_key",
                    "field_mapping",
                    "config",
                    "retry",
                    "columns",
                    "password",
                    "scope",
                    "approved_sinks",
                    "catalog",
                    "type",
                    "uri",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)
"""Arbitrary YAML-able data, biased towards floe.yaml's and manifest.yaml's own keys."""

yaml_junk = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from(list(":-[]{}&*!|>'\"%@`#,?\n\t ")),
    max_size=200,
)
"""Arbitrary text, heavy on YAML's syntax characters."""

# =============================================================================================
# Arrow tables: the data sinks deliver (floe_sink_dlt; rest_api JSON encoding and delivery)
# =============================================================================================

_UTC = datetime.UTC
_MIN = datetime.datetime(1900, 1, 1)
_MAX = datetime.datetime(2200, 1, 1)


def _nullable(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values)


def _timestamps(tz: str | None) -> st.SearchStrategy[Any]:
    naive = st.datetimes(min_value=_MIN, max_value=_MAX)
    if tz is None:
        return naive
    return naive.map(lambda value: value.replace(tzinfo=_UTC))


# kind -> (arrow type, value strategy); values are what pa.array() accepts for that type
ARROW_COLUMN_KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "int32": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "uint8": (pa.uint8(), st.integers(0, 255)),
    "float64": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "float32": (pa.float32(), st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "string": (pa.string(), st.text(max_size=20)),
    "large_string": (pa.large_string(), st.text(max_size=10)),
    "bool": (pa.bool_(), st.booleans()),
    "timestamp_tz": (pa.timestamp("us", tz="UTC"), _timestamps("UTC")),
    "timestamp_paris": (
        pa.timestamp("ms", tz="Europe/Paris"),
        _timestamps("UTC").map(lambda v: v.replace(microsecond=v.microsecond // 1000 * 1000)),
    ),
    "timestamp_naive": (pa.timestamp("us"), _timestamps(None)),
    "timestamp_s": (pa.timestamp("s"), _timestamps(None).map(lambda v: v.replace(microsecond=0))),
    "date": (pa.date32(), st.dates(min_value=datetime.date(1, 1, 1))),
    "decimal": (
        pa.decimal128(18, 4),
        st.decimals(
            min_value=decimal.Decimal("-99999999999999.9999"),
            max_value=decimal.Decimal("99999999999999.9999"),
            places=4,
            allow_nan=False,
            allow_infinity=False,
        ),
    ),
    "binary": (pa.binary(), st.binary(max_size=12)),
    "category": (pa.dictionary(pa.int32(), pa.string()), st.sampled_from(["a", "b", 'c"\\'])),
    "list_int": (pa.list_(pa.int64()), st.lists(st.integers(-100, 100), max_size=3)),
}


def arrow_column_names() -> st.SearchStrategy[str]:
    """Column names, including quotes, backslashes, unicode and control characters."""
    return st.text(min_size=1, max_size=8)


@st.composite
def delivery_tables(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    *,
    kinds: tuple[str, ...] | None = None,
    max_rows: int = 30,
    max_columns: int = 5,
) -> pa.Table:
    """A table of up to ``max_columns`` columns of the ``kinds`` above, with nulls."""
    chosen = kinds or tuple(ARROW_COLUMN_KINDS)
    names = draw(st.lists(arrow_column_names(), min_size=1, max_size=max_columns, unique=True))
    rows = draw(st.integers(0, max_rows))
    columns = []
    fields = []
    for name in names:
        type_, values = ARROW_COLUMN_KINDS[draw(st.sampled_from(chosen))]
        data = draw(st.lists(_nullable(values), min_size=rows, max_size=rows))
        if pa.types.is_dictionary(type_):
            array = pa.array(data, pa.string()).dictionary_encode()
        else:
            array = pa.array(data, type_)
        columns.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# =============================================================================================
# Arrow: tables, and the same table cut into record batches in arbitrary ways.
# Self-contained: imports and helpers of this section stay in this section.
# =============================================================================================


#: Column types the Arrow strategies draw from: every family a Gold table typically holds.
ARROW_TYPES: tuple[pa.DataType, ...] = (
    pa.int64(),
    pa.int32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.binary(),
    pa.timestamp("us", tz="UTC"),
    pa.date32(),
    pa.decimal128(12, 2),
    pa.list_(pa.int64()),
)

_COLUMN_NAMES = st.text(
    alphabet=st.characters(categories=("Ll", "Lu", "Nd"), include_characters="_"),
    min_size=1,
    max_size=12,
)


def arrow_values(type_: pa.DataType) -> st.SearchStrategy[object]:
    """Python values (``None`` included) that Arrow stores in a column of ``type_``."""
    import datetime
    import decimal

    if pa.types.is_boolean(type_):
        base: st.SearchStrategy[object] = st.booleans()
    elif pa.types.is_integer(type_):
        info = type_.bit_width - 1
        base = st.integers(min_value=-(2**info), max_value=2**info - 1)
    elif pa.types.is_floating(type_):
        base = st.floats(allow_nan=False, width=64)
    elif pa.types.is_string(type_) or pa.types.is_large_string(type_):
        base = st.text(max_size=20)
    elif pa.types.is_binary(type_):
        base = st.binary(max_size=20)
    elif pa.types.is_timestamp(type_):
        base = st.datetimes(
            min_value=datetime.datetime(1970, 1, 1),
            max_value=datetime.datetime(2200, 1, 1),
            timezones=st.just(datetime.UTC),
        )
    elif pa.types.is_date(type_):
        base = st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2200, 1, 1))
    elif pa.types.is_decimal(type_):
        base = st.decimals(
            min_value=decimal.Decimal("-1e9"),
            max_value=decimal.Decimal("1e9"),
            places=2,
            allow_nan=False,
            allow_infinity=False,
        )
    elif pa.types.is_list(type_):
        base = st.lists(st.none() | arrow_values(type_.value_type), max_size=4)
    else:  # pragma: no cover - extend ARROW_TYPES and this together
        raise NotImplementedError(str(type_))
    return st.none() | base


@st.composite
def arrow_schemas(draw: st.DrawFn, *, max_columns: int = 4) -> pa.Schema:
    """Schemas of 1..``max_columns`` uniquely named columns of :data:`ARROW_TYPES`."""
    names = draw(st.lists(_COLUMN_NAMES, min_size=1, max_size=max_columns, unique=True))
    types = [draw(st.sampled_from(ARROW_TYPES)) for _ in names]
    return pa.schema([pa.field(name, type_) for name, type_ in zip(names, types, strict=True)])


@st.composite
def arrow_tables(
    draw: st.DrawFn,
    *,
    schema: pa.Schema | None = None,
    min_rows: int = 0,
    max_rows: int = 60,
) -> pa.Table:
    """Tables of ``min_rows``..``max_rows`` rows (nulls included) of a drawn schema."""
    schema = schema if schema is not None else draw(arrow_schemas())
    rows = draw(st.integers(min_value=min_rows, max_value=max_rows))
    columns = [
        pa.array(draw(st.lists(arrow_values(f.type), min_size=rows, max_size=rows)), f.type)
        for f in schema
    ]
    table = pa.Table.from_arrays(columns, schema=schema)
    if draw(st.booleans()) and any(pa.types.is_string(f.type) for f in schema):
        # Some string columns dictionary-encoded, as Parquet readers often return them.
        table = _dictionary_encode_strings(table)
    return table


def _dictionary_encode_strings(table: pa.Table) -> pa.Table:
    columns = [
        column.dictionary_encode() if pa.types.is_string(column.type) else column
        for column in table.columns
    ]
    return pa.Table.from_arrays(columns, names=table.column_names)


@st.composite
def cut_points(draw: st.DrawFn, num_rows: int) -> list[int]:
    """Sorted row positions strictly inside ``0..num_rows`` where to cut a table."""
    if num_rows < 2:
        return []
    points = draw(st.lists(st.integers(min_value=1, max_value=num_rows - 1), max_size=8))
    return sorted(set(points))


def cut(table: pa.Table, points: list[int], *, empty_batches: bool = False) -> list[pa.RecordBatch]:
    """``table`` as record batches cut at ``points`` (zero-copy slices of its batches).

    Args:
        table: The table to cut.
        points: Row positions (from :func:`cut_points`).
        empty_batches: Put a zero-row batch between the pieces too (streams do that).
    """
    combined = table.combine_chunks()
    bounds = [0, *points, table.num_rows]
    batches: list[pa.RecordBatch] = []
    for start, end in itertools.pairwise(bounds):
        piece = combined.slice(start, end - start).to_batches()
        batch = piece[0] if piece else pa.RecordBatch.from_pylist([], schema=table.schema)
        batches.append(batch)
        if empty_batches:
            batches.append(batch.slice(0, 0))
    return batches


@st.composite
def rechunked_tables(draw: st.DrawFn, **table_kwargs: int) -> tuple[pa.Table, list[pa.RecordBatch]]:
    """A table and the same rows cut into record batches at drawn positions."""
    table = draw(arrow_tables(**table_kwargs))
    points = draw(cut_points(table.num_rows))
    return table, cut(table, points, empty_batches=draw(st.booleans()))


# =============================================================================================
# Primary keys: key columns with NULLs and repeats, cut into batches (floe_sink.keys)
# =============================================================================================

import math
from typing import NamedTuple

#: Key column kinds -> (the column's Arrow type, a small domain of values, so keys repeat).
#: ``category`` columns are dictionary-encoded batch by batch, each with its own dictionary.
KEY_KINDS: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "int64": (pa.int64(), st.integers(-2, 2) | st.sampled_from([-(2**63), 2**63 - 1])),
    "int32": (pa.int32(), st.integers(0, 3)),
    "string": (pa.string(), st.sampled_from(["", "a", "b", "é", "a\x00b", "x" * 60])),
    "large_string": (pa.large_string(), st.text(alphabet="ab", max_size=2)),
    "binary": (pa.binary(), st.sampled_from([b"", b"\x00", b"\xff\xfe"])),
    "bool": (pa.bool_(), st.booleans()),
    "date": (pa.date32(), st.dates(datetime.date(2024, 1, 1), datetime.date(2024, 1, 3))),
    "timestamp": (
        pa.timestamp("us", tz="UTC"),
        st.sampled_from(
            [datetime.datetime(year, 1, 1, tzinfo=datetime.UTC) for year in (1970, 2024)]
        ),
    ),
    "decimal": (
        pa.decimal128(10, 2),
        st.sampled_from(["0.00", "1.50", "-2.25"]).map(decimal.Decimal),
    ),
    "float64": (pa.float64(), st.sampled_from([0.0, -0.0, 1.5, math.nan, math.inf])),
    "category": (pa.dictionary(pa.int32(), pa.string()), st.sampled_from(["red", "green", "é"])),
}

PAYLOAD_PREFIX = "PAYLOAD-"
"""Every value of a key stream's non-key column starts with this (it must never be shown)."""


class KeyStream(NamedTuple):
    """A stream to check: the rows as one plain table, the key, and the same rows as batches."""

    table: pa.Table
    """Key columns (dictionaries decoded) and a non-key ``payload`` column, all rows."""
    key_columns: list[str]
    batches: list[pa.RecordBatch]
    """The same rows cut into batches; ``category`` columns dictionary-encoded per batch."""


@st.composite
def key_streams(draw: st.DrawFn, *, max_rows: int = 40, max_key_columns: int = 3) -> KeyStream:
    """Streams whose key has, by turns, NULLs, duplicates, both or neither.

    Half the streams lead with a row-number key column and draw no NULLs: they are valid. The
    rest draw from :data:`KEY_KINDS`' small domains, so NULLs and repeats are frequent.
    """
    rows = draw(st.integers(0, max_rows))
    kinds = draw(st.lists(st.sampled_from(sorted(KEY_KINDS)), min_size=1, max_size=max_key_columns))
    valid = draw(st.booleans())
    columns: dict[str, pa.Array] = {}
    if valid:
        columns["row"] = pa.array(range(rows), pa.int64())
    for index, kind in enumerate(kinds):
        type_, values = KEY_KINDS[kind]
        drawn = values if valid else st.none() | values
        data = draw(st.lists(drawn, min_size=rows, max_size=rows))
        value_type = type_.value_type if pa.types.is_dictionary(type_) else type_
        columns[f"{kind}_{index}"] = pa.array(data, value_type)
    key_columns = list(columns)
    columns["payload"] = pa.array([f"{PAYLOAD_PREFIX}{row}" for row in range(rows)], pa.string())
    table = pa.table(columns)
    batches = [
        _encode_categories(batch)
        for batch in cut(table, draw(cut_points(rows)), empty_batches=draw(st.booleans()))
    ]
    return KeyStream(table, draw(st.permutations(key_columns)), batches)


def _encode_categories(batch: pa.RecordBatch) -> pa.RecordBatch:
    arrays = [
        column.dictionary_encode() if name.startswith("category_") else column
        for name, column in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


# =============================================================================================
# Request templates (floe_sink_dlt.saas.template): template specs drawn for a table's schema.
# Self-contained: imports and helpers of this section stay in this section.
# =============================================================================================

_TEMPLATE_DIRECTIVES = frozenset({"column", "const", "object", "remaining"})

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)


def template_conversions(type_: pa.DataType) -> list[str | None]:
    """The ``as`` conversions that cannot fail for any value of ``type_`` (None: none)."""
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    safe: list[str | None] = [None, "string"]
    if pa.types.is_integer(type_) or pa.types.is_boolean(type_):
        safe += ["integer", "number", "boolean"]
    elif pa.types.is_floating(type_) or pa.types.is_decimal(type_):
        safe += ["number"]
    elif pa.types.is_timestamp(type_) or pa.types.is_date(type_):
        safe += ["epoch_ms"]
    return safe


@st.composite
def request_templates(draw: st.DrawFn, schema: pa.Schema, *, max_depth: int = 2) -> dict[str, Any]:
    """A template spec (as YAML would give it) for tables of ``schema``.

    Nested objects (plain and ``{object: ...}`` forms), lists, constants, column references
    with conversions that cannot fail for the column's type, ``on_null: omit``, ``required``,
    at most one ``remaining`` (with ``as``, ``on_null``, ``except``), and an envelope.
    """
    names = list(schema.names)
    types = {field.name: field.type for field in schema}
    placed_remaining = False

    def column_node(in_object: bool) -> dict[str, Any]:
        name = draw(st.sampled_from(names))
        node: dict[str, Any] = {"column": name}
        convert = draw(st.sampled_from(template_conversions(types[name])))
        if convert is not None:
            node["as"] = convert
        if in_object and draw(st.booleans()):
            node["on_null"] = draw(st.sampled_from(["omit", "null"]))
        elif draw(st.integers(0, 4)) == 0:
            node["required"] = True
        return node

    def object_node(depth: int) -> dict[str, Any]:
        nonlocal placed_remaining
        keys = draw(st.lists(st.text(max_size=6), max_size=4, unique=True))
        fields = {key: any_node(depth + 1, in_object=True) for key in keys}
        remaining: Any = None
        if not placed_remaining and draw(st.booleans()):
            placed_remaining = True
            remaining = True
            if draw(st.booleans()):
                remaining = {}
                if draw(st.booleans()):
                    remaining["as"] = "string"
                if draw(st.booleans()):
                    remaining["on_null"] = "omit"
                if draw(st.booleans()):
                    remaining["except"] = draw(st.lists(st.sampled_from(names), unique=True))
        if remaining is not None or _TEMPLATE_DIRECTIVES & set(keys) or draw(st.booleans()):
            explicit: dict[str, Any] = {"object": fields}
            if remaining is not None:
                explicit["remaining"] = remaining
            return explicit
        return fields

    def any_node(depth: int, *, in_object: bool) -> Any:
        kinds = ["const", "column", "column", "column"]
        if depth < max_depth:
            kinds += ["object", "object", "list"]
        kind = draw(st.sampled_from(kinds))
        if kind == "const":
            if draw(st.booleans()):
                return draw(_json_scalars)
            return {"const": draw(_json_values)}
        if kind == "column":
            return column_node(in_object)
        if kind == "list":
            return [any_node(depth + 1, in_object=False) for _ in range(draw(st.integers(0, 3)))]
        return object_node(depth)

    record = object_node(0) if draw(st.integers(0, 5)) else any_node(0, in_object=False)
    spec: dict[str, Any] = {"record": record}
    shape = draw(st.sampled_from(["bare", "key", "path"]))
    if shape != "bare":
        path = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=2))
        if shape == "key":
            path = path[:1]
        spec["records_key"] = path[0] if len(path) == 1 else path
        envelope = draw(st.dictionaries(st.text(max_size=5), _json_values, max_size=3))
        spec["envelope"] = {key: value for key, value in envelope.items() if key != path[0]}
    return spec


# =============================================================================================
# Change-aware syncs: the source rows, faults and destinations of the sync state machine
# (tests/e2e/test_sync_machine.py)
# =============================================================================================

# =============================================================================================

sync_labels = st.text(alphabet="abz é'", max_size=4)
"""The ``label`` of a source row (sent as ``name``): a small alphabet, so that an update to the
same content (which is no change) happens often."""

sync_scores = st.none() | st.integers(-2, 2)
"""The ``score`` of a source row (nullable: a change from or to NULL is a change)."""

sync_contents = st.tuples(sync_labels, sync_scores)
"""What a source row delivers besides its key: ``(label, score)``."""

sync_destinations = st.sampled_from(
    [("sqlite", "mirror"), ("sqlite", "changes"), ("duckdb", "mirror"), ("rest", "changes")]
)
"""``(destination kind, sync mode)`` of one machine run (``rest_api`` cannot delete)."""

sync_batch_sizes = st.integers(1, 3)
"""Rows per batch: small, so a handful of rows makes several batches to fail or crash in."""

sync_faults = st.sampled_from(
    ["kill-before", "kill-after", "sigterm", "refuse", "transient", "kill-at-fold", "kill-at-close"]
)
"""What happens to the next run at a chosen send: killed before the batch is sent, killed after
the destination has it but before the journal does, SIGTERM, the destination refusing the batch
(4xx / constraint), failing it transiently after every retry, or a kill once every batch was
sent: before the sync state is saved (``fold``) or before the journal closes the delivery
(``close``)."""


# =============================================================================================
# Row filters: pyiceberg expression text (floe_sink.row_filter)
# =============================================================================================

_filter_names = st.one_of(
    st.sampled_from(["id", "status", "amount", "is_active", "Country", "größe", "a_b$c"]),
    st.sampled_from(['"quoted name"', '"x"']),
)
_filter_columns = st.lists(_filter_names, min_size=1, max_size=3).map(".".join)
_filter_strings = st.text(st.sampled_from("ab %'_"), max_size=5).map(
    lambda text: "'" + text.replace("'", "''") + "'"
)
_filter_integers = st.integers(-1000, 1000).map(str)
_filter_decimals = st.sampled_from(["1.5", "-0.25", ".5", "3.", "+2.0"])
_filter_booleans = st.sampled_from(["true", "FALSE", "True"])
_filter_literals = st.one_of(_filter_strings, _filter_integers, _filter_decimals, _filter_booleans)
_filter_ops = st.sampled_from(["<", "<=", ">", ">=", "=", "==", "!=", "<>"])


def _keyword(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word, word.upper(), word.capitalize()])


@st.composite
def _filter_predicates(draw: st.DrawFn) -> str:
    column = draw(_filter_columns)
    kind = draw(st.sampled_from(["cmp", "rcmp", "between", "in", "null", "nan", "like"]))
    if kind == "cmp":
        return f"{column} {draw(_filter_ops)} {draw(_filter_literals)}"
    if kind == "rcmp":
        literal = draw(st.one_of(_filter_strings, _filter_integers, _filter_decimals))
        return f"{literal} {draw(_filter_ops)} {column}"
    if kind == "between":
        low, high = draw(_filter_integers), draw(_filter_integers)
        return f"{column} {draw(_keyword('between'))} {low} {draw(_keyword('and'))} {high}"
    if kind == "in":
        items = draw(
            st.sampled_from([_filter_strings, _filter_integers, _filter_decimals, _filter_booleans])
        )
        values = ", ".join(draw(st.lists(items, min_size=1, max_size=3)))
        negated = draw(st.sampled_from(["", "not "]))
        return f"{column} {negated}{draw(_keyword('in'))} ({values})"
    if kind in ("null", "nan"):
        negated = draw(st.sampled_from(["", "not "]))
        return f"{column} {draw(_keyword('is'))} {negated}{draw(_keyword(kind))}"
    pattern = draw(st.text(st.sampled_from("ab _'"), max_size=4)) + draw(st.sampled_from(["", "%"]))
    literal = "'" + pattern.replace("'", "''") + "'"  # pyiceberg: a '%' only at the end
    return f"{column} {draw(st.sampled_from(['', 'not ']))}like {literal}"


_compound_row_filters = st.recursive(
    _filter_predicates(),
    lambda inner: st.one_of(
        st.tuples(inner, _keyword("and"), inner).map(" ".join),
        st.tuples(inner, _keyword("or"), inner).map(" ".join),
        inner.map(lambda expression: f"not {expression}"),
        inner.map(lambda expression: f"({expression})"),
    ),
    max_leaves=6,
)
row_filters = st.one_of(
    _compound_row_filters, _filter_booleans, _filter_booleans.map(lambda word: f"({word})")
)
"""Row filters in pyiceberg's expression syntax (valid ones; true/false only as a whole)."""


@st.composite
def mangled_row_filters(draw: st.DrawFn) -> str:
    """A valid row filter with a piece cut out, doubled or swapped: valid or not."""
    text = draw(row_filters)
    pieces = text.split(" ")
    index = draw(st.integers(0, len(pieces) - 1))
    how = draw(st.sampled_from(["drop", "double", "junk"]))
    if how == "drop":
        del pieces[index]
    elif how == "double":
        pieces.insert(index, pieces[index])
    else:
        pieces.insert(index, draw(st.sampled_from(["(", ")", ",", "=", "and", "'x", "1e5", "."])))
    return " ".join(pieces)
