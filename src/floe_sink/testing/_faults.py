"""Faults on demand: how the conformance kit makes a destination fail, for any sink.

The kit never reaches into a sink. It asks a :class:`FaultInjector` that the plugin author
placed between the sink and its destination to make the next operations fail, writes, and
then asks how many faults the sink actually ran into. Two injectors come with the kit:

* :class:`HttpFaultProxy`, for sinks that speak HTTP: a proxy on 127.0.0.1 in front of the
  real endpoint. Point the sink's URL at :attr:`HttpFaultProxy.url`; an injected transient
  fault is answered ``503`` (with ``Retry-After: 0``), a permanent one ``400``; every other
  request is forwarded unchanged.
* :class:`CallFaults`, for anything else: it replaces one callable (a driver call, a client
  method) with one that raises the exceptions you name, as the real one would, while faults
  are injected, and restores it afterwards.

Anything with ``inject``, ``clear`` and ``injected`` (the :class:`FaultInjector` protocol)
works too.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["CallFaults", "Fault", "FaultInjector", "HttpFaultProxy", "ProxiedRequest"]


class Fault(enum.Enum):
    """The kind of failure the kit injects."""

    TRANSIENT = "transient"
    """Goes away when tried again (a 503, a dropped connection, a lock timeout)."""
    PERMANENT = "permanent"
    """Fails the same way every time (a 400, a constraint violation)."""


@runtime_checkable
class FaultInjector(Protocol):
    """What the kit needs from the thing that makes a destination fail."""

    def inject(self, fault: Fault, *, times: int) -> None:
        """Make the next ``times`` operations fail with ``fault`` (and reset :attr:`injected`)."""

    def clear(self) -> None:
        """Stop failing; everything works normally again."""

    @property
    def injected(self) -> int:
        """How many operations failed because of :meth:`inject` since it was called."""


class _FaultPlan:
    """The counting every injector shares: which fault, how many more, how many served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None
        self._remaining = 0
        self._injected = 0

    def inject(self, fault: Fault, *, times: int) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1 (got {times})")
        with self._lock:
            self._fault, self._remaining, self._injected = fault, times, 0

    def clear(self) -> None:
        with self._lock:
            self._fault, self._remaining = None, 0

    @property
    def injected(self) -> int:
        with self._lock:
            return self._injected

    def _take(self) -> Fault | None:
        """The fault this operation must fail with, if any (counted as served)."""
        with self._lock:
            if self._fault is None or self._remaining < 1:
                return None
            self._remaining -= 1
            self._injected += 1
            return self._fault


class CallFaults(_FaultPlan):
    """Make ``getattr(target, name)`` raise on demand: a fault injector for any call.

    While faults are injected, ``target.name`` is replaced by a wrapper that raises
    ``transient()`` or ``permanent()`` (exceptions you choose, the ones the real call raises
    in that situation) instead of calling through; :meth:`clear` puts the original back.
    ``target`` may be a class (every instance is affected), an instance or a module.

    Example, a batch write that loses its connection once, for a SQLite-backed sink::

        faults = CallFaults(
            SqliteDialect, "insert",
            transient=lambda: sqlite3.OperationalError("database is locked"),
            permanent=lambda: sqlite3.IntegrityError("NOT NULL constraint failed"),
        )

    Args:
        target: The object whose attribute is replaced.
        name: The attribute: a function, method or other callable.
        transient: Builds the exception of a transient fault.
        permanent: Builds the exception of a permanent fault.
    """

    def __init__(
        self,
        target: object,
        name: str,
        *,
        transient: Callable[[], BaseException],
        permanent: Callable[[], BaseException],
    ) -> None:
        super().__init__()
        original = getattr(target, name)
        if not callable(original):
            raise TypeError(f"{target!r}.{name} is not callable")
        if isinstance(inspect.getattr_static(target, name), staticmethod | classmethod):
            raise TypeError(f"{target!r}.{name}: static and class methods are not supported")
        self.target = target
        self.name = name
        self._factories = {Fault.TRANSIENT: transient, Fault.PERMANENT: permanent}
        self._own = name in vars(target)
        self._original = inspect.getattr_static(target, name) if self._own else None
        self._installed = False

    def __repr__(self) -> str:
        return f"CallFaults({self.target!r}, {self.name!r})"

    def inject(self, fault: Fault, *, times: int) -> None:
        super().inject(fault, times=times)
        if not self._installed:
            # on a class, ``original`` is the function and ``failing`` gets bound like it;
            # on an instance or a module, both are called as they are
            original = getattr(self.target, self.name)

            def failing(*args: Any, **kwargs: Any) -> Any:
                fault = self._take()
                if fault is not None:
                    raise self._factories[fault]()
                return original(*args, **kwargs)

            setattr(self.target, self.name, failing)
            self._installed = True

    def clear(self) -> None:
        super().clear()
        if self._installed:
            if self._own:
                setattr(self.target, self.name, self._original)
            else:
                delattr(self.target, self.name)
            self._installed = False

    close = clear


@attrs.frozen(kw_only=True)
class ProxiedRequest:
    """A request that reached an :class:`HttpFaultProxy`."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    fault: Fault | None
    """The fault it was answered with, ``None`` when it was forwarded."""


_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


class HttpFaultProxy(_FaultPlan):
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that fails requests on demand.

    Every request is forwarded to ``upstream``'s origin (same method, path, headers and
    body) and its answer relayed, except while faults are injected: then a transient fault
    is answered ``transient_status`` with ``Retry-After: 0`` and a permanent one
    ``permanent_status``, without reaching the upstream. Use it as a context manager, or
    :meth:`start` and :meth:`stop` it (the ``http_fault_proxy`` fixture does both).

    Args:
        upstream: The real endpoint, ``http://`` or ``https://``.
        transient_status: The answer to a transient fault (429 and 5xx are transient).
        permanent_status: The answer to a permanent fault (a 4xx other than 408 and 429).
        timeout: Seconds to wait for the upstream.

    Attributes:
        requests: Every request received, in order, with the fault it got (if any).
    """

    def __init__(
        self,
        upstream: str,
        *,
        transient_status: int = 503,
        permanent_status: int = 400,
        timeout: float = 30.0,
    ) -> None:
        import urllib.parse

        super().__init__()
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be an http:// or https:// URL (got {upstream!r})")
        self.upstream = upstream
        self._parts = parts
        self.transient_status = transient_status
        self.permanent_status = permanent_status
        self.timeout = timeout
        self.requests: list[ProxiedRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"HttpFaultProxy(upstream={self._origin()!r})"

    def _origin(self) -> str:
        port = f":{self._parts.port}" if self._parts.port else ""
        return f"{self._parts.scheme}://{self._parts.hostname}{port}"

    @property
    def url(self) -> str:
        """``upstream`` with the proxy's address: what to configure the sink with."""
        import urllib.parse

        if self._server is None:
            raise RuntimeError("the proxy is not started: call start() or use it in a with block")
        netloc = f"127.0.0.1:{self._server.server_address[1]}"
        return urllib.parse.urlunsplit(self._parts._replace(scheme="http", netloc=netloc))

    def start(self) -> HttpFaultProxy:
        """Listen on a free port of 127.0.0.1, in a background thread."""
        from http.server import ThreadingHTTPServer

        if self._server is None:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
            server.daemon_threads = True
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},  # stop() returns within 50 ms
                name="floe-fault-proxy",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HttpFaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- request handling (runs in the server's threads) ------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        sent = dict(handler.headers.items())  # forwarded with the client's spelling
        headers = {name.lower(): value for name, value in sent.items()}
        fault = self._take()
        with self._lock:
            self.requests.append(
                ProxiedRequest(
                    method=handler.command,
                    path=handler.path,
                    headers=headers,
                    body=body,
                    fault=fault,
                )
            )
        if fault is Fault.TRANSIENT:
            _answer(
                handler,
                self.transient_status,
                b'{"error": "injected transient fault"}',
                {"Retry-After": "0"},
            )
            return
        if fault is Fault.PERMANENT:
            _answer(handler, self.permanent_status, b'{"error": "injected permanent fault"}', {})
            return
        status, reply_headers, reply = self._forward(handler.command, handler.path, sent, body)
        _answer(handler, status, reply, reply_headers)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        import http.client

        connection_class = (
            http.client.HTTPSConnection
            if self._parts.scheme == "https"
            else http.client.HTTPConnection
        )
        assert self._parts.hostname is not None
        connection = connection_class(self._parts.hostname, self._parts.port, timeout=self.timeout)
        try:
            forwarded = {
                name: value for name, value in headers.items() if name.lower() not in _HOP_BY_HOP
            }
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            reply = response.read()
            reply_headers = {
                name: value
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP
            }
            return response.status, reply_headers, reply
        except OSError as exc:
            return 502, {}, f'{{"error": "upstream unreachable: {type(exc).__name__}"}}'.encode()
        finally:
            connection.close()


def _answer(
    handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    if not any(name.lower() == "content-type" for name in headers):
        handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _handler_for(proxy: HttpFaultProxy) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the endpoint behind it

        def handle_one(self) -> None:
            proxy._serve(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test output is for the kit's findings."""

    return Handler


@contextlib.contextmanager
def injected(faults: FaultInjector, fault: Fault, *, times: int) -> Iterator[FaultInjector]:
    """Inject ``fault`` for the block, and clear it afterwards whatever happens."""
    faults.clear()
    faults.inject(fault, times=times)
    try:
        yield faults
    finally:
        faults.clear()
