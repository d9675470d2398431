"""JSON Schemas (draft 2020-12) of floe.yaml's destinations and manifest.yaml's fields,
generated from the attrs models.

Editors (VS Code's YAML extension, JetBrains IDEs) use them to complete and check the files as
they are typed. Nothing here repeats a model: a property's JSON type comes from the field's
annotation, its description from the ``Attributes:`` section of the class docstring, its
default from the field, its constraints from the JSON Schema its validator declares
(:func:`floe_sink.structuring.json_schema`: on a validator, or on a value type with its own
structure hook) or the field declares (:func:`floe_sink.structuring.field_json_schema`), and
the class's cross-field rules and unknown-key policy from its
:func:`~floe_sink.structuring.register_checked_class` registration. A destination's ``config``
is described the same way from the model its sink type's plugin declares (the hook
``get_config_model``, :class:`floe_sink.hookspecs.SinkConfigSpec`). The loaders
remain the authority for what JSON Schema cannot say (credential-looking keys, duplicate keys,
names unique across destinations, a row filter that parses).
"""

from __future__ import annotations

import enum
import re
import types
import typing
from typing import TYPE_CHECKING, Any

import attrs

from floe_sink.structuring import checked_classes, field_schema_of, schema_of

if TYPE_CHECKING:
    from floe_sink.manager import SinkPluginManager

__all__ = ["floe_yaml_json_schema", "manifest_json_schema", "model_schema"]

Schema = dict[str, Any]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ATTRIBUTE = re.compile(r"^(?P<indent>\s+)(?P<names>\w+(?:, \w+)*): (?P<text>.*)$")
_ROLE = re.compile(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`")
_COMPARISONS = {">=": "minimum", ">": "exclusiveMinimum", "<=": "maximum", "<": "exclusiveMaximum"}


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
    return _plain(" ".join((cls.__doc__ or "").strip().split("\n\n")[0].split()))


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
    return cls.__name__.lstrip("_").removesuffix("Config")


def _type_schema(annotation: Any, defs: dict[str, Schema]) -> Schema:
    """The JSON Schema of a field's annotation."""
    if annotation is Any:
        return {}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    declared = schema_of(annotation) if isinstance(annotation, type) else {}
    if declared:  # a value type with its own structure hook (a list of HTTP statuses)
        return declared
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
    """The field's default as YAML writes it: a scalar, or a list of scalars (a set, sorted);
    ``attrs.NOTHING`` for none, ``None``, a factory or an empty collection."""
    default = field.default
    if default is attrs.NOTHING or isinstance(default, attrs.Factory) or default is None:  # type: ignore[arg-type]
        return attrs.NOTHING
    if isinstance(default, enum.Enum):
        return default.value
    if isinstance(default, frozenset | set):
        default = sorted(default)
    if isinstance(default, tuple | list):
        items = [item.value if isinstance(item, enum.Enum) else item for item in default]
        scalars = all(type(item) in _SCALARS for item in items)
        return items if items and scalars else attrs.NOTHING
    return default


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
        declared = field_schema_of(field)
        if declared is None:
            continue  # not a key of the file (a secret the code fills in)
        schema = _merge(_type_schema(field.type, defs), _validator_schema(field.validator))
        schema = _merge(schema, declared)
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


def floe_yaml_json_schema(plugins: SinkPluginManager | None = None) -> Schema:
    """The JSON Schema of floe.yaml's ``destinations:`` (other sections are allowed).

    A destination's ``config`` is described by the model its sink type's plugin declares
    (hook ``get_config_model``: ``rest_api``'s keys, say); another sink type's ``config``
    stays free-form.

    Args:
        plugins: The plugins to ask (default: those of the ``floe_sink`` entry points).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    from floe_sink.config.destinations import FloeSpec
    from floe_sink.manager import get_plugin_manager

    schema = _document(FloeSpec, "floe.yaml (the destinations floe-sink owns)")
    models = (plugins or get_plugin_manager()).config_models()
    rules = []
    for sink_type, model in models.items():
        name = _config_def_name(sink_type)
        schema["$defs"][name] = _object_schema(model, schema["$defs"])
        schema["$defs"][name]["title"] = name
        rules.append(
            {
                "if": {
                    "required": ["sink_type"],
                    "properties": {"sink_type": {"const": sink_type}},
                },
                "then": {"properties": {"config": {"$ref": f"#/$defs/{name}"}}},
            }
        )
    if rules:
        destination = schema["$defs"]["Destination"]
        # a new list: the cross-field rules' one belongs to the model's registration
        destination["allOf"] = [*destination.get("allOf", []), *rules]
    return schema


def _config_def_name(sink_type: str) -> str:
    """``rest_api`` -> ``RestApiConfig``."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", sink_type)) + "Config"


def manifest_json_schema() -> Schema:
    """The JSON Schema of manifest.yaml's fields (``scope`` ... ``state``, ``engine``).

    Returns:
        A fresh, JSON-serialisable dict (callers may change it).
    """
    from floe_sink.config.manifest import PlatformManifest

    return _document(PlatformManifest, "manifest.yaml (the governance fields floe-sink owns)")
