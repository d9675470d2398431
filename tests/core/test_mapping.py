"""Field mapping: source columns renamed (and selected) for the destination (4G-FR-014)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from floe_sink import SinkConfigurationError, apply_field_mapping, mapped_schema

TABLE = pa.table({"id": [1, 2], "email": ["a@x", "b@x"], "internal": [True, False]})

pytestmark = pytest.mark.requirement("4G-FR-014")


def test_renames_and_selects_in_mapping_order() -> None:
    mapped = apply_field_mapping(TABLE, {"email": "Email", "id": "ExternalId"})
    assert mapped.column_names == ["Email", "ExternalId"]
    assert mapped.column("Email").to_pylist() == ["a@x", "b@x"]
    assert mapped.column("ExternalId").to_pylist() == [1, 2]


@pytest.mark.parametrize("mapping", [None, {}])
def test_no_mapping_keeps_the_data(mapping: dict[str, str] | None) -> None:
    assert apply_field_mapping(TABLE, mapping) is TABLE
    schema = TABLE.schema
    assert mapped_schema(schema, mapping) is schema


def test_record_batches_stay_batches_and_zero_copy() -> None:
    batch = TABLE.to_batches()[0]
    mapped = apply_field_mapping(batch, {"id": "Id"})
    assert isinstance(mapped, pa.RecordBatch)
    assert mapped.column(0).buffers()[1].address == batch.column(0).buffers()[1].address


def test_types_nullability_and_metadata_are_kept() -> None:
    schema = pa.schema(
        [pa.field("id", pa.int32(), nullable=False), pa.field("x", pa.string())],
        metadata={b"source": b"gold.customers"},
    )
    table = pa.Table.from_pylist([{"id": 1, "x": "a"}], schema=schema)
    mapped = apply_field_mapping(table, {"id": "Id"})
    assert mapped.schema.field("Id").type == pa.int32()
    assert mapped.schema.field("Id").nullable is False
    assert mapped.schema.metadata == {b"source": b"gold.customers"}


def test_a_missing_source_column_is_a_clear_error() -> None:
    with pytest.raises(SinkConfigurationError) as raised:
        apply_field_mapping(TABLE, {"emial": "Email", "id": "Id", "nope": "N"})
    message = str(raised.value)
    assert "'emial', 'nope'" in message
    assert "available columns: id, email, internal" in message


def test_two_columns_to_one_field_is_refused() -> None:
    with pytest.raises(SinkConfigurationError, match=r"same field.*Email"):
        mapped_schema(TABLE.schema, {"id": "Email", "email": "Email"})
