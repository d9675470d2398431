"""Renamed :mod:`floe_sink.trace_export` (where the command's spans go); kept importable."""

from floe_sink.trace_export import OTEL_ENV, setup_tracing

__all__ = ["OTEL_ENV", "setup_tracing"]
