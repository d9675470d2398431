"""The ``rest_api`` sink: batches of rows as JSON to an HTTP endpoint.

Configuration (``SinkConfig.connection_config``; ``batch_size`` defaults to 500):

``url`` (required)
    Where batches are sent (``http://`` or ``https://``).
``method``
    ``POST`` (default), ``PUT`` or ``PATCH``.
``records_key``
    Wrap each batch's JSON array in an object under this key: ``{"records": [...]}`` (without
    a ``template``; a template says where its records go).
``headers``
    Extra request headers (names and values are strings). ``Authorization`` is refused here:
    the credentials come from the secret.
``token``
    From the destination's secret (key ``token``): sent as ``Authorization: Bearer <token>``
    when there is no ``auth``. A :class:`floe_sink.secrets.Secret` or a string; never logged.
    Required when the config holds any Secret and no ``auth`` (a Secret without ``token`` is
    refused, naming the keys it has).
``auth``
    Another authentication (:mod:`floe_sink_dlt.saas.auth`): ``{type: bearer}`` (secret key
    ``token``), ``{type: api_key, header: X-Api-Key, prefix: ""}`` (``api_key``),
    ``{type: basic}`` (``username``, ``password``), ``{type: oauth2_client_credentials,
    token_url: ..., scope: ..., audience: ..., client_auth: basic|post}`` (``client_id``,
    ``client_secret``). The values always come from the destination's secret.
``template``
    The JSON shape of a record and of a request (:mod:`floe_sink_dlt.saas.template`).
``results``
    How to read per-record results out of an answer (:mod:`floe_sink_dlt.saas.results`).
``record_key``
    The column whose values the answers name records by (``results`` by key); default the
    template's first ``required: true`` column.
``max_body_bytes``, ``max_records_per_request``
    Limits of one request: a batch is cut into as many requests as they need.
``max_requests_per_second``
    Client-side rate limit across all requests of a write, retries included (default: none).
    With the Ray engine it holds across all the tasks of the delivery (one shared pacer).
``rate_limit_headers``
    The response headers that say how many requests remain and when the count resets
    (:mod:`floe_sink_dlt.saas.pacing`); the common ``X-RateLimit-*`` names by default. With
    the Ray engine each task follows the answers it receives itself.
``preset``, ``preset_parameters``
    A ready-made destination (:mod:`floe_sink_dlt.saas.presets`): its config, with the
    parameters filled in, under the destination's own keys (a key given here wins).
``delete``
    The request that deletes records for ``sync: mirror``: a ``url`` naming the key
    (``.../contacts/{email}``, one request per key) or a body ``template`` of many keys, a
    ``method``, limits and ``results`` as above.
``max_concurrency``
    Batches in flight at once (default 1). Every batch keeps its idempotency key, and a batch
    is acknowledged in the journal only once its requests are settled.
``record_ids_path``
    Where the response holds the IDs of the created records, e.g. ``data[*].id`` or ``ids``
    (see :mod:`floe_sink_dlt.record_ids`); they go to ``EgressResult.destination_record_ids``.
    The response is parsed only when this is set.
``timeout``
    Seconds for one request (default: ``retry_config.timeout``, 30).

``SinkConfig.write_disposition`` must be ``append``; ``primary_key`` names the keys deletes
send.

Two ways of delivering:

* *plain* (no ``template``, ``results``, ``preset`` or request limits): one request per batch,
  a JSON array of the rows; any 4xx but 429 fails the write at once with the status and the
  start of the response body;
* *per record* (any of them): every row ends delivered or rejected (filed in the dead-letter
  store, sent again by the next ``changes``/``mirror`` run); see
  :mod:`floe_sink_dlt.rest_records`.

Every request carries an ``Idempotency-Key`` header, the same whenever the same records are
sent again (a retry, a resumed run). 429, 5xx, timeouts and connection errors are retried with
exponential backoff and jitter, honouring ``Retry-After``. The JSON encoding of values is
described in :mod:`floe_sink_dlt.json_encoding`.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Final

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
from floe_sink.idempotency import idempotency_key
from floe_sink.logs import get_logger
from floe_sink.retry import parse_retry_after
from floe_sink.secrets import Secret, reveal, scrub_text, secret_keys
from floe_sink_dlt.base import BatchReceipt, BatchSink, SinkSettings
from floe_sink_dlt.json_encoding import encode_batch
from floe_sink_dlt.record_ids import RecordIdsPath
from floe_sink_dlt.rest_records import Answer, BatchOutcome, record_keys, send_records
from floe_sink_dlt.saas.auth import auth_from_config
from floe_sink_dlt.saas.pacing import AdaptivePacer, RateLimitHeaders
from floe_sink_dlt.saas.presets import DeleteParts, load_preset
from floe_sink_dlt.saas.results import RecordStatus, ResultsSpec
from floe_sink_dlt.saas.splitting import plan_requests
from floe_sink_dlt.saas.template import (
    ColumnNode,
    CompiledTemplate,
    ListNode,
    Node,
    ObjectNode,
    RequestTemplate,
)

__all__ = ["BODY_EXCERPT_CHARS", "RECORD_ROUNDS", "RestApiOptions", "RestApiSink"]

log = get_logger(__name__)

BODY_EXCERPT_CHARS = 200
"""Characters of a refused request's response body quoted in the error."""

RECORD_ROUNDS: Final = 3
"""How many times a record is sent in all when answers leave it retryable (a request refused
for other records, an answer that does not say): then it is rejected, to go next run."""

_METHODS = ("POST", "PUT", "PATCH")
_PER_RECORD_KEYS = frozenset(
    {"template", "results", "max_body_bytes", "max_records_per_request", "record_key"}
)
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
        "auth",
        "rate_limit_headers",
        "preset",
        "preset_parameters",
        "delete",
        *_PER_RECORD_KEYS,
    }
)
_USER_AGENT = "floe-sink"
_RESERVED_HEADERS = ("authorization", "idempotency-key", "content-type", "content-length")


def _column_names(node: Node) -> Iterator[ColumnNode]:
    if isinstance(node, ColumnNode):
        yield node
    elif isinstance(node, ObjectNode):
        for _, child in node.fields:
            yield from _column_names(child)
    elif isinstance(node, ListNode):
        for child in node.items:
            yield from _column_names(child)


def _first_required(template: RequestTemplate) -> str | None:
    """The column of the template's first ``required: true`` node (the record's id)."""
    for node in _column_names(template.record):
        if node.required:
            return node.name
    return None


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
    template: RequestTemplate | None = attrs.field(default=None, repr=False)
    """The request template; set in per-record mode (a bare array of every column when the
    config asks for per-record results without a template)."""
    results: ResultsSpec = attrs.field(factory=ResultsSpec, repr=False)
    record_key: str | None = None
    auth: Mapping[str, Any] | None = None
    """The ``auth`` config (no secret in it)."""
    credentials: Mapping[str, Secret] = attrs.field(factory=dict, repr=False)
    """The secret's values (what ``auth`` reads)."""
    rate_limit_headers: RateLimitHeaders = attrs.field(factory=RateLimitHeaders, repr=False)
    max_body_bytes: int | None = None
    max_records_per_request: int | None = None
    delete: DeleteParts | None = attrs.field(default=None, repr=False)
    preset: str | None = None
    key_columns: tuple[str, ...] = ()
    """For ``sync: mirror``, the primary key's destination names: the columns of a batch of
    keys to delete (checked against the delete request)."""

    @property
    def per_record(self) -> bool:
        """Whether batches go record by record (a template), not as one plain array."""
        return self.template is not None

    @classmethod
    def from_config(cls, config: SinkConfig, *, default_timeout: float) -> RestApiOptions:
        """Validate ``config.connection_config`` (a preset's config under it), connecting to
        nothing.

        Raises:
            SinkConfigurationError: A key is missing or invalid; the message names it.
        """
        try:
            return cls._from_config(config, default_timeout=default_timeout)
        except SinkConfigurationError as exc:
            if exc.sink_type is not None:
                raise
            raise SinkConfigurationError(
                exc.message, sink_type=config.sink_type, destination=config.destination
            ) from None

    @classmethod
    def _from_config(cls, config: SinkConfig, *, default_timeout: float) -> RestApiOptions:
        connection = _with_preset(config.connection_config)

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
                "(key 'token'); it is sent as a bearer token (or see 'auth')",
            )
        if "idempotency-key" in lowered:
            raise fail("headers", "must not set Idempotency-Key: floe-sink sets it per batch")

        auth = connection.get("auth")
        credentials = {
            key: value if isinstance(value, Secret) else Secret(str(value))
            for key, value in connection.items()
            if isinstance(value, Secret) or (key == "token" and isinstance(value, str))
        }
        token: Secret | None = None
        if auth is None:
            token = _token(config)
        else:
            _check_auth(auth, credentials, lowered, timeout=default_timeout)

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

        limits = {
            name: _count(connection.get(name), f"config.{name}")
            for name in ("max_body_bytes", "max_records_per_request")
        }
        template: RequestTemplate | None = None
        per_record = any(connection.get(name) is not None for name in _PER_RECORD_KEYS) or (
            "preset" in config.connection_config
        )
        if connection.get("template") is not None:
            if records_key is not None:
                raise fail(
                    "records_key",
                    "does not go with 'template': put records_key inside the template",
                )
            template = RequestTemplate.parse(connection["template"], where="config.template")
        elif per_record:
            spec: dict[str, Any] = {"record": {"remaining": True}}
            if records_key is not None:
                spec["records_key"] = records_key
            template = RequestTemplate.parse(spec, where="config.template")
        results = ResultsSpec.parse(connection.get("results"), where="config.results")
        headers_spec = RateLimitHeaders.parse(
            connection.get("rate_limit_headers"), where="config.rate_limit_headers"
        )
        record_key = connection.get("record_key")
        if record_key is not None and (not isinstance(record_key, str) or not record_key):
            raise fail("record_key", "must be a column name")
        if record_key is None and template is not None:
            record_key = _first_required(template)
        if (
            results.mode == "by_key"
            and results.key_is == "key"
            and record_key is None
            and template is not None
        ):
            raise fail(
                "record_key",
                "is needed for results by key: the column whose values the answers name "
                "records by (or mark that column 'required: true' in the template)",
            )

        mapping = config.field_mapping or {}
        key_columns = tuple(mapping.get(column, column) for column in config.primary_key or [])
        delete: DeleteParts | None = None
        if connection.get("delete") is not None:
            delete = DeleteParts.parse(connection["delete"], where="config.delete")
            named = list(delete.url_columns)
            if delete.template is not None:
                named = [node.name for node in _column_names(delete.template.record)]
            # only a mirror sends deletes: a preset's delete request is no problem otherwise
            mirror = config.sync == "mirror"
            unknown = [name for name in named if mirror and name not in key_columns]
            if unknown:
                raise fail(
                    "delete",
                    f"names column(s) {', '.join(map(repr, unknown))} that are not the "
                    f"primary key; a delete receives only the key: {', '.join(key_columns)}",
                )

        return cls(
            url=url,
            method=method.upper(),
            records_key=records_key if template is None else None,
            headers=dict(headers),
            token=token,
            max_requests_per_second=float(rate) if rate is not None else None,
            max_concurrency=concurrency,
            record_ids_path=path,
            timeout=float(timeout),
            template=template,
            results=results,
            record_key=record_key,
            auth=dict(auth) if auth is not None else None,
            credentials=credentials,
            rate_limit_headers=headers_spec,
            max_body_bytes=limits["max_body_bytes"],
            max_records_per_request=limits["max_records_per_request"],
            delete=delete,
            preset=connection.get("preset"),
            key_columns=key_columns if config.sync == "mirror" else (),
        )


def _with_preset(connection: Mapping[str, Any]) -> dict[str, Any]:
    """The config with its preset's (resolved) config under it: the user's keys win."""
    user = dict(connection)
    name = user.pop("preset", None)
    parameters = user.pop("preset_parameters", None)
    if name is None:
        if parameters is not None:
            raise SinkConfigurationError(
                "config.preset_parameters: fill a preset's parameters; name it with 'preset'"
            )
        return user
    if not isinstance(name, str) or not name:
        raise SinkConfigurationError("config.preset: must be the name of a preset")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise SinkConfigurationError(
            "config.preset_parameters: must be a mapping of parameter names to strings"
        )
    base = load_preset(name, where="config.preset").resolve(
        parameters, where="config.preset_parameters"
    )
    unknown = sorted(key for key in base if key not in _KEYS)
    if unknown:  # pragma: no cover - the shipped presets are tested
        raise SinkConfigurationError(
            f"config.preset: preset {name} has key(s) rest_api does not know: {', '.join(unknown)}"
        )
    return {**base, **user, "preset": name}


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SinkConfigurationError(f"{where}: must be an integer >= 1 (got {value!r})")
    return value


def _check_auth(
    spec: Any,
    credentials: Mapping[str, Secret],
    header_names: set[str],
    *,
    timeout: float,
) -> None:
    """Validate ``auth`` and the secret keys it reads (naming keys, never values)."""
    auth = auth_from_config(spec, credentials, timeout=timeout)
    close = getattr(auth, "close", None)
    if callable(close):
        close()  # the token client of OAuth2: nothing was sent with it
    kind = spec.get("type")
    for key in {"bearer": ("token",), "api_key": ("api_key",)}.get(kind, ()):
        if not _HEADER_SAFE.fullmatch(reveal(credentials[key])):
            raise SinkConfigurationError(
                f"the Secret's key {key!r} is empty or holds characters an HTTP header cannot "
                "carry (spaces, line breaks, control or non-ASCII characters); write the bare "
                "value on one line"
            )
    if kind == "api_key":
        header = (spec.get("header") or "X-Api-Key").lower()
        if header in header_names:
            raise SinkConfigurationError(
                f"config.headers: must not set {spec.get('header') or 'X-Api-Key'}: the API key "
                "goes there (auth.header)"
            )
        if header in _RESERVED_HEADERS:
            raise SinkConfigurationError(f"config.auth.header: {header!r} cannot carry the API key")
    if kind == "basic":
        username = reveal(credentials["username"])
        if ":" in username or not username.isprintable():
            raise SinkConfigurationError(
                "the Secret's key 'username' holds a ':' or characters HTTP Basic cannot carry"
            )


class RestApiSink(BatchSink):
    """Delivers batches as JSON requests; see the module docstring for the configuration."""

    sink_type = "rest_api"
    default_batch_size = 500

    def __init__(self, settings: SinkSettings, options: RestApiOptions) -> None:
        super().__init__(settings)
        self.options = options
        self.concurrency = options.max_concurrency
        self.supports_deletes = options.delete is not None
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._pacer: AdaptivePacer | None = None
        self._shared_pacer: Pacer | None = None
        self._auth: httpx.Auth | None = None
        self._compiled: CompiledTemplate | None = None
        self._delete_compiled: dict[pa.Schema, CompiledTemplate] = {}

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

    def __repr__(self) -> str:
        return f"RestApiSink({self.describe()})"

    # -- checks that need the schema (no connection) ------------------------------------------

    def schema_problems(self, schema: pa.Schema) -> list[str]:
        """Every reason the configuration cannot deliver batches of ``schema`` (mapped names).

        The template's columns and conversions, the record key, and the delete template's
        columns (against the key columns). Empty when it can.
        """
        options = self.options
        problems: list[str] = []
        if options.template is not None:
            problems.extend(options.template.problems(schema))
            key = options.record_key
            if key is not None and schema.get_field_index(key) < 0:
                problems.append(
                    f"config.record_key: column {key!r} is not in the table; columns: "
                    f"{', '.join(schema.names) or '(none)'}"
                )
        delete = options.delete
        if delete is not None and options.key_columns:
            fields = [schema.field(name) for name in options.key_columns if name in schema.names]
            keys = pa.schema(fields)
            if delete.template is not None:
                problems.extend(delete.template.problems(keys))
            for name in delete.url_columns:
                if name not in keys.names:
                    problems.append(
                        f"config.delete.url: column {name!r} is not a key column; keys: "
                        f"{', '.join(options.key_columns)}"
                    )
        return problems

    def check_schema(self, schema: pa.Schema) -> None:
        """Refuse a configuration that cannot deliver batches of ``schema`` (mapped names),
        before anything is read or sent: ``floe-sink run``, ``run --dry-run`` and ``plan``
        call it with the table's mapped schema.

        Raises:
            SinkConfigurationError: Naming every problem (see :meth:`schema_problems`).
        """
        problems = self.schema_problems(schema)
        if problems:
            raise self._config_error("; ".join(problems))

    def _config_error(self, message: str) -> SinkConfigurationError:
        return SinkConfigurationError(
            message, sink_type=self.sink_type, destination=self.settings.destination
        )

    def _compile(self, schema: pa.Schema) -> CompiledTemplate:
        template = self.options.template
        assert template is not None
        self.check_schema(schema)
        try:
            return template.compile(schema)
        except SinkConfigurationError as exc:  # pragma: no cover - check_schema found it
            raise self._config_error(exc.message) from None

    # -- the client, one per write ----------------------------------------------------------

    def prepare(self, schema: pa.Schema) -> None:
        """Compile the template for ``schema`` and open the HTTP client (keep-alive
        connections for the whole write).

        Raises:
            SinkConfigurationError: The template names a column the table lacks, or asks a
                conversion its type cannot take (before anything is sent).
        """
        self._compiled = None
        if self.options.per_record and len(schema):
            self._compiled = self._compile(schema)
        self._open()

    def finish(self, *, success: bool) -> None:
        """Close the HTTP client (and the OAuth2 token client)."""
        with self._client_lock:
            client, self._client = self._client, None
            auth, self._auth = self._auth, None
        if client is not None:
            client.close()
        close = getattr(auth, "close", None)
        if callable(close):
            close()

    def open_deletes(self) -> None:
        """Open the client for a delivery's deletes."""
        self._open()

    def close_deletes(self) -> None:
        """Close the client of the deletes."""
        self.finish(success=True)

    def _open(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                options = self.options
                headers = {"User-Agent": _USER_AGENT, **options.headers}
                auth: httpx.Auth | None = None
                if options.auth is not None:
                    auth = auth_from_config(
                        options.auth, options.credentials, timeout=options.timeout
                    )
                elif options.token is not None:
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
                self._auth = auth
                self._client = httpx.Client(
                    headers=headers,
                    timeout=options.timeout,
                    transport=transport,
                    follow_redirects=False,
                    auth=auth,
                )
                rate = options.max_requests_per_second
                shared = self.delivery.pacer if self.delivery is not None else None
                # the engine's pacer holds the fixed rate across the delivery's processes;
                # this process's pacer then only follows the API's rate-limit headers
                self._shared_pacer = shared if rate is not None else None
                self._pacer = AdaptivePacer(
                    max_requests_per_second=rate if self._shared_pacer is None else None,
                    headers=options.rate_limit_headers,
                    max_wait=max(self.settings.retry.max_wait, 1.0),
                )
            return self._client

    # -- one batch --------------------------------------------------------------------------

    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Send ``batch`` under ``key``, retrying transient failures.

        Plain: one request, the JSON array of the rows. Per record: as many requests as the
        limits need, each answer judged per record (see :mod:`floe_sink_dlt.rest_records`).

        Raises:
            SinkConnectionError: The endpoint could not be reached, after every retry.
            SinkWriteError: The endpoint answered 429 or 5xx after every retry (transient),
                or refused with another status (permanent): in plain mode any 4xx, per record
                only a fatal one (401, 403, 404, ...), the others settle records.
        """
        if not self.options.per_record:
            return self._deliver_plain(batch, key=key)
        client = self._open()
        compiled = self._compiled
        if compiled is None or not compiled.schema.equals(batch.schema):
            compiled = self._compiled = self._compile(batch.schema)
        started = time.perf_counter()
        options = self.options
        outcome = send_records(
            batch,
            key=key,
            compiled=compiled,
            results=options.results,
            post=lambda body, request_key: self._post(
                client, options.method, options.url, body, key=request_key, results=options.results
            ),
            key_column=options.record_key,
            max_body_bytes=options.max_body_bytes,
            max_records=options.max_records_per_request,
            max_rounds=RECORD_ROUNDS,
            describe=lambda answer: self._scrub(_excerpt_of(answer.content)),
        )
        return self._receipt(batch, key, outcome, started, event="batch_delivered")

    def _receipt(
        self,
        batch: pa.RecordBatch,
        key: str,
        outcome: BatchOutcome,
        started: float,
        *,
        event: str,
    ) -> BatchReceipt:
        record_ids: list[str] = []
        for answer in outcome.answers:
            record_ids.extend(self._ids_in(answer.content, key=key))
        log.info(
            event,
            destination=self.settings.destination,
            sink_type=self.sink_type,
            rows=outcome.delivered,
            rejected=len(outcome.rejected),
            requests=outcome.requests,
            status=outcome.last_status,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            key=key,
        )
        return BatchReceipt(
            rows=outcome.delivered,
            bytes=outcome.bytes,
            record_ids=record_ids,
            rejected=tuple(outcome.rejected),
        )

    def _deliver_plain(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        client = self._open()
        options = self.options
        body = encode_batch(batch, records_key=options.records_key)
        attempts = 0
        started = time.perf_counter()

        def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            response = self._paced(client, options.method, options.url, body, key, attempts)
            status = response.status_code
            if 200 <= status < 300:
                return response
            raise self._refusal(response, attempt=attempts)

        response = self.with_retries(attempt, what="rest_api request", key=key, rows=batch.num_rows)
        record_ids = self._ids_in(response.content, key=key)
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

    def _post(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        body: bytes,
        *,
        key: str,
        results: ResultsSpec,
    ) -> Answer:
        """One request of the per-record loop: retried while the answer is retryable."""
        attempts = 0

        def attempt() -> Answer:
            nonlocal attempts
            attempts += 1
            response = self._paced(client, method, url, body, key, attempts)
            if response.status_code in results.retryable_statuses:
                raise self._refusal(response, attempt=attempts, transient=True)
            return Answer(
                status=response.status_code,
                headers=dict(response.headers),
                content=response.content,
                reason=response.reason_phrase,
            )

        answer: Answer = self.with_retries(attempt, what="rest_api request", key=key)
        return answer

    def _paced(
        self, client: httpx.Client, method: str, url: str, body: bytes, key: str, attempt: int
    ) -> httpx.Response:
        if self._shared_pacer is not None:
            self._shared_pacer.acquire()
        pacer = self._pacer
        if pacer is not None:
            pacer.acquire()
        response = self._send(client, method, url, body, key=key, attempt=attempt)
        if pacer is not None:
            pacer.observe(response.status_code, response.headers)
        return response

    def _context(self, url: str, attempt: int) -> dict[str, Any]:
        return {
            "sink_type": self.sink_type,
            "destination": self.settings.destination,
            "url": _safe_url(url),
            "attempt": attempt,
        }

    def _send(
        self, client: httpx.Client, method: str, url: str, body: bytes, *, key: str, attempt: int
    ) -> httpx.Response:
        """One request, any status; transport failures raised (scrubbed of every secret)."""
        options = self.options
        context = self._context(url, attempt)
        try:
            return client.request(method, url, content=body, headers={"Idempotency-Key": key})
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
            ) from None
        except httpx.TransportError as exc:
            raise SinkConnectionError(
                f"connection failed: {type(exc).__name__}: {self._scrub(str(exc))}", **context
            ) from None

    def _refusal(
        self, response: httpx.Response, *, attempt: int, transient: bool = False
    ) -> SinkWriteError:
        """The error of a non-2xx answer: transient (retried) for 429/5xx, else permanent."""
        status = response.status_code
        context = self._context(str(response.request.url), attempt)
        excerpt = self._scrub(_excerpt_of(response.content))
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

    def _secrets(self) -> list[str]:
        """Every secret value a message could quote, in the forms it could quote them."""
        plain = [reveal(value) for value in self.options.credentials.values()]
        if self.options.token is not None:
            plain.append(reveal(self.options.token))
        credentials = self.options.credentials
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

    def _scrub(self, text: str) -> str:
        """``text`` without any secret, as typed or as a ``bytes`` repr quotes it."""
        return scrub_text(text, self._secrets())

    def _ids_in(self, content: bytes, *, key: str) -> list[str]:
        path = self.options.record_ids_path
        if path is None:
            return []
        try:
            document = json.loads(content) if content else None
        except ValueError:
            log.warning(
                "record_ids_unreadable",
                destination=self.settings.destination,
                reason="the response is not JSON",
                key=key,
            )
            return []
        return path.find(document)

    # -- deletes (sync: mirror) -------------------------------------------------------------

    def delete_keys(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Delete the records of one batch of keys (destination names) under ``key``.

        With a body template: as many requests as the limits need, judged per record like the
        upserts. With the key in the URL: one request per key, no body; an answer in
        ``absent_statuses`` (404, 410) means the record is not there: deleted.

        Raises:
            SinkWriteError: A fatal answer, or a retryable one after every retry.
            SinkConnectionError: The endpoint could not be reached, after every retry.
        """
        delete = self.options.delete
        if delete is None:
            raise NotImplementedError("rest_api has no 'delete' configured")
        client = self._open()
        started = time.perf_counter()
        if delete.template is not None:
            compiled = self._delete_compiled.get(batch.schema)
            if compiled is None:
                try:
                    compiled = delete.template.compile(batch.schema)
                except SinkConfigurationError as exc:
                    raise self._config_error(exc.message) from None
                self._delete_compiled[batch.schema] = compiled
            outcome = send_records(
                batch,
                key=key,
                compiled=compiled,
                results=delete.results,
                post=lambda body, request_key: self._post(
                    client, delete.method, delete.url, body, key=request_key, results=delete.results
                ),
                key_column=_first_required(delete.template)
                or (self.options.key_columns[0] if self.options.key_columns else None),
                max_body_bytes=delete.max_body_bytes,
                max_records=delete.max_records_per_request,
                max_rounds=RECORD_ROUNDS,
                describe=lambda answer: self._scrub(_excerpt_of(answer.content)),
            )
        else:
            outcome = self._delete_one_by_one(client, batch, key=key, delete=delete)
        return self._receipt(batch, key, outcome, started, event="batch_deleted")

    def _delete_one_by_one(
        self, client: httpx.Client, batch: pa.RecordBatch, *, key: str, delete: DeleteParts
    ) -> BatchOutcome:
        from floe_sink.delivery import Rejection

        outcome = BatchOutcome()
        columns = {name: record_keys(batch, name) for name in delete.url_columns}
        for row in range(batch.num_rows):
            values = {name: texts[row] for name, texts in columns.items()}
            empty = [name for name, value in values.items() if value == ""]
            if empty:
                outcome.rejected.append(
                    Rejection(
                        index=row,
                        status="invalid",
                        message=f"not sent: the key column(s) {', '.join(map(repr, empty))} "
                        "are null or empty",
                    )
                )
                continue
            url = delete.url_for(values)
            request_key = f"{key}-{row}"
            answer = self._post(
                client, delete.method, url, b"", key=request_key, results=delete.results
            )
            outcome.requests += 1
            outcome.last_status = answer.status
            if answer.status in delete.absent_statuses:
                outcome.delivered += 1
                continue
            verdict = delete.results.judge(
                [str(row)], answer.status, answer.headers, answer.content
            )
            if verdict.fatal:
                raise SinkWriteError(
                    f"HTTP {answer.status} {answer.reason}, the destination refused the delete "
                    f"(not the record): {self._scrub(_excerpt_of(answer.content))}",
                    category=ErrorCategory.PERMANENT,
                    status=answer.status,
                    **self._context(delete.url, 1),
                )
            (result,) = verdict.outcomes
            if result.status is RecordStatus.DELIVERED:
                outcome.delivered += 1
                if 200 <= answer.status < 300:
                    outcome.answers.append(answer)
            else:
                outcome.rejected.append(
                    Rejection(
                        index=row,
                        status=str(answer.status),
                        message=result.message or f"HTTP {answer.status}",
                    )
                )
        return outcome

    # -- what a dry run shows ---------------------------------------------------------------

    def preview(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The rows of ``batch`` as they are sent: each record of the request body, parsed
        (a record the template does not shape as an object is shown under ``record``)."""
        if not self.options.per_record:
            rows: list[dict[str, Any]] = json.loads(encode_batch(batch))
            return rows
        compiled = self._compile(batch.schema)
        records = compiled.encode_records(batch).to_pylist()
        shown: list[dict[str, Any]] = []
        for text in records:
            value = json.loads(text)
            shown.append(value if isinstance(value, dict) else {"record": value})
        return shown

    def preview_request(self, batch: pa.RecordBatch) -> dict[str, Any]:
        """The first request a delivery of ``batch`` (its first rows) sends, exactly as sent:
        method, URL (without credentials or query), the headers but authentication, the
        number of records and the body. Connects to nothing.

        Raises:
            SinkConfigurationError: The template does not fit the table.
        """
        options = self.options
        first = batch.slice(0, self.settings.batch_size)
        key = idempotency_key(self.settings.destination, first, 0)
        unsent = 0
        if not options.per_record:
            body = encode_batch(first, records_key=options.records_key)
            count = first.num_rows
        else:
            compiled = self._compile(batch.schema)
            sendable = first
            invalid = compiled.required_nulls(first)
            if invalid is not None and invalid.true_count:
                import pyarrow.compute as pc

                unsent = invalid.true_count
                sendable = first.filter(pc.invert(invalid))
            records = compiled.encode_records(sendable)
            plan = plan_requests(
                records,
                envelope_bytes=compiled.envelope_bytes,
                max_body_bytes=options.max_body_bytes,
                max_records=options.max_records_per_request,
            )
            unsent += len(plan.oversized)
            start, stop = plan.ranges[0] if plan.ranges else (0, 0)
            body = compiled.body(records.slice(start, stop - start))
            count = stop - start
            if stop - start != sendable.num_rows or plan.oversized:
                from floe_sink_dlt.rest_records import request_key

                key = request_key(key, range(start, stop), 1, whole=False)
        headers = {**options.headers, "Content-Type": "application/json", "Idempotency-Key": key}
        return {
            "method": options.method,
            "url": _safe_url(options.url),
            "headers": headers,
            "records": count,
            "rejected_unsent": unsent,
            "bytes": len(body),
            "body": body.decode("utf-8"),
        }


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
                "the token 'token' in the Secret that connection_secret_ref names, or set "
                "'auth' for another kind of authentication"
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


def _excerpt_of(content: bytes) -> str:
    text = content[: BODY_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
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
