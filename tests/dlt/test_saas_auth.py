"""Authentication (floe_sink_dlt.saas.auth) against a real OAuth2 token endpoint and API on
127.0.0.1: one token per expiry, one refresh per 401, the secret nowhere in logs, errors or
reprs."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from floe_sink.errors import SinkConfigurationError, SinkConnectionError, SinkWriteError
from floe_sink.secrets import Secret
from floe_sink_dlt.saas.auth import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentials,
    auth_from_config,
)

CLIENT_ID = "floe-client"
CLIENT_SECRET = "s3cr3t/+&=value"  # characters RFC 6749 makes the client form-encode


class OAuthServer:
    """A token endpoint (``POST /token``) and an API (``POST /api``) that accepts only the
    latest token it issued (or the tokens in :attr:`accepted`)."""

    def __init__(self) -> None:
        self.token_requests: list[dict[str, Any]] = []
        self.api_requests: list[str | None] = []
        self.issued: list[str] = []
        self.expires_in: Any = 3600
        self.token_reply: tuple[int, Any] | None = None
        self.revoked: set[str] = set()
        self.always_401 = False
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path == "/token":
                    owner.token(self, body)
                else:
                    owner.api(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, status: int, document: Any) -> None:
        payload = json.dumps(document).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def token(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        with self.lock:
            self.token_requests.append(
                {"form": form, "authorization": handler.headers.get("Authorization")}
            )
            if self.token_reply is not None:
                status, document = self.token_reply
                self.reply(handler, status, document)
                return
            token = f"token-{len(self.issued) + 1}"
            self.issued.append(token)
        answer = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        self.reply(handler, 200, answer)

    def api(self, handler: BaseHTTPRequestHandler) -> None:
        header = handler.headers.get("Authorization")
        with self.lock:
            self.api_requests.append(header)
            current = f"Bearer {self.issued[-1]}" if self.issued else None
            ok = (
                not self.always_401
                and header == current
                and header.removeprefix("Bearer ") not in self.revoked
            )
        self.reply(handler, 200 if ok else 401, {"ok": ok})


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_auth(oauth: OAuthServer, clock: FakeClock | None = None, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "token_url": oauth.url("/token"),
        "client_id": CLIENT_ID,
        "client_secret": Secret(CLIENT_SECRET),
        **kwargs,
    }
    if clock is not None:
        options["clock"] = clock
    return OAuth2ClientCredentials(**options)


def call(client: httpx.Client, oauth: OAuthServer) -> httpx.Response:
    return client.post(oauth.url("/api"), content=b"{}")


def test_the_token_is_fetched_once_and_reused(oauth: OAuthServer) -> None:
    auth = make_auth(oauth, scope="contacts.write", audience="https://api")
    with httpx.Client(auth=auth) as client:
        statuses = [call(client, oauth).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert len(oauth.token_requests) == 1
    request = oauth.token_requests[0]
    assert request["form"] == {
        "grant_type": "client_credentials",
        "scope": "contacts.write",
        "audience": "https://api",
    }
    basic = base64.b64decode(request["authorization"].removeprefix("Basic ")).decode()
    assert basic == f"{CLIENT_ID}:{urllib.parse.quote_plus(CLIENT_SECRET)}"
    assert oauth.api_requests == ["Bearer token-1"] * 5
    auth.close()


def test_client_auth_post_sends_the_credentials_in_the_form(oauth: OAuthServer) -> None:
    auth = make_auth(oauth, client_auth="post")
    with httpx.Client(auth=auth) as client:
        assert call(client, oauth).status_code == 200
    [request] = oauth.token_requests
    assert request["authorization"] is None
    assert request["form"] == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    with pytest.raises(ValueError, match="client_auth"):
        make_auth(oauth, client_auth="jwt")


def test_the_token_is_fetched_once_per_expiry(oauth: OAuthServer) -> None:
    clock = FakeClock()
    oauth.expires_in = 600
    auth = make_auth(oauth, clock, refresh_margin=30)
    with httpx.Client(auth=auth) as client:
        for _ in range(3):
            assert call(client, oauth).status_code == 200
        clock.now += 569  # 31 s before expiry: still good
        assert call(client, oauth).status_code == 200
        assert len(oauth.token_requests) == 1
        clock.now += 1  # inside the margin: refreshed before the API would refuse it
        for _ in range(3):
            assert call(client, oauth).status_code == 200
        assert len(oauth.token_requests) == 2
        clock.now += 600
        assert call(client, oauth).status_code == 200
    assert len(oauth.token_requests) == 3
    assert auth.fetches == 3
    assert oauth.api_requests[-1] == "Bearer token-3"


def test_a_short_lived_token_is_refreshed_at_half_its_life(oauth: OAuthServer) -> None:
    clock = FakeClock()
    oauth.expires_in = "20"  # some servers send a string
    auth = make_auth(oauth, clock, refresh_margin=30)
    with httpx.Client(auth=auth) as client:
        call(client, oauth)
        clock.now += 9.9
        call(client, oauth)
        clock.now += 0.1
        call(client, oauth)
    assert len(oauth.token_requests) == 2


def test_a_token_without_expiry_is_kept_until_a_401(oauth: OAuthServer) -> None:
    clock = FakeClock()
    oauth.expires_in = None
    auth = make_auth(oauth, clock)
    with httpx.Client(auth=auth) as client:
        call(client, oauth)
        clock.now += 10**7
        call(client, oauth)
        assert len(oauth.token_requests) == 1
        oauth.revoked.add("token-1")
        assert call(client, oauth).status_code == 200
    assert len(oauth.token_requests) == 2


def test_a_401_refreshes_the_token_once_and_resends(oauth: OAuthServer) -> None:
    auth = make_auth(oauth)
    with httpx.Client(auth=auth) as client:
        assert call(client, oauth).status_code == 200
        oauth.revoked.add("token-1")  # the API stops honouring it before it expires
        assert call(client, oauth).status_code == 200
        assert oauth.api_requests == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
        assert len(oauth.token_requests) == 2

        oauth.always_401 = True  # credentials the API refuses whatever the token
        response = call(client, oauth)
    assert response.status_code == 401  # handed back after one refresh, no loop
    assert len(oauth.token_requests) == 3
    assert oauth.api_requests[-2:] == ["Bearer token-2", "Bearer token-3"]


def test_threads_share_one_token_and_one_refresh(oauth: OAuthServer) -> None:
    auth = make_auth(oauth)
    with httpx.Client(auth=auth, limits=httpx.Limits(max_connections=8)) as client:
        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(lambda _: call(client, oauth).status_code, range(32)))
        assert first == [200] * 32
        assert len(oauth.token_requests) == 1
        oauth.revoked.add("token-1")
        with ThreadPoolExecutor(8) as pool:
            second = list(pool.map(lambda _: call(client, oauth).status_code, range(32)))
    assert second == [200] * 32
    assert len(oauth.token_requests) == 2  # many 401s with token-1, one refresh


def everything_said(logs: list[dict[str, Any]], *texts: Any) -> str:
    return json.dumps(logs, default=str) + "".join(str(text) for text in texts)


def test_the_secret_and_the_tokens_never_show(oauth: OAuthServer) -> None:
    auth = make_auth(oauth)
    with capture_logs() as logs, httpx.Client(auth=auth) as client:
        call(client, oauth)
        oauth.revoked.add("token-1")
        call(client, oauth)
    said = everything_said(logs, repr(auth), str(auth), vars(auth))
    assert {
        "event": "oauth2_token_fetched",
        "token_url": oauth.url("/token"),
        "expires_in": 3600.0,
        "log_level": "info",
    } in logs
    for secret in (CLIENT_SECRET, "token-1", "token-2"):
        assert secret not in said
    assert repr(auth) == (
        f"OAuth2ClientCredentials(token_url={oauth.url('/token')!r}, client_id='floe-client')"
    )


def test_refused_credentials_are_a_permanent_error_without_the_secret(oauth: OAuthServer) -> None:
    oauth.token_reply = (
        401,
        {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"},
    )
    auth = make_auth(oauth)
    with (
        capture_logs() as logs,
        httpx.Client(auth=auth) as client,
        pytest.raises(SinkWriteError) as caught,
    ):
        call(client, oauth)
    error = caught.value
    assert not error.retryable
    assert "refused the client credentials: HTTP 401 (invalid_client: bad secret ***)" in str(error)
    said = everything_said(logs, error, repr(error), error.__cause__, error.__context__)
    assert CLIENT_SECRET not in said
    assert oauth.api_requests == []  # nothing sent without a token


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ((200, {"token_type": "Bearer"}), "answered HTTP 200 without an access_token"),
        ((200, "not an object"), "without an access_token"),
        ((400, {"error": "x" * 300}), "HTTP 400 (" + "x" * 197 + "...)"),
        ((403, "<html>"), "refused the client credentials: HTTP 403 ["),
    ],
)
def test_bad_token_answers(oauth: OAuthServer, reply: tuple[int, Any], message: str) -> None:
    oauth.token_reply = reply
    with pytest.raises(SinkWriteError) as caught:
        make_auth(oauth).token()
    assert message in str(caught.value)
    assert not caught.value.retryable


def test_a_busy_token_endpoint_is_transient(oauth: OAuthServer) -> None:
    oauth.token_reply = (503, {"error": "temporarily_unavailable"})
    with pytest.raises(SinkConnectionError) as caught:
        make_auth(oauth).token()
    assert caught.value.retryable
    assert "answered HTTP 503" in str(caught.value)


def test_an_unreachable_token_endpoint_is_transient_and_says_nothing_secret() -> None:
    with socket_closed() as url:
        auth = OAuth2ClientCredentials(
            token_url=url + "?client_secret=" + CLIENT_SECRET,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            timeout=2,
        )
        with pytest.raises(SinkConnectionError) as caught:
            auth.token()
    assert caught.value.retryable
    assert CLIENT_SECRET not in str(caught.value)
    assert "failed (ConnectError)" in str(caught.value)
    assert CLIENT_SECRET not in repr(auth)


class socket_closed:
    """A URL on 127.0.0.1 where nothing listens."""

    def __enter__(self) -> str:
        import socket

        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        return f"http://127.0.0.1:{port}/token"

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_async_flow_is_refused(oauth: OAuthServer) -> None:
    import asyncio

    async def go() -> None:
        async with httpx.AsyncClient(auth=make_auth(oauth)) as client:
            await client.post(oauth.url("/api"))

    with pytest.raises(NotImplementedError, match="synchronous clients only"):
        asyncio.run(go())


# -- the simple schemes --------------------------------------------------------------------


def sent_headers(auth: httpx.Auth) -> httpx.Headers:
    request = httpx.Request("POST", "https://api.example.com/x")
    flow = auth.sync_auth_flow(request)
    return next(flow).headers


def test_api_key_bearer_and_basic_headers() -> None:
    key = ApiKeyAuth(Secret("k-123"), header="X-HubSpot-Key", prefix="Key ")
    assert sent_headers(key)["X-HubSpot-Key"] == "Key k-123"
    assert sent_headers(ApiKeyAuth("k-123"))["X-Api-Key"] == "k-123"
    assert sent_headers(BearerAuth("t-1"))["Authorization"] == "Bearer t-1"
    basic = sent_headers(BasicAuth("ann", Secret("pw:ö")))["Authorization"]
    assert base64.b64decode(basic.removeprefix("Basic ")).decode() == "ann:pw:ö"
    for auth in (key, BearerAuth("t-1"), BasicAuth("ann", "pw:ö")):
        assert "k-123" not in repr(auth)
        assert "t-1" not in repr(auth)
        assert "pw" not in repr(auth)
    assert repr(key) == "ApiKeyAuth(header='X-HubSpot-Key')"
    assert repr(BasicAuth("ann", "pw")) == "BasicAuth(username='ann')"


# -- from the configuration ----------------------------------------------------------------


def test_auth_from_config_builds_each_type() -> None:
    secret = {
        "token": Secret("t"),
        "api_key": Secret("k"),
        "username": "ann",
        "password": Secret("p"),
        "client_id": "id",
        "client_secret": Secret("s"),
    }
    assert isinstance(auth_from_config(None, secret), BearerAuth)
    assert auth_from_config(None, {}) is None
    assert isinstance(auth_from_config({"type": "bearer"}, secret), BearerAuth)
    key = auth_from_config({"type": "api_key", "header": "Api-Key", "prefix": "K "}, secret)
    assert isinstance(key, ApiKeyAuth)
    assert sent_headers(key)["Api-Key"] == "K k"
    assert isinstance(auth_from_config({"type": "basic"}, secret), BasicAuth)
    oauth = auth_from_config(
        {"type": "oauth2_client_credentials", "token_url": "https://login.example/t"}, secret
    )
    assert isinstance(oauth, OAuth2ClientCredentials)
    assert oauth.client_auth == "basic"
    oauth.close()


@pytest.mark.parametrize(
    ("spec", "secret", "message"),
    [
        ("bearer", {}, "config.auth: expected a mapping, got a string"),
        ({"type": "token"}, {}, "config.auth.type: must be one of bearer, api_key, basic"),
        ({"type": "basic", "header": "X"}, {}, "config.auth.header: does not apply to type basic"),
        (
            {"type": "api_key", "header": 1},
            {"api_key": "k"},
            "config.auth.header: expected a string",
        ),
        ({"type": "basic"}, {"username": "u"}, "needs the key(s) 'password' in the destination"),
        (
            {"type": "oauth2_client_credentials", "token_url": "https://x/t"},
            {"client_secret": Secret("top-secret")},
            "type oauth2_client_credentials needs the key(s) 'client_id'",
        ),
        (
            {"type": "oauth2_client_credentials"},
            {"client_id": "i", "client_secret": "s"},
            "config.auth.token_url: is required",
        ),
        (
            {"type": "oauth2_client_credentials", "token_url": "https://x/t", "client_auth": "x"},
            {"client_id": "i", "client_secret": "s"},
            "config.auth.client_auth: must be one of basic, post",
        ),
        ({"type": "api_key", "header": "Content-Type"}, {"api_key": "k"}, "cannot carry"),
    ],
)
def test_bad_auth_configs_name_the_key_never_a_value(
    spec: Any, secret: dict[str, Any], message: str
) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        auth_from_config(spec, secret)
    assert message in str(caught.value)
    assert "top-secret" not in str(caught.value)
