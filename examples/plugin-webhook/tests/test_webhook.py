"""The webhook plugin's own tests: the contract, and a delivery to a local HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import floe_sink_webhook
import pyarrow as pa
import pytest

import floe_sink
from floe_sink.testing import assert_sink_connector


def test_contract() -> None:
    assert_sink_connector(floe_sink_webhook, sink_types={"webhook"})


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"headers": dict(self.headers), "rows": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/hook", received
    httpd.shutdown()
    httpd.server_close()


def test_delivers_batches(
    server: tuple[str, list[dict[str, object]]],
    sink_plugin_manager: floe_sink.SinkPluginManager,
) -> None:
    url, received = server
    sink_plugin_manager.register(floe_sink_webhook)
    config = floe_sink.SinkConfig(
        sink_type="webhook",
        connection_config={"url": url, "token": "t0ken"},
        field_mapping={"email": "Email"},
        batch_size=2,
    )
    sink = sink_plugin_manager.create_sink(config)

    result = sink_plugin_manager.write(sink, pa.table({"email": ["a@x", "b@x", "c@x"]}))

    assert result.success
    assert result.rows_delivered == 3
    assert [request["rows"] for request in received] == [
        [{"Email": "a@x"}, {"Email": "b@x"}],
        [{"Email": "c@x"}],
    ]
    headers = received[0]["headers"]
    assert isinstance(headers, dict)
    assert headers["Authorization"] == "Bearer t0ken"
    assert headers["Idempotency-Key"].startswith("floe-")
