"""structlog set-up: key/value events, rendered for a terminal or as JSON lines.

floe-sink never configures logging on import; the command calls :func:`configure_logging`,
libraries and tests get structlog's defaults (and ``structlog.testing.capture_logs``).

structlog is imported on the first event that is shown, not before: importing it costs a
tenth of a second (its console renderer, rich, asyncio), and a quiet command (the default
level is ``warning``) that succeeds shows no event at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, TextIO

from floe_sink.secrets import REDACTED, URL_WITH_PASSWORD, is_credential_key, redact_url

__all__ = ["REDACTED", "configure_logging", "get_logger", "redact"]


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _Deferred:
    """A :func:`configure_logging` not applied yet: structlog was not imported then."""

    def __init__(self) -> None:
        self.level: int | None = None
        self.apply: Any = None

    def drops(self, method: str) -> bool:
        """True when an event of ``method`` would not be shown (so structlog can wait)."""
        return self.level is not None and _LEVELS.get(method, logging.CRITICAL) < self.level

    def flush(self) -> None:
        """Configure structlog now, if a configuration is waiting."""
        apply, self.apply, self.level = self.apply, None, None
        if apply is not None:
            apply()


_deferred = _Deferred()


def _drop(*_args: Any, **_kwargs: Any) -> None:
    return None


class _LazyLogger:
    """A structlog logger that imports structlog on the first event shown.

    structlog pulls in its console renderer (and rich) at import time; deferring it keeps
    ``import floe_sink`` fast for code that never logs, and a quiet command fast.
    """

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, method: str) -> Any:
        if self._logger is None:
            if _deferred.drops(method):
                return _drop
            _deferred.flush()
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
    *,
    level: int = logging.INFO,
    json: bool | None = None,
    stream: TextIO | None = None,
    processors: Sequence[Any] = (),
) -> None:
    """Configure structlog for the command.

    When structlog is not imported yet, the configuration waits for the first event shown
    (events below ``level`` are dropped without importing it).

    Args:
        level: The lowest level shown.
        json: JSON lines when True, a console renderer when False; ``None`` picks the console
            renderer on a terminal and JSON otherwise.
        stream: Where log lines go (stderr by default, so stdout stays for results).
        processors: More structlog processors, run just before the renderer (the command's
            scrubbing of secret values).
    """
    extra = list(processors)

    def apply() -> None:
        _configure(level=level, json=json, stream=stream, processors=extra)

    if "structlog" in sys.modules:
        _deferred.flush()
        apply()
    else:
        _deferred.level, _deferred.apply = level, apply


def _configure(
    *, level: int, json: bool | None, stream: TextIO | None, processors: list[Any]
) -> None:
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
            *processors,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
