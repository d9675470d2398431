"""STAND-IN for issue 5's ``floe_sink.config`` (to be replaced by the real module on merge).

Only the interface the command codes against: ``load_floe_spec``, ``load_manifest``,
``ConfigError``, ``DestinationConfig``, ``FloeSpec``, ``PlatformManifest``,
``SinkWhitelistError``, ``check_governance``, ``resolve_secret`` and the two JSON Schemas.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from floe_sink.errors import SinkConfigurationError
from floe_sink.models import converter, format_structure_error
from floe_sink.secrets import Secret

__all__ = [
    "ConfigError",
    "DestinationConfig",
    "FloeSpec",
    "PlatformManifest",
    "SinkWhitelistError",
    "check_governance",
    "floe_yaml_json_schema",
    "load_floe_spec",
    "load_manifest",
    "manifest_json_schema",
    "resolve_secret",
]

DEFAULT_SECRETS_DIR = "/var/run/secrets/floe"


class ConfigError(SinkConfigurationError):
    """A config file is invalid; ``problems`` lists each problem with its path."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class SinkWhitelistError(SinkConfigurationError):
    """A destination's sink type is not in the manifest's approved_sinks."""


@attrs.frozen(kw_only=True)
class DestinationConfig:
    name: str
    sink_type: str
    connection_secret_ref: str
    source_table: str
    config: dict[str, Any] = attrs.field(factory=dict)
    field_mapping: dict[str, str] | None = None
    batch_size: int | None = None
    write_disposition: Literal["append", "merge", "replace"] = "append"
    primary_key: list[str] = attrs.field(factory=list)
    enabled: bool = True
    description: str | None = None
    row_filter: str | None = None
    columns: list[str] | None = None
    retry: dict[str, Any] | None = None


@attrs.frozen(kw_only=True)
class FloeSpec:
    destinations: list[DestinationConfig] | None = None


@attrs.frozen(kw_only=True)
class PlatformManifest:
    scope: Literal["enterprise", "domain"] | None = None
    approved_sinks: list[str] | None = None
    catalog: dict[str, Any] | None = None


def _read(path: str | Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_floe_spec(path: str | Path) -> FloeSpec:
    data = _read(path)
    destinations = data.get("destinations") if isinstance(data, dict) else None
    try:
        spec = converter.structure({"destinations": destinations}, FloeSpec)
    except Exception as exc:
        problems = [f"{path}: {p}" for p in format_structure_error(exc)]
        raise ConfigError("; ".join(problems), problems) from exc
    for index, dest in enumerate(spec.destinations or []):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", dest.name):
            msg = f"{path}: $.destinations[{index}].name: invalid name {dest.name!r}"
            raise ConfigError(msg)
        if dest.batch_size is not None and dest.batch_size < 1:
            msg = f"{path}: $.destinations[{index}].batch_size: must be >= 1"
            raise ConfigError(msg)
        if dest.write_disposition == "merge" and not dest.primary_key:
            msg = f"{path}: $.destinations[{index}].primary_key: required for merge"
            raise ConfigError(msg)
    return spec


def load_manifest(path: str | Path) -> PlatformManifest:
    data = _read(path)
    try:
        return converter.structure(data, PlatformManifest)
    except Exception as exc:
        problems = [f"{path}: {p}" for p in format_structure_error(exc)]
        raise ConfigError("; ".join(problems), problems) from exc


def check_governance(spec: FloeSpec, manifest: PlatformManifest) -> list[SinkWhitelistError]:
    if manifest.approved_sinks is None:
        return []
    return [
        SinkWhitelistError(
            f"destination {dest.name!r}: sink type {dest.sink_type!r} is not in approved_sinks "
            f"({', '.join(manifest.approved_sinks)})"
        )
        for dest in spec.destinations or []
        if dest.sink_type not in manifest.approved_sinks
    ]


def resolve_secret(ref: str, secrets_dir: str | Path | None = None) -> dict[str, Secret]:
    root = Path(secrets_dir or os.environ.get("FLOE_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
    folder = root / ref
    if not folder.is_dir():
        raise ConfigError(f"secret {ref!r} not found: no folder {folder}")
    return {
        item.name: Secret(item.read_text().strip())
        for item in sorted(folder.iterdir())
        if item.is_file() and not item.name.startswith(".")
    }


def floe_yaml_json_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "floe.yaml"}


def manifest_json_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "manifest.yaml"}
