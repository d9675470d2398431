"""The ``rest_api`` sink's options: read from a :class:`floe_sink.SinkConfig` and checked
before anything connects.

The keys are an attrs model (:class:`RestApiKeys`, its blocks the models of
:mod:`floe_sink_dlt.saas`) structured by floe-sink's one converter, a preset's config under
them: unknown keys, wrong types and values outside their choices are reported together, each
as ``config.<path>: <reason>``. The rules between keys and with the rest of the destination
(the token, the template and ``records_key``, the delete request and the primary key) follow.
Nothing here imports pyarrow or httpx, so ``floe-sink validate`` loads neither.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from floe_sink import SinkConfig
from floe_sink.errors import ProblemsError, SinkConfigurationError, problems_of
from floe_sink.secrets import Secret, reveal, secret_keys
from floe_sink.structuring import (
    ConfigValueError,
    converter,
    field_json_schema,
    json_schema,
    register_checked_class,
)
from floe_sink_dlt.record_ids import RecordIdsPath
from floe_sink_dlt.saas.auth_config import AuthConfig, AuthType
from floe_sink_dlt.saas.pacing import RateLimitHeaders
from floe_sink_dlt.saas.presets import DeleteParts, Method, _DeleteKeys, load_preset, preset_names
from floe_sink_dlt.saas.results import ResultsMode, ResultsSpec
from floe_sink_dlt.saas.template_syntax import TEMPLATE_JSON_SCHEMA, RequestTemplate, column_nodes
from floe_sink_dlt.structure import (
    check_http_url,
    check_non_empty,
    check_positive,
    check_rate,
    structure_at,
)

__all__ = ["KEYS", "RestApiKeys", "RestApiOptions", "first_required"]

_PER_RECORD_KEYS: Final = ("template", "results", "max_body_bytes", "max_records_per_request")
_WRITE_METHODS: Final = (Method.POST, Method.PUT, Method.PATCH)
_RESERVED_HEADERS: Final = ("authorization", "idempotency-key", "content-type", "content-length")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token can be


def _structure_record_ids_path(value: Any, _type: type) -> RecordIdsPath:
    if not isinstance(value, str):
        raise ConfigValueError("must be a string such as 'data[*].id'")
    try:
        return RecordIdsPath.parse(value)
    except ValueError as exc:
        raise ConfigValueError(f"is invalid: {exc}") from None


converter.register_structure_hook(RecordIdsPath, _structure_record_ids_path)


@json_schema({"enum": [*(m.value for m in _WRITE_METHODS), *(m.lower() for m in _WRITE_METHODS)]})
def _check_write_method(_instance: Any, _attribute: Any, value: Method) -> None:
    """A request that writes: not ``DELETE`` (that is the ``delete`` block's)."""
    if value not in _WRITE_METHODS:
        raise ConfigValueError(f"must be one of POST, PUT, PATCH (got {value.value!r})")


@attrs.frozen(kw_only=True)
class RestApiKeys:
    """The rest_api sink's config (docs/sinks/rest_api.md). Credentials come from the
    destination's secret, never from here.

    Attributes:
        url: Where requests go (``http://`` or ``https://``).
        method: ``POST`` (default), ``PUT`` or ``PATCH``.
        records_key: Wrap each batch's JSON array in an object under this key (without a
            ``template``).
        headers: Extra request headers (names and values are strings); not
            ``Authorization``: the credentials come from the secret.
        token: The bearer token, from the destination's secret (key ``token``).
        max_requests_per_second: Client-side rate limit across all requests of a write.
        max_concurrency: Batches in flight at once.
        record_ids_path: Where the response holds the IDs of the created records
            (``data[*].id``).
        timeout: Seconds for one request (default: ``retry_config.timeout``).
        template: The JSON shape of a record and of a request (docs/sinks/rest_api.md,
            Request templates). Checked against the table's columns before anything is sent.
        results: How to read per-record results out of an answer.
        record_key: The column whose values the answers name records by.
        max_body_bytes: The most bytes one request body may have.
        max_records_per_request: The most records one request may carry.
        rate_limit_headers: The response headers that say how many requests remain and when
            the count resets.
        auth: The kind of authentication; its values come from the secret.
        preset: A ready-made destination (docs/sinks/): its config under this one.
        preset_parameters: Values for the preset's parameters.
        delete: The request that deletes records (sync: mirror): the key in the url
            (``{column}``, one request per key) or a body template of many keys.
    """

    url: str | None = attrs.field(default=None, validator=check_http_url)
    method: Method = attrs.field(default=Method.POST, validator=_check_write_method)
    records_key: str | None = attrs.field(default=None, validator=check_non_empty)
    headers: dict[str, str] | None = None
    token: Any = attrs.field(default=None, metadata=field_json_schema(None))
    """A Secret, or a plain string when built in code (checked with the auth); never a key of
    floe.yaml, hence no key of its schema."""
    max_requests_per_second: float | None = attrs.field(default=None, validator=check_rate)
    max_concurrency: int = attrs.field(default=1, validator=check_positive)
    record_ids_path: RecordIdsPath | None = None
    timeout: float | None = attrs.field(default=None, validator=check_rate)
    template: dict[str, Any] | None = attrs.field(
        default=None, metadata=field_json_schema(TEMPLATE_JSON_SCHEMA)
    )
    results: ResultsSpec = attrs.field(factory=ResultsSpec)
    record_key: str | None = attrs.field(default=None, validator=check_non_empty)
    max_body_bytes: int | None = attrs.field(default=None, validator=check_positive)
    max_records_per_request: int | None = attrs.field(default=None, validator=check_positive)
    rate_limit_headers: RateLimitHeaders = attrs.field(factory=RateLimitHeaders)
    auth: AuthConfig | None = None
    preset: str | None = attrs.field(
        default=None,  # null: no preset
        metadata=field_json_schema(lambda: {"enum": [*preset_names(), None]}),
    )
    preset_parameters: dict[str, Any] | None = attrs.field(
        default=None,  # null, or a parameter's null: its default
        metadata=field_json_schema(
            {"additionalProperties": {"type": ["string", "null"], "minLength": 1}}
        ),
    )
    delete: _DeleteKeys | None = None


register_checked_class(RestApiKeys, null_is_default=frozenset({"results", "rate_limit_headers"}))

KEYS: Final = frozenset(attrs.fields_dict(RestApiKeys))
"""Every key of a ``rest_api`` destination's ``config``."""


def first_required(template: RequestTemplate) -> str | None:
    """The column of the template's first ``required: true`` node (the record's id)."""
    return next((node.name for node in column_nodes(template.record) if node.required), None)


@attrs.frozen(kw_only=True)
class RestApiOptions:
    """The validated ``rest_api`` settings (see :class:`RestApiKeys`)."""

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
    auth: AuthConfig | None = None
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
            SinkConfigurationError: Naming the key of every problem found.
        """
        try:
            return cls._from_config(config, default_timeout=default_timeout)
        except SinkConfigurationError as exc:
            if exc.sink_type is not None:
                raise
            raise ProblemsError(
                problems_of(exc), sink_type=config.sink_type, destination=config.destination
            ) from None

    @classmethod
    def _from_config(cls, config: SinkConfig, *, default_timeout: float) -> RestApiOptions:
        connection = _with_preset(config.connection_config)
        keys = structure_at(connection, RestApiKeys, where="config", secrets_may_be_extra=True)

        def fail(key: str, problem: str) -> SinkConfigurationError:
            return SinkConfigurationError(f"config.{key}: {problem}")

        if keys.url is None:
            raise fail("url", "is required: the URL batches are sent to (http:// or https://)")
        headers = dict(keys.headers or {})
        lowered = {name.lower() for name in headers}
        if "authorization" in lowered:
            raise fail(
                "headers",
                "must not set Authorization: put the token in the destination's secret "
                "(key 'token'); it is sent as a bearer token (or see 'auth')",
            )
        if "idempotency-key" in lowered:
            raise fail("headers", "must not set Idempotency-Key: floe-sink sets it per batch")
        credentials = {
            key: value if isinstance(value, Secret) else Secret(str(value))
            for key, value in connection.items()
            if isinstance(value, Secret) or (key == "token" and isinstance(value, str))
        }
        token: Secret | None = None
        if keys.auth is None:
            token = _token(config)
        else:
            _check_auth(keys.auth, credentials, lowered)
        if config.write_disposition != "append":
            raise fail(
                "write_disposition",
                f"must be 'append' for rest_api (got {config.write_disposition!r}): an HTTP "
                "endpoint receives batches; merging or replacing is the API's business",
            )

        template: RequestTemplate | None = None
        per_record = any(connection.get(name) is not None for name in _PER_RECORD_KEYS) or (
            keys.record_key is not None or keys.preset is not None
        )
        if keys.template is not None:
            if keys.records_key is not None:
                raise fail("records_key", "does not go with 'template': put records_key inside it")
            template = RequestTemplate.parse(keys.template, where="config.template")
        elif per_record:
            spec: dict[str, Any] = {"record": {"remaining": True}}
            if keys.records_key is not None:
                spec["records_key"] = keys.records_key
            template = RequestTemplate.parse(spec, where="config.template")
        record_key = keys.record_key
        if record_key is None and template is not None:
            record_key = first_required(template)
        results = keys.results
        if results.mode == ResultsMode.BY_KEY and results.key_is == "key" and record_key is None:
            raise fail(
                "record_key",
                "is needed for results by key: the column whose values the answers name "
                "records by (or mark that column 'required: true' in the template)",
            )

        mapping = config.field_mapping or {}
        key_columns = tuple(mapping.get(column, column) for column in config.primary_key or [])
        delete = None
        if keys.delete is not None:
            delete = DeleteParts.from_keys(keys.delete, where="config.delete")
            _check_delete(delete, key_columns if config.sync == "mirror" else None)

        return cls(
            url=keys.url,
            method=keys.method.value,
            records_key=keys.records_key if template is None else None,
            headers=headers,
            token=token,
            max_requests_per_second=keys.max_requests_per_second,
            max_concurrency=keys.max_concurrency,
            record_ids_path=keys.record_ids_path,
            timeout=default_timeout if keys.timeout is None else keys.timeout,
            template=template,
            results=results,
            record_key=record_key,
            auth=keys.auth,
            credentials=credentials,
            rate_limit_headers=keys.rate_limit_headers,
            max_body_bytes=keys.max_body_bytes,
            max_records_per_request=keys.max_records_per_request,
            delete=delete,
            preset=keys.preset,
            key_columns=key_columns if config.sync == "mirror" else (),
        )


def _check_delete(delete: DeleteParts, key_columns: tuple[str, ...] | None) -> None:
    """A mirror's delete request may name only key columns (a delete receives only the key);
    a preset's delete request is no problem otherwise (``key_columns`` ``None``)."""
    if key_columns is None:
        return
    named = list(delete.url_columns)
    if delete.template is not None:
        named = [node.name for node in column_nodes(delete.template.record)]
    unknown = [name for name in named if name not in key_columns]
    if unknown:
        raise SinkConfigurationError(
            f"config.delete: names column(s) {', '.join(map(repr, unknown))} that are not the "
            f"primary key; a delete receives only the key: {', '.join(key_columns)}"
        )


def _with_preset(connection: Mapping[str, Any]) -> dict[str, Any]:
    """The config with its preset's (resolved) config under it: the user's keys win."""
    user = dict(connection)
    name = user.get("preset")
    parameters = user.get("preset_parameters")
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
    return {**base, **user}


def _token(config: SinkConfig) -> Secret | None:
    """The bearer token, required when the destination has a Secret (its key ``token``).

    A ``SinkConfig`` built in code without any Secret may leave it out (no Authorization).
    """
    connection = config.connection_config
    token = connection.get("token")
    if token is None:
        found = secret_keys(connection)
        if found:
            # a misspelt key would otherwise send every request without Authorization
            raise SinkConfigurationError(
                f"the destination's Secret has no key 'token' (keys found: {', '.join(found)}); "
                "rest_api sends it as 'Authorization: Bearer <token>'. Name the file holding "
                "the token 'token' in the Secret that connection_secret_ref names, or set "
                "'auth' for another kind of authentication"
            )
        return None
    if not isinstance(token, Secret):
        if not isinstance(token, str):
            raise SinkConfigurationError(
                "config.token: must be a string (from the destination's secret)"
            )
        token = Secret(token)
    if not _HEADER_SAFE.fullmatch(reveal(token)):
        raise SinkConfigurationError(
            "the Secret's key 'token' is empty or holds characters an HTTP header cannot carry "
            "(spaces, line breaks, control or non-ASCII characters); write the bare token, "
            "without 'Bearer ', on one line"
        )
    return token


def _check_auth(
    auth: AuthConfig, credentials: Mapping[str, Secret], header_names: set[str]
) -> None:
    """The secret keys ``auth`` reads, and the header it writes (naming keys, never values)."""
    auth.check_secret(credentials)
    for key in {AuthType.BEARER: ("token",), AuthType.API_KEY: ("api_key",)}.get(auth.type, ()):
        if not _HEADER_SAFE.fullmatch(reveal(credentials[key])):
            raise SinkConfigurationError(
                f"the Secret's key {key!r} is empty or holds characters an HTTP header cannot "
                "carry (spaces, line breaks, control or non-ASCII characters); write the bare "
                "value on one line"
            )
    if auth.type is AuthType.API_KEY:
        header = auth.header or "X-Api-Key"
        if header.lower() in header_names:
            raise SinkConfigurationError(
                f"config.headers: must not set {header}: the API key goes there (auth.header)"
            )
        if header.lower() in _RESERVED_HEADERS:
            raise SinkConfigurationError(
                f"config.auth.header: {header.lower()!r} cannot carry the API key"
            )
    if auth.type is AuthType.BASIC:
        username = reveal(credentials["username"])
        if ":" in username or not username.isprintable():
            raise SinkConfigurationError(
                "the Secret's key 'username' holds a ':' or characters HTTP Basic cannot carry"
            )
