"""JSON Schemas (draft 2020-12) of floe.yaml's destinations and manifest.yaml's fields.

Editors (VS Code's YAML extension, JetBrains IDEs) use them to complete and check the files
as they are typed. They describe the same rules as the attrs models as far as JSON Schema can
express them; the loaders remain the authority (credential-looking keys, for instance, are
only caught there). ``tests/config/test_schema.py`` checks that schema and models agree on
field names and requiredness.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["floe_yaml_json_schema", "manifest_json_schema"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"

_SECRET_REF: dict[str, Any] = {
    "type": "string",
    "maxLength": 253,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_COLUMNS: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "uniqueItems": True,
}
_RETRY_NUMBER: dict[str, Any] = {"type": "number", "minimum": 0}

_DESTINATION: dict[str, Any] = {
    "type": "object",
    "title": "Destination",
    "description": "One reverse-ETL destination: where a Gold table is delivered.",
    "additionalProperties": False,
    "required": ["name", "sink_type", "connection_secret_ref"],
    "properties": {
        "name": {
            "type": "string",
            "description": "Unique name: 1-100 letters, digits, '-' or '_'.",
            "pattern": r"^[A-Za-z0-9_-]{1,100}$",
        },
        "sink_type": {
            "type": "string",
            "minLength": 1,
            "description": "The sink type, e.g. rest_api or sql_database (see floe-sink sinks).",
        },
        "connection_secret_ref": {
            **_SECRET_REF,
            "description": "Name of the Kubernetes Secret holding the credentials "
            "(lowercase RFC 1123 subdomain). Credentials never go in floe.yaml.",
        },
        "source_table": {
            "type": ["string", "null"],
            "description": "Iceberg table to read: namespace.table.",
            "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_$-]*(\.[A-Za-z0-9_][A-Za-z0-9_$-]*)+$",
        },
        "config": {
            "type": ["object", "null"],
            "description": "Sink-specific settings (url, table, headers, ...). No credentials.",
        },
        "field_mapping": {
            "type": ["object", "null"],
            "description": "Source column -> destination field. Only mapped columns are delivered.",
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "batch_size": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "Rows per delivered batch.",
        },
        "write_disposition": {
            "enum": ["append", "merge", "replace"],
            "default": "append",
            "description": "append (default), merge (upsert on primary_key) or replace.",
        },
        "primary_key": {
            **_COLUMNS,
            "type": ["array", "null"],
            "description": "Source columns identifying a row; required for merge.",
        },
        "enabled": {
            "type": "boolean",
            "default": True,
            "description": "false keeps the destination declared but skips it.",
        },
        "description": {"type": ["string", "null"], "description": "Free text."},
        "row_filter": {
            "type": ["string", "null"],
            "minLength": 1,
            "description": "pyiceberg row filter: only matching rows are delivered, e.g. "
            "\"status == 'active'\".",
        },
        "columns": {
            **_COLUMNS,
            "type": ["array", "null"],
            "minItems": 1,
            "description": "Source columns to read (projection); omit to read all.",
        },
        "sync": {
            "enum": ["full", "changes", "mirror"],
            "default": "full",
            "description": "full (default): every run sends the current snapshot; changes: only "
            "rows new or changed since the last confirmed delivery (needs primary_key); mirror: "
            "changes plus deleting rows whose key left the source.",
        },
        "guards": {
            "type": ["object", "null"],
            "description": "Limits that stop a change-aware run before it sends anything.",
            "additionalProperties": False,
            "properties": {
                "max_deletes": {"type": ["integer", "null"], "minimum": 0},
                "max_delete_fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "max_update_fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "max_rejected_fraction": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "maximum": 1,
                },
            },
        },
        "retry": {
            "type": ["object", "null"],
            "description": "Retry with exponential backoff.",
            "additionalProperties": False,
            "properties": {
                "max_attempts": {"type": "integer", "minimum": 1},
                "initial_wait": _RETRY_NUMBER,
                "max_wait": _RETRY_NUMBER,
                "multiplier": {"type": "number", "exclusiveMinimum": 0},
                "jitter": _RETRY_NUMBER,
                "timeout": {"type": "number", "exclusiveMinimum": 0},
            },
        },
    },
    "allOf": [
        {
            "if": {
                "required": ["write_disposition"],
                "properties": {"write_disposition": {"const": "merge"}},
            },
            "then": {"required": ["primary_key"], "properties": {"primary_key": {"minItems": 1}}},
        },
        {
            "if": {"required": ["sync"], "properties": {"sync": {"enum": ["changes", "mirror"]}}},
            "then": {"required": ["primary_key"], "properties": {"primary_key": {"minItems": 1}}},
        },
    ],
}

_FLOE_YAML: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "floe.yaml (the destinations floe-sink owns)",
    "description": "Other top-level sections belong to other floe components and are allowed.",
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "destinations": {
            "type": ["array", "null"],
            "description": "Reverse-ETL destinations (optional). Names must be unique.",
            "items": {"$ref": "#/$defs/Destination"},
        }
    },
    "$defs": {"Destination": _DESTINATION},
}

_CATALOG: dict[str, Any] = {
    "type": ["object", "null"],
    "title": "Catalog",
    "description": "pyiceberg catalog properties; other keys are passed to pyiceberg as is. "
    "Omit for the embedded SQLite catalog under ./.floe/.",
    "properties": {
        "name": {"type": "string", "minLength": 1, "default": "default"},
        "type": {"enum": ["sql", "rest"], "default": "sql"},
        "uri": {"type": ["string", "null"], "minLength": 1},
        "warehouse": {"type": ["string", "null"], "minLength": 1},
        "credential_secret_ref": {
            **_SECRET_REF,
            "type": ["string", "null"],
            "description": "Kubernetes Secret whose keys are added to the catalog properties.",
        },
    },
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "if": {"required": ["type"], "properties": {"type": {"const": "rest"}}},
    "then": {"required": ["uri"]},
}

_STATE: dict[str, Any] = {
    "type": ["object", "null"],
    "title": "State",
    "description": "Where floe-sink keeps delivery state (journal, run history, locks, sync "
    "state). Omit for backend: local (files under --state-dir).",
    "additionalProperties": False,
    "properties": {
        "backend": {
            "type": "string",
            "pattern": r"^[a-z][a-z0-9_-]{0,62}$",
            "default": "local",
            "examples": ["local", "sql"],
            "description": "local (default): files under the state directory; sql: the database "
            "of connection_secret_ref, for runners whose disk does not survive; another name: a "
            "backend provided by a plugin's get_state_store hook.",
        },
        "connection_secret_ref": {
            **_SECRET_REF,
            "type": ["string", "null"],
            "description": "Kubernetes Secret of the state database: its key url is a "
            "postgresql://, sqlite:/// or duckdb:/// URL. Required for backend: sql.",
        },
        "options": {
            "type": ["object", "null"],
            "description": "Settings of a plugin's backend (no credentials); local and sql "
            "take none.",
        },
    },
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
                    {"not": {"required": ["backend"]}},
                    {"properties": {"backend": {"enum": ["local", "sql"]}}},
                ]
            },
            "then": {"properties": {"options": {"maxProperties": 0}}},
        },
        {
            "if": {
                "anyOf": [
                    {"not": {"required": ["backend"]}},
                    {"properties": {"backend": {"const": "local"}}},
                ]
            },
            "then": {"properties": {"connection_secret_ref": {"type": "null"}}},
        },
    ],
}

_ENGINE: dict[str, Any] = {
    "type": ["object", "null"],
    "title": "Engine",
    "description": "Where runs deliver: local (default) or ray (docs/scale-out.md); "
    "floe-sink run --engine and --ray-address override type and address.",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["local", "ray", None], "default": "local"},
        "address": {
            "type": ["string", "null"],
            "minLength": 1,
            "description": "The Ray cluster (ray://host:10001, host:6379, auto); "
            "default: a local Ray instance. Only with type: ray.",
        },
        "max_tasks": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "Units in flight per destination (default: the cluster's CPUs).",
        },
        "unit_size_mb": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 128,
            "description": "Data-file megabytes per unit of work.",
        },
        "max_retries": {
            "type": "integer",
            "minimum": 0,
            "default": 3,
            "description": "Ray's retries of a unit (a dead worker, a transient failure).",
        },
    },
}

_MANIFEST: dict[str, Any] = {
    "$schema": _DRAFT,
    "title": "manifest.yaml (the governance fields floe-sink owns)",
    "description": "Other top-level sections belong to other floe components and are allowed.",
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "scope": {
            "enum": ["enterprise", "domain", "none", None],
            "default": "none",
            "description": "Governance scope; only an enterprise manifest may set approved_sinks.",
        },
        "approved_sinks": {
            "type": ["array", "null"],
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
            "description": "Sink types data teams may use: null or absent allows all, [] none.",
        },
        "catalog": {"$ref": "#/$defs/Catalog"},
        "state": {"$ref": "#/$defs/State"},
        "engine": {"$ref": "#/$defs/Engine"},
    },
    "if": {"not": {"required": ["scope"], "properties": {"scope": {"const": "enterprise"}}}},
    "then": {"properties": {"approved_sinks": {"type": "null"}}},
    "$defs": {"Catalog": _CATALOG, "State": _STATE, "Engine": _ENGINE},
}


def floe_yaml_json_schema() -> dict[str, Any]:
    """The JSON Schema of floe.yaml's ``destinations:`` (other sections are allowed).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    return copy.deepcopy(_FLOE_YAML)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of manifest.yaml's fields (``scope`` ... ``state``, ``engine``).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    return copy.deepcopy(_MANIFEST)
