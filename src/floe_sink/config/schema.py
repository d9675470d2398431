"""JSON Schemas (draft 2020-12) of floe.yaml's destinations and manifest.yaml's fields,
generated from the attrs models.

Editors (VS Code's YAML extension, JetBrains IDEs) use them to complete and check the files as
they are typed. Nothing here repeats a model: a property's JSON type comes from the field's
annotation, its description from the ``Attributes:`` section of the class docstring, its
default from the field, its constraints from the JSON Schema its validator declares
(:func:`floe_sink.structuring.json_schema`), and the class's cross-field rules and unknown-key
policy from its :func:`~floe_sink.structuring.register_checked_class` registration. The loaders
remain the authority for what JSON Schema cannot say (credential-looking keys, duplicate keys,
names unique across destinations, a row filter that parses).
"""

from __future__ import annotations

import enum
import re
import types
import typing
from typing import Any

import attrs

from floe_sink.structuring import checked_classes, schema_of

__all__ = ["floe_yaml_json_schema", "manifest_json_schema", "model_schema"]

Schema = dict[str, Any]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ATTRIBUTE = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:, \w+)*): (?P<text>.*)$")
_ROLE = re.compile(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`")
_COMPARISONS = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum", "<": "exclusiveMaximum"}


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


_YAML_WORDS = {"`None`": "`null`", "`True`": "`true`", "`False`": "`false`"}


def _plain(text: str) -> str:
    """Docstring markup as the YAML author reads it: ``:class:`~a.B``` -> ``B``, ````x```` ->
    ```x```, ````None```` -> ```null```."""
    text = _ROLE.sub(r"\1", text).replace("``", "`")
    for python, yaml in _YAML_WORDS.items():
        text = text.replace(python, yaml)
    return text


def _descriptions(cls: type[Any]) -> dict[str, str]:
    """The ``Attributes:`` section of ``cls``'s docstring, one description per field."""
    found: dict[str, str] = {}
    lines = (cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return found
    current: list[str] = []
    indent = None
    for line in lines[start + 1 :]:
        match = _ATTRIBUTE.match(line)
        if match and (indent is None or len(match["indent"]) == indent):
            indent = len(match["indent"])
            current = match["names"].split(", ")  # "rows_inserted, rows_updated: ..."
            for name in current:
                found[name] = match["text"].strip()
        elif line.strip() and current and indent is not None and line.startswith(" " * indent):
            for name in current:
                found[name] += " " + line.strip()
        elif not line.strip():
            continue
        else:
            break
    return {name: _plain(text) for name, text in found.items()}


def _summary(cls: type[Any]) -> str:
    return _plain((cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return {**schema, "type": [*kind, "null"]} if "null" not in kind else schema
    return schema


def _def_name(cls: type[Any]) -> str:
    return cls.__name__.removesuffix("Config")


def _type_schema(annotation: Any, defs: dict[str, Schema]) -> Schema:
    """The JSON Schema of a field's annotation."""
    if annotation is Any:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    if isinstance(annotation, type) and attrs.has(annotation):
        name = _def_name(annotation)
        if name not in defs:
            defs[name] = {}  # a placeholder first: a model may refer to itself
            defs[name] = _object_schema(annotation, defs)
        return {"$ref": f"#/$defs/{name}"}
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [argument for argument in arguments if argument is not type(None)]
        if all(option in _SCALARS for option in options):
            schema: Schema = {"type": [_SCALARS[option] for option in options]}
        elif len(options) == 1:
            schema = _type_schema(options[0], defs)
        else:
            schema = {"anyOf": [_type_schema(option, defs) for option in options]}
        return _nullable(schema) if len(options) < len(arguments) else schema
    if origin is list:
        return {"type": "array", "items": _type_schema(arguments[0], defs)}
    if origin is dict:
        values = _type_schema(arguments[1], defs)
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    raise TypeError(f"no JSON Schema for the annotation {annotation!r}")


def _validator_schema(validator: Any) -> Schema:
    """What a field's validator enforces, in JSON Schema keywords."""
    if validator is None:
        return {}
    declared = schema_of(validator)
    if declared:
        return declared
    inner = getattr(validator, "_validators", None)  # attrs.validators.and_
    if inner is not None:
        merged: Schema = {}
        for part in inner:
            merged.update(_validator_schema(part))
        return merged
    keyword = _COMPARISONS.get(getattr(validator, "compare_op", ""))
    if keyword is not None:  # attrs.validators.ge/gt/le/lt
        return {keyword: validator.bound}
    return {}


def _merge(schema: Schema, constraints: Schema) -> Schema:
    """``constraints`` applied to ``schema``: to the value itself, or to the non-null branch."""
    if not constraints:
        return schema
    if "anyOf" in schema:
        branches = [
            branch if branch.get("type") == "null" else _merge(branch, constraints)
            for branch in schema["anyOf"]
        ]
        return {**schema, "anyOf": branches}
    merged = {**schema}
    for key, value in constraints.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _default(field: attrs.Attribute[Any]) -> Any:
    default = field.default
    if default is attrs.NOTHING or isinstance(default, attrs.Factory) or default is None:  # type: ignore[arg-type]
        return attrs.NOTHING
    return default.value if isinstance(default, enum.Enum) else default


def _object_schema(cls: type[Any], defs: dict[str, Schema], *, defaults: bool = True) -> Schema:
    """The schema of an attrs model, its nested models added to ``defs``."""
    attrs.resolve_types(cls)
    registered = checked_classes().get(cls)
    descriptions = _descriptions(cls)
    collect = registered.collect_extra_into if registered is not None else None
    null_is_default = registered.null_is_default if registered is not None else frozenset()
    properties: dict[str, Schema] = {}
    required: list[str] = []
    extra: Schema | bool = False
    for field in attrs.fields(cls):
        if field.name == collect:
            extra = _type_schema(field.type, defs).get("additionalProperties", True)
            continue
        schema = _merge(_type_schema(field.type, defs), _validator_schema(field.validator))
        if field.name in null_is_default:
            schema = _nullable(schema)
        default = _default(field)
        if defaults and default is not attrs.NOTHING:
            schema["default"] = default
        if descriptions.get(field.name):
            schema["description"] = descriptions[field.name]
        properties[field.name] = schema
        if field.default is attrs.NOTHING:
            required.append(field.name)
    document: Schema = {"type": "object", "title": _def_name(cls), "description": _summary(cls)}
    document["properties"] = properties
    if required:
        document["required"] = required
    if registered is not None and registered.extra_keys == "ignore":
        extra = True  # other components' sections
    document["additionalProperties"] = extra
    if registered is not None and registered.cross_check is not None:
        document.update(schema_of(registered.cross_check))
    return document


def model_schema(cls: type[Any], *, defaults: bool = True) -> Schema:
    """The JSON Schema of one attrs model, its nested models inlined under ``$defs``.

    Args:
        cls: An attrs class (a configuration model, :class:`floe_sink.SinkConfig`, ...).
        defaults: Include each field's default.
    """
    defs: dict[str, Schema] = {}
    schema = _object_schema(cls, defs, defaults=defaults)
    if defs:
        schema["$defs"] = defs
    return schema


def _document(cls: type[Any], title: str) -> Schema:
    defs: dict[str, Schema] = {}
    schema = _object_schema(cls, defs)
    description = (
        f"{schema.pop('description')} Other top-level sections belong to other floe "
        "components and are allowed."
    )
    del schema["title"]
    return {"$schema": _DRAFT, "title": title, "description": description, **schema, "$defs": defs}


def floe_yaml_json_schema() -> Schema:
    """The JSON Schema of floe.yaml's ``destinations:`` (other sections are allowed).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    from floe_sink.config.destinations import FloeSpec

    schema = _document(FloeSpec, "floe.yaml (the destinations floe-sink owns)")
    _add_sink_configs(schema)
    return schema


def _add_sink_configs(schema: Schema) -> None:
    """Describe the ``config`` of the sink types that ship with floe-sink (``rest_api``);
    another plugin's sink type keeps a free-form ``config``."""
    import copy

    schema["$defs"]["RestApiConfig"] = copy.deepcopy(_REST_API_CONFIG)
    destination = schema["$defs"]["Destination"]
    # a new list: the cross-field rules' one belongs to the model's registration
    destination["allOf"] = [
        *destination.get("allOf", []),
        {
            "if": {"required": ["sink_type"], "properties": {"sink_type": {"const": "rest_api"}}},
            "then": {"properties": {"config": {"$ref": "#/$defs/RestApiConfig"}}},
        },
    ]


def manifest_json_schema() -> Schema:
    """The JSON Schema of manifest.yaml's fields (``scope`` ... ``state``, ``engine``).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    from floe_sink.config.manifest import PlatformManifest

    return _document(PlatformManifest, "manifest.yaml (the governance fields floe-sink owns)")
