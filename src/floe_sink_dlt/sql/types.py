"""Arrow types -> SQL column types, per dialect, and the casts that make a batch writable.

The mapping is faithful: integers keep their width (unsigned ones widen to the next signed
type that holds every value), decimals keep precision and scale, timestamps keep whether
they carry a time zone, and dictionary columns are stored as their value type.
"""

from __future__ import annotations

import pyarrow as pa

from floe_sink.errors import SinkConfigurationError

__all__ = ["arrow_to_sql", "writable_schema"]

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
    none); half floats become float32; everything else is kept.
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
        fields.append(field.with_type(type_))
    return pa.schema(fields)
