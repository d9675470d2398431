"""manifest.yaml's ``state:``: each rule with a pass and a fail, and the JSON Schema agreeing."""

from __future__ import annotations

from typing import Any

import attrs
import jsonschema
import pytest
import yaml

from floe_sink.config import StateConfig, manifest_json_schema, parse_manifest

from .helpers import manifest_problems

VALID: list[tuple[dict[str, Any] | None, StateConfig | None]] = [
    (None, None),
    ({}, StateConfig()),
    ({"backend": "local"}, StateConfig()),
    (
        {"backend": "sql", "connection_secret_ref": "floe-state"},
        StateConfig(backend="sql", connection_secret_ref="floe-state"),
    ),
    (
        {"backend": "platform-kv", "options": {"table": "floe", "region": "eu-west-1"}},
        StateConfig(backend="platform-kv", options={"table": "floe", "region": "eu-west-1"}),
    ),
    (
        {"backend": "platform_kv", "connection_secret_ref": "kv", "options": {}},
        StateConfig(backend="platform_kv", connection_secret_ref="kv"),
    ),
]


@pytest.mark.parametrize(("state", "expected"), VALID)
def test_valid_state_sections(state: dict[str, Any] | None, expected: StateConfig | None) -> None:
    manifest = parse_manifest(yaml.safe_dump({"state": state}))
    assert manifest.state == expected
    jsonschema.validate({"state": state}, manifest_json_schema())


INVALID: list[tuple[Any, str]] = [
    (
        {"backend": "sql"},
        "manifest.yaml: state.connection_secret_ref: required for backend: sql: the Kubernetes "
        "Secret whose key 'url' is the state database",
    ),
    (
        {"backend": "local", "connection_secret_ref": "floe-state"},
        "manifest.yaml: state.connection_secret_ref: only used by backend: sql",
    ),
    (
        {"connection_secret_ref": "floe-state"},
        "manifest.yaml: state.connection_secret_ref: only used by backend: sql",
    ),
    (
        {"backend": "sql", "connection_secret_ref": "floe-state", "options": {"pool": 2}},
        "manifest.yaml: state.options: backend 'sql' takes no options",
    ),
    ({"backend": "local", "options": {"x": 1}}, "manifest.yaml: state.options: backend 'local'"),
    ({"backend": "SQL"}, "manifest.yaml: state.backend: must be local, sql or the name of a"),
    ({"backend": ""}, "manifest.yaml: state.backend: must be local, sql or the name of a"),
    ({"backend": 1}, "manifest.yaml: state.backend: expected a string, got an integer"),
    (
        {"backend": "sql", "connection_secret_ref": "Floe_State"},
        "manifest.yaml: state.connection_secret_ref: must be the name of a Kubernetes Secret",
    ),
    ({"bakend": "sql"}, "manifest.yaml: state.bakend: unknown key; did you mean 'backend'?"),
    (
        {"backend": "sql", "connection_secret_ref": "s", "url": "sqlite:///state.db"},
        "manifest.yaml: state.url: unknown key",
    ),
    (
        {"backend": "kv", "options": {"api_key": "leak"}},
        "manifest.yaml: state.options.api_key: credential-looking key refused",
    ),
    (
        {"backend": "sql", "connection_secret_ref": "s", "password": "leak"},
        "manifest.yaml: state.password: credential-looking key refused",
    ),
    ({"backend": "kv", "options": "x"}, "manifest.yaml: state.options: expected a mapping"),
    ("sql", "manifest.yaml: state: expected a mapping, got a string"),
]


@pytest.mark.parametrize(("state", "expected"), INVALID)
def test_invalid_state_sections_name_the_field(state: Any, expected: str) -> None:
    problems = manifest_problems({"state": state})
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems
    assert "leak" not in problems[0]
    if "credential-looking" in expected:
        return  # only the loader knows what looks like a credential (see config/schema.py)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"state": state}, manifest_json_schema())


def test_a_near_miss_of_the_section_name_is_reported() -> None:
    assert manifest_problems({"State": {"backend": "sql"}}) == [
        "manifest.yaml: State: unknown top-level key; did you mean 'state'? (line 1)"
    ]


def test_a_misspelt_built_in_backend_gets_a_hint() -> None:
    (problem,) = manifest_problems({"state": {"backend": "Sql"}})
    assert problem.endswith("did you mean 'sql'? (line 2)")


def test_the_schema_describes_the_model() -> None:
    schema = manifest_json_schema()
    state = schema["$defs"]["State"]
    assert schema["properties"]["state"]["anyOf"] == [
        {"$ref": "#/$defs/State"},
        {"type": "null"},
    ]
    assert set(state["properties"]) == {field.name for field in attrs.fields(StateConfig)}
    assert state["additionalProperties"] is False
    assert state["properties"]["backend"]["default"] == "local"
    assert set(state["properties"]["backend"]["examples"]) == {"local", "sql"}


def test_direct_construction_checks_the_rules() -> None:
    with pytest.raises(ValueError, match="required for backend: sql"):
        StateConfig(backend="sql")
