"""structlog set-up: key/value events, rendered for a terminal or as JSON lines.

floe-sink never configures logging on import; the command calls :func:`configure_logging`,
libraries and tests get structlog's defaults (and ``structlog.testing.capture_logs``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

from floe_sink.secrets import REDACTED, URL_WITH_PASSWORD, is_credential_key, redact_url

__all__ = ["REDACTED", "configure_logging", "get_logger", "redact"]


class _LazyLogger:
    """A structlog logger that imports structlog on first use.

    structlog pulls in its console renderer (and rich) at import time; deferring it keeps
    ``import floe_sink`` fast for code that never logs.
    """

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, method: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, method)


def get_logger(name: str = "floe_sink") -> Any:
    """Return a structlog logger for ``name`` (structlog is imported on first use)."""
    return _LazyLogger(name)


def _redacted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_credential_key(key) else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    if isinstance(value, str) and URL_WITH_PASSWORD.match(value):
        return redact_url(value)
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hide credential values.

    Values of credential-looking keys (:func:`floe_sink.secrets.is_credential_key`) become
    ``***``, anywhere in the event, nested mappings included (``config={"token": ...}``); keys
    that name a secret (``connection_secret_ref``) are kept; a URL's password becomes ``***``.

    Args:
        _logger: The wrapped logger (unused).
        _method: The log method's name (unused).
        event_dict: The event.

    Returns:
        The event with credential values replaced.
    """
    for key in list(event_dict):
        if is_credential_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redacted(event_dict[key])
    return event_dict


def configure_logging(
    *, level: int = logging.INFO, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog for the command.

    Args:
        level: The lowest level shown.
        json: JSON lines when True, a console renderer when False; ``None`` picks the console
            renderer on a terminal and JSON otherwise.
        stream: Where log lines go (stderr by default, so stdout stays for results).
    """
    import structlog

    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
