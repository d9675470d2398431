"""The webhook plugin's own tests: the contract, a delivery, and floe-sink's conformance kit."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import floe_sink_webhook
import pyarrow as pa
import pytest

import floe_sink
from floe_sink.testing import (
    BadConfig,
    Capabilities,
    HttpFaultProxy,
    SinkConformance,
    SinkTarget,
    assert_sink_connector,
)

TOKEN = "t0ken"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"headers": dict(self.headers), "rows": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for request in self.requests for row in request["rows"]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    served = Receiver()
    # polls for shutdown every 50 ms, so that each test's receiver stops at once
    threading.Thread(target=served.httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def test_contract() -> None:
    assert_sink_connector(floe_sink_webhook, sink_types={"webhook"})


def test_delivers_batches(
    receiver: Receiver, sink_plugin_manager: floe_sink.SinkPluginManager
) -> None:
    sink_plugin_manager.register(floe_sink_webhook)
    config = floe_sink.SinkConfig(
        sink_type="webhook",
        connection_config={"url": receiver.url, "token": TOKEN},
        field_mapping={"email": "Email"},
        batch_size=2,
    )
    sink = sink_plugin_manager.create_sink(config)

    result = sink_plugin_manager.write(sink, pa.table({"email": ["a@x", "b@x", "c@x"]}))

    assert result.success
    assert result.rows_delivered == 3
    assert [request["rows"] for request in receiver.requests] == [
        [{"Email": "a@x"}, {"Email": "b@x"}],
        [{"Email": "c@x"}],
    ]
    headers = receiver.requests[0]["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Idempotency-Key"].startswith("floe-")


class TestWebhookConformance(SinkConformance):
    """floe-sink's conformance kit: every property of the delivery contract, one test each."""

    plugin = floe_sink_webhook
    capabilities = Capabilities(
        # what survives json.dumps(default=str) and comes back as the same values
        arrow_types=[
            pa.bool_(),
            pa.int64(),
            pa.float64(),
            pa.string(),
            pa.date32(),
            pa.timestamp("us", tz="UTC"),
            pa.decimal128(10, 2),
        ],
        exact_resume=True,  # write() hands the delivery to floe_sink.deliver_batches
    )

    @pytest.fixture
    def sink_target(
        self, receiver: Receiver, http_fault_proxy: Callable[..., HttpFaultProxy]
    ) -> SinkTarget:
        proxy = http_fault_proxy(receiver.url)  # answers 503 or 400 when the kit asks
        return SinkTarget(
            config=floe_sink.SinkConfig(
                sink_type="webhook",
                connection_config={"url": proxy.url, "token": TOKEN},
                retry_config={"initial_wait": 0.01, "jitter": 0},
            ),
            read_back=lambda schema: pa.Table.from_pylist(receiver.rows),
            secrets=[TOKEN],
            faults=proxy,
            sent_keys=lambda: [r["headers"]["Idempotency-Key"] for r in receiver.requests],
        )

    def bad_configs(self, target: SinkTarget) -> list[BadConfig]:
        return [
            BadConfig.missing(target.config, "url"),
            BadConfig.setting(target.config, "url", "ftp://example.com/hook"),
        ]
