"""OpenTelemetry spans for egress operations.

Built on the OpenTelemetry *API* only: without an SDK configured the spans are no-ops and cost
next to nothing. The plugin manager wraps every ``write`` in :func:`egress_span`, so every
plugin is traced without doing anything; a plugin may open nested spans of its own. Where the
spans go is :mod:`floe_sink.trace_export`'s job.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

if TYPE_CHECKING:
    from floe_sink.models import EgressResult

__all__ = [
    "ATTR_DESTINATION",
    "ATTR_DURATION_MS",
    "ATTR_ROWS_WRITTEN",
    "ATTR_SINK_TYPE",
    "ATTR_STATUS",
    "MAX_ERROR_MESSAGE",
    "egress_span",
    "record_egress_error",
    "record_egress_result",
]

ATTR_SINK_TYPE = "floe.sink.type"
ATTR_DESTINATION = "floe.sink.destination"
ATTR_ROWS_WRITTEN = "floe.sink.rows_written"
ATTR_BYTES = "floe.sink.bytes_transmitted"
ATTR_DURATION_MS = "floe.sink.duration_ms"
ATTR_STATUS = "floe.sink.status"
ATTR_CHECKSUM = "floe.sink.checksum"
ATTR_IDEMPOTENCY_KEY = "floe.sink.idempotency_key"
ATTR_ERROR_CATEGORY = "floe.sink.error_category"

MAX_ERROR_MESSAGE = 500
"""Error messages put on spans are cut to this many characters."""

_TRACER_NAME = "floe_sink"


def _truncate(message: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


@contextmanager
def egress_span(
    sink_type: str,
    destination: str | None = None,
    *,
    name: str = "floe_sink.egress",
    tracer: Tracer | None = None,
) -> Iterator[Span]:
    """Open a span for one egress operation.

    The span gets ``floe.sink.type`` and ``floe.sink.destination`` at once, and
    ``floe.sink.duration_ms`` when it ends. An exception leaving the block is recorded (message
    truncated to :data:`MAX_ERROR_MESSAGE`), sets status ERROR and propagates.

    Args:
        sink_type: The sink type written to.
        destination: The destination name, when there is one.
        name: The span name.
        tracer: The tracer to use; by default the ``floe_sink`` tracer of the global tracer
            provider (a no-op until an SDK is configured).

    Yields:
        The span, for :func:`record_egress_result` or more attributes.
    """
    if tracer is None:
        tracer = trace.get_tracer(_TRACER_NAME)
    attributes: dict[str, str] = {ATTR_SINK_TYPE: sink_type}
    if destination is not None:
        attributes[ATTR_DESTINATION] = destination
    started = time.perf_counter()
    # Exceptions are recorded by record_egress_error with a truncated message, not by the SDK.
    with tracer.start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        try:
            yield span
        except BaseException as exc:
            record_egress_error(span, exc)
            raise
        finally:
            span.set_attribute(ATTR_DURATION_MS, (time.perf_counter() - started) * 1000.0)


def record_egress_result(span: Span, result: EgressResult) -> None:
    """Put an :class:`~floe_sink.EgressResult` on ``span`` and set its status from ``success``.

    Args:
        span: The egress span (from :func:`egress_span`).
        result: The outcome of the write; ``success=False`` sets status ERROR with the
            result's errors (truncated) as the description.
    """
    span.set_attribute(ATTR_ROWS_WRITTEN, result.rows_delivered)
    span.set_attribute(ATTR_BYTES, result.bytes_transmitted)
    if result.checksum:
        span.set_attribute(ATTR_CHECKSUM, result.checksum)
    if result.idempotency_key:
        span.set_attribute(ATTR_IDEMPOTENCY_KEY, result.idempotency_key)
    if result.success:
        span.set_attribute(ATTR_STATUS, "success")
        span.set_status(Status(StatusCode.OK))
    else:
        span.set_attribute(ATTR_STATUS, "failure")
        description = _truncate("; ".join(result.errors) or "delivery failed")
        span.set_status(Status(StatusCode.ERROR, description))


def record_egress_error(span: Span, error: BaseException) -> None:
    """Record ``error`` on ``span`` (truncated message) and set status ERROR.

    Args:
        span: The egress span.
        error: The exception; its message is cut to :data:`MAX_ERROR_MESSAGE` characters and
            its ``category`` (a :class:`~floe_sink.SinkError`'s) becomes
            ``floe.sink.error_category``.
    """
    message = _truncate(f"{type(error).__name__}: {error}")
    span.set_attribute(ATTR_STATUS, "error")
    category = getattr(error, "category", None)
    if category is not None:
        span.set_attribute(ATTR_ERROR_CATEGORY, str(category))
    span.add_event(
        "exception",
        {"exception.type": type(error).__name__, "exception.message": message},
    )
    span.set_status(Status(StatusCode.ERROR, message))
