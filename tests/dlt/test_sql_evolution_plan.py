"""The plan of a schema evolution is a pure function of the table's columns and the data's
schema: examples per rule, and hypothesis properties over the sink's own type mapping."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink.errors import SinkConfigurationError
from floe_sink_dlt.sql.evolution import (
    ColumnInfo,
    EvolutionPlan,
    Widening,
    check_plan,
    plan_evolution,
)
from floe_sink_dlt.sql.types import SqlType, arrow_to_sql, parse_sql_type

pytestmark = pytest.mark.requirement("4G-SC-004")

DIALECTS = ["postgresql", "sqlite", "duckdb"]


def table_of(schema: pa.Schema, dialect: str) -> dict[str, ColumnInfo]:
    """The columns of the table the sink creates for ``schema``, spelled as it creates them."""
    return {field.name: ColumnInfo(arrow_to_sql(field, dialect)) for field in schema}


# -- parsing the catalog's spellings ----------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "declared", "expected"),
    [
        ("postgresql", "integer", SqlType("int", 32)),
        ("postgresql", "bigint", SqlType("int", 64)),
        ("postgresql", "smallint", SqlType("int", 16)),
        ("postgresql", "real", SqlType("float", 32)),
        ("postgresql", "double precision", SqlType("float", 64)),
        ("postgresql", "FLOAT", SqlType("float", 64)),
        ("postgresql", "numeric(10,2)", SqlType("decimal", precision=10, scale=2)),
        ("postgresql", "NUMERIC(20,0)", SqlType("decimal", precision=20, scale=0)),
        ("postgresql", "numeric", None),  # unconstrained: holds any decimal, left alone
        ("postgresql", "character varying(20)", SqlType("string")),
        ("postgresql", "timestamp(3) without time zone", SqlType("timestamp")),
        ("postgresql", "timestamp with time zone", SqlType("timestamptz")),
        ("postgresql", "jsonb", None),
        ("postgresql", "uuid", None),
        ("duckdb", "INTEGER", SqlType("int", 32)),
        ("duckdb", "FLOAT", SqlType("float", 32)),
        ("duckdb", "DOUBLE", SqlType("float", 64)),
        ("duckdb", "DECIMAL(18,4)", SqlType("decimal", precision=18, scale=4)),
        ("duckdb", "UBIGINT", SqlType("uint", 64)),
        ("duckdb", "UTINYINT", SqlType("uint", 8)),
        ("duckdb", "TIMESTAMP WITH TIME ZONE", SqlType("timestamptz")),
        ("duckdb", "VARCHAR", SqlType("string")),
        ("sqlite", "INTEGER", SqlType("int")),
        ("sqlite", "BIGINT", SqlType("int")),
        ("sqlite", "REAL", SqlType("float")),
        ("sqlite", "DOUBLE", SqlType("float")),
        ("sqlite", "DECIMAL_TEXT", SqlType("decimal")),
        ("sqlite", "VARCHAR(255)", SqlType("string")),
        ("sqlite", "TIMESTAMP WITH TIME ZONE", SqlType("timestamptz")),
        ("sqlite", "NUMERIC(10,2)", None),  # NUMERIC affinity: left alone
        ("sqlite", "", None),
    ],
)
def test_catalog_spellings_are_understood(
    dialect: str, declared: str, expected: SqlType | None
) -> None:
    assert parse_sql_type(declared, dialect) == expected


# -- the rules, by example ----------------------------------------------------------------------


def plan(dialect: str, table: dict[str, str], data: pa.Schema) -> EvolutionPlan:
    return plan_evolution({name: ColumnInfo(type_) for name, type_ in table.items()}, data, dialect)


def test_missing_columns_are_added_with_the_type_the_sink_would_create() -> None:
    data = pa.schema([("id", pa.int64()), ("z", pa.string()), ("a", pa.decimal128(9, 2))])
    result = plan("postgresql", {"id": "bigint"}, data)
    assert result.added == (("z", "TEXT"), ("a", "NUMERIC(9,2)"))
    assert result.widened == result.conflicts == ()
    assert result.changes
    assert result.differs


@pytest.mark.parametrize(
    ("table", "data", "sql"),
    [
        ("integer", pa.int64(), "BIGINT"),
        ("smallint", pa.int32(), "INTEGER"),
        ("real", pa.float64(), "DOUBLE PRECISION"),
        ("numeric(9,2)", pa.decimal128(12, 2), "NUMERIC(12,2)"),
    ],
)
def test_iceberg_promotions_widen(table: str, data: pa.DataType, sql: str) -> None:
    result = plan("postgresql", {"c": table}, pa.schema([("c", data)]))
    assert result.widened == (Widening("c", table, sql),)
    assert result.added == result.conflicts == ()


@pytest.mark.parametrize(
    ("table", "data"),
    [
        ("numeric(9,2)", pa.decimal128(12, 3)),  # the scale never changes
        ("text", pa.int64()),  # string -> long
        ("bigint", pa.string()),
        ("integer", pa.float64()),
        ("timestamp without time zone", pa.timestamp("us", tz="UTC")),
        ("boolean", pa.int8()),
    ],
)
def test_other_families_and_scales_are_conflicts(table: str, data: pa.DataType) -> None:
    result = plan("postgresql", {"c": table}, pa.schema([("c", data)]))
    (conflict,) = result.conflicts
    assert (conflict.column, conflict.table_type, conflict.data_type) == ("c", table, str(data))
    assert result.widened == ()


@pytest.mark.parametrize(
    ("table", "data"),
    [
        ("bigint", pa.int32()),  # a BIGINT column a user created takes int32 values
        ("double precision", pa.float32()),
        ("numeric(12,2)", pa.decimal128(9, 2)),
    ],
)
def test_narrower_data_fits_the_column_as_it_is(table: str, data: pa.DataType) -> None:
    result = plan("postgresql", {"c": table}, pa.schema([("c", data)]))
    assert result.conflicts == ()
    assert result.widened == ()
    check_plan(result, table="t", mode="freeze")  # no difference at all


def test_types_the_sink_does_not_know_are_left_alone() -> None:
    data = pa.schema([("j", pa.string()), ("n", pa.decimal128(38, 10)), ("u", pa.string())])
    assert plan("postgresql", {"j": "jsonb", "n": "numeric", "u": "uuid"}, data) == EvolutionPlan()


def test_a_null_typed_column_is_not_compared() -> None:
    assert plan("duckdb", {"c": "INTEGER"}, pa.schema([("c", pa.null())])) == EvolutionPlan()


def test_sqlite_has_no_widths_to_widen_or_narrow() -> None:
    data = pa.schema(
        [("i", pa.int64()), ("f", pa.float64()), ("d", pa.decimal128(30, 2)), ("n", pa.int8())]
    )
    table = {"i": "INTEGER", "f": "REAL", "d": "DECIMAL_TEXT", "n": "BIGINT"}
    assert plan("sqlite", table, data) == EvolutionPlan()
    assert plan("sqlite", {"s": "TEXT"}, pa.schema([("s", pa.int64())])).conflicts


def test_duckdb_float_is_single_and_widens_to_double() -> None:
    result = plan("duckdb", {"f": "FLOAT"}, pa.schema([("f", pa.float64())]))
    assert result.widened == (Widening("f", "FLOAT", "DOUBLE"),)


def test_not_null_columns_without_default_that_the_data_lacks_are_required() -> None:
    columns = {
        "id": ColumnInfo("bigint", nullable=False),
        "must": ColumnInfo("text", nullable=False),
        "filled": ColumnInfo("text", nullable=False, has_default=True),
        "opt": ColumnInfo("text"),
    }
    result = plan_evolution(columns, pa.schema([("id", pa.int64())]), "postgresql")
    assert result.required_missing == ("must",)
    assert not result.differs  # a column the data lacks is not a change of the table


# -- what is refused, and how it is said --------------------------------------------------------


def refusal(plan_: EvolutionPlan, mode: str) -> str:
    with pytest.raises(SinkConfigurationError) as caught:
        check_plan(plan_, table="s.t", mode=mode, destination="d")
    return str(caught.value)


def test_freeze_refuses_names_added_and_changed_columns() -> None:
    data = pa.schema([("id", pa.int64()), ("v", pa.int32()), ("new", pa.string())])
    result = plan("postgresql", {"id": "integer", "v": "bigint"}, data)
    message = refusal(result, "freeze")
    assert "'s.t'" in message
    assert "schema_evolution is 'freeze'" in message
    assert "new column(s) 'new' (TEXT)" in message
    assert "'id' (integer -> BIGINT)" in message
    assert "'v'" not in message  # int32 data fits the bigint column: no difference
    same = plan("postgresql", {"id": "bigint"}, pa.schema([("id", pa.int64())]))
    check_plan(same, table="t", mode="freeze")  # no difference: nothing refused


def test_evolve_refuses_a_conflict_naming_column_table_type_and_data_type() -> None:
    result = plan("postgresql", {"v": "bigint"}, pa.schema([("v", pa.string())]))
    message = refusal(result, "evolve")
    assert "'v' is bigint in the table but string in the data (TEXT)" in message
    assert "narrowing or incompatible" in message


def test_a_required_column_the_data_lacks_is_refused_in_both_modes() -> None:
    result = EvolutionPlan(required_missing=("must",))
    for mode in ("evolve", "freeze"):
        assert "NOT NULL column(s) 'must'" in refusal(result, mode)


def test_evolve_accepts_additions_and_widenings() -> None:
    data = pa.schema([("id", pa.int64()), ("new", pa.string())])
    check_plan(plan("duckdb", {"id": "INTEGER"}, data), table="t", mode="evolve")


# -- properties over the sink's own type mapping ------------------------------------------------

INTEGERS = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
UNSIGNED = [pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
FLOATS = [pa.float32(), pa.float64()]
OTHERS = [
    pa.string(),
    pa.large_string(),
    pa.bool_(),
    pa.date32(),
    pa.timestamp("us"),
    pa.timestamp("ms", tz="UTC"),
    pa.binary(),
    pa.time64("us"),
]
decimals = st.builds(
    lambda precision, scale: pa.decimal128(precision, min(scale, precision)),
    st.integers(1, 38),
    st.integers(0, 10),
)
arrow_types = st.sampled_from(INTEGERS + UNSIGNED + FLOATS + OTHERS) | decimals


def iceberg_promotes(old: pa.DataType, new: pa.DataType) -> bool:
    """The widenings the sink makes (Iceberg's, plus wider integers of the same sign)."""
    if pa.types.is_signed_integer(old) and pa.types.is_signed_integer(new):
        return new.bit_width > old.bit_width
    if pa.types.is_floating(old) and pa.types.is_floating(new):
        return new.bit_width > old.bit_width
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return old.scale == new.scale and new.precision > old.precision
    return False


@given(types=st.lists(arrow_types, min_size=1, max_size=6), dialect=st.sampled_from(DIALECTS))
def test_a_table_made_from_the_data_needs_no_evolution(
    types: list[pa.DataType], dialect: str
) -> None:
    schema = pa.schema([(f"c{index}", type_) for index, type_ in enumerate(types)])
    assert plan_evolution(table_of(schema, dialect), schema, dialect) == EvolutionPlan()


@given(old=arrow_types, new=arrow_types, dialect=st.sampled_from(DIALECTS))
def test_promotions_widen_narrower_data_fits_and_evolving_reaches_a_fixed_point(
    old: pa.DataType, new: pa.DataType, dialect: str
) -> None:
    created = table_of(pa.schema([("c", old)]), dialect)
    data = pa.schema([("c", new), ("added", new)])
    result = plan_evolution(created, data, dialect)
    assert result.added == (("added", arrow_to_sql(data.field("added"), dialect)),)
    wanted = arrow_to_sql(data.field("c"), dialect)
    same_sql = wanted == created["c"].type
    if dialect == "sqlite":
        assert result.widened == ()  # no widths: nothing ever widens
    if iceberg_promotes(old, new):
        assert result.conflicts == ()
        if dialect != "sqlite":
            assert result.widened == (
                () if same_sql else (Widening("c", created["c"].type, wanted),)
            )
    if iceberg_promotes(new, old):
        # narrower data than the column (int32 values into a bigint column): it fits as it is
        assert result.conflicts == ()
        assert result.widened == ()
    for widening in result.widened:
        assert widening.sql_type == wanted
    # applying the plan reaches a fixed point: the evolved table fits the data as it is
    evolved = dict(created)
    for name, sql_type in result.added:
        evolved[name] = ColumnInfo(sql_type)
    for widening in result.widened:
        evolved[widening.column] = ColumnInfo(widening.sql_type)
    again = plan_evolution(evolved, data, dialect)
    assert again.added == again.widened == ()
    assert again.conflicts == result.conflicts
