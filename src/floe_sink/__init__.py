"""floe-sink: reverse ETL from Apache Iceberg to SaaS APIs and operational databases.

The core: the pluggy ``SinkConnector`` contract (:data:`hookspec`, :data:`hookimpl`,
:class:`SinkConnector`), the plugin manager, the models, errors, tracing, and the Arrow
primitives every sink shares. Importing it is cheap: pyarrow-, tenacity- and YAML-based parts
load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from floe_sink.connector import HOOK_NAMES, SinkConnector, as_sink_connector
from floe_sink.errors import (
    ErrorCategory,
    FloeSinkError,
    PluginConflictError,
    PluginContractError,
    PluginError,
    PluginLoadError,
    ProblemsError,
    SinkConfigurationError,
    SinkConnectionError,
    SinkError,
    SinkNotFoundError,
    SinkWriteError,
)
from floe_sink.hookspecs import SinkConnectorSpec, hookimpl, hookspec
from floe_sink.manager import SinkPluginManager, get_plugin_manager
from floe_sink.models import EgressResult, SinkConfig, converter, structure
from floe_sink.tracing import egress_span, record_egress_error, record_egress_result

if TYPE_CHECKING:
    from floe_sink.checksum import Checksum, checksum_of
    from floe_sink.chunking import as_batches, iter_chunks
    from floe_sink.config import (
        CatalogConfig,
        ConfigError,
        DestinationConfig,
        FloeSpec,
        PlatformManifest,
        SinkWhitelistError,
        WriteDisposition,
        check_governance,
        enforce_governance,
        load_floe_spec,
        load_manifest,
        resolve_secret,
        validate_sink_whitelist,
    )
    from floe_sink.delivery import BatchReceipt, Delivery, DeliveryInterrupted, deliver_batches
    from floe_sink.idempotency import idempotency_key
    from floe_sink.mapping import apply_field_mapping, mapped_schema
    from floe_sink.retry import RetryPolicy, parse_retry_after, retrying

__version__ = "0.1.0"

# Loaded on first access, so that `import floe_sink` does not pay for pyarrow or tenacity.
_LAZY: dict[str, str] = {
    "Checksum": "floe_sink.checksum",
    "checksum_of": "floe_sink.checksum",
    "as_batches": "floe_sink.chunking",
    "iter_chunks": "floe_sink.chunking",
    "idempotency_key": "floe_sink.idempotency",
    "BatchReceipt": "floe_sink.delivery",
    "Delivery": "floe_sink.delivery",
    "DeliveryInterrupted": "floe_sink.delivery",
    "deliver_batches": "floe_sink.delivery",
    "apply_field_mapping": "floe_sink.mapping",
    "mapped_schema": "floe_sink.mapping",
    "RetryPolicy": "floe_sink.retry",
    "parse_retry_after": "floe_sink.retry",
    "retrying": "floe_sink.retry",
    # floe.yaml / manifest.yaml: loading them imports yaml, so they are lazy too.
    "CatalogConfig": "floe_sink.config",
    "ConfigError": "floe_sink.config",
    "DestinationConfig": "floe_sink.config",
    "FloeSpec": "floe_sink.config",
    "PlatformManifest": "floe_sink.config",
    "SinkWhitelistError": "floe_sink.config",
    "WriteDisposition": "floe_sink.config",
    "check_governance": "floe_sink.config",
    "enforce_governance": "floe_sink.config",
    "load_floe_spec": "floe_sink.config",
    "load_manifest": "floe_sink.config",
    "resolve_secret": "floe_sink.config",
    "validate_sink_whitelist": "floe_sink.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'floe_sink' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "HOOK_NAMES",
    "BatchReceipt",
    "CatalogConfig",
    "Checksum",
    "ConfigError",
    "Delivery",
    "DeliveryInterrupted",
    "DestinationConfig",
    "EgressResult",
    "ErrorCategory",
    "FloeSinkError",
    "FloeSpec",
    "PlatformManifest",
    "PluginConflictError",
    "PluginContractError",
    "PluginError",
    "PluginLoadError",
    "ProblemsError",
    "RetryPolicy",
    "SinkConfig",
    "SinkConfigurationError",
    "SinkConnectionError",
    "SinkConnector",
    "SinkConnectorSpec",
    "SinkError",
    "SinkNotFoundError",
    "SinkPluginManager",
    "SinkWhitelistError",
    "SinkWriteError",
    "WriteDisposition",
    "__version__",
    "apply_field_mapping",
    "as_batches",
    "as_sink_connector",
    "check_governance",
    "checksum_of",
    "converter",
    "deliver_batches",
    "egress_span",
    "enforce_governance",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "idempotency_key",
    "iter_chunks",
    "load_floe_spec",
    "load_manifest",
    "mapped_schema",
    "parse_retry_after",
    "record_egress_error",
    "record_egress_result",
    "resolve_secret",
    "retrying",
    "structure",
    "validate_sink_whitelist",
]
