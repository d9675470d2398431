"""Fixtures of the core tests: a span exporter, small connectors, the fake distributions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def _session_exporter() -> InMemorySpanExporter:
    # The global tracer provider can be set once per process: set it once per session (or
    # join the SDK provider another part of the suite already set) and share one exporter.
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(_session_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test (through the global tracer provider)."""
    _session_exporter.clear()
    yield _session_exporter
    _session_exporter.clear()


@pytest.fixture
def fake_distributions(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the checked-in fake distributions (tests/core/data) on sys.path.

    Only their entry points load: ``FLOE_SINK_LOAD_PLUGINS`` names them, so the plugins
    installed in the environment (the dlt plugin) stay out of the way.
    """
    monkeypatch.syspath_prepend(str(DATA))
    monkeypatch.setenv("FLOE_SINK_LOAD_PLUGINS", "good,broken,classy,colliding,invalid")
    monkeypatch.delenv("FLOE_SINK_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("FLOE_SINK_STRICT_PLUGINS", raising=False)
    return DATA
