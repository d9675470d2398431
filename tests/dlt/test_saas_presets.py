"""Presets (floe_sink_dlt.saas.presets): their bodies validate against JSON Schemas written
from the vendors' documentation (tests/dlt/saas_schemas/), and the building blocks together
deliver to a local fake of each API that answers in the documented shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import httpx
import jsonschema
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from floe_sink.errors import SinkConfigurationError
from floe_sink.secrets import Secret
from floe_sink_dlt.saas.auth import auth_from_config
from floe_sink_dlt.saas.bisection import bisect, bisection_bound
from floe_sink_dlt.saas.pacing import AdaptivePacer
from floe_sink_dlt.saas.presets import Preset, PresetParts, load_preset, preset_names
from floe_sink_dlt.saas.results import RecordOutcome, RecordStatus, ResponseVerdict
from floe_sink_dlt.saas.splitting import plan_requests
from floe_sink_dlt.saas.template import CompiledTemplate
from strategies import delivery_tables

SCHEMAS = Path(__file__).parent / "saas_schemas"
BRAZE = {"rest_endpoint": "https://rest.iad-01.braze.com"}
D, R, T = RecordStatus.DELIVERED, RecordStatus.REJECTED, RecordStatus.RETRYABLE


def schema(name: str) -> jsonschema.protocols.Validator:
    document = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


HUBSPOT_UPSERT = schema("hubspot_contacts_batch_upsert")
HUBSPOT_ARCHIVE = schema("hubspot_contacts_batch_archive")
BRAZE_TRACK = schema("braze_users_track")
BRAZE_DELETE = schema("braze_users_delete")


def parts(name: str, **parameters: str) -> PresetParts:
    return PresetParts.parse(load_preset(name).resolve(parameters or None))


def request_bodies(
    compiled: CompiledTemplate, batch: pa.RecordBatch, max_records: int | None
) -> tuple[list[bytes], int]:
    """The bodies the loop would send for ``batch``, and how many rows it rejects unsent."""
    invalid = compiled.required_nulls(batch)
    rejected = 0
    if invalid is not None:
        rejected = pc.sum(invalid).as_py() or 0
        batch = batch.filter(pc.invert(invalid))
    records = compiled.encode_records(batch)
    plan = plan_requests(records, envelope_bytes=compiled.envelope_bytes, max_records=max_records)
    return [compiled.body(records.slice(a, b - a)) for a, b in plan.ranges], rejected


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    assume(name not in table.column_names)
    return table.append_column(name, values)


def ids(count: int, prefix: str, nulls: list[bool] | None = None) -> pa.Array:
    values = [None if nulls and nulls[n] else f"{prefix}{n}@example.com" for n in range(count)]
    return pa.array(values, pa.string())


KINDS = (
    "int64",
    "float64",
    "string",
    "bool",
    "timestamp_tz",
    "timestamp_naive",
    "date",
    "decimal",
    "category",
    "list_int",
    "binary",
)


# -- the schemas and the presets' bodies --------------------------------------------------------


def test_the_presets_that_ship() -> None:
    assert preset_names() == (
        "braze_users_track",
        "hubspot_contacts",
        "mailchimp_list_members",
        "salesforce_sobject_collections",
    )
    for name in preset_names():
        preset = load_preset(name)
        assert preset.name == name
        assert preset.description
        assert all(url.startswith("https://") for url in preset.documentation)


@given(table=delivery_tables(kinds=KINDS, max_rows=20, max_columns=4), data=st.data())
def test_hubspot_bodies_validate_against_the_documented_schema(
    table: pa.Table, data: st.DataObject
) -> None:
    nulls = data.draw(st.lists(st.booleans(), min_size=table.num_rows, max_size=table.num_rows))
    table = with_column(table, "email", ids(table.num_rows, "c", nulls))
    hubspot = parts("hubspot_contacts")
    compiled = hubspot.template.compile(table.schema)
    for batch in table.to_batches() or []:
        bodies, rejected = request_bodies(compiled, batch, hubspot.max_records_per_request)
        assert rejected == sum(nulls)  # a contact without its id is rejected unsent
        for body in bodies:
            document = json.loads(body)
            HUBSPOT_UPSERT.validate(document)
            for item in document["inputs"]:
                assert item["idProperty"] == "email"
                assert set(item["properties"]) <= set(table.column_names) - {"email"}


@given(table=delivery_tables(kinds=KINDS, max_rows=20, max_columns=4))
def test_braze_bodies_validate_against_the_documented_schema(table: pa.Table) -> None:
    table = with_column(table, "external_id", ids(table.num_rows, "u"))
    braze = parts("braze_users_track", **BRAZE)
    compiled = braze.template.compile(table.schema)
    for batch in table.to_batches():
        bodies, rejected = request_bodies(compiled, batch, braze.max_records_per_request)
        assert rejected == 0
        sent = []
        for body in bodies:
            document = json.loads(body)
            BRAZE_TRACK.validate(document)
            sent.extend(attributes["external_id"] for attributes in document["attributes"])
        assert sent == batch.column("external_id").to_pylist()


def test_large_batches_are_cut_at_the_documented_counts() -> None:
    rows = 250
    table = pa.table(
        {
            "email": ids(rows, "c"),
            "external_id": ids(rows, "u"),
            "hs_object_id": pa.array(range(1000, 1000 + rows), pa.int64()),
            "score": pa.array([n / 3 for n in range(rows)]),
        }
    )
    batch = table.to_batches()[0]
    cases = [
        (parts("hubspot_contacts"), HUBSPOT_UPSERT, HUBSPOT_ARCHIVE, [100, 100, 50], [100] * 2),
        (parts("braze_users_track", **BRAZE), BRAZE_TRACK, BRAZE_DELETE, [75] * 3 + [25], [50] * 5),
    ]
    for preset, upsert_schema, delete_schema, upserts, deletes in cases:
        bodies, _ = request_bodies(
            preset.template.compile(table.schema), batch, preset.max_records_per_request
        )
        counts = []
        for body in bodies:
            document = json.loads(body)
            upsert_schema.validate(document)
            counts.append(len(next(iter(document.values()))))
        assert counts == upserts
        assert preset.delete is not None
        delete = preset.delete.template.compile(table.schema)
        bodies, _ = request_bodies(delete, batch, preset.delete.max_records_per_request)
        counts = []
        for body in bodies:
            document = json.loads(body)
            delete_schema.validate(document)
            counts.append(len(next(iter(document.values()))))
        assert counts[: len(deletes)] == deletes


@pytest.mark.parametrize(
    ("validator", "document"),
    [
        (HUBSPOT_UPSERT, {"inputs": [{"idProperty": "email", "id": "a", "properties": {"n": 1}}]}),
        (HUBSPOT_UPSERT, {"inputs": [{"idProperty": "email", "properties": {}}]}),
        (HUBSPOT_UPSERT, {"inputs": [{"id": "a", "properties": {"x": None}}]}),
        (HUBSPOT_UPSERT, {"inputs": [{"id": "a", "properties": {}}] * 101}),
        (HUBSPOT_UPSERT, {"inputs": []}),
        (HUBSPOT_UPSERT, [{"id": "a", "properties": {}}]),
        (HUBSPOT_ARCHIVE, {"inputs": [{"id": 5}]}),
        (BRAZE_TRACK, {"attributes": [{"first_name": "Ann"}]}),
        (BRAZE_TRACK, {"attributes": [{"external_id": 12}]}),
        (BRAZE_TRACK, {"attributes": [{"external_id": "u"}] * 76}),
        (BRAZE_TRACK, {"users": []}),
        (BRAZE_DELETE, {"external_ids": ["u"] * 51}),
    ],
)
def test_the_schemas_refuse_what_the_apis_refuse(
    validator: jsonschema.protocols.Validator, document: Any
) -> None:
    assert not validator.is_valid(document)


def test_a_template_error_names_the_preset_field() -> None:
    table = pa.schema([("mail", pa.string())])
    with pytest.raises(SinkConfigurationError) as caught:
        parts("hubspot_contacts").template.compile(table)
    assert str(caught.value).startswith(
        "config.template.record.id: column 'email' is not in the table; columns: mail"
    )
    custom = parts("hubspot_contacts", id_column="mail", id_property="work_email")
    body = custom.template.compile(table).encode(pa.record_batch({"mail": ["m@x.io"]}))
    assert json.loads(body) == {
        "inputs": [{"idProperty": "work_email", "id": "m@x.io", "properties": {}}]
    }


# -- resolving presets ---------------------------------------------------------------------------


def test_a_required_parameter_must_be_given() -> None:
    with pytest.raises(SinkConfigurationError, match=r"preset_parameters\.rest_endpoint: preset"):
        load_preset("braze_users_track").resolve()
    config = load_preset("braze_users_track").resolve(BRAZE)
    assert config["url"] == "https://rest.iad-01.braze.com/users/track"
    assert config["delete"]["url"] == "https://rest.iad-01.braze.com/users/delete"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"id_colum": "x"}, "unknown parameter(s) 'id_colum' for preset hubspot_contacts"),
        ({"id_column": 3}, "preset_parameters.id_column: must be a non-empty string"),
        ({"id_column": ""}, "preset_parameters.id_column: must be a non-empty string"),
    ],
)
def test_bad_parameters_are_refused(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        load_preset("hubspot_contacts").resolve(parameters)
    assert message in str(caught.value)


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(SinkConfigurationError, match="no preset named 'hubspot'; presets: braze"):
        load_preset("hubspot")


def test_resolving_does_not_change_the_preset() -> None:
    preset = load_preset("hubspot_contacts")
    first = preset.resolve({"id_column": "a"})
    first["template"]["record"]["idProperty"] = "changed"
    assert preset.resolve()["template"]["record"]["id"]["column"] == "email"
    assert preset.config["template"]["record"]["idProperty"] == "${id_property}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "x.yaml: must be a mapping"),
        ({"name": "x", "config": {}, "extra": 1}, "(unknown: extra)"),
        ({"name": "x"}, "needs name, description"),
        ({"name": "x", "config": {"url": "${host}/a"}}, "placeholder(s) host have no parameter"),
        ({"name": "x", "config": {}, "parameters": []}, "parameters must be a mapping"),
    ],
)
def test_malformed_preset_data_is_refused(data: Any, message: str) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        Preset.from_data(data, source="x.yaml")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "ftp://x"}, "config.url: must be an http:// or https:// URL"),
        ({"method": "GET"}, "config.method: must be one of POST, PUT, PATCH, DELETE"),
        ({"max_records_per_request": 0}, "config.max_records_per_request: must be an integer"),
        ({"max_requests_per_second": -1}, "config.max_requests_per_second: must be a number"),
        ({"auth": {"type": "magic"}}, "config.auth.type: must be one of"),
        ({"retries": 3}, "config.retries: unknown key (allowed: url, method, auth"),
        ({"delete": {"url": "https://x", "template": {}}}, "config.delete.template: needs"),
        (
            {"delete": {"url": "https://x", "path": "/a"}},
            "config.delete.path: unknown key (allowed: url, method",
        ),
        ({"delete": []}, "config.delete: expected a mapping, got a list"),
        ({"results": {"mode": "by_row"}}, "config.results.mode: must be one of"),
    ],
)
def test_bad_preset_configs_name_the_key(change: dict[str, Any], message: str) -> None:
    config = {**load_preset("hubspot_contacts").resolve(), **change}
    with pytest.raises(SinkConfigurationError) as caught:
        PresetParts.parse(config)
    assert message in str(caught.value)


# -- the building blocks together, against local fakes of the APIs ------------------------------


class FakeSaas:
    """HubSpot- and Braze-shaped endpoints on 127.0.0.1 that validate every body against the
    schema and refuse the records whose id is in :attr:`refuse` (with the API's message)."""

    def __init__(self) -> None:
        self.refuse: set[str] = set()
        self.refuse_whole = False  # answer a bare 400 instead of per-record errors
        self.accepted: list[str] = []
        self.requests = 0
        self.authorizations: set[str | None] = set()
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer, headers = owner.answer(self.path, self.headers, json.loads(body))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, headers: Any, document: Any) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests += 1
            self.authorizations.add(headers.get("Authorization"))
        if path.endswith("/batch/upsert"):
            return self.hubspot(document)
        return self.braze(document)

    def hubspot(self, document: Any) -> tuple[int, Any, dict[str, str]]:
        rate = {
            "X-HubSpot-RateLimit-Remaining": "90",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
        if not HUBSPOT_UPSERT.is_valid(document):
            return 400, {"status": "error", "category": "VALIDATION_ERROR"}, rate
        ids_sent = [item["id"] for item in document["inputs"]]
        bad = [key for key in ids_sent if key in self.refuse]
        if bad and self.refuse_whole:
            return 400, {"status": "error", "message": "Invalid input", "category": "X"}, rate
        with self.lock:
            self.accepted.extend(key for key in ids_sent if key not in self.refuse)
        errors = [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": f"Property values were not valid for {key}",
                "context": {"ids": [key]},
            }
            for key in bad
        ]
        answer = {"status": "COMPLETE", "results": [], "errors": errors, "numErrors": len(bad)}
        return (207 if bad else 200), answer, rate

    def braze(self, document: Any) -> tuple[int, Any, dict[str, str]]:
        if not BRAZE_TRACK.is_valid(document):
            return 400, {"message": "Valid data must be provided"}, {}
        sent = [item["external_id"] for item in document["attributes"]]
        errors = [
            {"type": f"'{key}' cannot be updated", "input_array": "attributes", "index": index}
            for index, key in enumerate(sent)
            if key in self.refuse
        ]
        with self.lock:
            self.accepted.extend(key for key in sent if key not in self.refuse)
        answer: dict[str, Any] = {"message": "success", "attributes_processed": len(sent)}
        if errors:
            answer["errors"] = errors
        return 201, answer, {"X-RateLimit-Remaining": "2999", "X-RateLimit-Reset": "3"}


@pytest.fixture
def saas() -> Iterator[FakeSaas]:
    fake = FakeSaas()
    thread = threading.Thread(
        target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def deliver(preset: PresetParts, table: pa.Table, key_column: str) -> list[RecordOutcome]:
    """A minimal delivery loop over the building blocks (the sink's will do more)."""
    compiled = preset.template.compile(table.schema)
    auth = auth_from_config(preset.auth, {"token": Secret("private-app-token")})
    pacer = AdaptivePacer(
        max_requests_per_second=preset.max_requests_per_second,
        headers=preset.rate_limit_headers,
    )
    outcomes: list[RecordOutcome] = []
    with httpx.Client(auth=auth) as client:
        for batch in table.to_batches():
            records = compiled.encode_records(batch)
            keys = batch.column(key_column).to_pylist()  # keys only, not the rows
            plan = plan_requests(
                records,
                envelope_bytes=compiled.envelope_bytes,
                max_body_bytes=preset.max_body_bytes,
                max_records=preset.max_records_per_request,
            )
            for start, stop in plan.ranges:

                def send(
                    positions: list[int],
                    start: int = start,
                    records: pa.Array = records,
                    keys: list[Any] = keys,
                ) -> ResponseVerdict:
                    pacer.acquire()
                    taken = records.take(pa.array([start + p for p in positions], pa.int64()))
                    response = client.post(preset.url, content=compiled.body(taken))
                    pacer.observe(response.status_code, response.headers)
                    return preset.results.judge(
                        [keys[start + p] for p in positions],
                        response.status_code,
                        response.headers,
                        response.content,
                    )

                verdict = send(list(range(stop - start)))
                if verdict.bisect:
                    outcomes.extend(bisect(verdict, send).outcomes)
                else:
                    outcomes.extend(verdict.outcomes)
    return outcomes


def at_url(preset: PresetParts, url: str) -> PresetParts:
    """``preset`` sending to the fake API instead of the vendor's."""
    return attrs.evolve(preset, url=url)


def people(count: int, column: str) -> pa.Table:
    return pa.table(
        {
            column: ids(count, "p"),
            "first_name": pa.array([f"Name{n}" for n in range(count)]),
            "score": pa.array(range(count), pa.int64()),
        }
    )


def test_hubspot_207s_reject_the_named_contacts_and_deliver_the_rest(saas: FakeSaas) -> None:
    preset = at_url(parts("hubspot_contacts"), saas.url() + "/crm/v3/objects/contacts/batch/upsert")
    table = people(230, "email")
    saas.refuse = {"p7@example.com", "p150@example.com"}
    outcomes = deliver(preset, table, "email")
    rejected = {o.key: o for o in outcomes if o.status is R}
    assert set(rejected) == saas.refuse
    assert rejected["p150@example.com"].message == (
        "Property values were not valid for p150@example.com"
    )
    assert rejected["p150@example.com"].http_status == 207
    assert sorted(saas.accepted) == sorted(set(table.column("email").to_pylist()) - saas.refuse)
    assert saas.requests == 3  # 100 + 100 + 30
    assert saas.authorizations == {"Bearer private-app-token"}

    # the rejected ones once the API accepts them: a rerun sends only those
    saas.refuse, saas.accepted, saas.requests = set(), [], 0
    rerun = table.filter(pc.is_in(table.column("email"), pa.array(sorted(rejected))))
    assert {o.status for o in deliver(preset, rerun, "email")} == {D}
    assert sorted(saas.accepted) == sorted(rejected)
    assert saas.requests == 1


def test_a_whole_batch_400_is_bisected_to_the_bad_contact(saas: FakeSaas) -> None:
    preset = at_url(parts("hubspot_contacts"), saas.url() + "/crm/v3/objects/contacts/batch/upsert")
    table = people(100, "email")
    saas.refuse, saas.refuse_whole = {"p42@example.com"}, True
    outcomes = deliver(preset, table, "email")
    assert [o.key for o in outcomes if o.status is R] == ["p42@example.com"]
    assert len([o for o in outcomes if o.status is D]) == 99
    assert saas.requests <= 1 + bisection_bound(100, 1)  # the first, then 2 a halving: 15


def test_braze_minor_errors_reject_by_index(saas: FakeSaas) -> None:
    preset = at_url(parts("braze_users_track", **BRAZE), saas.url() + "/users/track")
    table = people(160, "external_id")
    saas.refuse = {"p3@example.com", "p80@example.com", "p159@example.com"}
    outcomes = deliver(preset, table, "external_id")
    rejected = {o.key: o.message for o in outcomes if o.status is R}
    assert rejected == {key: f"'{key}' cannot be updated" for key in saas.refuse}
    assert len([o for o in outcomes if o.status is D]) == 157
    assert saas.requests == 3  # 75 + 75 + 10
