"""egress_span, record_egress_result, record_egress_error (4G-FR-010)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from floe_sink import EgressResult, SinkWriteError, egress_span, record_egress_result
from floe_sink.tracing import MAX_ERROR_MESSAGE

pytestmark = pytest.mark.requirement("4G-FR-010")


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """A private provider and exporter: the global provider is not touched."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter):  # type: ignore[no-untyped-def]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def test_success_span(tracer, exporter: InMemorySpanExporter) -> None:  # type: ignore[no-untyped-def]
    with egress_span("rest_api", "crm", tracer=tracer) as span:
        record_egress_result(
            span,
            EgressResult(
                success=True,
                rows_delivered=1000,
                bytes_transmitted=2048,
                checksum="ab" * 32,
                idempotency_key="floe-123",
            ),
        )

    (finished,) = exporter.get_finished_spans()
    attributes = dict(finished.attributes or {})
    assert finished.name == "floe_sink.egress"
    assert attributes["floe.sink.type"] == "rest_api"
    assert attributes["floe.sink.destination"] == "crm"
    assert attributes["floe.sink.rows_written"] == 1000
    assert attributes["floe.sink.bytes_transmitted"] == 2048
    assert attributes["floe.sink.status"] == "success"
    assert attributes["floe.sink.checksum"] == "ab" * 32
    assert attributes["floe.sink.idempotency_key"] == "floe-123"
    assert isinstance(attributes["floe.sink.duration_ms"], float)
    assert attributes["floe.sink.duration_ms"] >= 0
    assert finished.status.status_code is StatusCode.OK


def test_failed_result_sets_error_status(tracer, exporter: InMemorySpanExporter) -> None:  # type: ignore[no-untyped-def]
    with egress_span("rest_api", tracer=tracer) as span:
        record_egress_result(span, EgressResult(success=False, errors=["HTTP 400", "bad email"]))

    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description == "HTTP 400; bad email"
    assert finished.attributes is not None
    assert finished.attributes["floe.sink.status"] == "failure"
    assert "floe.sink.destination" not in finished.attributes


def test_exception_is_recorded_truncated_and_propagates(
    tracer, exporter: InMemorySpanExporter
) -> None:  # type: ignore[no-untyped-def]
    long_message = "x" * (MAX_ERROR_MESSAGE * 3)
    with pytest.raises(SinkWriteError), egress_span("sql_database", "warehouse", tracer=tracer):
        raise SinkWriteError(long_message)

    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.ERROR
    assert finished.status.description is not None
    assert len(finished.status.description) == MAX_ERROR_MESSAGE
    assert finished.status.description.endswith("...")
    attributes = dict(finished.attributes or {})
    assert attributes["floe.sink.status"] == "error"
    assert attributes["floe.sink.error_category"] == "transient"
    assert "floe.sink.duration_ms" in attributes
    (event,) = finished.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "SinkWriteError"
    message = str(event.attributes["exception.message"])
    assert message.startswith("SinkWriteError: xxx")
    assert len(message) == MAX_ERROR_MESSAGE


def test_plain_exception_has_no_category(tracer, exporter: InMemorySpanExporter) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), egress_span("s", tracer=tracer):
        raise RuntimeError("short")
    (finished,) = exporter.get_finished_spans()
    assert finished.status.description == "RuntimeError: short"
    assert "floe.sink.error_category" not in (finished.attributes or {})


def test_span_is_current_inside_the_block(tracer) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry import trace

    with egress_span("s", tracer=tracer) as span:
        assert trace.get_current_span() is span


def test_no_op_without_an_sdk() -> None:
    # A fresh interpreter with the OpenTelemetry API only configured: spans cost nothing and
    # the block runs as usual.
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        from floe_sink import EgressResult, egress_span, record_egress_result
        with egress_span("rest_api", "crm") as span:
            record_egress_result(span, EgressResult(success=True, rows_delivered=1))
        assert not span.is_recording()
        try:
            with egress_span("rest_api"):
                raise ValueError("boom")
        except ValueError:
            print("ok")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
