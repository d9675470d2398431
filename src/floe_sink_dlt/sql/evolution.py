"""Schema evolution of an existing table: what must change for the data to fit, and doing it.

:func:`plan_evolution` is pure: from the table's columns (as the catalog reports them) and the
data's Arrow schema it computes an :class:`EvolutionPlan`: the columns to add (the data has
them, the table does not), the columns to widen the way Iceberg promotes types (int32 ->
int64, float32 -> float64, decimal(P,S) -> decimal(P',S) with P' > P), the columns whose
type cannot be evolved (another scale, or another family such as text <- int64), and the
NOT NULL columns without a default that the data lacks. Data narrower than its column
(int32 values into a bigint column) fits as it is: nothing to change, nothing to refuse.

:func:`evolve_table` applies a plan in the caller's transaction (``schema_evolution:
evolve``), or refuses any difference (``freeze``). Nothing here ever drops a column, and no
message holds a row value: only column names and types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
import pyarrow as pa

from floe_sink.errors import SinkConfigurationError
from floe_sink.logs import get_logger
from floe_sink_dlt.sql.options import SCHEMA_EVOLUTIONS
from floe_sink_dlt.sql.types import SqlType, arrow_to_sql, parse_sql_type

if TYPE_CHECKING:
    from floe_sink_dlt.sql.dialect import Dialect
    from floe_sink_dlt.sql.target import TableName

__all__ = [
    "SCHEMA_EVOLUTIONS",
    "ColumnInfo",
    "Conflict",
    "EvolutionPlan",
    "Widening",
    "check_plan",
    "evolve_staging",
    "evolve_table",
    "log_evolution",
    "plan_evolution",
]

log = get_logger(__name__)


_RULES = (
    "schema evolution adds columns and widens int32 -> int64, float32 -> float64 and "
    "decimal(P,S) -> decimal(P',S) with P' > P, nothing else"
)


@attrs.frozen
class ColumnInfo:
    """One column of an existing table, as the database's catalog describes it."""

    type: str
    """The type as the catalog spells it (``integer``, ``numeric(10,2)``, ``INTEGER``)."""
    nullable: bool = True
    has_default: bool = False
    """A default, identity, generated or auto-assigned value fills it when left out."""


@attrs.frozen
class Widening:
    """A column whose type must widen: from ``table_type`` to ``sql_type``."""

    column: str
    table_type: str
    sql_type: str


@attrs.frozen
class Conflict:
    """A column whose table type cannot take the data's type by widening."""

    column: str
    table_type: str
    data_type: str
    """The Arrow type of the data (``int32``)."""
    sql_type: str
    """The SQL type the sink would give that data (``INTEGER``)."""


@attrs.frozen
class EvolutionPlan:
    """What makes an existing table fit the data (see :func:`plan_evolution`)."""

    added: tuple[tuple[str, str], ...] = ()
    """``(column, SQL type)`` of the data's columns the table lacks, in the data's order."""
    widened: tuple[Widening, ...] = ()
    conflicts: tuple[Conflict, ...] = ()
    required_missing: tuple[str, ...] = ()
    """NOT NULL columns without a default that the data lacks (no row could be written)."""

    @property
    def changes(self) -> bool:
        """True when the table's schema must change (columns added or widened)."""
        return bool(self.added or self.widened)

    @property
    def differs(self) -> bool:
        """True when the table's columns and types are not the data's (``freeze`` refuses)."""
        return bool(self.added or self.widened or self.conflicts)


def _verdict(table: SqlType, data: SqlType) -> str:
    """``same``, ``widen`` or ``conflict``: can a ``table`` column take ``data``'s values?"""
    if table.family != data.family:
        return "conflict"
    # Narrower data than the column (int32 values into a BIGINT a user created) always fits:
    # nothing to change, nothing to refuse.
    if table.family in ("int", "uint", "float"):
        if table.bits is None or data.bits is None or data.bits <= table.bits:
            return "same"
        return "widen"
    if table.family == "decimal":
        if table.precision is None or data.precision is None:
            return "same"  # SQLite's exact decimal text: no precision to widen
        if table.scale != data.scale:
            return "conflict"
        return "widen" if data.precision > table.precision else "same"
    return "same"  # text and varchar(n), timestamp and timestamp(3): one family, no width


def plan_evolution(
    columns: Mapping[str, ColumnInfo], schema: pa.Schema, dialect: str
) -> EvolutionPlan:
    """What must change in a table with ``columns`` for batches of ``schema`` to fit.

    Args:
        columns: The table's columns (name -> catalog type, nullability, default).
        schema: The data's schema (after ``field_mapping``).
        dialect: ``postgresql``, ``sqlite`` or ``duckdb`` (the SQL types it would create).

    A column whose table type is not one the sink knows (``jsonb``, ``uuid``, an
    unconstrained ``numeric``, a SQLite ``NUMERIC`` affinity) is left alone: the database
    decides, as it would without schema evolution. A data column of Arrow type ``null`` (no
    type known) is not compared.

    Raises:
        SinkConfigurationError: A data type the dialect cannot store (see
            :func:`~floe_sink_dlt.sql.types.arrow_to_sql`).
    """
    added: list[tuple[str, str]] = []
    widened: list[Widening] = []
    conflicts: list[Conflict] = []
    for field in schema:
        sql_type = arrow_to_sql(field, dialect)
        column = columns.get(field.name)
        if column is None:
            added.append((field.name, sql_type))
            continue
        if pa.types.is_null(field.type):
            continue  # no type known: nothing to compare
        have = parse_sql_type(column.type, dialect)
        want = parse_sql_type(sql_type, dialect)
        if have is None or want is None:
            continue
        verdict = _verdict(have, want)
        if verdict == "widen":
            widened.append(Widening(field.name, column.type, sql_type))
        elif verdict == "conflict":
            conflicts.append(Conflict(field.name, column.type, str(field.type), sql_type))
    present = set(schema.names)
    required = tuple(
        name
        for name, column in columns.items()
        if name not in present and not column.nullable and not column.has_default
    )
    return EvolutionPlan(
        added=tuple(added),
        widened=tuple(widened),
        conflicts=tuple(conflicts),
        required_missing=required,
    )


def _names(names: list[str]) -> str:
    return ", ".join(map(repr, names))


def _conflicts(plan: EvolutionPlan) -> str:
    return "; ".join(
        f"{c.column!r} is {c.table_type} in the table but {c.data_type} in the data ({c.sql_type})"
        for c in plan.conflicts
    )


def check_plan(
    plan: EvolutionPlan, *, table: str, mode: str, destination: str | None = None
) -> None:
    """Refuse what ``mode`` does not allow; return when ``plan`` may be applied.

    Raises:
        SinkConfigurationError: ``freeze`` and the table differs from the data (the added
            columns and changed types are named); a type that cannot be evolved (column,
            table type and data type named); a NOT NULL column without a default that the
            data lacks (named).
    """

    def fail(message: str) -> SinkConfigurationError:
        return SinkConfigurationError(message, sink_type="sql_database", destination=destination)

    if mode == "freeze" and plan.differs:
        parts = []
        if plan.added:
            parts.append(
                "new column(s) "
                + ", ".join(f"{name!r} ({sql_type})" for name, sql_type in plan.added)
            )
        changed = [f"{w.column!r} ({w.table_type} -> {w.sql_type})" for w in plan.widened] + [
            f"{c.column!r} ({c.table_type} -> {c.sql_type})" for c in plan.conflicts
        ]
        if changed:
            parts.append("changed type(s) " + ", ".join(changed))
        raise fail(
            f"table {table!r} does not match the data and schema_evolution is 'freeze': "
            f"{'; '.join(parts)}; nothing was written (set schema_evolution: evolve to let "
            "the sink add and widen columns, or change the table)"
        )
    if plan.conflicts:
        raise fail(
            f"table {table!r} cannot take the data: {_conflicts(plan)}; a narrowing or "
            f"incompatible type change is never made ({_RULES}): change the table by hand "
            "or cast the column in the source"
        )
    if plan.required_missing:
        raise fail(
            f"table {table!r} has NOT NULL column(s) {_names(list(plan.required_missing))} "
            "without a default, which the data lacks; make them nullable, give them a "
            "default, or map a source column to them with field_mapping"
        )


def evolve_table(
    dialect: Dialect,
    table: TableName,
    schema: pa.Schema,
    *,
    mode: str,
    destination: str | None = None,
) -> EvolutionPlan:
    """Make the existing ``table`` fit ``schema`` (in the caller's transaction); return the plan.

    With ``mode`` ``evolve``, the missing columns are added (nullable: the rows already there
    hold NULL) and the columns to widen are altered; with ``freeze``, any difference is
    refused. The caller commits, so a failure leaves the table as it was.

    Raises:
        SinkConfigurationError: See :func:`check_plan`.
    """
    columns = dialect.column_details(table)
    if columns is None:
        return EvolutionPlan()
    plan = plan_evolution(columns, schema, dialect.name)
    check_plan(plan, table=str(table), mode=mode, destination=destination)
    for name, sql_type in plan.added:
        dialect.add_column(table, name, sql_type)
    for widening in plan.widened:
        dialect.widen_column(table, widening.column, widening.sql_type)
    return plan


def evolve_staging(dialect: Dialect, staging: TableName, schema: pa.Schema) -> EvolutionPlan:
    """Add and widen the columns of a ``replace`` staging table left by an earlier run.

    A resumed delivery keeps filling its staging table, which must then take the data as
    the target table does. A staging table that cannot (conflicting types, a NOT NULL column
    the data lacks) is left alone and an empty plan returned: it belongs to another delivery,
    and is dropped and created afresh before this delivery's first batch.
    """
    columns = dialect.column_details(staging)
    if columns is None:
        return EvolutionPlan()
    plan = plan_evolution(columns, schema, dialect.name)
    if plan.conflicts or plan.required_missing:
        return EvolutionPlan()
    for name, sql_type in plan.added:
        dialect.add_column(staging, name, sql_type)
    for widening in plan.widened:
        dialect.widen_column(staging, widening.column, widening.sql_type)
    return plan


def log_evolution(plan: EvolutionPlan, *, table: TableName, destination: str) -> None:
    """The ``schema_evolved`` event of one evolved table: names and types, never values."""
    log.info(
        "schema_evolved",
        destination=destination,
        table=str(table),
        added_columns=dict(plan.added),
        widened_columns={w.column: f"{w.table_type} -> {w.sql_type}" for w in plan.widened},
    )
