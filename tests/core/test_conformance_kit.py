"""The conformance kit's own tests: a sink that keeps the contract passes it, and each way of
breaking the contract fails it with a message naming the property broken (4G-SC-006)."""

from __future__ import annotations

import http.client
import json
import sqlite3
import textwrap
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import floe_sink.testing
from floe_sink.testing import (
    CallFaults,
    Capabilities,
    ConformanceError,
    Fault,
    FaultInjector,
    HttpFaultProxy,
    Property,
    SinkUnderTest,
)

from . import conformance_sinks as sinks

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.requirement("4G-SC-006")

TYPES = [
    pa.int8(),
    pa.uint64(),
    pa.float32(),
    pa.string(),
    pa.binary(),
    pa.date32(),
    pa.timestamp("ns", tz="Europe/Paris"),
    pa.time64("us"),
    pa.decimal128(38, 9),
    pa.list_(pa.int64()),
    pa.struct([("a", pa.int64()), ("b", pa.string())]),
    pa.dictionary(pa.int32(), pa.string()),
]
CAPABILITIES = Capabilities(arrow_types=TYPES, exact_resume=True, deletes=True)


def under_test(plugin: object, tmp_path: Path, **target: Any) -> SinkUnderTest:
    return SinkUnderTest(
        plugin=plugin,
        target=sinks.target(**target),
        capabilities=CAPABILITIES,
        workdir=tmp_path,
    )


def test_a_sink_that_keeps_the_contract_passes_every_check(tmp_path: Path) -> None:
    skipped = floe_sink.testing.check_sink(
        sinks.MemoryPlugin(),
        sinks.target,
        capabilities=CAPABILITIES,
        bad_configs=sinks.bad_configs(sinks.target()),
        workdir=tmp_path,
    )
    assert [line.split(":")[0] for line in skipped] == [
        "check_record_ids",
        "check_record_results",
    ]


BROKEN: list[tuple[object, Callable[[SinkUnderTest], None], str, str]] = [
    (
        sinks.WrongChecksum(),
        floe_sink.testing.check_egress_result,
        Property.CHECKSUM,
        "floe_sink.Checksum of the delivered (mapped) data",
    ),
    (
        sinks.UnstableKeys(),
        floe_sink.testing.check_idempotency_keys,
        Property.IDEMPOTENCY_KEY,
        "a re-sent batch must carry the same key",
    ),
    (
        sinks.SwallowedErrors(),
        floe_sink.testing.check_permanent_failure,
        Property.PERMANENT_FAILURE,
        "an error was swallowed",
    ),
    (
        sinks.SecretInRepr(),
        floe_sink.testing.check_secrets_not_in_repr,
        Property.SECRET_IN_REPR,
        "repr(sink) shows declared secret #1",
    ),
    (
        sinks.SecretInLogs(),
        floe_sink.testing.check_secrets_not_in_logs,
        Property.SECRET_IN_LOGS,
        "a log event shows declared secret #1",
    ),
    (
        sinks.SecretInErrors(),
        floe_sink.testing.check_secrets_not_in_spans,
        Property.SECRET_IN_SPANS,
        "a span shows declared secret #1",
    ),
    (
        sinks.SecretInErrors(),
        floe_sink.testing.check_secrets_not_in_logs,
        Property.SECRET_IN_ERRORS,
        "the error of a failed write shows declared secret #1",
    ),
    (
        sinks.IgnoresBatchSize(),
        floe_sink.testing.check_batch_size,
        Property.BATCH_SIZE,
        "the journal acknowledged batches of [8]",
    ),
    (
        sinks.RetriesPermanentFailures(),
        floe_sink.testing.check_permanent_failure,
        Property.PERMANENT_FAILURE,
        "a permanent failure was tried 3 times",
    ),
    (
        sinks.NoRetries(),
        floe_sink.testing.check_transient_failure,
        Property.TRANSIENT_FAILURE,
        "instead of retrying it",
    ),
    (
        sinks.ResendsOnResume(),
        floe_sink.testing.check_exact_resume,
        Property.EXACT_RESUME,
        "batches [0, 1] were acknowledged before the interruption and sent again",
    ),
    (
        sinks.DeletesNothing(),
        floe_sink.testing.check_deletes,
        Property.DELETES,
        "after deleting ids [1, 4, 6], the destination holds 8 rows, expected 5",
    ),
    (
        sinks.DeletesAmongTheWrites(),
        floe_sink.testing.check_deletes,
        Property.DELETES,
        "deleting ids [1, 4, 6] failed",
    ),
    (
        sinks.IgnoresDelivery(),
        floe_sink.testing.check_batch_size,
        Property.BATCH_SIZE,
        "acknowledged no batch in the delivery's journal",
    ),
    (
        sinks.LocalTimestamp(),
        floe_sink.testing.check_egress_result,
        Property.RESULT,
        "is not in UTC",
    ),
    (
        sinks.VagueConfigErrors(),
        lambda sut: floe_sink.testing.check_bad_configs(sut, sinks.bad_configs(sut.target)),
        Property.CONFIGURATION_ERROR,
        "does not name 'destination'",
    ),
]


@pytest.mark.parametrize(
    ("plugin", "check", "broken", "detail"),
    BROKEN,
    ids=[f"{type(plugin).__name__}-{broken}" for plugin, _check, broken, _detail in BROKEN],
)
def test_a_broken_sink_fails_naming_the_property(
    plugin: object,
    check: Callable[[SinkUnderTest], None],
    broken: str,
    detail: str,
    tmp_path: Path,
) -> None:
    sut = under_test(plugin, tmp_path)
    try:
        with pytest.raises(ConformanceError) as caught:
            check(sut)
    finally:
        sut.close()
    assert caught.value.property == broken
    message = str(caught.value)
    assert message.startswith(f"{broken}: ")
    assert detail in message
    assert sinks.TOKEN not in message  # the report of a leak does not leak it again


def test_the_one_function_form_lists_every_broken_property(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as caught:
        floe_sink.testing.check_sink(
            sinks.IgnoresBatchSize(),
            sinks.target,
            capabilities=CAPABILITIES,
            workdir=tmp_path,
        )
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 conformance check(s) failed:"
    assert lines[1].startswith("check_batch_size: batch_size: 8 rows with batch_size=3")
    # one batch for everything: the stop requested after the second batch never comes
    assert lines[2].startswith("check_exact_resume: exact resume: a stop requested after 2")


def test_a_type_that_does_not_round_trip_is_named(tmp_path: Path) -> None:
    class Truncating(sinks.MemoryPlugin):
        def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
            microseconds = batch.column("v").cast(pa.timestamp("us", "Europe/Paris"), safe=False)
            truncated = microseconds.cast(pa.timestamp("ns", tz="Europe/Paris"))
            return super().send(sink, batch.set_column(1, "v", truncated), key)

    sut = under_test(Truncating(), tmp_path)
    with pytest.raises(ConformanceError) as caught:
        floe_sink.testing.check_arrow_type(sut, pa.timestamp("ns", tz="Europe/Paris"))
    assert str(caught.value).startswith(
        "arrow type round-trip: timestamp[ns, tz=Europe/Paris] does not round-trip: column 'v'"
    )
    assert "row id=2" in str(caught.value)  # the instant with nanoseconds


def test_an_unknown_type_asks_for_sample_values(tmp_path: Path) -> None:
    sut = under_test(sinks.MemoryPlugin(), tmp_path)
    with pytest.raises(ConformanceError, match=r"declare a pyarrow\.Array of sample values"):
        floe_sink.testing.check_arrow_type(sut, pa.map_(pa.string(), pa.int64()))
    values = pa.array([{"a": 1}, None], pa.map_(pa.string(), pa.int64()))
    floe_sink.testing.check_arrow_type(sut, values)


def test_an_injector_that_does_not_reach_the_sink_is_a_set_up_error(tmp_path: Path) -> None:
    class Elsewhere:
        def inject(self, fault: Fault, *, times: int) -> None:
            pass

        def clear(self) -> None:
            pass

        @property
        def injected(self) -> int:
            return 0

    assert isinstance(Elsewhere(), FaultInjector)
    good = sinks.target()
    sut = SinkUnderTest(
        plugin=sinks.MemoryPlugin(),
        target=floe_sink.testing.SinkTarget(
            config=good.config, read_back=good.read_back, faults=Elsewhere()
        ),
        workdir=tmp_path,
    )
    with pytest.raises(ConformanceError) as caught:
        floe_sink.testing.check_transient_failure(sut)
    assert caught.value.property == Property.KIT_SETUP
    assert "the injected fault was never hit" in str(caught.value)


def test_a_secret_not_in_the_config_is_a_set_up_error(tmp_path: Path) -> None:
    good = sinks.target()
    sut = SinkUnderTest(
        plugin=sinks.MemoryPlugin(),
        target=floe_sink.testing.SinkTarget(
            config=good.config, read_back=good.read_back, secrets=["not-there"]
        ),
        workdir=tmp_path,
    )
    with pytest.raises(ConformanceError, match="declared secret #1 is not a value"):
        floe_sink.testing.check_secrets_not_in_repr(sut)


def test_checks_without_the_means_to_observe_are_skipped(tmp_path: Path) -> None:
    good = sinks.target()
    sut = SinkUnderTest(
        plugin=sinks.MemoryPlugin(),
        target=floe_sink.testing.SinkTarget(config=good.config, read_back=good.read_back),
        workdir=tmp_path,
    )
    for check, reason in [
        (floe_sink.testing.check_batch_size, "cannot see batch boundaries"),
        (floe_sink.testing.check_idempotency_keys, "cannot see idempotency keys"),
        (floe_sink.testing.check_exact_resume, "exact_resume=True"),
        (floe_sink.testing.check_transient_failure, "no fault injector"),
        (floe_sink.testing.check_secrets_not_in_logs, "no secrets declared"),
    ]:
        with pytest.raises(pytest.skip.Exception, match=reason):
            check(sut)


# -- the test class, as a plugin author runs it -----------------------------------------------

CONFORMANCE_MODULE = """
import pyarrow as pa
import pytest

import floe_sink.testing
from core import conformance_sinks as sinks


class TestMemory(floe_sink.testing.SinkConformance):
    plugin = sinks.{plugin}()
    capabilities = floe_sink.testing.Capabilities(
        arrow_types=[pa.int64(), pa.string()], exact_resume=True
    )

    @pytest.fixture
    def sink_target(self):
        return sinks.target()

    def bad_configs(self, target):
        return sinks.bad_configs(target)
"""


def test_the_test_class_passes_a_sink_that_keeps_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_memory=CONFORMANCE_MODULE.format(plugin="MemoryPlugin"))
    outcome = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    outcome.assert_outcomes(passed=14, skipped=3)
    outcome.stdout.fnmatch_lines(["*does not declare Capabilities(record_ids=True)*"])


def test_the_test_class_fails_a_broken_sink_in_the_test_of_the_property(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_memory=CONFORMANCE_MODULE.format(plugin="WrongChecksum"))
    outcome = pytester.runpytest("-p", "no:cacheprovider")
    outcome.stdout.fnmatch_lines(
        ["E  *floe_sink.testing.ConformanceError: EgressResult.checksum: the result says *"]
    )
    failed = {report.nodeid.split("::")[-1] for report in outcome.reprec.getfailures()}  # type: ignore[attr-defined]
    assert "test_egress_result_is_complete_and_consistent" in failed
    assert "test_empty_table" not in failed  # an empty delivery's checksum is still right


def test_the_test_class_explains_a_missing_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_memory="""
        import floe_sink.testing
        from core import conformance_sinks as sinks
        import pytest

        class TestNothing(floe_sink.testing.SinkConformance):
            @pytest.fixture
            def sink_target(self):
                return sinks.target()
        """
    )
    outcome = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_empty_table")
    outcome.assert_outcomes(errors=1)
    outcome.stdout.fnmatch_lines(["*TestNothing must set `plugin = <your plugin>`*"])


# -- the fault injectors ----------------------------------------------------------------------


class _Upstream:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                upstream.bodies.append(body)
                answer = json.dumps({"echo": body.decode(), "path": self.path}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Upstream", "yes")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook?x=1"


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    served = _Upstream()
    thread = threading.Thread(target=served.httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def _post(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body=body, headers={"Idempotency-Key": "k1"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_the_http_fault_proxy_forwards_and_fails_on_demand(
    upstream: _Upstream, http_fault_proxy: Callable[..., HttpFaultProxy]
) -> None:
    proxy = http_fault_proxy(upstream.url)
    assert proxy.url.endswith("/hook?x=1")
    assert proxy.url != upstream.url

    status, headers, body = _post(proxy.url, b"one")
    assert status == 201
    assert headers["X-Upstream"] == "yes"
    assert json.loads(body) == {"echo": "one", "path": "/hook?x=1"}

    proxy.inject(Fault.TRANSIENT, times=2)
    assert _post(proxy.url, b"two")[:2][0] == 503
    status, headers, _ = _post(proxy.url, b"two")
    assert (status, headers["Retry-After"]) == (503, "0")
    assert _post(proxy.url, b"two")[0] == 201  # two faults served, then it forwards again
    assert proxy.injected == 2

    proxy.inject(Fault.PERMANENT, times=5)
    assert _post(proxy.url, b"three")[0] == 400
    proxy.clear()
    assert _post(proxy.url, b"three")[0] == 201
    assert proxy.injected == 1
    assert upstream.bodies == [b"one", b"two", b"three"]
    assert [request.fault for request in proxy.requests] == [
        None,
        Fault.TRANSIENT,
        Fault.TRANSIENT,
        None,
        Fault.PERMANENT,
        None,
    ]
    assert proxy.requests[0].headers["idempotency-key"] == "k1"


def test_call_faults_raise_then_restore(tmp_path: Path) -> None:
    class Client:
        def send(self, value: int) -> int:
            return value * 2

    faults = CallFaults(
        Client,
        "send",
        transient=lambda: sqlite3.OperationalError("database is locked"),
        permanent=lambda: sqlite3.IntegrityError("NOT NULL constraint failed"),
    )
    client = Client()
    faults.inject(Fault.TRANSIENT, times=1)
    with pytest.raises(sqlite3.OperationalError):
        client.send(1)
    assert client.send(2) == 4
    faults.inject(Fault.PERMANENT, times=1)
    with pytest.raises(sqlite3.IntegrityError):
        Client().send(1)
    assert faults.injected == 1
    faults.clear()
    assert "send" in vars(Client)
    assert Client.send.__qualname__.endswith("Client.send")

    instance = Client()
    on_instance = CallFaults(
        instance, "send", transient=lambda: OSError("lost"), permanent=lambda: OSError("no")
    )
    on_instance.inject(Fault.TRANSIENT, times=1)
    with pytest.raises(OSError, match="lost"):
        instance.send(1)
    on_instance.clear()
    assert "send" not in vars(instance)
    assert instance.send(3) == 6


def test_a_fault_plan_refuses_zero_times() -> None:
    faults = CallFaults(
        textwrap, "dedent", transient=lambda: OSError(), permanent=lambda: OSError()
    )
    with pytest.raises(ValueError, match="times must be >= 1"):
        faults.inject(Fault.TRANSIENT, times=0)
