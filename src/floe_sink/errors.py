"""The exceptions floe-sink raises.

Every exception derives from :class:`FloeSinkError`, so ``except FloeSinkError`` catches all of
them. Delivery errors carry an :class:`ErrorCategory` that tells the caller whether trying again
can help, and a context (sink type, destination, ...) that is appended to the message as a
``[key=value, ...]`` suffix so that a log line says where the failure happened.

Messages never contain secret values: callers pass names (``connection_secret_ref``), never the
resolved credentials.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "ErrorCategory",
    "FloeSinkError",
    "PluginConflictError",
    "PluginLoadError",
    "SinkConfigurationError",
    "SinkConnectionError",
    "SinkError",
    "SinkNotFoundError",
    "SinkWriteError",
]


class ErrorCategory(enum.StrEnum):
    """How a failure should be handled."""

    TRANSIENT = "transient"
    """Trying again later may succeed (a timeout, a 503, a dropped connection)."""
    PERMANENT = "permanent"
    """Trying again will fail the same way (a 400, a constraint violation)."""
    PARTIAL = "partial"
    """Some batches were delivered before the failure; a re-run delivers the rest."""
    CONFIGURATION = "configuration"
    """The configuration is wrong; fix it and run again."""


class FloeSinkError(Exception):
    """Base class of every error raised by floe-sink and its plugins."""


def _context_suffix(context: Mapping[str, Any]) -> str:
    items = [f"{key}={value}" for key, value in context.items() if value is not None]
    return f" [{', '.join(items)}]" if items else ""


class SinkError(FloeSinkError):
    """Base class of the errors of a sink: it has a category and a context.

    Args:
        message: What happened and, where possible, how to fix it.
        category: How the failure should be handled; each subclass has a sensible default.
        sink_type: The sink type involved, added to the context suffix.
        destination: The destination name from floe.yaml, added to the context suffix.
        **context: More ``key=value`` pairs for the suffix (never secret values).
    """

    default_category: ErrorCategory = ErrorCategory.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory | None = None,
        sink_type: str | None = None,
        destination: str | None = None,
        **context: Any,
    ) -> None:
        self.message = message
        self.category = category if category is not None else self.default_category
        self.context: dict[str, Any] = {
            "sink_type": sink_type,
            "destination": destination,
            **context,
        }
        super().__init__(f"{message}{_context_suffix(self.context)}")

    @property
    def sink_type(self) -> str | None:
        """The sink type the error is about, if known."""
        return self.context.get("sink_type")

    @property
    def destination(self) -> str | None:
        """The destination name the error is about, if known."""
        return self.context.get("destination")

    @property
    def retryable(self) -> bool:
        """True when trying again may succeed."""
        return self.category is ErrorCategory.TRANSIENT


class SinkConnectionError(SinkError):
    """Raised when the destination cannot be reached (network, DNS, refused, timeout).

    Transient by default: the connection may work on the next attempt.
    """

    default_category = ErrorCategory.TRANSIENT


class SinkWriteError(SinkError):
    """Raised when the destination refused or failed a write.

    Transient by default (a 503, a deadlock); pass ``category=ErrorCategory.PERMANENT`` for a
    refusal that will not change (a 400, a type mismatch), or ``PARTIAL`` when some batches were
    already delivered.
    """

    default_category = ErrorCategory.TRANSIENT


class SinkConfigurationError(SinkError):
    """Raised when a sink's configuration is missing, invalid or unusable.

    Always of category ``configuration``: fix the configuration and run again.
    """

    default_category = ErrorCategory.CONFIGURATION


class SinkNotFoundError(SinkConfigurationError):
    """Raised when no registered plugin provides the requested sink type."""


class PluginLoadError(FloeSinkError):
    """Raised (in strict mode) when a plugin's entry point fails to load.

    Attributes:
        plugin_name: The entry point's name.
        distribution: The distribution that declares the entry point, if known.
    """

    def __init__(self, plugin_name: str, distribution: str | None, cause: BaseException) -> None:
        self.plugin_name = plugin_name
        self.distribution = distribution
        self.cause = cause
        where = f" from distribution {distribution!r}" if distribution else ""
        super().__init__(
            f"Could not load floe_sink plugin {plugin_name!r}{where}: "
            f"{type(cause).__name__}: {cause}. Fix or uninstall the plugin, or block it with "
            f"FLOE_SINK_BLOCK_PLUGINS={plugin_name}."
        )


class PluginConflictError(FloeSinkError):
    """Raised when two or more plugins claim the same sink type.

    Attributes:
        sink_type: The contested sink type.
        providers: The plugins (and their distributions) that claim it.
    """

    def __init__(self, sink_type: str, providers: Iterable[str]) -> None:
        self.sink_type = sink_type
        self.providers = sorted(providers)
        super().__init__(
            f"Sink type {sink_type!r} is provided by more than one plugin: "
            f"{', '.join(self.providers)}. Uninstall one of them, or block one with "
            "FLOE_SINK_BLOCK_PLUGINS=<plugin name>."
        )
