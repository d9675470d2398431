"""Each preset through the real command, against a local fake of its API.

The fakes (tests/fixtures/saas_api.py) validate every body against a JSON Schema written from
the vendor's documentation and refuse chosen records per record, with the API's own message.
Each test checks: the bodies are valid, the records arrive correct, the refused ones are
listed by ``floe-sink rejects --output json`` with the API's message, the rest are delivered,
and a rerun (``sync: changes``) sends only the refused ones once the API accepts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fixtures.command import CommandResult, FloeProject
from fixtures.saas_api import FakeSaasApi

pytestmark = [pytest.mark.slow]

ROWS = 260


def people(rows: int = ROWS) -> pa.Table:
    ids = pa.array(range(rows), pa.int64())
    text = pc.cast(ids, pa.string())
    return pa.table(
        {
            "id": ids,
            "email": pc.binary_join_element_wise("person", text, "@example.com", ""),
            "first_name": pc.binary_join_element_wise("First", text, ""),
            "score": pc.multiply(ids, 3),
            "internal": pa.array(["never sent"] * rows),
        }
    )


@attrs.frozen
class Case:
    """One preset: its destination, its secret, how the fake keys a record, what it holds."""

    name: str
    destination: Callable[[FakeSaasApi], dict[str, Any]]
    secret: Callable[[FakeSaasApi], dict[str, str]]
    held: Callable[[int], dict[str, Any]]
    """The record the fake holds for row ``n`` of :func:`people` (its key -> fields)."""
    sent_records: Callable[[Any], list[str]]
    """The keys of the records of one request body."""


def destination(preset: str, **config: Any) -> dict[str, Any]:
    return {
        "name": preset.replace("_", "-"),
        "sink_type": "rest_api",
        "connection_secret_ref": "api",
        "source_table": "gold.people",
        "primary_key": ["id"],
        "sync": "changes",
        "batch_size": 500,
        "config": {"preset": preset, **config},
    }


CASES = [
    Case(
        name="hubspot_contacts",
        destination=lambda api: {
            **destination(
                "hubspot_contacts",
                url=api.url + "/crm/v3/objects/contacts/batch/upsert",
                max_requests_per_second=200,
            ),
            "field_mapping": {
                "id": "id",
                "email": "email",
                "first_name": "firstname",
                "score": "score",
            },
        },
        secret=lambda api: {"token": api.bearer},
        held=lambda n: {"id": str(n), "firstname": f"First{n}", "score": str(3 * n)},
        sent_records=lambda body: [item["id"] for item in body["inputs"]],
    ),
    Case(
        name="salesforce_sobject_collections",
        destination=lambda api: {
            **destination(
                "salesforce_sobject_collections",
                preset_parameters={
                    "instance_url": api.url,
                    "sobject": "Contact",
                    "external_id_field": "Warehouse_Id__c",
                    "id_column": "email",
                },
            ),
            "field_mapping": {
                "id": "Person_Number__c",
                "email": "email",
                "first_name": "FirstName",
                "score": "Score__c",
            },
            "primary_key": ["id"],
        },
        secret=lambda api: {"client_id": api.client_id, "client_secret": api.client_secret},
        held=lambda n: {
            "Warehouse_Id__c": f"person{n}@example.com",
            "Person_Number__c": n,
            "FirstName": f"First{n}",
            "Score__c": 3 * n,
        },
        sent_records=lambda body: [record["Warehouse_Id__c"] for record in body["records"]],
    ),
    Case(
        name="braze_users_track",
        destination=lambda api: {
            **destination("braze_users_track", preset_parameters={"rest_endpoint": api.url}),
            "field_mapping": {"id": "id", "email": "external_id", "first_name": "first_name"},
        },
        secret=lambda api: {"token": api.bearer},
        held=lambda n: {"id": n, "first_name": f"First{n}"},
        sent_records=lambda body: [item["external_id"] for item in body["attributes"]],
    ),
    Case(
        name="mailchimp_list_members",
        destination=lambda api: {
            **destination(
                "mailchimp_list_members",
                preset_parameters={"data_center": "us6", "list_id": "a1b2c3"},
                url=api.url + "/3.0/lists/a1b2c3",
            ),
            "field_mapping": {
                "id": "ID",
                "email": "email_address",
                "first_name": "FNAME",
                "score": "SCORE",
            },
        },
        secret=lambda api: {"username": "anystring", "password": api.api_key},
        held=lambda n: {
            "email_address": f"person{n}@example.com",
            "status": "subscribed",
            "merge_fields": {"ID": n, "FNAME": f"First{n}", "SCORE": 3 * n},
        },
        sent_records=lambda body: [member["email_address"] for member in body["members"]],
    ),
]

KEY_OF = {
    "hubspot_contacts": lambda n: f"person{n}@example.com",
    "salesforce_sobject_collections": lambda n: f"person{n}@example.com",
    "braze_users_track": lambda n: f"person{n}@example.com",
    "mailchimp_list_members": lambda n: f"person{n}@example.com",
}


def run_json(project: FloeProject, *args: str) -> tuple[CommandResult, dict[str, Any]]:
    result = project.run_job("--output", "json", *args)
    assert result.code in (0, 1), result.stderr
    (record,) = result.json()
    return result, record


def rejects(project: FloeProject) -> list[dict[str, Any]]:
    result = project.run(
        "rejects", "floe.yaml", "--manifest", "manifest.yaml", "--secrets-dir", "secrets",
        "--output", "json",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    found: list[dict[str, Any]] = result.json()
    return found


@pytest.mark.requirement("4G-FR-008")
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_preset_delivers_rejects_and_resends_only_the_rejected(
    floe_project: FloeProject, saas_api: FakeSaasApi, case: Case
) -> None:
    floe_project.warehouse.write("gold.people", people())
    floe_project.secret("api", **case.secret(saas_api))
    floe_project.write_floe([case.destination(saas_api)])
    key = KEY_OF[case.name]
    refused = {7: "Property values were not valid", 131: "Email address is not allowed"}
    saas_api.refuse = {key(n): message for n, message in refused.items()}

    result, record = run_json(floe_project)
    assert result.code == 0, (record, result.stderr)
    assert record["success"], record["errors"]
    assert (record["rows_delivered"], record["rows_rejected"]) == (ROWS - 2, 2)
    assert saas_api.invalid == []
    assert saas_api.unauthorized == 0
    for n in (0, 8, ROWS - 1):
        assert saas_api.held[key(n)] == case.held(n)
    assert set(saas_api.held) == {key(n) for n in range(ROWS)} - set(saas_api.refuse)
    assert "never sent" not in json.dumps([seen.document for seen in saas_api.requests])

    listed = rejects(floe_project)
    assert sorted((r["reason"], *r["key"].values()) for r in listed) == sorted(
        (message, n) for n, message in refused.items()
    )
    assert all(r["destination"] == case.destination(saas_api)["name"] for r in listed)
    assert all(r["status"] in ("200", "201", "207") for r in listed)
    assert all(r["attempts"] == 1 for r in listed)

    # the API still refuses 131: a rerun sends only the two refused records
    saas_api.refuse = {key(131): refused[131]}
    saas_api.requests.clear()
    result, record = run_json(floe_project)
    sent = [k for seen in saas_api.requests for k in case.sent_records(seen.document)]
    assert sorted(sent) == sorted(key(n) for n in refused)
    assert (record["rows_delivered"], record["rows_rejected"]) == (1, 1)
    (still,) = rejects(floe_project)
    assert (list(still["key"].values()), still["attempts"]) == ([131], 2)

    # accepted at last: sent once more, then nothing is left to send
    saas_api.refuse = {}
    saas_api.requests.clear()
    result, record = run_json(floe_project)
    assert [k for seen in saas_api.requests for k in case.sent_records(seen.document)] == [key(131)]
    assert rejects(floe_project) == []
    saas_api.requests.clear()
    result, record = run_json(floe_project)
    assert saas_api.requests == []
    assert saas_api.invalid == []


def salesforce(api: FakeSaasApi, **config: Any) -> dict[str, Any]:
    case = next(case for case in CASES if case.name.startswith("salesforce"))
    document = case.destination(api)
    document["config"].update(config)
    return document


def test_oauth2_through_the_command_fetches_once_refreshes_once_and_never_shows_a_secret(
    floe_project: FloeProject, saas_api: FakeSaasApi
) -> None:
    floe_project.warehouse.write("gold.people", people(1_000))
    floe_project.secret("api", client_id=saas_api.client_id, client_secret=saas_api.client_secret)
    floe_project.write_floe([salesforce(saas_api)])
    saas_api.revoke_at = 2  # the third request is answered 401: the token is refreshed once
    result = floe_project.run_job("--output", "json", "-vv", "--otel-console")
    assert result.code == 0, result.stderr
    (record,) = json.loads(result.stdout[result.stdout.index("[") :].split("\n]")[0] + "\n]")
    assert record["rows_delivered"] == 1_000
    # 2 batches of 500 in requests of 200, 200, 100; one sent again after the 401
    assert len(saas_api.requests) == 7
    assert saas_api.unauthorized == 1
    assert saas_api.token_requests == 2
    assert saas_api.invalid == []
    seen = result.stdout + result.stderr
    assert "floe_sink.egress" in seen  # the spans are there, and hold no secret either
    assert saas_api.client_secret not in seen
    assert saas_api.client_secret[::-1] not in seen  # inside every access token
    assert "oauth2_token_fetched" in seen


def test_oauth2_tokens_are_refreshed_before_they_expire(
    floe_project: FloeProject, saas_api: FakeSaasApi
) -> None:
    floe_project.warehouse.write("gold.people", people(1_000))
    floe_project.secret("api", client_id=saas_api.client_id, client_secret=saas_api.client_secret)
    # 10 requests at 4 a second: 2.5 s, with tokens of 1 s (refreshed at half their life)
    floe_project.write_floe(
        [salesforce(saas_api, max_records_per_request=100, max_requests_per_second=4)]
    )
    saas_api.token_lifetime = 1.0
    result = floe_project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    assert len(saas_api.requests) == 10
    assert saas_api.unauthorized == 0  # never sent an expired token
    assert 3 <= saas_api.token_requests <= 7  # about one per half-life, not one per request


@pytest.mark.parametrize("preset", ["braze_users_track", "mailchimp_list_members"])
def test_mirror_deletes_the_records_whose_key_left_the_table(
    floe_project: FloeProject, saas_api: FakeSaasApi, preset: str
) -> None:
    case = next(case for case in CASES if case.name == preset)
    document = case.destination(saas_api)
    document["sync"] = "mirror"
    document["primary_key"] = ["email"]
    if preset == "mailchimp_list_members":
        document["config"]["delete"] = {
            "url": saas_api.url + "/3.0/lists/a1b2c3/members/{email_address}",
            "method": "DELETE",
        }
    floe_project.warehouse.write("gold.people", people())
    floe_project.secret("api", **case.secret(saas_api))
    floe_project.write_floe([document])
    _, record = run_json(floe_project)
    assert record["success"], record["errors"]
    assert len(saas_api.held) == ROWS

    gone = [3, 4, 200]
    kept = people().filter(pc.invert(pc.is_in(pc.field("id"), pa.array(gone, pa.int64()))))
    floe_project.warehouse.write("gold.people", kept)
    _, record = run_json(floe_project)
    assert record["success"], record["errors"]
    assert record["rows_deleted"] == 3
    assert sorted(saas_api.deleted) == sorted(f"person{n}@example.com" for n in gone)
    assert len(saas_api.held) == ROWS - 3
    assert saas_api.invalid == []


def test_a_template_naming_a_missing_column_stops_run_dry_run_and_plan(
    floe_project: FloeProject, saas_api: FakeSaasApi
) -> None:
    case = CASES[0]
    document = case.destination(saas_api)
    document["config"]["preset_parameters"] = {"id_column": "work_email"}
    floe_project.warehouse.write("gold.people", people())
    floe_project.secret("api", **case.secret(saas_api))
    floe_project.write_floe([document])
    for args in ([], ["--dry-run"]):
        error = floe_project.run_job(*args).assert_clean_error(2)
        assert "config.template.record.id: column 'work_email' is not in the table" in error
    plan = floe_project.run(
        "plan", "floe.yaml", "--manifest", "manifest.yaml", "--secrets-dir", "secrets"
    )
    assert "column 'work_email' is not in the table" in plan.assert_clean_error(2)
    assert saas_api.requests == []


def test_dry_run_shows_the_first_request_exactly_as_sent(
    floe_project: FloeProject, saas_api: FakeSaasApi
) -> None:
    case = CASES[0]
    floe_project.warehouse.write("gold.people", people())
    floe_project.secret("api", **case.secret(saas_api))
    floe_project.write_floe([case.destination(saas_api)])
    dry = floe_project.run_job("--dry-run", "--output", "json")
    assert dry.code == 0, dry.stderr
    (report,) = dry.json()
    request = report["first_request"]
    assert request["method"] == "POST"
    assert request["records"] == 100
    assert saas_api.requests == []
    text = floe_project.run_job("--dry-run")
    assert request["body"] in text.stdout
    assert saas_api.bearer not in text.stdout + text.stderr

    result = floe_project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    first = saas_api.requests[0]
    assert request["body"] == json.dumps(first.document, separators=(",", ":"))
    assert request["headers"]["Idempotency-Key"] == first.headers["idempotency-key"]


def test_a_refused_delete_is_listed_kept_and_sent_again(
    floe_project: FloeProject, saas_api: FakeSaasApi
) -> None:
    case = next(case for case in CASES if case.name == "mailchimp_list_members")
    document = case.destination(saas_api)
    document.update(sync="mirror", primary_key=["email"])
    document["config"]["delete"] = {
        "url": saas_api.url + "/3.0/lists/a1b2c3/members/{email_address}",
        "results": {"mode": "none", "batch_message": "detail"},
    }
    floe_project.warehouse.write("gold.people", people())
    floe_project.secret("api", **case.secret(saas_api))
    floe_project.write_floe([document])
    assert run_json(floe_project)[1]["success"]

    floe_project.warehouse.write("gold.people", people().slice(0, ROWS - 3))
    saas_api.refuse_delete = {f"person{ROWS - 2}@example.com": "This member cannot be archived"}
    _, record = run_json(floe_project)
    assert (record["rows_deleted"], record["rows_rejected"]) == (2, 1)
    (listed,) = rejects(floe_project)
    assert listed["key"] == {"email_address": f"person{ROWS - 2}@example.com"}
    assert (listed["status"], listed["reason"]) == ("400", "This member cannot be archived")

    saas_api.refuse_delete = {}
    saas_api.requests.clear()
    _, record = run_json(floe_project)
    assert record["rows_deleted"] == 1
    assert saas_api.paths("DELETE") == [f"/3.0/lists/a1b2c3/members/person{ROWS - 2}%40example.com"]
    assert saas_api.paths("POST") == []
    assert rejects(floe_project) == []
