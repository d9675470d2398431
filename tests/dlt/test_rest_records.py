"""rest_api per record: templates, limits, per-record results, bisection, auth, deletes.

The sink runs against local fakes of the APIs (tests/fixtures/saas_api.py) that validate every
body against a JSON Schema written from the vendor's documentation, and against a generic
endpoint here for what no preset shows.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from structlog.testing import capture_logs

from fixtures.saas_api import FakeSaasApi
from floe_sink import SinkConfig, SinkConfigurationError
from floe_sink.delivery import Delivery
from floe_sink.secrets import Secret
from floe_sink.state import LocalStateStore
from floe_sink_dlt.rest import RestApiSink
from floe_sink_dlt.saas.bisection import bisection_bound

FAST_RETRIES = {"initial_wait": 0.01, "max_wait": 0.05, "jitter": 0.0, "max_attempts": 4}
HUBSPOT_UPSERT = "/crm/v3/objects/contacts/batch/upsert"


def sink_for(
    connection: dict[str, Any],
    *,
    batch_size: int | None = 500,
    primary_key: list[str] | None = None,
    field_mapping: dict[str, str] | None = None,
    destination: str = "crm",
    sync: str = "full",
) -> RestApiSink:
    config = SinkConfig(
        sink_type="rest_api",
        connection_config=connection,
        batch_size=batch_size,
        retry_config=FAST_RETRIES,
        primary_key=primary_key,
        field_mapping=field_mapping,
        destination=destination,
        sync=sync if primary_key is None else "mirror",
    )
    return RestApiSink.from_config(config)


def contacts(count: int, *, prefix: str = "p") -> pa.Table:
    ids = pa.array(range(count), pa.int64())
    text = pc.cast(ids, pa.string())
    return pa.table(
        {
            "email": pc.binary_join_element_wise(prefix, text, "@example.com", ""),
            "firstname": pc.binary_join_element_wise("Name", text, ""),
            "score": ids,
            "vip": pc.equal(pc.bit_wise_and(ids, 1), 0),
        }
    )


def hubspot(api: FakeSaasApi, **extra: Any) -> dict[str, Any]:
    return {
        "preset": "hubspot_contacts",
        "url": api.url + HUBSPOT_UPSERT,
        "token": Secret(api.bearer),
        "max_requests_per_second": 1000,
        **extra,
    }


def key_of(table: pa.Table, rejection: Any, column: str = "email") -> str:
    return str(table.column(column)[rejection.index].as_py())


class Recorder:
    """A generic endpoint: ``{"records": [...]}`` of ``{"id": n, ...}``; refuses a request
    holding an id of :attr:`bad` with a bare 400 (or another status), records the rest."""

    def __init__(self) -> None:
        self.bad: set[int] = set()
        self.status = 400
        self.held: list[int] = []
        self.requests = 0
        self.bodies: list[bytes] = []
        self.keys: list[str] = []
        self.api_keys: list[str | None] = []
        self.script: list[tuple[int, Any]] = []
        self.echo = False
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.lock:
                    owner.keys.append(str(self.headers.get("Idempotency-Key")))
                    owner.api_keys.append(self.headers.get("X-Api-Key"))
                if owner.echo:
                    status, answer = (
                        401,
                        {
                            "error": "denied",
                            "authorization": self.headers.get("Authorization"),
                            "key": self.headers.get("X-Api-Key"),
                        },
                    )
                else:
                    status, answer = owner.answer(body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/in"

    def answer(self, body: bytes) -> tuple[int, Any]:
        document = json.loads(body)
        ids = [record["id"] for record in document["records"]]
        with self.lock:
            self.requests += 1
            self.bodies.append(body)
            if self.script:
                return self.script.pop(0)
            if self.bad & set(ids):
                return self.status, {"error": "the request is invalid"}
            self.held.extend(ids)
        return 200, {"ok": True}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    fake = Recorder()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def numbered(count: int) -> pa.Table:
    ids = pa.array(range(count), pa.int64())
    return pa.table(
        {"id": ids, "name": pc.binary_join_element_wise("n", pc.cast(ids, pa.string()), "")}
    )


GENERIC_TEMPLATE = {"records_key": "records", "record": {"remaining": True}}


# -- per-record results -------------------------------------------------------------------------


@pytest.mark.requirement("4G-FR-008")
def test_hubspot_refusals_are_rejected_with_the_message_and_the_rest_delivered(
    saas_api: FakeSaasApi,
) -> None:
    table = contacts(250)
    saas_api.refuse = {
        "p7@example.com": "Property values were not valid: score",
        "p150@example.com": "Email address p150@example.com is invalid",
    }
    result = sink_for(hubspot(saas_api)).write(table)
    assert result.success, result.errors
    assert (result.rows_delivered, result.rows_rejected) == (248, 2)
    assert saas_api.invalid == []
    assert sorted(saas_api.held) == sorted(
        set(table.column("email").to_pylist()) - set(saas_api.refuse)
    )
    # every property a string, as HubSpot requires
    held = saas_api.held["p8@example.com"]
    assert held == {"firstname": "Name8", "score": "8", "vip": "true"}
    assert len(saas_api.requests) == 3


@pytest.mark.requirement("4G-FR-008")
def test_rejections_reach_the_dead_letter_store_with_the_api_message(
    saas_api: FakeSaasApi, tmp_path: Path
) -> None:
    table = contacts(120)
    saas_api.refuse = {"p3@example.com": "Property values were not valid"}
    store = LocalStateStore(tmp_path / "state")
    delivery = Delivery("crm", delivery_id=store.create_delivery("crm", "plan", None), store=store)
    delivery.track_rejects(["email"], [])
    result = sink_for(hubspot(saas_api)).write(table, delivery)
    assert result.rows_rejected == 1
    (filed,) = store.rejects("crm")
    assert filed.key == {"email": "p3@example.com"}
    assert filed.status == "207"
    assert filed.message == "Property values were not valid"
    assert filed.record["firstname"] == "Name3"
    store.close()


def test_a_null_required_field_is_rejected_without_a_request(saas_api: FakeSaasApi) -> None:
    table = contacts(10)
    emails = table.column("email").to_pylist()
    emails[4] = None
    table = table.set_column(0, "email", pa.array(emails))
    sink = sink_for(hubspot(saas_api))
    with capture_logs() as events:
        result = sink.write(table)
    assert (result.rows_delivered, result.rows_rejected) == (9, 1)
    (request,) = saas_api.requests
    assert len(request.document["inputs"]) == 9
    assert saas_api.invalid == []
    assert "Name4" not in repr(events)


def test_whole_batch_400_with_one_bad_record_in_1000_is_bisected(recorder: Recorder) -> None:
    recorder.bad = {666}
    table = numbered(1_000)
    sink = sink_for({"url": recorder.url, "template": GENERIC_TEMPLATE}, batch_size=1_000)
    store_delivery = Delivery("crm")
    result = sink.write(table, store_delivery)
    assert result.success, result.errors
    assert (result.rows_delivered, result.rows_rejected) == (999, 1)
    assert sorted(recorder.held) == [n for n in range(1_000) if n != 666]
    assert recorder.requests <= 1 + bisection_bound(1_000, 1)  # 21
    assert store_delivery.rejections == [(0, 666)]


def test_bisection_rejects_each_bad_record_with_the_refusal(recorder: Recorder) -> None:
    recorder.bad = {3, 40, 41}
    recorder.status = 422
    sink = sink_for({"url": recorder.url, "template": GENERIC_TEMPLATE}, batch_size=64)
    delivery = Delivery("crm")
    result = sink.write(numbered(64), delivery)
    assert (result.rows_delivered, result.rows_rejected) == (61, 3)
    assert sorted(row for _, row in delivery.rejections) == [3, 40, 41]
    assert recorder.requests <= 1 + bisection_bound(64, 3)


def test_a_plain_config_still_fails_fast_on_a_400(recorder: Recorder) -> None:
    # no template, results or limits: the batch is one JSON array and a 400 stops the write
    recorder.bad = {5}
    result = sink_for({"url": recorder.url, "records_key": "records"}, batch_size=10).write(
        numbered(30)
    )
    assert not result.success
    assert result.rows_delivered == 0
    assert "HTTP 400" in result.errors[0]
    assert recorder.requests == 1


def test_a_fatal_answer_fails_the_write(recorder: Recorder) -> None:
    recorder.script = [(401, {"error": "bad token"})]
    result = sink_for({"url": recorder.url, "template": GENERIC_TEMPLATE}, batch_size=10).write(
        numbered(30)
    )
    assert not result.success
    assert "HTTP 401" in result.errors[0]
    assert "not the records" in result.errors[0]
    assert recorder.requests == 1


def test_5xx_are_retried_then_settled(recorder: Recorder) -> None:
    recorder.script = [(503, {"error": "busy"}), (429, {"error": "slow"})]
    result = sink_for({"url": recorder.url, "template": GENERIC_TEMPLATE}, batch_size=10).write(
        numbered(10)
    )
    assert result.success, result.errors
    assert result.rows_delivered == 10
    assert recorder.requests == 3


def test_retryable_records_are_sent_again_then_rejected(recorder: Recorder) -> None:
    # a 4xx naming record 1: record 1 rejected; the others were not applied: sent again
    named = (409, {"errors": [{"id": "1", "message": "conflict"}]})
    spec = {"mode": "by_key", "errors": "errors", "key": "id", "message": "message"}
    config = {
        "url": recorder.url,
        "template": {
            "records_key": "records",
            "record": {"id": {"column": "id", "required": True}, "name": {"column": "name"}},
        },
        "results": spec,
    }
    recorder.script = [named]
    delivery = Delivery("crm")
    result = sink_for(config, batch_size=4).write(numbered(4), delivery)
    assert (result.rows_delivered, result.rows_rejected) == (3, 1)
    assert recorder.requests == 2
    assert json.loads(recorder.bodies[1])["records"] == [
        {"id": 0, "name": "n0"},
        {"id": 2, "name": "n2"},
        {"id": 3, "name": "n3"},
    ]
    # an answer that keeps not saying: rejected after RECORD_ROUNDS attempts, to go next run
    ambiguous = (200, {"errors": [{"message": "something failed"}]})
    recorder.script = [ambiguous] * 3
    recorder.requests = 0
    bisect_off = {**config, "results": {**spec, "bisect": False}}
    result = sink_for(bisect_off, batch_size=2).write(numbered(2))
    assert result.rows_rejected == 2
    assert recorder.requests == 3


def test_max_body_bytes_cuts_requests_and_rejects_a_record_too_big(recorder: Recorder) -> None:
    names = ["x" * 10] * 40
    names[7] = "y" * 500
    table = pa.table({"id": pa.array(range(40), pa.int64()), "name": names})
    config = {"url": recorder.url, "template": GENERIC_TEMPLATE, "max_body_bytes": 200}
    delivery = Delivery("crm")
    result = sink_for(config, batch_size=40).write(table, delivery)
    assert (result.rows_delivered, result.rows_rejected) == (39, 1)
    assert delivery.rejections == [(0, 7)]
    assert all(len(body) <= 200 for body in recorder.bodies)
    assert sorted(recorder.held) == [n for n in range(40) if n != 7]


def test_max_records_per_request_without_a_template_keeps_the_plain_record_shape(
    recorder: Recorder,
) -> None:
    config = {"url": recorder.url, "records_key": "records", "max_records_per_request": 3}
    result = sink_for(config, batch_size=10).write(numbered(10))
    assert result.success, result.errors
    assert [len(json.loads(body)["records"]) for body in recorder.bodies] == [3, 3, 3, 1]
    assert json.loads(recorder.bodies[0])["records"][0] == {"id": 0, "name": "n0"}


def test_idempotency_keys_are_stable_per_request(recorder: Recorder) -> None:
    config = {"url": recorder.url, "template": GENERIC_TEMPLATE, "max_records_per_request": 3}
    sink_for(config, batch_size=10).write(numbered(10))
    first, recorder.keys = recorder.keys, []
    sink_for(config, batch_size=10).write(numbered(10))
    assert recorder.keys == first
    assert len(set(first)) == 4


# -- templates and configuration ---------------------------------------------------------------


def test_a_template_naming_a_missing_column_fails_before_anything_is_sent(
    saas_api: FakeSaasApi,
) -> None:
    sink = sink_for(hubspot(saas_api, preset_parameters={"id_column": "mail"}))
    with pytest.raises(SinkConfigurationError) as caught:
        sink.check_schema(contacts(3).schema)
    assert "config.template.record.id: column 'mail' is not in the table" in str(caught.value)
    with pytest.raises(SinkConfigurationError, match="column 'mail' is not in the table"):
        sink.write(contacts(3))
    assert saas_api.requests == []


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        ({"preset": "hubspot"}, "config.preset: no preset named 'hubspot'"),
        ({"preset_parameters": {"a": "b"}}, "config.preset_parameters: fill a preset's"),
        (
            {"preset": "braze_users_track"},
            "config.preset_parameters.rest_endpoint: preset braze_users_track needs it",
        ),
        (
            {"template": {"record": {"id": {"column": "id", "as": "text"}}}},
            "config.template.record.id.as",
        ),
        ({"template": {"record": {}}, "records_key": "x"}, "config.records_key: does not go with"),
        ({"results": {"mode": "by_row"}}, "config.results.mode: must be one of"),
        (
            {"results": {"mode": "by_key", "errors": "errors", "key": "id"}},
            "config.record_key: is needed for results by key",
        ),
        ({"max_body_bytes": 0}, "config.max_body_bytes: must be an integer >= 1"),
        ({"max_records_per_request": "10"}, "config.max_records_per_request: expected an integer"),
        (
            {"rate_limit_headers": {"remain": "X"}},
            "config.rate_limit_headers.remain: unknown key",
        ),
        ({"auth": {"type": "magic"}}, "config.auth.type: must be one of"),
        ({"auth": {"type": "basic"}}, "config.auth: type basic needs the key(s) 'username'"),
        (
            {
                "auth": {"type": "oauth2_client_credentials"},
                "client_id": Secret("a"),
                "client_secret": Secret("b"),
            },
            "config.auth.token_url: is required",
        ),
        (
            {
                "auth": {"type": "api_key", "header": "X-Key"},
                "api_key": Secret("k"),
                "headers": {"X-Key": "v"},
            },
            "config.headers: must not set X-Key",
        ),
        (
            {"auth": {"type": "api_key"}, "api_key": Secret("two words")},
            "key 'api_key' is empty or holds",
        ),
        (
            {"delete": {"url": "https://x/{id}", "template": {"record": 1}}},
            "config.delete: either the URL",
        ),
        ({"delete": {"url": "https://x/del"}}, "config.delete.template: needs 'record'"),
        (
            {"delete": {"url": "https://x/{email}"}},
            "config.delete: names column(s) 'email' that are not",
        ),
    ],
)
def test_bad_config_is_refused_naming_the_key(connection: dict[str, Any], message: str) -> None:
    base = {"url": "http://127.0.0.1:9/in"}
    with pytest.raises(SinkConfigurationError) as caught:
        sink_for({**base, **connection}, primary_key=["id"])
    assert message in str(caught.value)
    for secret in ("two words",):
        assert secret not in str(caught.value)


def test_a_preset_with_the_users_keys_over_it() -> None:
    sink = sink_for(
        {
            "preset": "mailchimp_list_members",
            "preset_parameters": {"data_center": "us6", "list_id": "a1b2"},
            "max_records_per_request": 100,
            "username": Secret("anystring"),
            "password": Secret("k-us6"),
        },
        primary_key=["email_address"],
    )
    options = sink.options
    assert options.url == "https://us6.api.mailchimp.com/3.0/lists/a1b2"
    assert options.max_records_per_request == 100  # the user's
    assert options.record_key == "email_address"  # the preset's
    assert sink.supports_deletes
    assert "k-us6" not in repr(sink) + repr(options)


def test_supports_deletes_only_with_a_delete_request(saas_api: FakeSaasApi) -> None:
    assert not sink_for({"url": "http://127.0.0.1:9/in"}).supports_deletes
    assert sink_for(hubspot(saas_api), primary_key=["hs_object_id"]).supports_deletes


def test_preview_request_is_the_first_body_exactly(saas_api: FakeSaasApi) -> None:
    table = contacts(250)
    sink = sink_for(hubspot(saas_api))
    preview = sink.preview_request(table.to_batches()[0])
    sink.write(table)
    first = saas_api.requests[0]
    assert preview["body"] == json.dumps(first.document, separators=(",", ":"))
    assert preview["records"] == 100
    assert preview["headers"]["Idempotency-Key"] == first.headers["idempotency-key"]
    assert "Authorization" not in preview["headers"]


# -- authentication ---------------------------------------------------------------------------


def test_oauth2_fetches_a_token_once_and_refreshes_once_on_a_401(saas_api: FakeSaasApi) -> None:
    connection = {
        "preset": "salesforce_sobject_collections",
        "preset_parameters": {
            "instance_url": saas_api.url,
            "external_id_field": "Ext_Id__c",
            "id_column": "email",
        },
        "client_id": Secret(saas_api.client_id),
        "client_secret": Secret(saas_api.client_secret),
    }
    table = contacts(450)
    with capture_logs() as events:
        result = sink_for(connection, batch_size=450).write(table)
        assert result.success, result.errors
        assert saas_api.token_requests == 1  # 3 requests, one token
        saas_api.revoke()
        again = sink_for(connection, batch_size=450)
        again.write(contacts(10, prefix="q"))
    assert saas_api.invalid == []
    assert len(saas_api.held) == 460
    assert saas_api.token_requests == 2
    seen = repr(events) + repr(result)
    assert saas_api.client_secret not in seen
    assert "tok-" not in seen


def test_basic_and_api_key_headers(saas_api: FakeSaasApi, recorder: Recorder) -> None:
    connection = {
        "preset": "mailchimp_list_members",
        "preset_parameters": {"data_center": "us6", "list_id": "a1b2"},
        "url": saas_api.url + "/3.0/lists/a1b2",
        "username": Secret("anystring"),
        "password": Secret(saas_api.api_key),
    }
    table = contacts(3).rename_columns(["email_address", "FNAME", "SCORE", "VIP"]).drop(["VIP"])
    result = sink_for(connection).write(table)
    assert result.success, result.errors
    assert saas_api.invalid == []
    assert saas_api.held["p1@example.com"]["merge_fields"] == {"FNAME": "Name1", "SCORE": 1}

    config = {
        "url": recorder.url,
        "template": GENERIC_TEMPLATE,
        "auth": {"type": "api_key", "header": "X-Api-Key"},
        "api_key": Secret("key-123"),
    }
    assert sink_for(config).write(numbered(2)).success
    assert recorder.api_keys == ["key-123"]


@pytest.mark.parametrize("kind", ["basic", "api_key", "oauth2"])
def test_an_api_echoing_the_credentials_never_gets_them_into_errors_or_logs(
    recorder: Recorder, saas_api: FakeSaasApi, kind: str
) -> None:
    secret = "s3cr3t-value-never-shown"
    connections: dict[str, dict[str, Any]] = {
        "basic": {"auth": {"type": "basic"}, "username": Secret("u"), "password": Secret(secret)},
        "api_key": {"auth": {"type": "api_key"}, "api_key": Secret(secret)},
        "oauth2": {
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": saas_api.url + "/services/oauth2/token",
                "client_auth": "post",
            },
            "client_id": Secret(saas_api.client_id),
            "client_secret": Secret(saas_api.client_secret),
        },
    }
    recorder.echo = True  # a 401 whose body quotes the request's credentials
    sink = sink_for({"url": recorder.url, "template": GENERIC_TEMPLATE, **connections[kind]})
    with capture_logs() as events:
        result = sink.write(numbered(3))
    assert not result.success
    assert "HTTP 401" in result.errors[0]
    assert "***" in result.errors[0]
    seen = repr(events) + repr(result) + " ".join(result.errors)
    assert secret not in seen
    assert saas_api.client_secret not in seen
    assert "tok-" not in seen  # the OAuth2 access token
    assert base64.b64encode(f"u:{secret}".encode()).decode() not in seen


def test_an_api_key_no_header_can_carry_is_never_quoted(recorder: Recorder) -> None:
    secret = "s3cr3t-value-never-shown"
    config = {"url": recorder.url, "template": GENERIC_TEMPLATE, "auth": {"type": "api_key"}}
    sink = sink_for({**config, "api_key": Secret(secret)})
    sink.options = attrs.evolve(sink.options, credentials={"api_key": Secret(secret + "\n")})
    with capture_logs() as events:
        result = sink.write(numbered(3))
    assert not result.success
    assert "cannot send the request" in result.errors[0]
    assert secret not in repr(events) + repr(result)
    assert recorder.requests == 0


# -- deletes --------------------------------------------------------------------------------------


def test_deletes_in_a_body_template(saas_api: FakeSaasApi) -> None:
    sink = sink_for(hubspot(saas_api), primary_key=["hs_object_id"])
    assert sink.options.delete is not None
    delete = attrs.evolve(
        sink.options.delete, url=saas_api.url + "/crm/v3/objects/contacts/batch/archive"
    )
    sink.options = attrs.evolve(sink.options, delete=delete)
    keys = pa.table({"hs_object_id": pa.array(range(1000, 1250), pa.int64())})
    result = sink.delete(keys)
    assert result.success, result.errors
    assert result.rows_delivered == 250
    assert saas_api.invalid == []
    assert saas_api.deleted == [str(n) for n in range(1000, 1250)]
    assert len(saas_api.paths("POST")) == 3


def test_deletes_with_the_key_in_the_url(saas_api: FakeSaasApi) -> None:
    connection = {
        "preset": "mailchimp_list_members",
        "preset_parameters": {"data_center": "us6", "list_id": "a1b2"},
        "url": saas_api.url + "/3.0/lists/a1b2",
        "username": Secret("anystring"),
        "password": Secret(saas_api.api_key),
    }
    sink = sink_for(connection, primary_key=["email_address"])
    assert sink.options.delete is not None
    delete = attrs.evolve(
        sink.options.delete, url=saas_api.url + "/3.0/lists/a1b2/members/{email_address}"
    )
    sink.options = attrs.evolve(sink.options, delete=delete)
    saas_api.held = {"a+1@example.com": {}, "b@example.com": {}}
    keys = pa.table({"email_address": ["a+1@example.com", "b@example.com", "gone@example.com"]})
    result = sink.delete(keys)
    assert result.success, result.errors
    assert result.rows_delivered == 3  # the 404 of one already gone counts as deleted
    assert saas_api.held == {}
    assert saas_api.paths("DELETE")[0] == "/3.0/lists/a1b2/members/a%2B1%40example.com"
