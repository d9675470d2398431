"""The exceptions floe-sink raises.

Every exception derives from :class:`FloeSinkError`, so ``except FloeSinkError`` catches all of
them. Delivery errors carry an :class:`ErrorCategory` that tells the caller whether trying again
can help, and a context (sink type, destination, ...) that is appended to the message as a
``[key=value, ...]`` suffix so that a log line says where the failure happened.

Two branches say who must act:

- :class:`SinkConfigurationError` (the command exits 2): the user's configuration is wrong.
  :class:`ProblemsError` is its one "many problems" shape: a ``problems`` list, one line each,
  rendered as one message (files, governance, a run's destinations).
- :class:`PluginError` (exit 1): a plugin is broken, or misbehaved (:class:`PluginContractError`:
  a hook returned what the contract does not allow); the fix is in the plugin or the
  installation. :class:`PluginConflictError` is both: two installed plugins claim one sink type.

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
    "PluginContractError",
    "PluginError",
    "PluginLoadError",
    "ProblemsError",
    "SinkConfigurationError",
    "SinkConnectionError",
    "SinkError",
    "SinkNotFoundError",
    "SinkWriteError",
    "problems_of",
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
        retry_after: The seconds the destination asked to wait before the next attempt (an
            HTTP ``Retry-After``); the retry loop waits at least that long. ``None``: the
            retry policy's backoff decides.
        **context: More ``key=value`` pairs for the suffix (never secret values).

    Attributes:
        message: The message, without the context suffix.
        category: As given, or the class's default.
        context: The suffix's pairs (``sink_type`` and ``destination`` included).
        retry_after: As given.
    """

    default_category: ErrorCategory = ErrorCategory.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        category: ErrorCategory | None = None,
        sink_type: str | None = None,
        destination: str | None = None,
        retry_after: float | None = None,
        **context: Any,
    ) -> None:
        self.message = message
        self.category = category if category is not None else self.default_category
        self.retry_after = retry_after
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
    already delivered. Pass ``retry_after=`` the seconds an HTTP 429/503 asked to wait
    (:func:`floe_sink.parse_retry_after`): the retry loop waits at least that long.
    """

    default_category = ErrorCategory.TRANSIENT


class SinkConfigurationError(SinkError):
    """Raised when a sink's configuration is missing, invalid or unusable.

    Always of category ``configuration``: fix the configuration and run again.
    """

    default_category = ErrorCategory.CONFIGURATION


class SinkNotFoundError(SinkConfigurationError):
    """Raised when no registered plugin provides the requested sink type."""


class ProblemsError(SinkConfigurationError):
    """Raised listing every configuration problem found, so that they are fixed in one go.

    The one shape of the "many problems" errors (:class:`~floe_sink.config.ConfigError` for a
    file, :class:`~floe_sink.config.GovernanceError` for the manifest's rules,
    :class:`~floe_sink.job.JobConfigurationError` for a run): ``str()`` is :meth:`render`.

    Args:
        problems: One line per problem, each naming where (file, destination, field).
        header: What was checked, e.g. ``Invalid configuration in floe.yaml``; ``None``: the
            problem alone, or how many there are.
        **context: ``sink_type``, ``destination`` and more, as for :class:`SinkError`.

    Attributes:
        problems: As given (never empty).
        header: As given.
    """

    def __init__(
        self, problems: Iterable[str], *, header: str | None = None, **context: Any
    ) -> None:
        self.problems: list[str] = [str(problem) for problem in problems] or [
            "invalid configuration"
        ]
        self.header = header
        super().__init__("", **context)
        self.message = self.render()
        self.args = (self.message,)

    def render(self) -> str:
        """The problems as one message: one line, or a header line and one line per problem.

        The context (``[sink_type=..., destination=...]``) ends the first line.
        """
        suffix = _context_suffix(getattr(self, "context", {}))
        if len(self.problems) == 1:
            line = f"{self.header}: {self.problems[0]}" if self.header else self.problems[0]
            return line + suffix
        count = f"{len(self.problems)} problems"
        head = f"{self.header} ({count})" if self.header else count
        return "\n".join([f"{head}{suffix}:", *(f"  - {problem}" for problem in self.problems)])


def problems_of(exc: BaseException) -> list[str]:
    """The problems an error lists: a :class:`ProblemsError`'s, else its message alone."""
    if isinstance(exc, ProblemsError):
        return list(exc.problems)
    return [str(exc)]


class PluginError(FloeSinkError):
    """Base class of the errors whose fix is in a plugin or in what is installed.

    A plugin that fails to load, misbehaves (:class:`PluginContractError`) or collides with
    another (:class:`PluginConflictError`). The command exits 1, except for a conflict (a
    configuration of the installation: exit 2).
    """


class PluginContractError(PluginError):
    """Raised when a plugin's hook returns what the contract does not allow: a bug to report.

    For instance ``create_sink`` returning nothing for a sink type the plugin lists, or
    ``write`` returning something other than an :class:`~floe_sink.EgressResult`. Not a
    configuration error: no change to floe.yaml fixes it.

    Attributes:
        plugin: The plugin's name.
        hook: The hook that misbehaved.
    """

    def __init__(self, plugin: str, hook: str, problem: str) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(
            f"Plugin {plugin!r} broke the {hook} contract: {problem}. This is a bug in the "
            "plugin: report it to its authors (or block it with "
            f"FLOE_SINK_BLOCK_PLUGINS={plugin})."
        )


class PluginLoadError(PluginError):
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


class PluginConflictError(PluginError, SinkConfigurationError):
    """Raised when two or more plugins claim the same sink type.

    A plugin error and a configuration error (of the installation): ``except
    SinkConfigurationError`` catches it, and the command exits 2.

    Attributes:
        sink_type: The contested sink type.
        providers: The plugins (and their distributions) that claim it.
    """

    def __init__(self, sink_type: str, providers: Iterable[str]) -> None:
        self.providers = sorted(providers)
        super().__init__(
            f"Sink type {sink_type!r} is provided by more than one plugin: "
            f"{', '.join(self.providers)}. Uninstall one of them, or block one with "
            "FLOE_SINK_BLOCK_PLUGINS=<plugin name>."
        )
        self.context["sink_type"] = sink_type  # the message names it already: no suffix
