"""Ready-made destinations: a SaaS API's shape, limits and results parsing, as plain data.

A preset is a YAML file in ``preset_data/`` (one per preset, named after it): a ``config``
block exactly like the one a user would write for a ``rest_api`` destination (URL, method,
auth type, request template, limits, rate-limit headers, results parsing, delete request),
with ``${parameter}`` placeholders for what differs between users (the id column, an
instance URL), the parameters' defaults, and where the facts come from. A user can copy one
and change it; nothing about a preset is code.

How the delivery loop calls it
------------------------------
When a destination says ``preset: NAME``, resolve it and lay the user's own ``config`` keys
over it, then parse the parts with the building blocks::

    base = load_preset(name).resolve(config.get("preset_parameters"))  # plain dict
    merged = {**base, **user_config}                                    # the user wins
    parts = PresetParts.parse(merged)       # template, results, limits, headers, delete
    compiled = parts.template.compile(schema)

``floe-sink`` can show a preset's resolved config so that it can be pasted into floe.yaml.
"""

from __future__ import annotations

import copy
import enum
import importlib.resources
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import attrs
import yaml

from floe_sink.errors import SinkConfigurationError
from floe_sink.structuring import (
    ConfigValueError,
    converter,
    describe_value,
    field_json_schema,
    json_schema,
    register_checked_class,
)
from floe_sink_dlt.saas.auth_config import AuthConfig
from floe_sink_dlt.saas.pacing import RateLimitHeaders
from floe_sink_dlt.saas.results import ResultsSpec
from floe_sink_dlt.saas.template_syntax import TEMPLATE_JSON_SCHEMA, RequestTemplate
from floe_sink_dlt.structure import (
    HttpStatuses,
    check_http_url,
    check_non_empty,
    check_positive,
    check_rate,
    structure_at,
)

__all__ = [
    "DeleteParts",
    "Method",
    "Preset",
    "PresetParameter",
    "PresetParts",
    "load_preset",
    "preset_names",
]

_DATA: Final = "preset_data"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FILE_KEYS: Final = frozenset({"name", "description", "documentation", "parameters", "config"})
_URL_KEY = re.compile(r"(?<!\$)\{([^{}]+)\}")
"""``{column}`` in a delete URL: the key of the record, one request per key."""
_ABSENT: Final = (404, 410)


def preset_names() -> tuple[str, ...]:
    """The names of the presets that ship with floe-sink, sorted."""
    folder = importlib.resources.files(__package__).joinpath(_DATA)
    return tuple(
        sorted(
            entry.name.removesuffix(".yaml")
            for entry in folder.iterdir()
            if entry.name.endswith(".yaml")
        )
    )


def load_preset(name: str, *, where: str = "config.preset") -> Preset:
    """Load the preset ``name``.

    Args:
        name: A name from :func:`preset_names`.
        where: The config's place, the start of the error path.

    Returns:
        The preset (its config still has its ``${parameter}`` placeholders).

    Raises:
        SinkConfigurationError: No preset has that name (the known ones are listed).
    """
    if name not in preset_names():
        raise SinkConfigurationError(
            f"{where}: no preset named {name!r}; presets: {', '.join(preset_names())}"
        )
    text = (
        importlib.resources.files(__package__)
        .joinpath(_DATA, f"{name}.yaml")
        .read_text(encoding="utf-8")
    )
    return Preset.from_data(yaml.safe_load(text), source=f"{name}.yaml")


@attrs.frozen(kw_only=True)
class PresetParameter:
    """A value a preset leaves to the user.

    Attributes:
        name: The placeholder's name (``${name}`` in the config).
        description: What it is.
        default: Its value when the user gives none; ``None``: the user must give one.
    """

    name: str
    description: str
    default: str | None = None


@attrs.frozen(kw_only=True)
class Preset:
    """A ready-made destination (see the module docstring)."""

    name: str
    description: str
    documentation: tuple[str, ...]
    parameters: tuple[PresetParameter, ...]
    config: Mapping[str, Any]

    @classmethod
    def from_data(cls, data: Any, *, source: str = "preset") -> Preset:
        """Build a preset from its YAML data, checking that every placeholder is declared.

        Args:
            data: The decoded YAML file.
            source: Its name, for error messages.

        Returns:
            The preset.

        Raises:
            SinkConfigurationError: The data is malformed (a key is unknown or missing, a
                placeholder has no parameter).
        """
        if not isinstance(data, Mapping):
            raise SinkConfigurationError(f"{source}: must be a mapping")
        unknown = sorted(str(key) for key in data if key not in _FILE_KEYS)
        if unknown or "name" not in data or not isinstance(data.get("config"), Mapping):
            raise SinkConfigurationError(
                f"{source}: needs name, description, documentation, parameters and config"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        raw_parameters = data.get("parameters")
        if raw_parameters is None:
            raw_parameters = {}
        if not isinstance(raw_parameters, Mapping):
            raise SinkConfigurationError(f"{source}: parameters must be a mapping")
        parameters = []
        for name, spec in raw_parameters.items():
            spec = {} if spec is None else spec
            if not isinstance(spec, Mapping):
                raise SinkConfigurationError(
                    f"{source}: parameters.{name} must be a mapping (default, description)"
                )
            default = spec.get("default")
            parameters.append(
                PresetParameter(
                    name=str(name),
                    description=str(spec.get("description", "")),
                    default=None if default is None else str(default),
                )
            )
        declared = {parameter.name for parameter in parameters}
        used = set(_placeholders(data["config"]))
        if used - declared:
            raise SinkConfigurationError(
                f"{source}: placeholder(s) {', '.join(sorted(used - declared))} have no parameter"
            )
        return cls(
            name=str(data["name"]),
            description=" ".join(str(data.get("description", "")).split()),
            documentation=tuple(str(url) for url in data.get("documentation") or ()),
            parameters=tuple(parameters),
            config=copy.deepcopy(dict(data["config"])),
        )

    def resolve(
        self,
        parameters: Mapping[str, Any] | None = None,
        *,
        where: str = "config.preset_parameters",
    ) -> dict[str, Any]:
        """The preset's config with the parameters filled in: plain data to copy or merge.

        Args:
            parameters: Values for the preset's parameters (strings); the defaults fill in
                the rest.
            where: Where the parameters are in the configuration, for error messages.

        Returns:
            A new dict, the preset's ``config`` with every placeholder replaced.

        Raises:
            SinkConfigurationError: A parameter is unknown, not a string, or required and
                missing.
        """
        given = dict(parameters or {})
        known = {parameter.name: parameter for parameter in self.parameters}
        unknown = sorted(name for name in given if name not in known)
        if unknown:
            raise SinkConfigurationError(
                f"{where}: unknown parameter(s) {', '.join(map(repr, unknown))} for preset "
                f"{self.name}; parameters: {', '.join(known)}"
            )
        values: dict[str, str] = {}
        for name, parameter in known.items():
            value = given.get(name, parameter.default)
            if value is None:
                raise SinkConfigurationError(
                    f"{where}.{name}: preset {self.name} needs it: {parameter.description}"
                )
            if not isinstance(value, str) or not value:
                raise SinkConfigurationError(f"{where}.{name}: must be a non-empty string")
            values[name] = value
        resolved: dict[str, Any] = _substitute(self.config, values)
        return resolved


def _placeholders(value: Any) -> list[str]:
    if isinstance(value, str):
        return _PLACEHOLDER.findall(value)
    if isinstance(value, Mapping):
        return [
            name
            for key, item in value.items()
            for name in [*_placeholders(key), *_placeholders(item)]
        ]
    if isinstance(value, list):
        return [name for item in value for name in _placeholders(item)]
    return []


def _substitute(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], value)
    if isinstance(value, Mapping):
        # keys too: a record's member can be named by a parameter (Salesforce's external id)
        return {_substitute(key, values): _substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    return value


# -- the parts of a (resolved) preset config ---------------------------------------------------


@json_schema(lambda: {"enum": [*(m.value for m in Method), *(m.lower() for m in Method)]})
class Method(enum.StrEnum):
    """An HTTP method of a request that writes (``post``: ``POST``)."""

    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


def _structure_method(value: Any, type_: type[Method]) -> Method:
    if isinstance(value, str) and value.upper() in type_.__members__:
        return type_(value.upper())
    raise ConfigValueError(
        f"must be one of {', '.join(type_.__members__)} (got {describe_value(value)})"
    )


converter.register_structure_hook(Method, _structure_method)
converter.register_unstructure_hook(Method, lambda member: member.value)


@attrs.frozen(kw_only=True)
class _DeleteKeys:
    """The keys of a ``delete`` block (see :class:`DeleteParts`)."""

    url: str = attrs.field(validator=check_http_url)
    method: Method | None = None
    template: dict[str, Any] | None = attrs.field(
        default=None, metadata=field_json_schema(TEMPLATE_JSON_SCHEMA)
    )
    max_records_per_request: int | None = attrs.field(default=None, validator=check_positive)
    max_body_bytes: int | None = attrs.field(default=None, validator=check_positive)
    results: ResultsSpec = attrs.field(factory=ResultsSpec)
    absent_statuses: HttpStatuses | None = None


def _delete_rules(given: Mapping[str, Any]) -> list[ConfigValueError]:
    columns = _URL_KEY.findall(given["url"])
    has_template = given.get("template") is not None
    if columns and has_template:
        return [
            ConfigValueError(
                f"either the URL names the key ({{{columns[0]}}}: one request per key, no "
                "body) or 'template' shapes a body of many keys, not both"
            )
        ]
    if not columns and not has_template:
        return [
            ConfigValueError(
                "needs 'record' (the keys of the records to delete, in a body), or name the "
                "key column in the URL: {column}",
                at=("template",),
            )
        ]
    if columns and (given.get("max_records_per_request") or given.get("max_body_bytes")):
        return [
            ConfigValueError(
                "max_records_per_request and max_body_bytes apply to a body of keys; a URL "
                "naming the key sends one request per key"
            )
        ]
    return []


register_checked_class(_DeleteKeys, cross_check=_delete_rules)


@attrs.frozen(kw_only=True)
class DeleteParts:
    """The request that deletes records (for ``mirror`` syncs).

    Two forms: a batch body (``template``, like the upserts: the keys of many records in one
    request), or the key in the URL (``{column}`` in ``url``, one request per key and no body:
    ``DELETE https://api.example.com/contacts/{email}``). An answer with one of
    ``absent_statuses`` (default 404 and 410 for the URL form, none for a body) means the
    record is not there: it counts as deleted.
    """

    url: str
    method: str
    template: RequestTemplate | None
    max_records_per_request: int | None
    max_body_bytes: int | None
    results: ResultsSpec
    url_columns: tuple[str, ...] = ()
    """The columns the URL names (``{column}``): one request per key."""
    absent_statuses: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, spec: Any, *, where: str) -> DeleteParts:
        """Validate a ``delete`` block.

        Raises:
            SinkConfigurationError: Listing every key that is unknown, missing or invalid.
        """
        return cls.from_keys(structure_at(spec, _DeleteKeys, where=where), where=where)

    @classmethod
    def from_keys(cls, keys: _DeleteKeys, *, where: str) -> DeleteParts:
        """The request of a structured ``delete`` block (its template parsed)."""
        columns = tuple(dict.fromkeys(_URL_KEY.findall(keys.url)))
        default = Method.DELETE if columns else Method.POST
        absent = keys.absent_statuses
        return cls(
            url=keys.url,
            method=(keys.method or default).value,
            template=None
            if keys.template is None
            else RequestTemplate.parse(keys.template, where=f"{where}.template"),
            max_records_per_request=keys.max_records_per_request,
            max_body_bytes=keys.max_body_bytes,
            results=keys.results,
            url_columns=columns,
            absent_statuses=frozenset(_ABSENT if columns else ()) if absent is None else absent,
        )

    def url_for(self, values: Mapping[str, str]) -> str:
        """The URL with each ``{column}`` replaced by its value, percent-encoded."""
        return _URL_KEY.sub(
            lambda match: urllib.parse.quote(values[match.group(1)], safe=""), self.url
        )


@attrs.frozen(kw_only=True)
class _PresetKeys:
    """The keys of a preset's ``config`` (a subset of a ``rest_api`` destination's)."""

    url: str = attrs.field(validator=check_http_url)
    method: Method = Method.POST
    auth: AuthConfig | None = None
    template: dict[str, Any] | None = None
    max_records_per_request: int | None = attrs.field(default=None, validator=check_positive)
    max_body_bytes: int | None = attrs.field(default=None, validator=check_positive)
    max_requests_per_second: float | None = attrs.field(default=None, validator=check_rate)
    rate_limit_headers: RateLimitHeaders = attrs.field(factory=RateLimitHeaders)
    results: ResultsSpec = attrs.field(factory=ResultsSpec)
    record_key: str | None = attrs.field(default=None, validator=check_non_empty)
    delete: _DeleteKeys | None = None


register_checked_class(_PresetKeys)


@attrs.frozen(kw_only=True)
class PresetParts:
    """A resolved preset config, parsed into the building blocks the delivery loop uses."""

    url: str
    method: str
    auth: AuthConfig | None
    template: RequestTemplate
    max_records_per_request: int | None
    max_body_bytes: int | None
    max_requests_per_second: float | None
    rate_limit_headers: RateLimitHeaders
    results: ResultsSpec
    delete: DeleteParts | None
    record_key: str | None = None
    """The column whose values the API's answers name records by (``results.key``)."""

    @classmethod
    def parse(cls, config: Mapping[str, Any], *, where: str = "config") -> PresetParts:
        """Validate a resolved preset config (or a user's config in the same shape).

        Args:
            config: The config (see the preset files).
            where: Its place in the configuration, the start of every error path.

        Returns:
            The parts.

        Raises:
            SinkConfigurationError: Listing every key that is unknown, missing or invalid.
        """
        keys = structure_at(config, _PresetKeys, where=where)
        return cls(
            url=keys.url,
            method=keys.method.value,
            auth=keys.auth,
            template=RequestTemplate.parse(keys.template, where=f"{where}.template"),
            max_records_per_request=keys.max_records_per_request,
            max_body_bytes=keys.max_body_bytes,
            max_requests_per_second=keys.max_requests_per_second,
            rate_limit_headers=keys.rate_limit_headers,
            results=keys.results,
            delete=None
            if keys.delete is None
            else DeleteParts.from_keys(keys.delete, where=f"{where}.delete"),
            record_key=keys.record_key,
        )
