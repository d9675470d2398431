"""The dlt plugin as installed: entry point, contract, routing through the plugin manager."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import floe_sink
from fixtures.http_server import RecordingServer
from floe_sink import SinkConfig, SinkConnector, checksum_of


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of the test (an SDK provider is installed once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


@pytest.mark.requirement("4G-FR-005")
def test_the_plugin_is_registered_through_the_entry_point() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="floe_sink", name="dlt")
    assert entry_point.value == "floe_sink_dlt.plugin:plugin"
    plugin = entry_point.load()
    assert isinstance(plugin, SinkConnector)


@pytest.mark.requirement("4G-FR-006")
def test_the_plugin_manager_lists_rest_api_and_sql_database() -> None:
    manager = floe_sink.get_plugin_manager()
    sinks = manager.list_available_sinks()
    assert "rest_api" in sinks
    assert "sql_database" in sinks


@pytest.mark.requirement("4G-FR-005")
@pytest.mark.requirement("4G-FR-008")
def test_create_sink_and_write_through_the_manager_inside_the_egress_span(
    http_server: RecordingServer, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    manager = floe_sink.get_plugin_manager()
    config = SinkConfig(
        sink_type="rest_api",
        connection_config={"url": http_server.url},
        batch_size=10,
    )
    sink = manager.create_sink(config)
    table = pa.table({"id": pa.array(range(25), pa.int64())})
    result = manager.write(sink, table, destination="crm")

    assert result.success, result.errors
    assert result.rows_delivered == 25
    assert result.checksum == checksum_of(table)
    assert len(http_server.applied) == 25
    (span,) = [span for span in spans.get_finished_spans() if span.name == "floe_sink.egress"]
    assert span.attributes is not None
    assert span.attributes["floe.sink.type"] == "rest_api"
    assert span.attributes["floe.sink.destination"] == "crm"
    assert span.attributes["floe.sink.rows_written"] == 25
    assert span.status.is_ok
