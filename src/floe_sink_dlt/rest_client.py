"""The ``rest_api`` sink's HTTP client: one per write, its requests paced, its errors scrubbed.

:class:`RestClient` opens the ``httpx`` client (keep-alive connections for the whole write,
the authentication, the headers every request carries), sends one request at a time under
the pacer (``max_requests_per_second`` and the API's rate-limit headers), and turns transport
failures and refusals into :class:`floe_sink.SinkError` s that never quote a secret. The sink
imports it when a write starts, so checking a configuration does not load httpx.
"""

from __future__ import annotations

import base64
import socket
import urllib.parse
from typing import Any, Final

import httpx

from floe_sink.errors import ErrorCategory, SinkConnectionError, SinkWriteError
from floe_sink.retry import parse_retry_after
from floe_sink.secrets import Secret, reveal, safe_url, scrub_text
from floe_sink_dlt.rest import _excerpt_of
from floe_sink_dlt.rest_options import RestApiOptions
from floe_sink_dlt.saas.auth import auth_from_config
from floe_sink_dlt.saas.pacing import AdaptivePacer

__all__ = ["RestClient"]

_USER_AGENT: Final = "floe-sink"


class RestClient:
    """The client of one write (see the module docstring).

    Args:
        options: The sink's options.
        sink_type: For the errors' context.
        destination: For the errors' context.
        max_wait: The longest the pacer waits before a request.
    """

    def __init__(
        self, options: RestApiOptions, *, sink_type: str, destination: str, max_wait: float
    ) -> None:
        self.options = options
        self.sink_type = sink_type
        self.destination = destination
        headers = {"User-Agent": _USER_AGENT, **options.headers}
        self._auth: httpx.Auth | None = None
        if options.auth is not None:
            self._auth = auth_from_config(
                options.auth, options.credentials, timeout=options.timeout
            )
        elif options.token is not None:
            headers["Authorization"] = f"Bearer {reveal(options.token)}"
        headers["Content-Type"] = "application/json"
        connections = max(options.max_concurrency, 1)
        transport = httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            # headers and body leave at once: no Nagle/delayed-ACK stall per request
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._client = httpx.Client(
            headers=headers,
            timeout=options.timeout,
            transport=transport,
            follow_redirects=False,
            auth=self._auth,
        )
        self._pacer = AdaptivePacer(
            max_requests_per_second=options.max_requests_per_second,
            headers=options.rate_limit_headers,
            max_wait=max_wait,
        )

    def close(self) -> None:
        """Close the client (and the OAuth2 token client)."""
        self._client.close()
        close = getattr(self._auth, "close", None)
        if callable(close):
            close()

    def request(
        self, method: str, url: str, body: bytes, *, key: str, attempt: int
    ) -> httpx.Response:
        """One paced request under the idempotency key ``key``, any status.

        Raises:
            SinkConnectionError: A timeout or a connection failure (transient).
            SinkWriteError: The request could not be sent at all (permanent).
        """
        self._pacer.acquire()
        response = self._send(method, url, body, key=key, attempt=attempt)
        self._pacer.observe(response.status_code, response.headers)
        return response

    def context(self, url: str, attempt: int) -> dict[str, Any]:
        """The context of an error about a request to ``url`` (without its credentials)."""
        return {
            "sink_type": self.sink_type,
            "destination": self.destination,
            "url": safe_url(url),
            "attempt": attempt,
        }

    def _send(
        self, method: str, url: str, body: bytes, *, key: str, attempt: int
    ) -> httpx.Response:
        context = self.context(url, attempt)
        try:
            return self._client.request(method, url, content=body, headers={"Idempotency-Key": key})
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            # h11 quotes the refused header value, the Authorization header included: the
            # message is scrubbed and the original (unscrubbed) exception is not chained
            raise SinkWriteError(
                f"cannot send the request: {type(exc).__name__}: {self.scrub(str(exc))}",
                category=ErrorCategory.PERMANENT,
                **context,
            ) from None
        except httpx.TimeoutException as exc:
            raise SinkConnectionError(
                f"request timed out after {self.options.timeout:g} s ({type(exc).__name__})",
                **context,
            ) from None
        except httpx.TransportError as exc:
            raise SinkConnectionError(
                f"connection failed: {type(exc).__name__}: {self.scrub(str(exc))}", **context
            ) from None

    def refusal(
        self, response: httpx.Response, *, attempt: int, transient: bool = False
    ) -> SinkWriteError:
        """The error of a non-2xx answer: transient (retried) for 429/5xx, else permanent."""
        status = response.status_code
        context = self.context(str(response.request.url), attempt)
        excerpt = self.scrub(_excerpt_of(response.content))
        if transient or status == 429 or status >= 500:
            return SinkWriteError(
                f"HTTP {status} {response.reason_phrase}: {excerpt}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                status=status,
                **context,
            )
        return SinkWriteError(
            f"HTTP {status} {response.reason_phrase}, the batch was refused: {excerpt}",
            category=ErrorCategory.PERMANENT,
            status=status,
            **context,
        )

    def scrub(self, text: str) -> str:
        """``text`` without any secret, as typed or as a ``bytes`` repr quotes it."""
        return scrub_text(text, self._secrets())

    def _secrets(self) -> list[str]:
        """Every secret value a message could quote, in the forms it could quote them."""
        options = self.options
        plain = [reveal(value) for value in options.credentials.values()]
        if options.token is not None:
            plain.append(reveal(options.token))
        credentials = options.credentials
        if "username" in credentials and "password" in credentials:
            pair = f"{reveal(credentials['username'])}:{reveal(credentials['password'])}"
            plain.append(base64.b64encode(pair.encode()).decode("ascii"))
        if "client_id" in credentials and "client_secret" in credentials:
            pair = (
                f"{urllib.parse.quote_plus(reveal(credentials['client_id']))}:"
                f"{urllib.parse.quote_plus(reveal(credentials['client_secret']))}"
            )
            plain.append(base64.b64encode(pair.encode()).decode("ascii"))
        token = getattr(self._auth, "_token", None)
        if isinstance(token, Secret):
            plain.append(token.reveal())
        forms: list[str] = []
        for value in plain:
            forms.append(value)
            forms.append(repr(value.encode("utf-8", "backslashreplace"))[2:-1])
        return forms
