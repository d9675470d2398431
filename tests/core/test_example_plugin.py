"""The plugin of docs/writing-a-plugin.md (examples/plugin-webhook) works as a real package.

It is made installed the way pip would: its ``src`` on sys.path plus a ``.dist-info`` whose
entry points are read from the example's own pyproject.toml, then found through
``get_plugin_manager()`` and run against an HTTP server on 127.0.0.1 (4G-SC-001).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from fixtures.command import floe_command
from fixtures.iceberg import IcebergWarehouse, customers
from floe_sink import SinkConfig, SinkWriteError, checksum_of, get_plugin_manager

EXAMPLE = Path(__file__).parents[2] / "examples" / "plugin-webhook"

pytestmark = pytest.mark.requirement("4G-SC-001")


def _install(target: Path) -> Path:
    """Lay out a dist-info for the example in ``target``, as `pip install` would."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist_info = target / f"floe_sink_webhook-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = [f"{name} = {value}" for name, value in project["entry-points"]["floe_sink"].items()]
    (dist_info / "entry_points.txt").write_text("[floe_sink]\n" + "\n".join(lines) + "\n")
    return target


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = _install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FLOE_SINK_LOAD_PLUGINS", "webhook")
    return site


class _Server:
    """A local HTTP server recording requests; answers from a script of status codes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"headers": dict(self.headers), "rows": json.loads(body)})
                status, headers = server.script.pop(0) if server.script else (200, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"


@pytest.fixture
def server() -> Iterator[_Server]:
    served = _Server()
    thread = threading.Thread(target=served.httpd.serve_forever, daemon=True)
    thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()


def test_found_through_the_entry_point_and_delivers(installed: Path, server: _Server) -> None:
    manager = get_plugin_manager(strict=True)
    assert manager.list_available_sinks() == ["webhook"]
    assert manager.plugin_info["webhook"].distribution == "floe-sink-webhook"

    table = pa.table({"id": [1, 2, 3, 4, 5], "email": [f"{i}@x" for i in range(5)]})
    sink = manager.create_sink(
        SinkConfig(
            sink_type="webhook",
            connection_config={"url": server.url},
            field_mapping={"id": "ExternalId"},
            batch_size=2,
            retry_config={"initial_wait": 0.01, "jitter": 0},
        )
    )
    result = manager.write(sink, table, destination="crm")

    assert result.success
    assert result.rows_delivered == 5
    assert [len(r["rows"]) for r in server.requests] == [2, 2, 1]  # type: ignore[arg-type]
    assert server.requests[0]["rows"] == [{"ExternalId": 0 + 1}, {"ExternalId": 2}]
    assert result.checksum == checksum_of(table.select(["id"]).rename_columns(["ExternalId"]))
    keys = [r["headers"]["Idempotency-Key"] for r in server.requests]  # type: ignore[index]
    assert len(set(keys)) == 3


def test_retries_a_503_with_the_same_idempotency_key(installed: Path, server: _Server) -> None:
    manager = get_plugin_manager(strict=True)
    server.script = [(503, {"Retry-After": "0"}), (200, {})]
    sink = manager.create_sink(
        SinkConfig(
            sink_type="webhook",
            connection_config={"url": server.url},
            retry_config={"initial_wait": 0.01, "jitter": 0},
        )
    )
    assert manager.write(sink, pa.table({"x": [1]})).success
    first, second = (r["headers"]["Idempotency-Key"] for r in server.requests)  # type: ignore[index]
    assert first == second


def test_a_400_fails_fast(installed: Path, server: _Server) -> None:
    manager = get_plugin_manager(strict=True)
    server.script = [(400, {})]
    sink = manager.create_sink(
        SinkConfig(sink_type="webhook", connection_config={"url": server.url})
    )
    with pytest.raises(SinkWriteError, match="HTTP 400"):
        manager.write(sink, pa.table({"x": [1]}))
    assert len(server.requests) == 1


def test_the_examples_own_tests_pass(installed: Path) -> None:
    # The test file the guide shows, run as the plugin author would run it.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed), str(EXAMPLE / "src")]),
        "FLOE_SINK_LOAD_PLUGINS": "webhook",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        check=False,
        cwd=EXAMPLE,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    # the contract, a delivery, and the conformance kit's class (record IDs, deletes and
    # per-record results skipped: the webhook does not declare them)
    assert "21 passed, 3 skipped" in completed.stdout


@pytest.mark.requirement("4G-FR-009")
@pytest.mark.parametrize("catalog", ["embedded default", "manifest"])
def test_a_plugin_without_get_source_config_delivers_from_the_catalog_the_core_reads(
    installed: Path,
    server: _Server,
    tmp_path: Path,
    iceberg_warehouse: IcebergWarehouse,
    catalog: str,
) -> None:
    import floe_sink_webhook

    from floe_sink.source import load_catalog, source_config

    assert not hasattr(floe_sink_webhook, "get_source_config")  # the source is the core's
    project = tmp_path / "project"
    project.mkdir()
    rows = customers(5)
    args = ["run", "floe.yaml", "--secrets-dir", "secrets", "--output", "json"]
    if catalog == "manifest":
        iceberg_warehouse.write("gold.customers", rows)
        manifest = {"catalog": iceberg_warehouse.catalog_properties}
        (project / "manifest.yaml").write_text(yaml.safe_dump(manifest))
        args += ["--manifest", "manifest.yaml"]
    else:  # seeded where `run` looks without a manifest: ./.floe
        embedded = load_catalog(source_config({"table": "t.t", "state_dir": project / ".floe"}))
        embedded.create_namespace("gold")
        embedded.create_table("gold.customers", schema=rows.schema).append(rows)
    destination = {
        "name": "hook",
        "sink_type": "webhook",
        "connection_secret_ref": "hook",
        "source_table": "gold.customers",
        "config": {"url": server.url},
        "field_mapping": {"customer_id": "id"},
    }
    (project / "floe.yaml").write_text(yaml.safe_dump({"destinations": [destination]}))
    (project / "secrets" / "hook").mkdir(parents=True)
    (project / "secrets" / "hook" / "token").write_text("t0ken")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FLOE_", "PYTEST_"))},
        "PYTHONPATH": os.pathsep.join([str(installed), str(EXAMPLE / "src")]),
        "FLOE_SINK_LOAD_PLUGINS": "webhook",
    }
    completed = subprocess.run(
        [*floe_command(), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=project,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (result,) = json.loads(completed.stdout)
    assert result["success"]
    assert result["rows_delivered"] == 5
    batches: list[Any] = [request["rows"] for request in server.requests]
    delivered = [row["id"] for batch in batches for row in batch]
    assert sorted(delivered) == [1, 2, 3, 4, 5]
