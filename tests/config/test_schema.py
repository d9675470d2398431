"""JSON Schemas: they agree with the models on field names, requiredness and enums."""

from __future__ import annotations

import json
import re

import attrs
import pytest

from floe_sink.config import (
    CatalogConfig,
    CatalogType,
    DestinationConfig,
    ManifestScope,
    PlatformManifest,
    WriteDisposition,
    floe_yaml_json_schema,
    manifest_json_schema,
)

SC004 = pytest.mark.requirement("4G-SC-004")
SC005 = pytest.mark.requirement("4G-SC-005")


def required_fields(cls: type) -> set[str]:
    return {f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING}


@SC004
def test_destination_schema_matches_the_model() -> None:
    schema = floe_yaml_json_schema()
    destination = schema["$defs"]["Destination"]
    assert set(destination["properties"]) == {f.name for f in attrs.fields(DestinationConfig)}
    assert set(destination["required"]) == required_fields(DestinationConfig)
    assert destination["additionalProperties"] is False
    assert destination["properties"]["write_disposition"]["enum"] == [
        w.value for w in WriteDisposition
    ]
    assert schema["properties"]["destinations"]["items"] == {"$ref": "#/$defs/Destination"}
    assert "destinations" not in schema.get("required", [])  # optional (4G-FR-012)
    assert schema["additionalProperties"] is True  # other components' sections


@SC005
def test_manifest_schema_matches_the_model() -> None:
    schema = manifest_json_schema()
    assert set(schema["properties"]) == {f.name for f in attrs.fields(PlatformManifest)}
    assert set(schema.get("required", [])) == required_fields(PlatformManifest)
    assert [v for v in schema["properties"]["scope"]["enum"] if v] == [
        s.value for s in ManifestScope
    ]
    catalog = schema["$defs"]["Catalog"]
    named = {f.name for f in attrs.fields(CatalogConfig)} - {"properties"}
    assert set(catalog["properties"]) == named
    assert set(catalog.get("required", [])) == required_fields(CatalogConfig)
    assert catalog["properties"]["type"]["enum"] == [t.value for t in CatalogType]


@SC004
def test_schemas_are_json_and_fresh_copies() -> None:
    for make in (floe_yaml_json_schema, manifest_json_schema):
        first = make()
        assert json.loads(json.dumps(first)) == first
        first["title"] = "changed"
        assert make()["title"] != "changed"
        assert first["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@SC004
@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("name", ["a", "A_b-1", "x" * 100], ["", "a b", "x" * 101, "é"]),
        ("connection_secret_ref", ["crm-api", "a.b-c", "0"], ["CRM", "a_b", "-a", "a-", "a..b"]),
        ("source_table", ["gold.customers", "a.b.c"], ["customers", "a..b", ".a"]),
    ],
)
def test_schema_patterns_agree_with_the_validators(
    field: str, good: list[str], bad: list[str]
) -> None:
    pattern = re.compile(
        floe_yaml_json_schema()["$defs"]["Destination"]["properties"][field]["pattern"]
    )
    base = {"name": "a", "sink_type": "s", "connection_secret_ref": "r"}
    for value in good:
        assert pattern.search(value), value
        DestinationConfig(**{**base, field: value})
    for value in bad:
        assert not pattern.search(value), value
        with pytest.raises(ValueError, match=field):
            DestinationConfig(**{**base, field: value})
