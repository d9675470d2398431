"""manifest.yaml: scope, approved_sinks and catalog, each rule with a pass and a fail."""

from __future__ import annotations

import pytest

from floe_sink.config import (
    CatalogConfig,
    CatalogType,
    ConfigError,
    ManifestScope,
    PlatformManifest,
    load_manifest,
    parse_manifest,
)
from floe_sink.secrets import Secret

from .helpers import manifest_problems

FR017 = pytest.mark.requirement("4G-FR-017")
FR018 = pytest.mark.requirement("4G-FR-018")
SC005 = pytest.mark.requirement("4G-SC-005")


@FR017
@SC005
@pytest.mark.parametrize(
    ("text", "scope", "approved"),
    [
        ("scope: enterprise\napproved_sinks: [rest_api]\n", ManifestScope.ENTERPRISE, ["rest_api"]),
        ("scope: enterprise\napproved_sinks: []\n", ManifestScope.ENTERPRISE, []),
        ("scope: enterprise\napproved_sinks:\n", ManifestScope.ENTERPRISE, None),
        ("scope: enterprise\n", ManifestScope.ENTERPRISE, None),
        ("scope: domain\n", ManifestScope.DOMAIN, None),
        ("scope: none\n", ManifestScope.NONE, None),
        ("scope:\n", ManifestScope.NONE, None),
        ("plugins: {}\n", ManifestScope.NONE, None),
    ],
)
def test_valid_governance_fields(
    text: str, scope: ManifestScope, approved: list[str] | None
) -> None:
    manifest = parse_manifest(text)
    assert manifest.scope is scope
    assert manifest.approved_sinks == approved


@FR017
@SC005
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"scope": "domain", "approved_sinks": ["rest_api"]},
            "manifest.yaml: approved_sinks: only valid with scope: enterprise (scope is 'domain'); "
            "set scope: enterprise or remove approved_sinks (line 2)",
        ),
        (
            {"approved_sinks": []},
            "manifest.yaml: approved_sinks: only valid with scope: enterprise (scope is 'none')",
        ),
        (
            {"scope": "global"},
            "manifest.yaml: scope: must be one of enterprise, domain, none (got 'global')",
        ),
        (
            {"scope": "enterprise", "approved_sinks": "rest_api"},
            "manifest.yaml: approved_sinks: expected a list, got a string",
        ),
        (
            {"scope": "enterprise", "approved_sinks": ["a", "a"]},
            "manifest.yaml: approved_sinks[1]: sink type 'a' is listed twice",
        ),
        (
            {"scope": "enterprise", "approved_sinks": [""]},
            "manifest.yaml: approved_sinks[0]: sink types must not be empty",
        ),
        (
            {"scope": "enterprise", "approved_sinks": [1]},
            "manifest.yaml: approved_sinks[0]: expected a string, got an integer",
        ),
        (
            {"approvedSinks": ["x"]},
            "manifest.yaml: approvedSinks: unknown top-level key; did you mean 'approved_sinks'?",
        ),
        (
            {"scopes": "enterprise"},
            "manifest.yaml: scopes: unknown top-level key; did you mean 'scope'?",
        ),
    ],
)
def test_invalid_governance_fields(data: dict[str, object], expected: str) -> None:
    problems = manifest_problems(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


@FR017
def test_empty_manifest_is_a_clear_error() -> None:
    assert manifest_problems("") == [
        "manifest.yaml: the file is empty; "
        "expected a mapping with scope, approved_sinks and/or catalog"
    ]


@FR017
def test_load_manifest_from_file(write_file) -> None:
    path = write_file("manifest.yaml", "scope: enterprise\napproved_sinks: [rest_api]\n")
    assert load_manifest(path).approved_sinks == ["rest_api"]
    bad = write_file("bad.yaml", "scope: enterprise\napproved_sinks: [rest_api, rest_api]\n")
    with pytest.raises(ConfigError) as info:
        load_manifest(bad)
    assert info.value.problems == [
        f"{bad}: approved_sinks[1]: sink type 'rest_api' is listed twice (line 2)"
    ]


@FR017
def test_defaults_allow_everything() -> None:
    assert PlatformManifest() == PlatformManifest(
        scope=ManifestScope.NONE, approved_sinks=None, catalog=None
    )


@FR017
def test_direct_construction_checks_scope() -> None:
    with pytest.raises(ValueError, match="approved_sinks: only valid with scope: enterprise"):
        PlatformManifest(scope=ManifestScope.DOMAIN, approved_sinks=["x"])


# --- catalog --------------------------------------------------------------------------------


def test_rest_catalog_with_passthrough_properties() -> None:
    manifest = parse_manifest(
        "catalog:\n"
        "  name: polaris\n  type: rest\n  uri: https://polaris/api/catalog\n"
        "  warehouse: analytics\n"
        "  credential_secret_ref: polaris-client\n"
        "  s3.endpoint: http://minio:9000\n  s3.path-style-access: true\n"
        "  scope: PRINCIPAL_ROLE:ALL\n"
    )
    assert manifest.catalog == CatalogConfig(
        name="polaris",
        type=CatalogType.REST,
        uri="https://polaris/api/catalog",
        warehouse="analytics",
        credential_secret_ref="polaris-client",
        properties={
            "s3.endpoint": "http://minio:9000",
            "s3.path-style-access": True,
            "scope": "PRINCIPAL_ROLE:ALL",
        },
    )
    props = manifest.catalog.to_pyiceberg_properties({"credential": Secret("id:secret")})
    assert props == {
        "type": "rest",
        "uri": "https://polaris/api/catalog",
        "warehouse": "analytics",
        "s3.endpoint": "http://minio:9000",
        "s3.path-style-access": "true",
        "scope": "PRINCIPAL_ROLE:ALL",
        "credential": "id:secret",
    }


def test_sql_catalog_defaults() -> None:
    catalog = parse_manifest("catalog: {uri: 'sqlite:///.floe/catalog.db'}\n").catalog
    assert catalog is not None
    assert (catalog.name, catalog.type, catalog.warehouse) == ("default", CatalogType.SQL, None)


@pytest.mark.parametrize(
    ("catalog", "expected"),
    [
        ({"type": "rest"}, "manifest.yaml: catalog.uri: required for a rest catalog"),
        ({"type": "hive"}, "manifest.yaml: catalog.type: must be one of sql, rest (got 'hive')"),
        ({"name": ""}, "manifest.yaml: catalog.name: must not be empty"),
        ({"io": {"impl": "x"}}, "manifest.yaml: catalog.io: catalog properties are flat"),
        (
            {"credential_secret_ref": "Polaris"},
            "manifest.yaml: catalog.credential_secret_ref: must be the name of a Kubernetes Secret",
        ),
        ("rest", "manifest.yaml: catalog: expected a mapping, got a string"),
    ],
)
def test_invalid_catalog(catalog: object, expected: str) -> None:
    problems = manifest_problems({"catalog": catalog})
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


@FR018
@pytest.mark.parametrize(
    "key", ["credential", "token", "s3.secret-access-key", "s3.access-key-id", "password"]
)
def test_catalog_credentials_are_refused(key: str) -> None:
    problems = manifest_problems({"catalog": {"type": "rest", "uri": "https://p", key: "leak-me"}})
    assert len(problems) == 1
    assert problems[0].startswith("manifest.yaml: catalog")
    assert "credential-looking key refused" in problems[0]
    assert "catalog.credential_secret_ref" in problems[0]
    assert "leak-me" not in problems[0]
