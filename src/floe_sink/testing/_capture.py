"""What a sink said while the kit watched: log events and OpenTelemetry spans, as text."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["captured_logs", "captured_spans"]

_exporter: Any = None


@contextlib.contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Collect every log event of the block, as text, into the list it yields.

    structlog events are captured as the sink emitted them (``structlog.testing
    .capture_logs``, before any redacting processor: a secret handed to a logger is a leak
    even when the command's renderer would hide it), stdlib ``logging`` records (httpx,
    drivers) from DEBUG up. The list is filled when the block ends.
    """
    import structlog.testing

    texts: list[str] = []
    formatter = logging.Formatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info:
                text += "\n" + formatter.formatException(record.exc_info)
            texts.append(text)

    handler = Collect(level=logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    events: list[Any] = []
    try:
        with structlog.testing.capture_logs() as events:
            yield texts
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        texts.extend(repr(event) for event in events)


def _span_exporter() -> Any:
    """The kit's in-memory exporter on the global SDK tracer provider (installed once)."""
    global _exporter
    import pytest

    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        pytest.skip("spans are checked with the OpenTelemetry SDK: pip install opentelemetry-sdk")
    if _exporter is None:
        # The global tracer provider can be set once per process: install an SDK provider
        # unless one is there already (a test suite's own), and add the kit's exporter to it.
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            trace.set_tracer_provider(TracerProvider())
            provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            pytest.skip(f"the global tracer provider is not the SDK's ({type(provider).__name__})")
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _exporter = exporter
    return _exporter


def _span_text(span: Any) -> str:
    parts = [f"span {span.name!r}"]
    parts += [f"{key}={value!r}" for key, value in (span.attributes or {}).items()]
    for event in span.events:
        parts.append(f"event {event.name!r}")
        parts += [f"{key}={value!r}" for key, value in (event.attributes or {}).items()]
    if span.status is not None and span.status.description:
        parts.append(f"status {span.status.description!r}")
    return " ".join(parts)


@contextlib.contextmanager
def captured_spans() -> Iterator[list[str]]:
    """Collect every span finished in the block, as text, into the list it yields.

    The text holds each span's name, attributes, events and status description. Skips the
    test when the OpenTelemetry SDK is not installed.
    """
    exporter = _span_exporter()
    exporter.clear()
    texts: list[str] = []
    try:
        yield texts
    finally:
        texts.extend(_span_text(span) for span in exporter.get_finished_spans())
        exporter.clear()
