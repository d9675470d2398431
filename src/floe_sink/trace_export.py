"""Where the command's spans go: a console exporter, or OTLP from the environment.

The core makes its spans with the OpenTelemetry *API* only (:mod:`floe_sink.tracing`); they go
nowhere until an SDK is installed. :func:`setup_tracing` installs one for the ``floe-sink`` process:

* ``--otel-console`` or ``FLOE_SINK_OTEL=console``: spans printed as JSON on stderr (stdout is
  kept for results, so ``--output json`` stays parseable);
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set: spans sent
  over OTLP, when ``opentelemetry-exporter-otlp`` is installed (``pip install
  'floe-sink[otlp]'``); the standard ``OTEL_*`` variables configure it;
* ``FLOE_SINK_OTEL=none``: nothing, whatever else is set.

An application that already installed an SDK tracer provider keeps it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from floe_sink.logs import get_logger

__all__ = ["OTEL_ENV", "setup_tracing"]

OTEL_ENV = "FLOE_SINK_OTEL"
"""``console`` prints spans on stderr; ``none`` disables every exporter."""

log = get_logger(__name__)


def _otlp_exporter() -> Any | None:
    for module in (
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    ):
        try:
            imported = __import__(module, fromlist=["OTLPSpanExporter"])
        except ImportError:
            continue
        return imported.OTLPSpanExporter()
    return None


def setup_tracing(*, console: bool = False) -> Callable[[], None] | None:
    """Install an OpenTelemetry SDK tracer provider with the exporters asked for.

    Args:
        console: Print spans on stderr (also when ``FLOE_SINK_OTEL=console``).

    Returns:
        A function that flushes and shuts the provider down (call it before exiting), or
        ``None`` when no exporter was asked for or an SDK provider was already installed.
    """
    mode = os.environ.get(OTEL_ENV, "").strip().lower()
    if mode in {"none", "off", "false", "0"}:
        return None
    console = console or mode == "console"
    otlp = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not console and not otlp:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        log.warning(
            "otel_sdk_missing",
            hint="pip install 'floe-sink[otel]' to export spans",
        )
        return None
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return None  # somebody (an embedding application, a test) configured it already
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "floe-sink")})
    provider = TracerProvider(resource=resource)
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    if otlp:
        exporter = _otlp_exporter()
        if exporter is None:
            log.warning(
                "otlp_exporter_missing",
                hint="OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp is "
                "not installed: pip install 'floe-sink[otlp]'",
            )
        else:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.shutdown
