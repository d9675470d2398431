"""floe-sink's configuration: floe.yaml destinations, manifest.yaml governance, secrets.

- :func:`load_floe_spec` / :func:`load_manifest` read and validate the files; any problem is a
  :class:`ConfigError` listing every problem with its location.
- :func:`check_governance` checks the destinations against the manifest's ``approved_sinks``.
- :func:`resolve_secret` reads a destination's ``connection_secret_ref`` from the mounted
  Kubernetes Secrets.
- :func:`floe_yaml_json_schema` / :func:`manifest_json_schema` give editors JSON Schemas.
"""

from __future__ import annotations

from floe_sink.config.destinations import (
    DestinationConfig,
    FloeSpec,
    GuardsConfig,
    SyncMode,
    WriteDisposition,
)
from floe_sink.config.engine import EngineConfig, EngineType
from floe_sink.config.errors import (
    ConfigError,
    GovernanceError,
    SecretResolutionError,
    SinkWhitelistError,
)
from floe_sink.config.governance import (
    check_governance,
    enforce_governance,
    validate_sink_whitelist,
)
from floe_sink.config.loading import load_floe_spec, load_manifest, parse_floe_spec, parse_manifest
from floe_sink.config.manifest import (
    CatalogConfig,
    CatalogType,
    ManifestScope,
    PlatformManifest,
    StateConfig,
)
from floe_sink.config.schema import floe_yaml_json_schema, manifest_json_schema
from floe_sink.config.secret_mounts import resolve_secret
from floe_sink.structuring import converter as config_converter

__all__ = [
    "CatalogConfig",
    "CatalogType",
    "ConfigError",
    "DestinationConfig",
    "EngineConfig",
    "EngineType",
    "FloeSpec",
    "GovernanceError",
    "GuardsConfig",
    "ManifestScope",
    "PlatformManifest",
    "SecretResolutionError",
    "SinkWhitelistError",
    "StateConfig",
    "SyncMode",
    "WriteDisposition",
    "check_governance",
    "config_converter",
    "enforce_governance",
    "floe_yaml_json_schema",
    "load_floe_spec",
    "load_manifest",
    "manifest_json_schema",
    "parse_floe_spec",
    "parse_manifest",
    "resolve_secret",
    "validate_sink_whitelist",
]
