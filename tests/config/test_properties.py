"""Hypothesis: valid configs round-trip; junk never raises anything but ConfigError."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from floe_sink.config import (
    ConfigError,
    DestinationConfig,
    FloeSpec,
    PlatformManifest,
    config_converter,
    parse_floe_spec,
    parse_manifest,
)
from strategies import (
    destination_configs,
    floe_specs,
    platform_manifests,
    yaml_junk,
    yaml_values,
)

SC004 = pytest.mark.requirement("4G-SC-004")


@SC004
@pytest.mark.requirement("4G-FR-011")
@given(destination_configs())
def test_destination_round_trips(destination: DestinationConfig) -> None:
    data = config_converter.unstructure(destination)
    assert config_converter.structure(data, DestinationConfig) == destination


@SC004
@pytest.mark.requirement("4G-FR-011")
@given(floe_specs())
def test_floe_spec_round_trips_through_yaml(spec: FloeSpec) -> None:
    data = config_converter.unstructure(spec)
    assert config_converter.structure(data, FloeSpec) == spec
    assert parse_floe_spec(yaml.safe_dump(data)) == spec


@pytest.mark.requirement("4G-SC-005")
@pytest.mark.requirement("4G-FR-017")
@given(platform_manifests())
def test_manifest_round_trips_through_yaml(manifest: PlatformManifest) -> None:
    data = config_converter.unstructure(manifest)
    assert config_converter.structure(data, PlatformManifest) == manifest
    assert parse_manifest(yaml.safe_dump(data)) == manifest


def _loads_or_config_error(text: str | bytes) -> None:
    for parse in (parse_floe_spec, parse_manifest):
        error = _config_error_of(parse, text)
        if error is not None:
            assert error.problems
            assert all(isinstance(p, str) and p.startswith(error.path) for p in error.problems)


def _config_error_of(parse: Callable[..., object], text: str | bytes) -> ConfigError | None:
    """The ConfigError ``parse`` raises, or None when the text is valid; anything else fails."""
    try:
        parse(text)
    except ConfigError as error:
        return error
    return None


@pytest.mark.requirement("4G-FR-011")
@given(yaml_junk)
def test_junk_text_raises_only_config_error(text: str) -> None:
    _loads_or_config_error(text)


@pytest.mark.requirement("4G-FR-011")
@given(st.binary(max_size=100))
def test_junk_bytes_raise_only_config_error(data: bytes) -> None:
    _loads_or_config_error(data)


@pytest.mark.requirement("4G-FR-011")
@given(yaml_values)
def test_junk_structures_raise_only_config_error(value: object) -> None:
    _loads_or_config_error(yaml.safe_dump(value))
    _loads_or_config_error(yaml.safe_dump({"destinations": [value]}))
    _loads_or_config_error(yaml.safe_dump({"destinations": value, "catalog": value}))


@pytest.mark.requirement("4G-FR-011")
@given(destination_configs(), st.data())
def test_one_broken_field_is_reported_at_its_path(
    destination: DestinationConfig, data: st.DataObject
) -> None:
    raw = config_converter.unstructure(destination)
    field = data.draw(st.sampled_from(sorted(raw)))
    raw[field] = data.draw(st.sampled_from([[["nested"]], {"a": {"b": 1}}, -1.5]))
    error = _config_error_of(parse_floe_spec, yaml.safe_dump({"destinations": [raw]}))
    if error is not None:
        assert any(f"destinations[0].{field}" in p for p in error.problems), error.problems
    else:
        assert field == "config"
        assert isinstance(raw[field], dict)
