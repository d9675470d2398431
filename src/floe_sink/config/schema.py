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

_HTTP_STATUSES: dict[str, Any] = {
    "type": "array",
    "items": {"type": "integer", "minimum": 100, "maximum": 599},
}
_COUNT: dict[str, Any] = {"type": ["integer", "null"], "minimum": 1}
_PATH: dict[str, Any] = {"type": "string", "minLength": 1}

_TEMPLATE: dict[str, Any] = {
    "type": "object",
    "description": "The JSON shape of a record and of a request (docs/sinks/rest_api.md, "
    "Request templates). Checked against the table's columns before anything is sent.",
    "additionalProperties": False,
    "required": ["record"],
    "properties": {
        "record": {
            "description": "One record: {column: NAME, as: string|integer|number|boolean|"
            "epoch_ms, on_null: omit, required: true}, {const: VALUE}, a scalar constant, "
            "a mapping of keys to nodes (a nested object), {object: {...}, remaining: ...}, "
            "{remaining: true | {as, on_null, except}}, or a list of nodes.",
        },
        "records_key": {
            "description": "Where the records go: a key, or a list of keys (a nested place); "
            "without it the body is a bare JSON array.",
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            ],
        },
        "envelope": {"type": "object", "description": "Constants beside the records."},
    },
}

_RESULTS: dict[str, Any] = {
    "type": "object",
    "description": "How to read per-record results out of an answer (docs/sinks/rest_api.md, "
    "Per-record results).",
    "additionalProperties": False,
    "properties": {
        "mode": {"enum": ["none", "by_position", "by_key"], "default": "none"},
        "items": {**_PATH, "description": "by_position: where the list of results is ($)."},
        "success": {**_PATH, "description": "by_position: an item's success flag."},
        "message": {**_PATH, "description": "An item's or an error's message."},
        "errors": {**_PATH, "description": "by_key: where the list of errors is."},
        "key": {**_PATH, "description": "by_key: the record key(s) an error names."},
        "key_is": {"enum": ["key", "index"], "default": "key"},
        "match": {"type": "object", "description": "by_key: only errors with these values."},
        "batch_message": {**_PATH, "description": "The message of a whole-batch refusal."},
        "bisect": {"type": "boolean", "default": True},
        "retryable_statuses": _HTTP_STATUSES,
        "fatal_statuses": _HTTP_STATUSES,
    },
}

_HEADER_NAMES: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    ]
}

_REST_API_CONFIG: dict[str, Any] = {
    "type": ["object", "null"],
    "title": "RestApiConfig",
    "description": "The rest_api sink's config (docs/sinks/rest_api.md). Credentials come from "
    "the destination's secret, never from here.",
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^https?://", "description": "Where requests go."},
        "method": {"enum": ["POST", "PUT", "PATCH", "post", "put", "patch"]},
        "records_key": {"type": "string", "minLength": 1},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "max_requests_per_second": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "max_concurrency": {"type": "integer", "minimum": 1},
        "record_ids_path": {"type": "string", "minLength": 1},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "template": _TEMPLATE,
        "results": _RESULTS,
        "record_key": {
            "type": "string",
            "minLength": 1,
            "description": "The column whose values the answers name records by.",
        },
        "max_body_bytes": {**_COUNT, "description": "The most bytes one request body may have."},
        "max_records_per_request": {**_COUNT, "description": "The most records a request."},
        "rate_limit_headers": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "remaining": _HEADER_NAMES,
                "reset": _HEADER_NAMES,
                "reset_unit": {
                    "enum": [
                        "auto",
                        "seconds",
                        "milliseconds",
                        "epoch_seconds",
                        "epoch_milliseconds",
                    ]
                },
                "window": _HEADER_NAMES,
                "window_unit": {"enum": ["seconds", "milliseconds"]},
            },
        },
        "auth": {
            "type": "object",
            "description": "The kind of authentication; its values come from the secret: "
            "bearer (token), api_key (api_key), basic (username, password), "
            "oauth2_client_credentials (client_id, client_secret).",
            "required": ["type"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["bearer", "api_key", "basic", "oauth2_client_credentials"]},
                "header": {"type": "string", "minLength": 1},
                "prefix": {"type": "string"},
                "token_url": {"type": "string", "pattern": "^https?://"},
                "scope": {"type": "string"},
                "audience": {"type": "string"},
                "client_auth": {"enum": ["basic", "post"]},
            },
        },
        "preset": {
            "enum": [
                "braze_users_track",
                "hubspot_contacts",
                "mailchimp_list_members",
                "salesforce_sobject_collections",
            ],
            "description": "A ready-made destination (docs/sinks/): its config under this one.",
        },
        "preset_parameters": {
            "type": "object",
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "delete": {
            "type": "object",
            "description": "The request that deletes records (sync: mirror): the key in the url "
            "({column}, one request per key) or a body template of many keys.",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "pattern": "^https?://"},
                "method": {"enum": ["POST", "PUT", "PATCH", "DELETE"]},
                "template": _TEMPLATE,
                "max_records_per_request": _COUNT,
                "max_body_bytes": _COUNT,
                "results": _RESULTS,
                "absent_statuses": _HTTP_STATUSES,
            },
        },
    },
}
"""What a rest_api destination's ``config`` may hold (the sink's own checks are the
authority: a template's columns, a preset's parameters)."""

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
            "description": "Sink-specific settings (url, table, headers, ...). No credentials. "
            "For sink_type rest_api, see RestApiConfig; each sink checks its own.",
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
        {
            # the config of the sink types that ship with floe-sink; another plugin's is free
            "if": {"required": ["sink_type"], "properties": {"sink_type": {"const": "rest_api"}}},
            "then": {"properties": {"config": {"$ref": "#/$defs/RestApiConfig"}}},
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
    "$defs": {"Destination": _DESTINATION, "RestApiConfig": _REST_API_CONFIG},
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
    },
    "if": {"not": {"required": ["scope"], "properties": {"scope": {"const": "enterprise"}}}},
    "then": {"properties": {"approved_sinks": {"type": "null"}}},
    "$defs": {"Catalog": _CATALOG, "State": _STATE},
}


def floe_yaml_json_schema() -> dict[str, Any]:
    """The JSON Schema of floe.yaml's ``destinations:`` (other sections are allowed).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    return copy.deepcopy(_FLOE_YAML)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of manifest.yaml's ``scope``, ``approved_sinks``, ``catalog``, ``state``.

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    return copy.deepcopy(_MANIFEST)
