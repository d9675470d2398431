"""The rest_api and preset pages cannot drift from the code: their examples are configured,
validated and encoded by the sink itself.

For each preset page (docs/sinks/hubspot.md, salesforce.md, braze.md, mailchimp.md): the one
``destinations:`` example loads as floe.yaml, validates against the editor schema, names the
page's preset, and builds a rest_api sink with the documented Secret keys; the JSON body on the
page is exactly what the sink sends for the row the example describes; every parameter of the
preset and its request limit are documented.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pytest
import yaml

from floe_sink import SinkConfig
from floe_sink.config import floe_yaml_json_schema, load_floe_spec
from floe_sink.errors import SinkConfigurationError
from floe_sink.secrets import Secret
from floe_sink_dlt.rest import KEYS, RestApiSink
from floe_sink_dlt.rest_options import RestApiOptions
from floe_sink_dlt.saas.presets import PresetParts, load_preset, preset_names

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sinks"

PAGES = {
    "hubspot_contacts": "hubspot.md",
    "salesforce_sobject_collections": "salesforce.md",
    "braze_users_track": "braze.md",
    "mailchimp_list_members": "mailchimp.md",
}

# the source row each page's JSON body is the encoding of
ROWS: dict[str, dict[str, Any]] = {
    "hubspot_contacts": {
        "customer_id": 17,
        "email": "ann@example.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "lifetime_value": 1250.5,
    },
    "salesforce_sobject_collections": {
        "customer_id": 17,
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann@example.com",
    },
    "braze_users_track": {
        "customer_id": 17,
        "first_name": "Ann",
        "email": "ann@example.com",
        "loyalty_tier": "gold",
    },
    "mailchimp_list_members": {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee"},
}

AUTH_KEYS = {
    None: ["token"],
    "bearer": ["token"],
    "api_key": ["api_key"],
    "basic": ["username", "password"],
    "oauth2_client_credentials": ["client_id", "client_secret"],
}


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def destinations_of(page: str, tmp_path: Path) -> list[Any]:
    found = []
    for index, text in enumerate(blocks(page, "yaml")):
        if not text.lstrip().startswith("destinations:"):
            continue
        path = tmp_path / f"{page}-{index}.yaml"
        path.write_text(text)
        jsonschema.validate(yaml.safe_load(text), floe_yaml_json_schema())
        found.extend(load_floe_spec(path).destinations)
    return found


def documented_secret(page: str) -> tuple[str, list[str]]:
    """The Secret layout block: ``secrets/<ref>/`` then one ``<key>  <what>`` line a key."""
    (layout,) = [text for text in blocks(page, "text") if text.startswith("secrets/")]
    first, *lines = [line for line in layout.splitlines() if line.strip()]
    return first.removeprefix("secrets/").rstrip("/"), [line.split()[0] for line in lines]


def test_every_preset_has_a_page() -> None:
    assert sorted(PAGES) == sorted(preset_names())
    index = (DOCS / "rest_api.md").read_text()
    for preset, page in PAGES.items():
        assert f"`{preset}`" in index
        assert f"]({page})" in index


@pytest.mark.parametrize("preset", sorted(PAGES))
def test_the_preset_page_example_is_what_the_sink_takes_and_sends(
    preset: str, tmp_path: Path
) -> None:
    page = PAGES[preset]
    text = (DOCS / page).read_text()
    (destination,) = destinations_of(page, tmp_path)
    assert destination.config["preset"] == preset
    assert f"`preset: {preset}`" in text

    ref, keys = documented_secret(page)
    assert ref == destination.connection_secret_ref
    resolved = load_preset(preset).resolve(destination.config.get("preset_parameters"))
    assert keys == AUTH_KEYS[(resolved.get("auth") or {}).get("type")]
    secret = {key: Secret(f"documented-{key}") for key in keys}
    sink = RestApiSink.from_config(destination.to_sink_config(secret))
    assert sink.options.preset == preset
    if destination.sync == "mirror":
        assert sink.supports_deletes

    # the body on the page is the body the sink sends for the example's row
    row = ROWS[preset]
    table = pa.Table.from_pylist([row])
    mapping = destination.field_mapping
    mapped = table.select(list(mapping)).rename_columns(list(mapping.values()))
    sink.check_schema(mapped.schema)
    (batch,) = mapped.to_batches()
    (body,) = [json.loads(b) for b in blocks(page, "json")]
    assert json.loads(sink.preview_request(batch)["body"]) == body

    # every parameter, the request limit and the sources are documented
    parts = PresetParts.parse(resolved)
    for parameter in load_preset(preset).parameters:
        assert f"`{parameter.name}`" in text, parameter.name
    assert f"**{parts.max_records_per_request}**" in text
    assert f"preset_data/{preset}.yaml" in text


def test_the_rest_api_page_examples_build_sinks(tmp_path: Path) -> None:
    found = destinations_of("rest_api.md", tmp_path)
    assert len(found) >= 2
    for destination in found:
        auth = (destination.config or {}).get("auth") or {}
        secret = {key: Secret(f"documented-{key}") for key in AUTH_KEYS[auth.get("type")]}
        assert isinstance(RestApiSink.from_config(destination.to_sink_config(secret)), RestApiSink)


def test_the_template_example_encodes_as_documented(tmp_path: Path) -> None:
    (templated,) = [d for d in destinations_of("rest_api.md", tmp_path) if d.name == "crm-people"]
    sink = RestApiSink.from_config(templated.to_sink_config({"token": Secret("t")}))
    when = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)
    table = pa.table(
        {
            "email": ["a@x.io", "b@x.io"],
            "first_name": ["Ann", "Bo"],
            "score": pa.array([12.5, None], pa.float64()),
            "updated_at": pa.array([when, when], pa.timestamp("us", tz="UTC")),
        }
    )
    mapping = templated.field_mapping
    (batch,) = table.select(list(mapping)).rename_columns(list(mapping.values())).to_batches()
    documented = [json.loads(text) for text in blocks("rest_api.md", "json")]
    assert json.loads(sink.preview_request(batch)["body"]) == documented[0]


def test_the_editor_schema_knows_every_rest_api_key() -> None:
    schema = floe_yaml_json_schema()["$defs"]["RestApiConfig"]
    assert set(schema["properties"]) == set(KEYS) - {"token"}  # the token is the secret's
    bad = {
        "destinations": [
            {
                "name": "x",
                "sink_type": "rest_api",
                "connection_secret_ref": "x",
                "config": {"url": "https://x", "tempalte": {}},
            }
        ]
    }
    with pytest.raises(jsonschema.ValidationError, match="tempalte"):
        jsonschema.validate(bad, floe_yaml_json_schema())
    other = {**bad["destinations"][0], "sink_type": "webhook"}  # another plugin's config: free
    jsonschema.validate({"destinations": [other]}, floe_yaml_json_schema())


@pytest.mark.parametrize(
    "config",
    [
        {"url": "https://x", "method": "DELETE"},  # the delete block's method
        {"url": "https://x", "method": "GET"},
        {"preset": "no_such_preset"},
        {"url": "https://x", "results": {"retryable_statuses": [99]}},
        {"url": "https://x", "results": {"mode": "by_key", "match": {"a": 1.5}}},
        {"url": "https://x", "rate_limit_headers": {"remaining": []}},
        {"url": "https://x", "template": {"records_key": "x"}},  # no record
        {"url": "https://x", "delete": {"method": "DELETE"}},  # no url
        {"url": "https://x", "auth": {"type": "digest"}},
        {"url": "https://x", "record_ids_path": ""},
    ],
    ids=repr,
)
def test_the_editor_schema_refuses_what_the_rest_api_sink_refuses(config: dict[str, Any]) -> None:
    destination = {"name": "x", "sink_type": "rest_api", "connection_secret_ref": "x"}
    document = {"destinations": [{**destination, "config": config}]}
    assert not jsonschema.Draft202012Validator(floe_yaml_json_schema()).is_valid(document)
    with pytest.raises(SinkConfigurationError):
        RestApiOptions.from_config(
            SinkConfig(sink_type="rest_api", connection_config=config), default_timeout=30
        )
