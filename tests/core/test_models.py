"""SinkConfig and EgressResult: fields, defaults, immutability, structuring from plain data."""

from __future__ import annotations

import attrs
import pytest

from floe_sink import (
    EgressResult,
    ProblemsError,
    SinkConfig,
    SinkConfigurationError,
    converter,
    structure,
)


@pytest.mark.requirement("4G-FR-002", "4G-SC-006")
def test_sink_config_fields_and_defaults() -> None:
    fields = {field.name: field for field in attrs.fields(SinkConfig)}
    assert list(fields) == [
        "sink_type",
        "connection_config",
        "field_mapping",
        "retry_config",
        "batch_size",
        # round 2, additive: what the command knows about the destination
        "destination",
        "write_disposition",
        "primary_key",
        "sync",
        "state_dir",
    ]
    config = SinkConfig(sink_type="rest_api")
    assert config.connection_config == {}
    assert config.field_mapping is None
    assert config.retry_config is None
    assert config.batch_size is None


@pytest.mark.requirement("4G-FR-003", "4G-SC-006")
def test_egress_result_fields_and_defaults() -> None:
    assert [field.name for field in attrs.fields(EgressResult)] == [
        "success",
        "rows_delivered",
        "bytes_transmitted",
        "duration_seconds",
        "checksum",
        "delivery_timestamp",
        "idempotency_key",
        "destination_record_ids",
        "errors",
        # round 2, additive: the delivery this write belongs to
        "delivery_id",
        "resumed_batches",
        "snapshot_id",
        "sync",
        "rows_inserted",
        "rows_updated",
        "rows_deleted",
        "rows_unchanged",
        "rows_rejected",
    ]
    result = EgressResult(success=True)
    assert result.rows_delivered == 0
    assert result.bytes_transmitted == 0
    assert result.duration_seconds == 0.0
    assert result.checksum == ""
    assert result.delivery_timestamp == ""
    assert result.idempotency_key == ""
    assert result.destination_record_ids == []
    assert result.errors == []


@pytest.mark.requirement("4G-FR-003")
def test_list_defaults_are_per_instance() -> None:
    first, second = EgressResult(success=False), EgressResult(success=False)
    first.errors.append("boom")
    first.destination_record_ids.append("id-1")
    assert second.errors == []
    assert second.destination_record_ids == []
    a, b = SinkConfig(sink_type="a"), SinkConfig(sink_type="b")
    a.connection_config["url"] = "http://x"
    assert b.connection_config == {}


@pytest.mark.requirement("4G-FR-002", "4G-FR-003")
def test_records_are_frozen_and_keyword_only() -> None:
    config = SinkConfig(sink_type="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.sink_type = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        SinkConfig("x")  # type: ignore[misc]
    with pytest.raises(TypeError):
        EgressResult(True)  # type: ignore[misc]


@pytest.mark.requirement("4G-FR-003")
def test_zero_rows_is_a_valid_result() -> None:
    assert EgressResult(success=True, rows_delivered=0).success


@pytest.mark.requirement("4G-FR-002")
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sink_type": ""}, "sink_type: must not be empty"),
        ({"sink_type": "x", "batch_size": 0}, r"batch_size: must be >= 1 \(got 0\)"),
        ({"sink_type": "x", "batch_size": -3}, "batch_size: must be >= 1"),
    ],
)
def test_sink_config_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SinkConfig(**kwargs)  # type: ignore[arg-type]


def test_connection_config_values_never_in_repr() -> None:
    config = SinkConfig(sink_type="x", connection_config={"token": "s3cr3t", "url": "http://a"})
    assert "s3cr3t" not in repr(config)
    assert "http://a" not in repr(config)
    assert "'token': '***'" in repr(config)


@pytest.mark.requirement("4G-FR-002")
def test_structure_round_trip() -> None:
    data = {
        "sink_type": "rest_api",
        "connection_config": {"url": "http://localhost"},
        "field_mapping": {"email": "Email"},
        "retry_config": {"max_attempts": 3},
        "batch_size": 100,
    }
    config = structure(data, SinkConfig)
    assert config == SinkConfig(**data)  # type: ignore[arg-type]
    defaults = {
        "destination": None,
        "write_disposition": "append",
        "primary_key": None,
        "sync": "full",
        "state_dir": None,
    }
    assert converter.unstructure(config) == {**data, **defaults}


def test_structure_reports_unknown_keys_and_invalid_values_together() -> None:
    with pytest.raises(ProblemsError) as raised:
        structure({"sink_type": "x", "batch_size": 0, "bogus": 1}, SinkConfig)
    assert raised.value.problems == [
        "batch_size: must be >= 1 (got 0)",
        "bogus: unknown key (allowed: sink_type, connection_config, field_mapping, retry_config, "
        "batch_size, destination, write_disposition, primary_key, sync, state_dir)",
    ]


def test_structure_reports_every_problem_with_its_path() -> None:
    with pytest.raises(ProblemsError) as raised:
        structure(
            {"batch_size": "ten", "field_mapping": {"a": 2}, "extra": True}, SinkConfig, what="x"
        )
    assert str(raised.value).startswith("Invalid x (4 problems):\n  - ")
    problems = raised.value.problems
    assert "sink_type: required key missing" in problems
    assert "batch_size: expected an integer, got a string" in problems
    assert any(p.startswith("field_mapping.a: expected a string, got an integer") for p in problems)
    assert any(p.startswith("extra: unknown key") for p in problems)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"sink_type": "x", "batch_size": 1.5}, "expected an integer, got a number"),
        ({"sink_type": "x", "batch_size": True}, "expected an integer, got a boolean"),
        ({"sink_type": 5}, "expected a string, got an integer"),
    ],
)
def test_scalars_are_not_coerced(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(SinkConfigurationError, match=fragment):
        structure(data, SinkConfig)


def test_result_lists_refuse_strings_and_bools_refuse_strings() -> None:
    with pytest.raises(ProblemsError) as raised:
        structure({"success": "maybe", "errors": "boom"}, EgressResult)
    assert raised.value.problems == [
        "success: expected true or false, got a string",
        "errors: expected a list, got a string",
    ]
    assert structure({"success": True, "duration_seconds": 2}, EgressResult).duration_seconds == 2.0


def test_structure_of_a_non_mapping() -> None:
    with pytest.raises(SinkConfigurationError, match=r"SinkConfig: expected a mapping, got a list"):
        structure(["rest_api"], SinkConfig)


def test_structure_errors_are_configuration_errors() -> None:
    with pytest.raises(SinkConfigurationError) as raised:
        structure({}, SinkConfig)
    assert raised.value.category == "configuration"
    assert raised.value.__cause__ is not None
