"""The ``rest_api`` sink: batches of rows as JSON to an HTTP endpoint.

Configuration (``SinkConfig.connection_config``; ``batch_size`` defaults to 500):

``url`` (required)
    Where batches are sent (``http://`` or ``https://``).
``method``
    ``POST`` (default), ``PUT`` or ``PATCH``.
``records_key``
    Wrap each batch's JSON array in an object under this key: ``{"records": [...]}``.
``headers``
    Extra request headers (names and values are strings). ``Authorization`` is refused here:
    the token comes from the secret.
``token``
    From the destination's secret (key ``token``): sent as ``Authorization: Bearer <token>``.
    A :class:`floe_sink.secrets.Secret` or a string; never logged. Required when the config
    holds any Secret (a Secret without ``token`` is refused, naming the keys it has).
``max_requests_per_second``
    Client-side rate limit across all requests of a write, retries included (default: none).
    With the Ray engine it holds across all the tasks of the delivery (one shared pacer).
``max_concurrency``
    Batches in flight at once (default 1). Every batch keeps its idempotency key, and a batch
    is acknowledged in the journal only once its request succeeded.
``record_ids_path``
    Where the response holds the IDs of the created records, e.g. ``data[*].id`` or ``ids``
    (see :mod:`floe_sink_dlt.record_ids`); they go to ``EgressResult.destination_record_ids``.
    The response is parsed only when this is set.
``timeout``
    Seconds for one request (default: ``retry_config.timeout``, 30).

``SinkConfig.write_disposition`` must be ``append``; ``primary_key`` is not used.

Every request carries an ``Idempotency-Key`` header, the same whenever the same batch is sent
again (a retry, a resumed run). 429, 5xx, timeouts and connection errors are retried with
exponential backoff and jitter, honouring ``Retry-After``; any other non-2xx response fails the
write at once with the status and the start of the response body. The JSON encoding of values
is described in :mod:`floe_sink_dlt.json_encoding`.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import attrs
import httpx
import pyarrow as pa

from floe_sink import SinkConfig
from floe_sink.delivery import Pacer
from floe_sink.errors import (
    ErrorCategory,
    SinkConfigurationError,
    SinkConnectionError,
    SinkWriteError,
)
from floe_sink.logs import get_logger
from floe_sink.retry import parse_retry_after
from floe_sink.secrets import Secret, reveal, scrub_text, secret_keys
from floe_sink_dlt.base import BatchReceipt, BatchSink, SinkSettings
from floe_sink_dlt.json_encoding import encode_batch
from floe_sink_dlt.rate_limit import RateLimiter
from floe_sink_dlt.record_ids import RecordIdsPath

__all__ = ["BODY_EXCERPT_CHARS", "RestApiOptions", "RestApiSink"]

log = get_logger(__name__)

BODY_EXCERPT_CHARS = 200
"""Characters of a refused request's response body quoted in the error."""

_METHODS = ("POST", "PUT", "PATCH")
_KEYS = frozenset(
    {
        "url",
        "method",
        "records_key",
        "headers",
        "token",
        "max_requests_per_second",
        "max_concurrency",
        "record_ids_path",
        "timeout",
    }
)
_USER_AGENT = "floe-sink"


@attrs.frozen(kw_only=True)
class RestApiOptions:
    """The validated ``rest_api`` settings (see the module docstring)."""

    url: str
    method: str = "POST"
    records_key: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    token: Secret | None = attrs.field(default=None, repr=False)
    max_requests_per_second: float | None = None
    max_concurrency: int = 1
    record_ids_path: RecordIdsPath | None = None
    timeout: float = 30.0

    @classmethod
    def from_config(cls, config: SinkConfig, *, default_timeout: float) -> RestApiOptions:
        """Validate ``config.connection_config``.

        Raises:
            SinkConfigurationError: A key is missing or invalid; the message names it.
        """
        connection = config.connection_config

        def fail(key: str, problem: str) -> SinkConfigurationError:
            return SinkConfigurationError(
                f"config.{key} {problem}",
                sink_type=config.sink_type,
                destination=config.destination,
            )

        url = connection.get("url")
        if not url:
            raise fail("url", "is required: the URL batches are sent to (http:// or https://)")
        if not isinstance(url, str):
            raise fail("url", f"must be a string (got {type(url).__name__})")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise fail("url", f"must be an http:// or https:// URL (got {_safe_url(url)!r})")

        method = connection.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise fail("method", f"must be one of {', '.join(_METHODS)} (got {method!r})")

        records_key = connection.get("records_key")
        if records_key is not None and (not isinstance(records_key, str) or not records_key):
            raise fail("records_key", "must be a non-empty string")

        headers = connection.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
        ):
            raise fail("headers", "must be a mapping of header names to string values")
        lowered = {name.lower() for name in headers}
        if "authorization" in lowered:
            raise fail(
                "headers",
                "must not set Authorization: put the token in the destination's secret "
                "(key 'token'); it is sent as a bearer token",
            )
        if "idempotency-key" in lowered:
            raise fail("headers", "must not set Idempotency-Key: floe-sink sets it per batch")

        token = _token(config)

        rate = connection.get("max_requests_per_second")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
        ):
            raise fail("max_requests_per_second", f"must be a number > 0 (got {rate!r})")

        concurrency = connection.get("max_concurrency", 1)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise fail("max_concurrency", f"must be an integer >= 1 (got {concurrency!r})")

        path_text = connection.get("record_ids_path")
        path: RecordIdsPath | None = None
        if path_text is not None:
            if not isinstance(path_text, str):
                raise fail("record_ids_path", "must be a string such as 'data[*].id'")
            try:
                path = RecordIdsPath.parse(path_text)
            except ValueError as exc:
                raise fail("record_ids_path", f"is invalid: {exc}") from exc

        timeout = connection.get("timeout", default_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise fail("timeout", f"must be a number of seconds > 0 (got {timeout!r})")

        disposition = config.write_disposition
        if disposition != "append":
            raise fail(
                "write_disposition",
                f"must be 'append' for rest_api (got {disposition!r}): an HTTP endpoint "
                "receives batches; merging or replacing is the API's business",
            )

        return cls(
            url=url,
            method=method.upper(),
            records_key=records_key,
            headers=dict(headers),
            token=token,
            max_requests_per_second=float(rate) if rate is not None else None,
            max_concurrency=concurrency,
            record_ids_path=path,
            timeout=float(timeout),
        )


class RestApiSink(BatchSink):
    """Delivers batches as JSON requests; see the module docstring for the configuration."""

    sink_type = "rest_api"
    default_batch_size = 500

    def __init__(self, settings: SinkSettings, options: RestApiOptions) -> None:
        super().__init__(settings)
        self.options = options
        self.concurrency = options.max_concurrency
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._limiter: RateLimiter | Pacer | None = None

    @classmethod
    def from_config(cls, config: SinkConfig) -> RestApiSink:
        """Validate ``config`` and build the sink (nothing is sent yet).

        Raises:
            SinkConfigurationError: A key is missing, unknown or invalid (it is named).
        """
        cls.refuse_unknown_keys(config, set(_KEYS))
        try:
            settings = SinkSettings.from_config(config, default_batch_size=cls.default_batch_size)
        except SinkConfigurationError as exc:
            raise SinkConfigurationError(
                exc.message, sink_type=config.sink_type, destination=_destination(config)
            ) from exc
        options = RestApiOptions.from_config(config, default_timeout=settings.retry.timeout)
        return cls(settings, options)

    @property
    def rate_limit(self) -> float | None:
        """``max_requests_per_second`` (shared by the Ray engine's tasks)."""
        return self.options.max_requests_per_second

    def describe(self) -> str:
        """The destination name, method and URL (without credentials or query)."""
        return f"{self.settings.destination} ({self.options.method} {_safe_url(self.options.url)})"

    def preview(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The rows of ``batch`` as they are sent: the JSON of the request body, parsed."""
        rows: list[dict[str, Any]] = json.loads(encode_batch(batch))
        return rows

    # -- the client, one per write ----------------------------------------------------------

    def prepare(self, schema: pa.Schema) -> None:
        """Open the HTTP client (keep-alive connections for the whole write)."""
        self._open()

    def finish(self, *, success: bool) -> None:
        """Close the HTTP client."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _open(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                options = self.options
                headers = {"User-Agent": _USER_AGENT, **options.headers}
                if options.token is not None:
                    headers["Authorization"] = f"Bearer {reveal(options.token)}"
                headers["Content-Type"] = "application/json"
                connections = max(options.max_concurrency, 1)
                transport = httpx.HTTPTransport(
                    limits=httpx.Limits(
                        max_connections=connections, max_keepalive_connections=connections
                    ),
                    # headers and body leave at once: no Nagle/delayed-ACK stall per request
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                )
                self._client = httpx.Client(
                    headers=headers,
                    timeout=options.timeout,
                    transport=transport,
                    follow_redirects=False,
                )
                rate = options.max_requests_per_second
                shared = self.delivery.pacer if self.delivery is not None else None
                if rate is None:
                    self._limiter = None
                else:  # the engine's pacer, shared with the delivery's other processes
                    self._limiter = shared if shared is not None else RateLimiter(rate)
            return self._client

    # -- one batch --------------------------------------------------------------------------

    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Send ``batch`` as one request under ``key``, retrying transient failures.

        Raises:
            SinkConnectionError: The endpoint could not be reached, after every retry.
            SinkWriteError: The endpoint answered 429 or 5xx after every retry (transient),
                or refused the batch with another status (permanent, not retried).
        """
        client = self._open()
        options = self.options
        body = encode_batch(batch, records_key=options.records_key)
        attempts = 0
        started = time.perf_counter()

        def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            if self._limiter is not None:
                self._limiter.acquire()
            return self._send(client, body, key=key, attempt=attempts)

        response = self.with_retries(attempt, what="rest_api request", key=key, rows=batch.num_rows)
        record_ids = self._ids_in(response, key=key)
        log.info(
            "batch_delivered",
            destination=self.settings.destination,
            sink_type=self.sink_type,
            rows=batch.num_rows,
            attempt=attempts,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            key=key,
        )
        return BatchReceipt(rows=batch.num_rows, bytes=len(body), record_ids=record_ids)

    def _send(self, client: httpx.Client, body: bytes, *, key: str, attempt: int) -> httpx.Response:
        options = self.options
        context: dict[str, Any] = {
            "sink_type": self.sink_type,
            "destination": self.settings.destination,
            "url": _safe_url(options.url),
            "attempt": attempt,
        }
        try:
            response = client.request(
                options.method, options.url, content=body, headers={"Idempotency-Key": key}
            )
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            # h11 quotes the refused header value, the Authorization header included: the
            # message is scrubbed and the original (unscrubbed) exception is not chained
            raise SinkWriteError(
                f"cannot send the request: {type(exc).__name__}: {self._scrub(str(exc))}",
                category=ErrorCategory.PERMANENT,
                **context,
            ) from None
        except httpx.TimeoutException as exc:
            raise SinkConnectionError(
                f"request timed out after {options.timeout:g} s ({type(exc).__name__})",
                **context,
            ) from exc
        except httpx.TransportError as exc:
            raise SinkConnectionError(
                f"connection failed: {type(exc).__name__}: {self._scrub(str(exc))}", **context
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        excerpt = _excerpt(response)
        if status == 429 or status >= 500:
            error = SinkWriteError(
                f"HTTP {status} {response.reason_phrase}: {excerpt}", status=status, **context
            )
            error.retry_after = parse_retry_after(response.headers.get("Retry-After"))  # type: ignore[attr-defined]
            raise error
        raise SinkWriteError(
            f"HTTP {status} {response.reason_phrase}, the batch was refused: {excerpt}",
            category=ErrorCategory.PERMANENT,
            status=status,
            **context,
        )

    def _scrub(self, text: str) -> str:
        """``text`` without the token, as typed or as a ``bytes`` repr quotes it."""
        token = self.options.token
        if token is None:
            return text
        plain = reveal(token)
        return scrub_text(text, (plain, repr(plain.encode("utf-8", "backslashreplace"))[2:-1]))

    def _ids_in(self, response: httpx.Response, *, key: str) -> list[str]:
        path = self.options.record_ids_path
        if path is None:
            return []
        try:
            document = json.loads(response.content) if response.content else None
        except ValueError:
            log.warning(
                "record_ids_unreadable",
                destination=self.settings.destination,
                reason="the response is not JSON",
                key=key,
            )
            return []
        return path.find(document)


_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token can be


def _token(config: SinkConfig) -> Secret | None:
    """The bearer token, required when the destination has a Secret (its key ``token``).

    A ``SinkConfig`` built in code without any Secret may leave it out (no Authorization).
    """
    connection = config.connection_config

    def fail(problem: str) -> SinkConfigurationError:
        return SinkConfigurationError(
            problem, sink_type=config.sink_type, destination=_destination(config)
        )

    token = connection.get("token")
    if token is None:
        found = secret_keys(connection)
        if found:
            # a misspelt key would otherwise send every request without Authorization
            raise fail(
                f"the destination's Secret has no key 'token' (keys found: {', '.join(found)}); "
                "rest_api sends it as 'Authorization: Bearer <token>'. Name the file holding "
                "the token 'token' in the Secret that connection_secret_ref names"
            )
        return None
    if not isinstance(token, Secret):
        if not isinstance(token, str):
            raise fail("config.token must be a string (from the destination's secret)")
        token = Secret(token)
    if not _HEADER_SAFE.fullmatch(reveal(token)):
        raise fail(
            "the Secret's key 'token' is empty or holds characters an HTTP header cannot carry "
            "(spaces, line breaks, control or non-ASCII characters); write the bare token, "
            "without 'Bearer ', on one line"
        )
    return token


def _excerpt(response: httpx.Response) -> str:
    text = response.content[: BODY_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > BODY_EXCERPT_CHARS:
        return text[: BODY_EXCERPT_CHARS - 3] + "..."
    return text or "(empty body)"


def _safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may hold credentials)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<invalid url>"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _destination(config: SinkConfig) -> str | None:
    return config.destination
