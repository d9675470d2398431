"""Governance: approved_sinks against the destinations of floe.yaml."""

from __future__ import annotations

import inspect

import pytest

from floe_sink.config import (
    GovernanceError,
    SinkWhitelistError,
    check_governance,
    enforce_governance,
    load_floe_spec,
    load_manifest,
    parse_floe_spec,
    parse_manifest,
    validate_sink_whitelist,
)
from floe_sink.errors import FloeSinkError, SinkConfigurationError

FR017 = pytest.mark.requirement("4G-FR-017")
SC005 = pytest.mark.requirement("4G-SC-005")

FLOE_YAML = """\
destinations:
  - name: crm-contacts
    sink_type: rest_api
    connection_secret_ref: crm-api
  - name: orders-db
    sink_type: sql_database
    connection_secret_ref: orders-db
  - name: archive
    sink_type: sql_database
    connection_secret_ref: archive-db
    enabled: false
"""


@FR017
@pytest.mark.parametrize("approved", [None, ["rest_api"], ["rest_api", "sql_database"]])
def test_approved_sink_passes(approved: list[str] | None) -> None:
    validate_sink_whitelist("rest_api", approved)


@FR017
@SC005
@pytest.mark.parametrize("approved", [[], ["sql_database"], ["REST_API"]])
def test_unapproved_sink_fails(approved: list[str]) -> None:
    with pytest.raises(SinkWhitelistError) as info:
        validate_sink_whitelist("rest_api", approved, destination="crm")
    error = info.value
    assert error.sink_type == "rest_api"
    assert error.approved_sinks == approved
    assert error.destination == "crm"
    assert "Destination 'crm' uses sink type 'rest_api'" in str(error)
    if approved:
        assert f"the approved sink types are {approved[0]!r}" in str(error)
    else:
        assert "approves no sink types (approved_sinks: [])" in str(error)


@FR017
@SC005
def test_acceptance_sql_database_destination_is_a_violation_naming_it(write_file) -> None:
    spec = load_floe_spec(write_file("floe.yaml", FLOE_YAML))
    manifest = load_manifest(
        write_file("manifest.yaml", "scope: enterprise\napproved_sinks: [rest_api]\n")
    )
    violations = check_governance(spec, manifest)
    assert [(v.destination, v.sink_type) for v in violations] == [
        ("orders-db", "sql_database"),
        ("archive", "sql_database"),
    ]
    assert all(v.approved_sinks == ["rest_api"] for v in violations)
    assert "Destination 'orders-db' uses sink type 'sql_database'" in str(violations[0])
    assert "'rest_api'" in str(violations[0])


@FR017
@pytest.mark.parametrize(
    "manifest",
    [
        "scope: enterprise\n",
        "scope: enterprise\napproved_sinks: [rest_api, sql_database]\n",
        "scope: domain\n",
        "other: section\n",
    ],
)
def test_no_violations_when_allowed(manifest: str) -> None:
    assert check_governance(parse_floe_spec(FLOE_YAML), parse_manifest(manifest)) == []
    enforce_governance(parse_floe_spec(FLOE_YAML), parse_manifest(manifest))


@FR017
def test_empty_approved_list_refuses_every_destination() -> None:
    manifest = parse_manifest("scope: enterprise\napproved_sinks: []\n")
    assert len(check_governance(parse_floe_spec(FLOE_YAML), manifest)) == 3


@FR017
def test_enforce_governance_raises_every_violation_at_once() -> None:
    manifest = parse_manifest("scope: enterprise\napproved_sinks: [sql_database]\n")
    spec = parse_floe_spec(FLOE_YAML)
    with pytest.raises(GovernanceError) as info:
        enforce_governance(spec, manifest)
    assert [v.destination for v in info.value.violations] == ["crm-contacts"]
    assert isinstance(info.value, SinkConfigurationError)
    manifest = parse_manifest("scope: enterprise\napproved_sinks: [hubspot]\n")
    with pytest.raises(GovernanceError) as info:
        enforce_governance(spec, manifest)
    assert len(info.value.violations) == 3
    assert str(info.value).startswith("floe.yaml violates the platform manifest (3 problems):")


@SC005
def test_governance_contract() -> None:
    assert issubclass(SinkWhitelistError, FloeSinkError)
    params = inspect.signature(validate_sink_whitelist).parameters
    assert list(params)[:2] == ["sink_type", "approved_sinks"]
    error = SinkWhitelistError("a", ["b"])
    assert (error.sink_type, error.approved_sinks, error.destination) == ("a", ["b"], None)
    assert list(inspect.signature(check_governance).parameters) == ["spec", "manifest"]
