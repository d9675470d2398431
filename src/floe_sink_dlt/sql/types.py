"""Arrow types -> SQL column types, per dialect, and the casts that make a batch writable.

The mapping is faithful: integers keep their width (unsigned ones widen to the next signed
type that holds every value), decimals keep precision and scale, timestamps keep whether
they carry a time zone, and dictionary columns are stored as their value type.
"""

from __future__ import annotations

import re

import attrs
import pyarrow as pa

from floe_sink.errors import SinkConfigurationError

__all__ = ["SqlType", "arrow_to_sql", "parse_sql_type", "writable_schema"]

_PG = {
    "int8": "SMALLINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "SMALLINT",
    "uint16": "INTEGER",
    "uint32": "BIGINT",
    "uint64": "NUMERIC(20,0)",
    "float16": "REAL",
    "float32": "REAL",
    "float64": "DOUBLE PRECISION",
    "string": "TEXT",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "binary": "BYTEA",
    "time": "TIME",
}

_DUCKDB = {
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "float16": "FLOAT",
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "binary": "BLOB",
    "time": "TIME",
}

# SQLite has five storage classes; the declared names below keep the column's meaning visible
# to people and tools, and were chosen for their affinity: decimals and timestamps are
# stored as exact text, never as a lossy REAL.
_SQLITE = {
    "int8": "INTEGER",
    "int16": "INTEGER",
    "int32": "INTEGER",
    "int64": "INTEGER",
    "uint8": "INTEGER",
    "uint16": "INTEGER",
    "uint32": "INTEGER",
    "uint64": "TEXT",
    "float16": "REAL",
    "float32": "REAL",
    "float64": "REAL",
    "string": "TEXT",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "binary": "BLOB",
    "time": "TIME",
}

_TABLES = {"postgresql": _PG, "duckdb": _DUCKDB, "sqlite": _SQLITE}


def _kind(type_: pa.DataType) -> str | None:
    if pa.types.is_dictionary(type_):
        return _kind(type_.value_type)
    if pa.types.is_integer(type_):
        sign = "uint" if pa.types.is_unsigned_integer(type_) else "int"
        return f"{sign}{type_.bit_width}"
    if pa.types.is_floating(type_):
        return f"float{type_.bit_width}"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_null(type_):
        return "string"  # an all-null column (no type known) is stored as text
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_date(type_):
        return "date"
    if pa.types.is_timestamp(type_):
        return "timestamptz" if type_.tz is not None else "timestamp"
    if (
        pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_fixed_size_binary(type_)
    ):
        return "binary"
    if pa.types.is_time(type_):
        return "time"
    return None


def arrow_to_sql(field: pa.Field, dialect: str) -> str:
    """The SQL type of a column holding ``field`` in ``dialect``.

    Raises:
        SinkConfigurationError: The Arrow type has no faithful SQL equivalent here (nested
            types, durations, ...), naming the column and its type.
    """
    type_ = field.type
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if pa.types.is_decimal(type_):
        if dialect == "sqlite":
            return "DECIMAL_TEXT"
        if dialect == "duckdb" and type_.precision > 38:
            return "VARCHAR"
        return f"NUMERIC({type_.precision},{type_.scale})"
    kind = _kind(type_)
    table = _TABLES[dialect]
    if kind is None or kind not in table:
        raise SinkConfigurationError(
            f"column {field.name!r} has type {field.type}, which sql_database cannot store in "
            f"{dialect}; cast it (or map it away with field_mapping)",
            sink_type="sql_database",
        )
    return table[kind]


def writable_schema(schema: pa.Schema, dialect: str) -> pa.Schema:
    """The schema a batch is cast to before writing: types the driver writes natively.

    Dictionary columns are decoded; unsigned integers are widened for PostgreSQL (which has
    none); half floats become float32; ``date64`` becomes ``date32`` (the same days; the
    PostgreSQL driver's COPY writer takes only the latter); decimals wider than DuckDB's 38
    digits go to their ``VARCHAR`` column as exact text; everything else is kept.
    """
    fields = []
    for field in schema:
        type_ = field.type
        if pa.types.is_dictionary(type_):
            type_ = type_.value_type
        if pa.types.is_null(type_):
            type_ = pa.string()
        if pa.types.is_float16(type_):
            type_ = pa.float32()
        if dialect == "postgresql" and pa.types.is_unsigned_integer(type_):
            widened = {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}
            type_ = widened.get(type_.bit_width, pa.decimal128(20, 0))
        if pa.types.is_fixed_size_binary(type_):
            type_ = pa.binary()
        if pa.types.is_date64(type_):
            type_ = pa.date32()
        if dialect == "duckdb" and pa.types.is_decimal(type_) and type_.precision > 38:
            type_ = pa.string()
        fields.append(field.with_type(type_))
    return pa.schema(fields)


@attrs.frozen
class SqlType:
    """A column type reduced to what schema evolution compares: a family and its width.

    ``bits`` (integers, floats) and ``precision``/``scale`` (decimals) are ``None`` where the
    database has a single width for the family (SQLite).
    """

    family: str
    """``int``, ``uint``, ``float``, ``decimal``, ``string``, ``bool``, ``date``, ``time``,
    ``timestamp``, ``timestamptz`` or ``binary``."""
    bits: int | None = None
    precision: int | None = None
    scale: int | None = None


_INT = {8: "tinyint", 16: "smallint", 32: "integer", 64: "bigint", 128: "hugeint"}
_NAMES: dict[str, SqlType] = {
    **{name: SqlType("int", bits) for bits, name in _INT.items()},
    **{"u" + name: SqlType("uint", bits) for bits, name in _INT.items() if bits > 8},
    "utinyint": SqlType("uint", 8),
    "int1": SqlType("int", 8),
    "int2": SqlType("int", 16),
    "int4": SqlType("int", 32),
    "int": SqlType("int", 32),
    "int8": SqlType("int", 64),  # eight bytes, in PostgreSQL and DuckDB alike
    "real": SqlType("float", 32),
    "float4": SqlType("float", 32),
    "float8": SqlType("float", 64),
    "double": SqlType("float", 64),
    "double precision": SqlType("float", 64),
    "text": SqlType("string"),
    "varchar": SqlType("string"),
    "character varying": SqlType("string"),
    "bpchar": SqlType("string"),
    "character": SqlType("string"),
    "char": SqlType("string"),
    "boolean": SqlType("bool"),
    "bool": SqlType("bool"),
    "date": SqlType("date"),
    "time": SqlType("time"),
    "time without time zone": SqlType("time"),
    "timestamp": SqlType("timestamp"),
    "timestamp without time zone": SqlType("timestamp"),
    "timestamptz": SqlType("timestamptz"),
    "timestamp with time zone": SqlType("timestamptz"),
    "bytea": SqlType("binary"),
    "blob": SqlType("binary"),
}
_DECIMAL = re.compile(r"^(?:numeric|decimal)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
_LENGTH = re.compile(r"\s*\(\s*\d+\s*\)")  # varchar(20), timestamp(3): same family


def parse_sql_type(declared: str, dialect: str) -> SqlType | None:
    """What ``declared`` (a type as the catalog reports it, or as :func:`arrow_to_sql` writes
    it) is for schema evolution; ``None`` for a type it does not know (left alone).

    PostgreSQL's ``numeric`` without a precision holds any decimal and is not known here
    either: nothing is ever widened or refused against it.
    """
    text = " ".join(declared.lower().split())
    if dialect == "sqlite":
        return _sqlite_type(text)
    match = _DECIMAL.match(text)
    if match:
        return SqlType("decimal", precision=int(match[1]), scale=int(match[2] or 0))
    if text == "float":  # PostgreSQL's FLOAT is double precision, DuckDB's is single
        return SqlType("float", 64 if dialect == "postgresql" else 32)
    return _NAMES.get(_LENGTH.sub("", text))


def _sqlite_type(text: str) -> SqlType | None:
    # SQLite stores by affinity, never by width: INTEGER holds any 64-bit integer and REAL is
    # always an 8-byte float, so integers and floats have no width here, and DECIMAL_TEXT
    # (exact decimal text) has no precision. The other names the sink declares are kept
    # apart by name; a declared type of the user's is read by SQLite's affinity rules.
    exact = {
        "decimal_text": SqlType("decimal"),
        "boolean": SqlType("bool"),
        "date": SqlType("date"),
        "time": SqlType("time"),
        "timestamp": SqlType("timestamp"),
        "timestamp with time zone": SqlType("timestamptz"),
    }
    if text in exact:
        return exact[text]
    if "int" in text:
        return SqlType("int")
    if any(marker in text for marker in ("char", "clob", "text")):
        return SqlType("string")
    if "blob" in text:
        return SqlType("binary")
    if any(marker in text for marker in ("real", "floa", "doub")):
        return SqlType("float")
    return None  # NUMERIC affinity or none at all: left alone
