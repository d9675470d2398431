"""Authentication for SaaS APIs, as ``httpx.Auth``: API-key header, HTTP Basic, bearer token,
OAuth2 client credentials.

How the delivery loop calls it
------------------------------
Build the auth once per write from the ``auth`` config and the destination's secret, and hand
it to the client; httpx calls it for every request::

    auth = auth_from_config(config.get("auth"), secret, timeout=options.timeout)
    client = httpx.Client(auth=auth, ...)          # None: no authentication
    ...
    if isinstance(auth, OAuth2ClientCredentials):
        auth.close()                               # at finish(): its token client

The configuration (``auth:``) and the secret keys each type reads::

    auth: {type: bearer}                              # secret: token
    auth: {type: api_key, header: X-Api-Key, prefix: ""}  # secret: api_key
    auth: {type: basic}                               # secret: username, password
    auth:                                             # secret: client_id, client_secret
      type: oauth2_client_credentials
      token_url: https://login.example.com/oauth2/token
      scope: contacts.write                           # optional
      audience: https://api.example.com               # optional
      client_auth: basic                              # basic (default) | post

OAuth2 (RFC 6749, section 4.4): the token is fetched from ``token_url`` on first use, cached,
and fetched again shortly before it expires (``expires_in``) or when a request is answered
401 (once per request: a second 401 is returned to the caller). One lock guards the cache, so
threads sharing the auth fetch one token, and a 401 seen by many threads refreshes once.
Secrets (the client secret, the tokens, keys and passwords) never appear in a ``repr``, a log
event or an error message. The flows are synchronous (the sink's client is).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, Final

import httpx

from floe_sink.errors import ErrorCategory, SinkConnectionError, SinkWriteError
from floe_sink.logs import get_logger
from floe_sink.retry import parse_retry_after
from floe_sink.secrets import Secret, reveal, safe_url, scrub_text
from floe_sink_dlt.saas.auth_config import AUTH_TYPES, AuthConfig, AuthType, ClientAuth

__all__ = [
    "AUTH_TYPES",
    "ApiKeyAuth",
    "BasicAuth",
    "BearerAuth",
    "OAuth2ClientCredentials",
    "auth_from_config",
]

log = get_logger(__name__)

_DESCRIPTION_CHARS: Final = 200
_CLIENT_AUTH: Final = tuple(mode.value for mode in ClientAuth)


def _secret(value: Secret | str) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


class ApiKeyAuth(httpx.Auth):
    """Sends an API key in a header of the API's choosing (``X-Api-Key: <key>`` by default).

    Args:
        key: The API key.
        header: The header's name.
        prefix: Text before the key in the header (``"Api-Key "``, ``"Token "``).
    """

    def __init__(self, key: Secret | str, *, header: str = "X-Api-Key", prefix: str = "") -> None:
        self._key = _secret(key)
        self.header = header
        self.prefix = prefix

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the header and send."""
        request.headers[self.header] = self.prefix + self._key.reveal()
        yield request

    def __repr__(self) -> str:
        return f"ApiKeyAuth(header={self.header!r})"


class BearerAuth(httpx.Auth):
    """Sends ``Authorization: Bearer <token>``.

    Args:
        token: The token.
    """

    def __init__(self, token: Secret | str) -> None:
        self._token = _secret(token)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the header and send."""
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth()"


class BasicAuth(httpx.Auth):
    """HTTP Basic authentication (RFC 7617): ``Authorization: Basic base64(user:password)``.

    Args:
        username: The user name.
        password: The password.
    """

    def __init__(self, username: str, password: Secret | str) -> None:
        self.username = username
        self._password = _secret(password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Set the header and send."""
        pair = f"{self.username}:{self._password.reveal()}".encode()
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        yield request

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r})"


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client credentials: a bearer token from a token endpoint, cached and refreshed.

    Args:
        token_url: The token endpoint.
        client_id: The client id.
        client_secret: The client secret.
        scope: The ``scope`` parameter, if the API wants one.
        audience: The ``audience`` parameter (Auth0 and the like), if the API wants one.
        client_auth: ``basic`` sends the client id and secret as HTTP Basic (RFC 6749's
            default), ``post`` as form fields of the body.
        timeout: Seconds for one token request.
        refresh_margin: Refresh this many seconds before the token expires (at most half its
            lifetime).
        token_client: The client for token requests (default: one of its own).
        clock: A monotonic clock (tests pass a fake one).

    Raises:
        ValueError: ``client_auth`` is not ``basic`` or ``post``.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: Secret | str,
        scope: str | None = None,
        audience: str | None = None,
        client_auth: str = "basic",
        timeout: float = 30.0,
        refresh_margin: float = 30.0,
        token_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if client_auth not in _CLIENT_AUTH:
            raise ValueError(f"client_auth must be one of {', '.join(_CLIENT_AUTH)}")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = _secret(client_secret)
        self.scope = scope
        self.audience = audience
        self.client_auth = client_auth
        self.refresh_margin = refresh_margin
        self._own_client = token_client is None
        self._client = token_client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._refresh_at = float("inf")
        self.fetches = 0
        """How many tokens were fetched (for tests and metrics)."""

    def __repr__(self) -> str:
        return (
            f"OAuth2ClientCredentials(token_url={safe_url(self.token_url)!r}, "
            f"client_id={self.client_id!r})"
        )

    def close(self) -> None:
        """Close the token client, if this auth made it."""
        if self._own_client:
            self._client.close()

    # -- the flow ---------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the cached token; on a 401, refresh it once and send again."""
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        response = yield request
        if response.status_code == 401:
            response.read()
            fresh = self.token(stale=token)
            request.headers["Authorization"] = f"Bearer {fresh.reveal()}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Not supported: the token cache is guarded by a thread lock.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError("OAuth2ClientCredentials supports synchronous clients only")
        yield request  # pragma: no cover - makes this an async generator

    def token(self, *, stale: Secret | None = None) -> Secret:
        """The current access token, fetched if there is none, it expires, or it is ``stale``.

        Args:
            stale: A token the API refused (a 401): fetch a new one, unless another thread
                already replaced it.

        Returns:
            The token.

        Raises:
            SinkConnectionError: The token endpoint could not be reached or answered 429/5xx
                (transient).
            SinkWriteError: The token endpoint refused the credentials or gave no token
                (permanent).
        """
        with self._lock:
            current = self._token
            if current is not None:
                replaced = stale is not None and current != stale
                if replaced or (stale is None and self._clock() < self._refresh_at):
                    return current
            return self._fetch()

    def _fetch(self) -> Secret:
        secret = self._client_secret.reveal()
        data = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if self.scope:
            data["scope"] = self.scope
        if self.audience:
            data["audience"] = self.audience
        if self.client_auth == "post":
            data["client_id"] = self.client_id
            data["client_secret"] = secret
        else:  # RFC 6749 2.3.1: each part form-urlencoded, then HTTP Basic
            pair = f"{_form(self.client_id)}:{_form(secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        url = safe_url(self.token_url)
        started = self._clock()
        try:
            response = self._client.post(self.token_url, data=data, headers=headers)
        except httpx.TransportError as exc:
            raise SinkConnectionError(
                f"the OAuth2 token request to {url} failed ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise SinkConnectionError(
                f"the OAuth2 token endpoint {url} answered HTTP {status}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        document = _json(response.content)
        if not 200 <= status < 300:
            raise SinkWriteError(
                self._scrub(
                    f"the OAuth2 token endpoint {url} refused the client credentials: "
                    f"HTTP {status}{_oauth_error(document)}"
                ),
                category=ErrorCategory.PERMANENT,
                status=status,
            )
        token = document.get("access_token") if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise SinkWriteError(
                f"the OAuth2 token endpoint {url} answered HTTP {status} without an access_token",
                category=ErrorCategory.PERMANENT,
                status=status,
            )
        lifetime = _seconds(document.get("expires_in"))
        self._token = Secret(token)
        if lifetime is None:
            self._refresh_at = float("inf")  # until the API says 401
        else:
            self._refresh_at = started + lifetime - min(self.refresh_margin, lifetime / 2)
        self.fetches += 1
        log.info("oauth2_token_fetched", token_url=url, expires_in=lifetime)
        return self._token

    def _scrub(self, text: str) -> str:
        secrets = [self._client_secret.reveal()]
        if self._token is not None:
            secrets.append(self._token.reveal())
        return scrub_text(text, secrets)


def _form(value: str) -> str:
    return urllib.parse.quote_plus(value)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def _oauth_error(document: Any) -> str:
    """`` (invalid_client: description)`` from an RFC 6749 error answer, cut short."""
    if not isinstance(document, dict) or not isinstance(document.get("error"), str):
        return ""
    text = document["error"]
    description = document.get("error_description")
    if isinstance(description, str) and description:
        text += ": " + " ".join(description.split())
    if len(text) > _DESCRIPTION_CHARS:
        text = text[: _DESCRIPTION_CHARS - 3] + "..."
    return f" ({text})"


def auth_from_config(
    spec: AuthConfig | Mapping[str, Any] | None,
    secret: Mapping[str, Any],
    *,
    where: str = "config.auth",
    timeout: float = 30.0,
) -> httpx.Auth | None:
    """Build the auth an ``auth`` config asks for, with the values of the destination's secret.

    Args:
        spec: The ``auth`` block (a mapping, see the module docstring, or its parsed
            :class:`~floe_sink_dlt.saas.auth_config.AuthConfig`), or ``None``: a bearer token
            when the secret has ``token``, else no authentication.
        secret: The destination's secret (values are :class:`Secret` or strings).
        where: The config's place, the start of every error path.
        timeout: Seconds for one OAuth2 token request.

    Returns:
        The auth, or ``None`` for no authentication.

    Raises:
        SinkConfigurationError: The type is unknown, an option is unknown or invalid, or the
            secret lacks a key the type needs (the key is named, never a value).
    """
    if spec is None:
        token = reveal(secret.get("token"))
        return BearerAuth(token) if token else None
    config = spec if isinstance(spec, AuthConfig) else AuthConfig.parse(spec, where=where)
    config.check_secret(secret, where=where)

    def secret_value(key: str) -> Secret:
        return _secret(secret[key])

    if config.type is AuthType.BEARER:
        return BearerAuth(secret_value("token"))
    if config.type is AuthType.API_KEY:
        return ApiKeyAuth(
            secret_value("api_key"),
            header=config.header or "X-Api-Key",
            prefix=config.prefix or "",
        )
    if config.type is AuthType.BASIC:
        return BasicAuth(str(reveal(secret["username"])), secret_value("password"))
    assert config.token_url is not None  # the model requires it for this type
    return OAuth2ClientCredentials(
        token_url=config.token_url,
        client_id=str(reveal(secret["client_id"])),
        client_secret=secret_value("client_secret"),
        scope=config.scope,
        audience=config.audience,
        client_auth=config.client_auth or ClientAuth.BASIC,
        timeout=timeout,
    )
