"""JSON Schemas: they agree with the models on field names, requiredness and enums."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
import yaml

from floe_sink.config import (
    CatalogConfig,
    CatalogType,
    DestinationConfig,
    EngineConfig,
    EngineType,
    ManifestScope,
    PlatformManifest,
    WriteDisposition,
    floe_yaml_json_schema,
    manifest_json_schema,
)
from floe_sink.errors import PluginContractError
from floe_sink.hookspecs import hookimpl
from floe_sink.manager import get_plugin_manager
from floe_sink.structuring import field_json_schema

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
    engine = schema["$defs"]["Engine"]
    assert set(engine["properties"]) == {f.name for f in attrs.fields(EngineConfig)}
    assert [v for v in engine["properties"]["type"]["enum"] if v] == [e.value for e in EngineType]
    assert engine["additionalProperties"] is False


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


# -- generated from the models: valid JSON Schema, docs accepted, the malformed corpus refused --

CORPUS = Path(__file__).parent / "corpus"
ROOT = Path(__file__).resolve().parents[2]

# (floe-nested-token, floe-url-with-password and floe-recursive-alias configure a rest_api
# destination, whose config the schema describes: it refuses them too, by the keys it knows)
LOADER_ONLY = {
    "floe-bad-row-filter": "that a row filter parses",
    "floe-duplicate-destination-key": "a duplicate YAML key (a parser keeps the last)",
    "floe-duplicate-top-key": "a duplicate YAML key (a parser keeps the last)",
    "manifest-duplicate-key": "a duplicate YAML key (a parser keeps the last)",
    "floe-duplicate-names": "names unique across the items of a list",
    "floe-key-not-mapped": "a primary_key column among the keys of field_mapping",
    "floe-misspelt-destinations": "a near miss of a key among other components' sections",
    "manifest-misspelt": "a near miss of a key among other components' sections",
    "manifest-catalog-credential": "a credential-looking catalog property",
}
"""Malformed files the loaders refuse for a reason JSON Schema cannot express."""


def _validator(case: str) -> jsonschema.Draft202012Validator:
    make = manifest_json_schema if case.startswith("manifest-") else floe_yaml_json_schema
    return jsonschema.Draft202012Validator(make())


@SC004
@SC005
def test_generated_schemas_are_valid_json_schema() -> None:
    for make in (floe_yaml_json_schema, manifest_json_schema):
        jsonschema.Draft202012Validator.check_schema(make())


@SC004
@SC005
def test_the_schema_command_prints_valid_json_schemas() -> None:
    import subprocess

    from fixtures.command import floe_command

    # a subprocess: the command configures logging for its whole process
    completed = subprocess.run(
        [*floe_command(), "schema"], capture_output=True, text=True, check=True, timeout=120
    )
    printed = json.loads(completed.stdout)
    assert set(printed) == {"floe.yaml", "manifest.yaml"}
    for schema in printed.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert printed["floe.yaml"] == floe_yaml_json_schema()


def _documented_examples() -> list[tuple[str, Any]]:
    fence = re.compile(r"^[ \t]*```yaml[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
    skip = re.compile(r"<!-- docs-test: skip: [^>]+ -->\s*$")
    found = []
    for page in sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]):
        text = page.read_text()
        for match in fence.finditer(text):
            before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
            if not skip.search(before):
                where = f"{page.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
                found.append((where, yaml.safe_load(textwrap.dedent(match.group(1)))))
    for name in ("floe.yaml", "manifest.yaml"):
        path = ROOT / "examples" / "quickstart" / name
        found.append((str(path.relative_to(ROOT)), yaml.safe_load(path.read_text())))
    return found


@SC004
@SC005
@pytest.mark.parametrize("example", _documented_examples(), ids=lambda example: example[0])
def test_the_schemas_accept_every_documented_example(example: tuple[str, Any]) -> None:
    where, document = example
    validator = _validator("floe-" if "destinations" in document else "manifest-")
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]
    assert not problems, f"{where}: {problems}"


@SC004
@SC005
@pytest.mark.parametrize("case", sorted(CORPUS.glob("*.yaml")), ids=lambda path: path.stem)
def test_the_schemas_refuse_the_malformed_corpus(case: Path) -> None:
    try:
        document = yaml.safe_load(case.read_bytes())
    except yaml.YAMLError:
        return  # not YAML (or not safe YAML): an editor says so before any schema applies
    refused = not _validator(case.stem).is_valid(document)
    if case.stem in LOADER_ONLY:
        assert not refused, f"{case.stem}: the schema refuses it now; drop it from LOADER_ONLY"
    else:
        assert refused, f"{case.stem}: the schema accepts a file the loaders refuse"


# -- a sink type's config: described by the model its plugin declares ---------------------------


@attrs.frozen(kw_only=True)
class WebhookKeys:
    """The webhook sink's config.

    Attributes:
        url: Where batches are posted.
        retries: How often a batch is sent again.
        secret: From the destination's secret.
    """

    url: str
    retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    secret: Any = attrs.field(default=None, metadata=field_json_schema(None))


class WebhookPlugin:
    def __init__(self, model: Any = WebhookKeys) -> None:
        self.model = model

    @hookimpl
    def list_available_sinks(self) -> list[str]:
        return ["webhook", "webhook_free"]

    @hookimpl
    def create_sink(self, config: Any) -> Any:
        return None

    @hookimpl
    def write(self, sink: Any, data: Any, delivery: Any) -> Any:
        return None

    @hookimpl
    def get_config_model(self, sink_type: str) -> Any:
        return self.model if sink_type == "webhook" else None


def _webhook_schema(model: Any = WebhookKeys) -> dict[str, Any]:
    plugins = get_plugin_manager(load_entrypoints=False)
    plugins.register(WebhookPlugin(model))
    return floe_yaml_json_schema(plugins)


def _destination(sink_type: str, config: dict[str, Any]) -> dict[str, Any]:
    item = {"name": "hook", "sink_type": sink_type, "connection_secret_ref": "hook"}
    return {"destinations": [{**item, "config": config}]}


@SC004
def test_a_plugins_config_model_describes_its_destinations_config() -> None:
    schema = _webhook_schema()
    described = schema["$defs"]["WebhookConfig"]
    assert described["title"] == "WebhookConfig"
    assert described["required"] == ["url"]
    assert described["properties"]["retries"] == {
        "type": "integer",
        "minimum": 0,
        "default": 2,
        "description": "How often a batch is sent again.",
    }
    assert "secret" not in described["properties"]  # field_json_schema(None): not a key
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(_destination("webhook", {"url": "https://x", "retries": 0}))
    for bad in ({}, {"url": "https://x", "retries": -1}, {"url": "https://x", "secret": "s"}):
        assert not validator.is_valid(_destination("webhook", bad)), bad
    # a sink type without a model, and one no plugin lists: a free-form config
    assert validator.is_valid(_destination("webhook_free", {"anything": 1}))
    assert validator.is_valid(_destination("other", {"anything": 1}))


def test_a_config_model_that_is_not_a_class_is_the_plugins_bug() -> None:
    with pytest.raises(PluginContractError, match=r"get_config_model.*not the model"):
        _webhook_schema(model={"url": "string"})


@SC004
def test_every_default_is_valid_for_its_property() -> None:
    schema = floe_yaml_json_schema()
    checked = 0
    for definition in schema["$defs"].values():
        for name, property_schema in definition.get("properties", {}).items():
            if "default" in property_schema:
                checked += 1
                check = jsonschema.Draft202012Validator(
                    {**property_schema, "$defs": schema["$defs"]}
                )
                assert check.is_valid(property_schema["default"]), (definition["title"], name)
    assert checked > 10
