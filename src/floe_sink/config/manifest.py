"""manifest.yaml's part owned by floe-sink: governance scope, approved sinks, the catalog,
where delivery state lives and where runs deliver.

A platform engineer restricts what data teams may use::

    scope: enterprise
    approved_sinks: [rest_api]
    catalog:
      name: polaris
      type: rest
      uri: https://polaris.example.com/api/catalog
      warehouse: analytics
      credential_secret_ref: polaris-client
    state:
      backend: sql                       # local (default) | sql | a plugin's backend
      connection_secret_ref: floe-state  # its key `url`: a PostgreSQL/SQLite/DuckDB URL
    engine:
      type: ray                          # local (default) | ray (floe_sink.config.engine)

Every other top-level section belongs to another floe component and is left alone.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from floe_sink.config.credential_scan import credential_problems
from floe_sink.config.engine import EngineConfig
from floe_sink.config.validators import (
    check_non_empty_text,
    check_secret_ref,
    check_sink_list,
    optional,
)
from floe_sink.secrets import Secret
from floe_sink.structuring import (
    ConfigValueError,
    converter,
    describe_value,
    json_schema,
    near_miss,
    register_checked_class,
    register_enum,
)

__all__ = ["CatalogConfig", "CatalogType", "ManifestScope", "PlatformManifest", "StateConfig"]


class ManifestScope(enum.StrEnum):
    """Which level of the platform the manifest governs."""

    ENTERPRISE = "enterprise"
    """The enterprise manifest: the only one that may restrict ``approved_sinks``."""
    DOMAIN = "domain"
    """A data domain's manifest: inherits the enterprise's restrictions."""
    NONE = "none"
    """No governance scope (a standalone project); also what a missing ``scope`` means."""


register_enum(ManifestScope)


class CatalogType(enum.StrEnum):
    """The pyiceberg catalog implementations floe-sink supports."""

    SQL = "sql"
    """A SQL catalog (SQLite, PostgreSQL) — the embedded default."""
    REST = "rest"
    """An Iceberg REST catalog, e.g. Apache Polaris."""


register_enum(CatalogType)


def _enforce(rules: Callable[[Mapping[str, Any]], list[ConfigValueError]], instance: Any) -> None:
    """Raise the problems ``rules`` finds in the fields of ``instance``, all in one error."""
    problems = rules(attrs.asdict(instance, recurse=False))
    if problems:
        raise ConfigValueError("; ".join(str(problem) for problem in problems))


CATALOG_CREDENTIALS_HINT = (
    "credentials must not be written in manifest.yaml; store them in a Kubernetes Secret and "
    "name it in catalog.credential_secret_ref (its keys become catalog properties)"
)

_Property = str | int | float | bool


@attrs.frozen(kw_only=True)
class CatalogConfig:
    """pyiceberg catalog properties of the manifest's ``catalog:`` section.

    Attributes:
        name: The catalog's name (pyiceberg's ``load_catalog(name, ...)``).
        type: ``sql`` or ``rest``.
        uri: The catalog's URI: a database URL (``sql``) or the REST endpoint (``rest``,
            required).
        warehouse: The warehouse location (or, for a REST catalog, the warehouse name).
        credential_secret_ref: Kubernetes Secret whose keys (``credential``, ``token``, ...)
            are added to the properties when the catalog is opened.
        properties: Every other key, passed to pyiceberg as is (``s3.endpoint``,
            ``py-io-impl``, ...). In YAML they sit next to the named keys.
    """

    name: str = attrs.field(default="default", validator=check_non_empty_text)
    type: CatalogType = CatalogType.SQL
    uri: str | None = attrs.field(default=None, validator=optional(check_non_empty_text))
    warehouse: str | None = attrs.field(default=None, validator=optional(check_non_empty_text))
    credential_secret_ref: str | None = attrs.field(
        default=None, validator=optional(check_secret_ref)
    )
    properties: dict[str, _Property] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        _enforce(_catalog_rules, self)

    def to_pyiceberg_properties(self, secret: Mapping[str, Secret] | None = None) -> dict[str, str]:
        """The properties for ``pyiceberg.catalog.load_catalog(self.name, **properties)``.

        Args:
            secret: The resolved ``credential_secret_ref``; its values are revealed here,
                where they are handed to pyiceberg.

        Returns:
            String properties: ``type``, ``uri``, ``warehouse``, the other keys, the secret's.
        """
        props: dict[str, str] = {"type": self.type.value}
        if self.uri is not None:
            props["uri"] = self.uri
        if self.warehouse is not None:
            props["warehouse"] = self.warehouse
        for key, value in self.properties.items():
            props[key] = str(value).lower() if isinstance(value, bool) else str(value)
        for key, secret_value in (secret or {}).items():
            props[key] = secret_value.reveal()
        return props


_CATALOG_FIELDS = ("name", "type", "uri", "warehouse", "credential_secret_ref")


@json_schema(
    {
        "if": {"required": ["type"], "properties": {"type": {"const": "rest"}}},
        "then": {"required": ["uri"]},
    }
)
def _catalog_rules(values: Mapping[str, Any]) -> list[ConfigValueError]:
    problems: list[ConfigValueError] = []
    if values.get("type") == CatalogType.REST and not values.get("uri"):
        problems.append(
            ConfigValueError(
                "required for a rest catalog: the REST endpoint, e.g. "
                "https://polaris.example.com/api/catalog",
                at=("uri",),
            )
        )
    for key in values.get("properties") or {}:
        if key in _CATALOG_FIELDS or key == "properties":
            problems.append(ConfigValueError("is a named catalog field", at=("properties", key)))
    return problems


def _catalog_pre_check(data: Mapping[str, Any]) -> tuple[list[ConfigValueError], set[str]]:
    problems, reported = credential_problems(data, CATALOG_CREDENTIALS_HINT)
    for key, value in data.items():
        if key in _CATALOG_FIELDS or key in reported or not isinstance(key, str):
            continue
        if value is None or not isinstance(value, str | int | float | bool):
            problems.append(
                ConfigValueError(
                    "catalog properties are flat: expected a string, number or boolean, got "
                    f"{describe_value(value)}",
                    at=(key,),
                )
            )
            reported.add(key)
    return problems, reported


register_checked_class(
    CatalogConfig,
    extra_keys="collect",
    collect_extra_into="properties",
    pre_check=_catalog_pre_check,
    cross_check=_catalog_rules,
)


def _unstructure_catalog(catalog: CatalogConfig) -> dict[str, Any]:
    # The YAML shape: named fields and pass-through properties side by side.
    data: dict[str, Any] = {"name": catalog.name, "type": catalog.type.value}
    for key in ("uri", "warehouse", "credential_secret_ref"):
        if getattr(catalog, key) is not None:
            data[key] = getattr(catalog, key)
    data.update(catalog.properties)
    return data


converter.register_unstructure_hook(CatalogConfig, _unstructure_catalog)


BUILTIN_STATE_BACKENDS = ("local", "sql")
"""The state backends floe-sink provides; a plugin's ``get_state_store`` may add others."""

_BACKEND = re.compile(r"[a-z][a-z0-9_-]{0,62}")

STATE_CREDENTIALS_HINT = (
    "credentials must not be written in manifest.yaml; store them in a Kubernetes Secret and "
    "name it in state.connection_secret_ref"
)


@json_schema({"pattern": f"^{_BACKEND.pattern}$", "examples": list(BUILTIN_STATE_BACKENDS)})
def _check_backend(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _BACKEND.fullmatch(value):
        hint = near_miss(value, BUILTIN_STATE_BACKENDS)
        raise ConfigValueError(
            f"must be local, sql or the name of a plugin's backend (lowercase letters, "
            f"digits, '-' and '_'; got {describe_value(value)})"
            + (f"; did you mean {hint!r}?" if hint else "")
        )


@attrs.frozen(kw_only=True)
class StateConfig:
    """Where floe-sink keeps delivery state: the journal, run history, locks, sync state.

    Attributes:
        backend: ``local`` (default): files under the state directory (``--state-dir``);
            ``sql``: a database named by ``connection_secret_ref``, for runners whose disk
            does not survive; another name: a backend a plugin provides (the
            ``get_state_store`` hook).
        connection_secret_ref: Kubernetes Secret of the state database; its key ``url`` is a
            PostgreSQL, SQLite or DuckDB URL. Required for ``sql``.
        options: Settings of a plugin's backend, handed to its ``get_state_store`` as is
            (no credentials). The built-in backends take none.
    """

    backend: str = attrs.field(default="local", validator=_check_backend)
    connection_secret_ref: str | None = attrs.field(
        default=None, validator=optional(check_secret_ref)
    )
    options: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        _enforce(_state_rules, self)


_NO_BACKEND = {"not": {"required": ["backend"]}}


@json_schema(
    {
        "allOf": [
            {
                "if": {"required": ["backend"], "properties": {"backend": {"const": "sql"}}},
                "then": {
                    "required": ["connection_secret_ref"],
                    "properties": {"connection_secret_ref": {"type": "string"}},
                },
            },
            {
                "if": {
                    "anyOf": [
                        _NO_BACKEND,
                        {"properties": {"backend": {"enum": list(BUILTIN_STATE_BACKENDS)}}},
                    ]
                },
                "then": {"properties": {"options": {"maxProperties": 0}}},
            },
            {
                "if": {"anyOf": [_NO_BACKEND, {"properties": {"backend": {"const": "local"}}}]},
                "then": {"properties": {"connection_secret_ref": {"type": "null"}}},
            },
        ]
    }
)
def _state_rules(values: Mapping[str, Any]) -> list[ConfigValueError]:
    backend = values.get("backend", "local")
    ref = values.get("connection_secret_ref")
    problems: list[ConfigValueError] = []
    if backend == "sql" and not ref:
        problems.append(
            ConfigValueError(
                "required for backend: sql: the Kubernetes Secret whose key 'url' is the state "
                "database (postgresql://..., sqlite:///..., duckdb:///...)",
                at=("connection_secret_ref",),
            )
        )
    if backend == "local" and ref:
        problems.append(
            ConfigValueError(
                "only used by backend: sql (the local backend keeps state under --state-dir); "
                "set backend: sql or remove connection_secret_ref",
                at=("connection_secret_ref",),
            )
        )
    if backend in BUILTIN_STATE_BACKENDS and values.get("options"):
        problems.append(
            ConfigValueError(
                f"backend {backend!r} takes no options (options are for a plugin's backend)",
                at=("options",),
            )
        )
    return problems


def _state_pre_check(data: Mapping[str, Any]) -> tuple[list[ConfigValueError], set[str]]:
    return credential_problems(data, STATE_CREDENTIALS_HINT)


register_checked_class(StateConfig, pre_check=_state_pre_check, cross_check=_state_rules)


@attrs.frozen(kw_only=True)
class PlatformManifest:
    """The part of manifest.yaml that floe-sink owns.

    Attributes:
        scope: ``enterprise``, ``domain`` or ``none`` (also when missing).
        approved_sinks: Sink types data teams may use. Only valid with ``scope:
            enterprise``. ``None`` (missing) allows every sink type; ``[]`` allows none.
        catalog: pyiceberg catalog properties; ``None`` uses the embedded default (a SQL
            catalog on SQLite under ``./.floe/``).
        state: Where delivery state lives; ``None`` is ``backend: local``.
        engine: Where runs deliver (``local`` or ``ray``, see ``docs/scale-out.md``);
            ``None``: the local engine.
    """

    scope: ManifestScope = ManifestScope.NONE
    approved_sinks: list[str] | None = attrs.field(
        default=None, validator=optional(check_sink_list)
    )
    catalog: CatalogConfig | None = None
    state: StateConfig | None = None
    engine: EngineConfig | None = None

    def __attrs_post_init__(self) -> None:
        problems = _manifest_rules(attrs.asdict(self, recurse=False))
        if problems:
            raise ConfigValueError("; ".join(str(problem) for problem in problems))


@json_schema(
    {
        "if": {"not": {"required": ["scope"], "properties": {"scope": {"const": "enterprise"}}}},
        "then": {"properties": {"approved_sinks": {"type": "null"}}},
    }
)
def _manifest_rules(values: Mapping[str, Any]) -> list[ConfigValueError]:
    scope = values.get("scope", ManifestScope.NONE)
    if values.get("approved_sinks") is not None and scope != ManifestScope.ENTERPRISE:
        return [
            ConfigValueError(
                f"only valid with scope: enterprise (scope is {ManifestScope(scope).value!r}); "
                "set scope: enterprise or remove approved_sinks",
                at=("approved_sinks",),
            )
        ]
    return []


def _manifest_near_misses(data: Mapping[str, Any]) -> tuple[list[ConfigValueError], set[str]]:
    owned = ["scope", "approved_sinks", "catalog", "state", "engine"]
    problems = [
        ConfigValueError(f"unknown top-level key; did you mean {hint!r}?", at=(key,))
        for key in data
        if (hint := near_miss(key, owned)) is not None
    ]
    return problems, set()


register_checked_class(
    PlatformManifest,
    extra_keys="ignore",
    pre_check=_manifest_near_misses,
    cross_check=_manifest_rules,
    null_is_default=frozenset({"scope"}),
)
