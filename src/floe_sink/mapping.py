"""Field mapping: source columns renamed to destination fields, on Arrow data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from floe_sink.errors import SinkConfigurationError

__all__ = ["apply_field_mapping", "mapped_schema"]


def mapped_schema(schema: pa.Schema, mapping: Mapping[str, str] | None) -> pa.Schema:
    """The schema after :func:`apply_field_mapping`.

    With a mapping, only the mapped columns remain, in the mapping's order, renamed.

    Raises:
        SinkConfigurationError: A mapped column is not in ``schema``, or two columns map to
            the same destination field.
    """
    if not mapping:
        return schema
    missing = [column for column in mapping if schema.get_field_index(column) < 0]
    if missing:
        raise SinkConfigurationError(
            f"field_mapping names source column(s) {', '.join(map(repr, missing))} that the "
            f"source does not have; available columns: {', '.join(schema.names)}"
        )
    targets = list(mapping.values())
    duplicates = sorted({target for target in targets if targets.count(target) > 1})
    if duplicates:
        raise SinkConfigurationError(
            f"field_mapping maps several columns to the same field(s): {', '.join(duplicates)}"
        )
    return pa.schema(
        [schema.field(source).with_name(target) for source, target in mapping.items()],
        metadata=schema.metadata,
    )


def apply_field_mapping(data: Any, mapping: Mapping[str, str] | None) -> Any:
    """Rename (and select) columns of a table or batch; zero-copy.

    Args:
        data: A ``pyarrow.Table`` or ``RecordBatch``.
        mapping: Source column -> destination field. ``None`` or empty returns ``data``
            unchanged; otherwise only the mapped columns are kept, in the mapping's order.

    Raises:
        SinkConfigurationError: See :func:`mapped_schema`.
    """
    if not mapping:
        return data
    schema = mapped_schema(data.schema, mapping)
    columns = [data.column(source) for source in mapping]
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, schema=schema)
    return pa.Table.from_arrays(columns, schema=schema)
