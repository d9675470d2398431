"""floe.yaml: DestinationConfig and FloeSpec rules, each with a passing and a failing case."""

from __future__ import annotations

import pytest
import yaml

from floe_sink.config import (
    ConfigError,
    DestinationConfig,
    FloeSpec,
    WriteDisposition,
    load_floe_spec,
    parse_floe_spec,
)
from floe_sink.errors import SinkConfigurationError
from floe_sink.models import SinkConfig
from floe_sink.secrets import Secret

from .helpers import destination, floe_problems, floe_yaml

FR011 = pytest.mark.requirement("4G-FR-011")
FR012 = pytest.mark.requirement("4G-FR-012")
FR018 = pytest.mark.requirement("4G-FR-018")


def load_one(**overrides: object) -> DestinationConfig:
    return parse_floe_spec(floe_yaml(destination(**overrides))).destinations[0]


# --- a full, valid floe.yaml ------------------------------------------------------------------

FULL = """\
transforms:
  - name: customers
schedule: {cron: "0 * * * *"}
outputPorts: [gold.customers]
destinations:
  - name: crm-contacts
    sink_type: rest_api
    connection_secret_ref: crm-api
    source_table: gold.customers
    config:
      url: https://crm.example.com/api/contacts
      headers: {Content-Type: application/json}
    field_mapping: {customer_id: id, email: email}
    batch_size: 500
    write_disposition: merge
    primary_key: [customer_id]
    enabled: true
    description: Customers for the CRM
    row_filter: "status == 'active'"
    columns: [customer_id, email, status]
    retry: {max_attempts: 3, initial_wait: 1}
  - name: orders_db
    sink_type: sql_database
    connection_secret_ref: orders-db
"""


@FR011
def test_full_floe_yaml_loads_every_field() -> None:
    spec = parse_floe_spec(FULL)
    crm, orders = spec.destinations
    assert crm == DestinationConfig(
        name="crm-contacts",
        sink_type="rest_api",
        connection_secret_ref="crm-api",
        source_table="gold.customers",
        config={
            "url": "https://crm.example.com/api/contacts",
            "headers": {"Content-Type": "application/json"},
        },
        field_mapping={"customer_id": "id", "email": "email"},
        batch_size=500,
        write_disposition=WriteDisposition.MERGE,
        primary_key=["customer_id"],
        enabled=True,
        description="Customers for the CRM",
        row_filter="status == 'active'",
        columns=["customer_id", "email", "status"],
        retry={"max_attempts": 3, "initial_wait": 1},
    )
    assert orders.write_disposition is WriteDisposition.APPEND
    assert orders.config == {}
    assert orders.primary_key == []
    assert orders.enabled is True
    assert orders.field_mapping is None
    assert orders.batch_size is None
    assert spec.destination("orders_db") is orders


@FR011
def test_load_floe_spec_from_a_file(write_file) -> None:
    path = write_file("floe.yaml", FULL)
    assert len(load_floe_spec(path).destinations) == 2
    assert len(load_floe_spec(str(path)).destinations) == 2


def test_unknown_destination_lookup_lists_the_names() -> None:
    with pytest.raises(KeyError, match="crm-contacts, orders_db"):
        parse_floe_spec(FULL).destination("nope")


# --- destinations: is optional (backwards compatibility) ------------------------------------


@FR012
@pytest.mark.parametrize(
    "text",
    [
        "transforms: [{name: a}]\nschedule: {cron: '@daily'}\n",
        "outputPorts: []\n",
        "destinations:\n",
        "destinations: []\n",
        "apiVersion: floe/v1\nkind: Project\nmetadata: {name: x}\n",
    ],
    ids=["other-sections", "output-ports", "null", "empty-list", "k8s-style"],
)
def test_floe_yaml_without_destinations_is_valid(text: str) -> None:
    assert parse_floe_spec(text) == FloeSpec(destinations=[])


@FR012
def test_other_components_sections_are_left_alone_even_when_odd() -> None:
    text = "transforms: 42\nschedule: [1, {password: x}]\ndestinations: []\n"
    assert parse_floe_spec(text).destinations == []


@FR012
@pytest.mark.parametrize("key", ["destination", "Destinations", "destinatons", "desti_nations"])
def test_misspelt_destinations_is_not_silently_ignored(key: str) -> None:
    problems = floe_problems(f"{key}: []\n")
    assert problems == [
        f"floe.yaml: {key}: unknown top-level key; did you mean 'destinations'? (line 1)"
    ]


@FR011
def test_destinations_must_be_a_list() -> None:
    assert floe_problems("destinations: {name: x}\n") == [
        "floe.yaml: destinations: expected a list, got a mapping (line 1)"
    ]


# --- one rule, one pass and one fail ----------------------------------------------------------

VALID_OVERRIDES = [
    {"name": "a"},
    {"name": "x" * 100},
    {"name": "Crm_contacts-2"},
    {"sink_type": "my.plugin-sink"},
    {"connection_secret_ref": "a"},
    {"connection_secret_ref": "crm-api.prod-1"},
    {"connection_secret_ref": "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61},
    {"source_table": "gold.customers"},
    {"source_table": "lake.gold.customers"},
    {"config": {"url": "https://x", "headers": {"X-Tenant": "acme"}, "token_url": "https://t"}},
    {"field_mapping": {"a": "b", "c": "d"}},
    {"batch_size": 1},
    {"write_disposition": "replace"},
    {"write_disposition": "merge", "primary_key": ["id"]},
    {"write_disposition": "merge", "primary_key": ["id"], "field_mapping": {"id": "Id"}},
    {"primary_key": ["id"], "columns": ["id", "email"]},
    {"enabled": False},
    {"description": "to the CRM"},
    {"row_filter": "status == 'active' and amount > 10"},
    {"columns": ["id"]},
    {"retry": {"max_attempts": 1, "timeout": 2.5}},
]


@FR011
@pytest.mark.parametrize("overrides", VALID_OVERRIDES, ids=lambda o: "+".join(o))
def test_valid_destination_values(overrides: dict[str, object]) -> None:
    loaded = load_one(**overrides)
    for key, value in overrides.items():
        assert getattr(loaded, key) == value


INVALID = [
    ({"name": ""}, "destinations[0].name: must be 1 to 100 characters long (got 0)"),
    ({"name": "x" * 101}, "destinations[0].name: must be 1 to 100 characters long (got 101)"),
    (
        {"name": "crm contacts"},
        "destinations[0].name: may contain only letters, digits, '-' and '_' (got 'crm contacts')",
    ),
    ({"name": 12}, "destinations[0].name: expected a string, got an integer"),
    ({"sink_type": ""}, "destinations[0].sink_type: must not be empty"),
    (
        {"sink_type": " rest_api"},
        "destinations[0].sink_type: must not start or end with whitespace",
    ),
    (
        {"connection_secret_ref": "CRM-API"},
        "destinations[0].connection_secret_ref: must be the name of a Kubernetes Secret",
    ),
    (
        {"connection_secret_ref": "crm_api"},
        "destinations[0].connection_secret_ref: must be the name of a Kubernetes Secret",
    ),
    (
        {"connection_secret_ref": "-crm"},
        "destinations[0].connection_secret_ref: must be the name of a Kubernetes Secret",
    ),
    (
        {"connection_secret_ref": "a" * 254},
        "destinations[0].connection_secret_ref: must be at most 253 characters long (got 254)",
    ),
    (
        {"source_table": "customers"},
        "destinations[0].source_table: must be an Iceberg table identifier 'namespace.table'",
    ),
    (
        {"source_table": "gold..customers"},
        "destinations[0].source_table: must be an Iceberg table identifier",
    ),
    ({"config": ["url"]}, "destinations[0].config: expected a mapping, got a list"),
    (
        {"field_mapping": {"a": 1}},
        "destinations[0].field_mapping.a: expected a string, got an integer",
    ),
    (
        {"field_mapping": {"a": "x", "b": "x"}},
        "destinations[0].field_mapping.b: destination field 'x' is also the target of 'a'",
    ),
    (
        {"field_mapping": {"a": ""}},
        "destinations[0].field_mapping.a: destination field names must not be empty",
    ),
    ({"batch_size": 0}, "destinations[0].batch_size: must be >= 1 (got 0)"),
    ({"batch_size": -5}, "destinations[0].batch_size: must be >= 1 (got -5)"),
    ({"batch_size": "100"}, "destinations[0].batch_size: expected an integer, got a string"),
    ({"batch_size": 2.5}, "destinations[0].batch_size: expected an integer, got a number"),
    ({"batch_size": True}, "destinations[0].batch_size: expected an integer, got a boolean"),
    (
        {"write_disposition": "upsert"},
        "destinations[0].write_disposition: must be one of append, merge, replace (got 'upsert')",
    ),
    (
        {"write_disposition": "merge"},
        "destinations[0].primary_key: required when write_disposition is merge",
    ),
    (
        {"write_disposition": "merge", "primary_key": []},
        "destinations[0].primary_key: required when write_disposition is merge",
    ),
    ({"primary_key": "id"}, "destinations[0].primary_key: expected a list, got a string"),
    ({"primary_key": ["id", "id"]}, "destinations[0].primary_key[1]: column 'id' is listed twice"),
    (
        {"primary_key": ["id"], "field_mapping": {"email": "Email"}},
        "destinations[0].primary_key[0]: column 'id' is not a key of field_mapping; "
        "only mapped columns are delivered",
    ),
    (
        {"primary_key": ["id"], "columns": ["email"]},
        "destinations[0].primary_key[0]: column 'id' is not in columns",
    ),
    (
        {"field_mapping": {"id": "Id"}, "columns": ["email"]},
        "destinations[0].field_mapping.id: column 'id' is mapped but not read: add it to columns",
    ),
    ({"enabled": "yes please"}, "destinations[0].enabled: expected true or false, got a string"),
    ({"description": ["x"]}, "destinations[0].description: expected a string, got a list"),
    (
        {"row_filter": "status =="},
        "destinations[0].row_filter: is not a valid row filter expression",
    ),
    ({"row_filter": " "}, "destinations[0].row_filter: must not be empty"),
    ({"columns": []}, "destinations[0].columns: must name at least one column"),
    ({"columns": ["a", ""]}, "destinations[0].columns[1]: column names must not be empty"),
    ({"retry": {"max_attempts": 0}}, "destinations[0].retry.max_attempts: must be >= 1 (got 0)"),
    ({"retry": {"multiplier": 0}}, "destinations[0].retry.multiplier: must be > 0 (got 0)"),
    ({"retry": {"attempts": 3}}, "destinations[0].retry: retry_config has unknown key(s) attempts"),
    (
        {"retry": {"timeout": "fast"}},
        "destinations[0].retry.timeout: expected a number, got 'fast'",
    ),
    ({"retry": 3}, "destinations[0].retry: expected a mapping, got an integer"),
    ({"colour": "red"}, "destinations[0].colour: unknown key; did you mean 'columns'?"),
    ({"batchsize": 10}, "destinations[0].batchsize: unknown key; did you mean 'batch_size'?"),
    ({"name": None}, "destinations[0].name: required key missing"),
    ({"sink_type": None}, "destinations[0].sink_type: required key missing"),
    (
        {"connection_secret_ref": None},
        "destinations[0].connection_secret_ref: required key missing",
    ),
]


@FR011
@pytest.mark.parametrize(("overrides", "expected"), INVALID, ids=lambda v: str(v)[:40])
def test_invalid_destination_values(overrides: dict[str, object], expected: str) -> None:
    problems = floe_problems(floe_yaml(destination(**overrides)))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"floe.yaml: {expected}"), problems


@FR011
def test_secret_ref_value_is_never_echoed() -> None:
    pasted = "postgresql://app:hunter2@db/prod"
    with pytest.raises(ConfigError) as info:
        parse_floe_spec(floe_yaml(destination(connection_secret_ref=pasted)))
    assert "hunter2" not in str(info.value)
    assert any("connection_secret_ref" in p for p in info.value.problems)


@FR011
def test_destination_names_must_be_unique() -> None:
    problems = floe_problems(floe_yaml(destination(), destination(sink_type="x"), destination()))
    assert problems == [
        "floe.yaml: destinations[1].name: duplicate destination name 'crm-contacts' (first used "
        "by destinations[0]); names must be unique (line 5)",
        "floe.yaml: destinations[2].name: duplicate destination name 'crm-contacts' (first used "
        "by destinations[0]); names must be unique (line 8)",
    ]


@FR011
def test_every_problem_is_reported_at_once() -> None:
    text = floe_yaml(
        destination(name="bad name", batch_size=0),
        destination(name="ok", write_disposition="merge", colour="red"),
        {"sink_type": "rest_api"},
    )
    problems = floe_problems(text)
    assert [p.split(": ")[1] for p in problems] == [
        "destinations[0].name",
        "destinations[0].batch_size",
        "destinations[1].colour",
        "destinations[2].name",
        "destinations[2].connection_secret_ref",
    ]
    # The merge rule waits until the destination's fields are valid on their own.


@FR011
def test_problem_names_file_path_reason_and_line(write_file) -> None:
    path = write_file("floe.yaml", floe_yaml(destination(), destination(name="b", batch_size=0)))
    with pytest.raises(ConfigError) as info:
        load_floe_spec(path)
    assert info.value.problems == [
        f"{path}: destinations[1].batch_size: must be >= 1 (got 0) (line 8)"
    ]
    assert info.value.path == str(path)
    assert isinstance(info.value, SinkConfigurationError)
    assert str(info.value) == f"Invalid configuration in {path}: {info.value.problems[0]}"


# --- credentials only through connection_secret_ref -----------------------------------------

CREDENTIAL_KEYS = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "connection_string",
    "credentials",
    "PASSWORD",
    "Api-Key",
    "apiKey",
    "client_secret",
    "db_password",
    "x-api-key",
    "Authorization",
    "aws.secret-access-key",
]


@FR018
@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
def test_credential_keys_are_refused_at_the_top_of_a_destination(key: str) -> None:
    problems = floe_problems(floe_yaml(destination(**{key: "s3cr3t-value"})))
    assert len(problems) == 1
    assert problems[0].startswith("floe.yaml: destinations[0]")
    assert "credential-looking key refused" in problems[0]
    assert "connection_secret_ref" in problems[0]
    assert "s3cr3t-value" not in problems[0]


@FR018
@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"password": "x"}, "destinations[0].config.password"),
        ({"auth": {"Token": "x"}}, "destinations[0].config.auth.Token"),
        ({"headers": {"X-API-KEY": "x"}}, "destinations[0].config.headers.X-API-KEY"),
        ({"x y": {"private key": "k"}}, "destinations[0].config['x y']['private key']"),
        (
            {"hosts": [{"url": "h", "credentials": {"u": 1}}]},
            "destinations[0].config.hosts[0].credentials",
        ),
        ({"url": "postgresql://app:pw@db/prod"}, "destinations[0].config.url"),
    ],
)
def test_credential_keys_are_refused_when_nested(config: dict[str, object], where: str) -> None:
    problems = floe_problems(floe_yaml(destination(config=config)))
    assert len(problems) == 1
    assert problems[0].startswith(f"floe.yaml: {where}: ")
    assert "use" in problems[0] or "reference it with connection_secret_ref" in problems[0]


@FR018
@pytest.mark.parametrize(
    "config",
    [
        {"token_url": "https://auth/token", "auth_type": "bearer"},
        {"records_key": "items", "keyspace": "k"},
        {"tokenizer": "simple", "url": "https://user@host/"},
    ],
)
def test_keys_about_credentials_are_not_credentials(config: dict[str, object]) -> None:
    assert load_one(config=config).config == config


@FR018
def test_column_names_are_not_settings() -> None:
    loaded = load_one(
        field_mapping={"api_token_count": "tokens", "password_changed_at": "pw_changed"},
        columns=["api_token_count", "password_changed_at"],
    )
    assert loaded.field_mapping == {
        "api_token_count": "tokens",
        "password_changed_at": "pw_changed",
    }


# --- built in code -----------------------------------------------------------------------------


@FR011
def test_direct_construction_validates_with_the_field_name() -> None:
    with pytest.raises(ValueError, match=r"batch_size: must be >= 1 \(got 0\)"):
        DestinationConfig(name="a", sink_type="s", connection_secret_ref="r", batch_size=0)
    with pytest.raises(ValueError, match="primary_key: required when write_disposition is merge"):
        DestinationConfig(
            name="a",
            sink_type="s",
            connection_secret_ref="r",
            write_disposition=WriteDisposition.MERGE,
        )
    d = DestinationConfig(name="a", sink_type="s", connection_secret_ref="r")
    with pytest.raises(ValueError, match="duplicate destination name 'a'"):
        FloeSpec(destinations=[d, d])


@FR011
def test_destination_is_frozen_and_keyword_only() -> None:
    d = DestinationConfig(name="a", sink_type="s", connection_secret_ref="r")
    with pytest.raises(AttributeError):
        d.name = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DestinationConfig("a", "s", "r")  # type: ignore[misc]


@FR018
def test_to_sink_config_merges_secret_values_still_wrapped() -> None:
    d = load_one(config={"url": "https://x"}, batch_size=10, retry={"max_attempts": 2})
    sink = d.to_sink_config({"token": Secret("t0p")})
    assert sink == SinkConfig(
        sink_type="rest_api",
        connection_config={"url": "https://x", "token": Secret("t0p")},
        retry_config={"max_attempts": 2},
        batch_size=10,
        destination=d.name,
        write_disposition="append",
        primary_key=None,
    )
    assert "t0p" not in repr(sink)
    with pytest.raises(ValueError, match="url appear both in config and in Secret 'crm-api'"):
        d.to_sink_config({"url": Secret("https://y")})


def test_yaml_dump_of_a_loaded_spec_loads_again() -> None:
    from floe_sink.config import config_converter

    spec = parse_floe_spec(FULL)
    again = parse_floe_spec(yaml.safe_dump(config_converter.unstructure(spec)))
    assert again == spec
