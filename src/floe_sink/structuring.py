"""The one structuring layer: plain data (YAML, JSON, dicts) to attrs models, every problem
reported with its path.

:data:`converter` is floe-sink's one cattrs converter, for configuration files, sink options
and the records of :mod:`floe_sink.models` alike. It refuses unknown keys and is strict about
scalars: YAML's ``batch_size: "10"``, ``name: 123`` or ``primary_key: id`` are reported
instead of being coerced (``"id"`` would otherwise become the list ``["i", "d"]``).

Models register with :func:`register_checked_class`: their hook structures each field on its
own and runs the field's attrs validator on it, so that *all* problems of an object are
collected (attrs stops at the first failing validator), then runs the class's cross-field
rules. :func:`collect_problems` is the one error formatter: it flattens the resulting exception
tree into :class:`Problem` records with a path such as ``("destinations", 1, "batch_size")``;
:func:`structure` raises them as one :class:`~floe_sink.errors.ProblemsError`.

Validators, rules and value types may declare the JSON Schema they enforce (:func:`json_schema`),
and so may a field whose type cannot say it (:func:`field_json_schema`), from which
:mod:`floe_sink.config.schema` generates the schemas of the files.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.cols import is_mapping, is_sequence, list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import mapping_structure_factory

from floe_sink.errors import ProblemsError
from floe_sink.secrets import Secret

if TYPE_CHECKING:
    from floe_sink.models import SinkConfig

__all__ = [
    "CheckedClass",
    "ConfigValueError",
    "ConfigValueErrors",
    "Problem",
    "checked_classes",
    "collect_problems",
    "converter",
    "describe_value",
    "field_json_schema",
    "field_schema_of",
    "format_path",
    "json_schema",
    "near_miss",
    "problem_lines",
    "register_checked_class",
    "register_enum",
    "schema_of",
    "structure",
    "structure_options",
]

T = TypeVar("T")
PathPart = str | int
Path = tuple[PathPart, ...]


class ConfigValueError(ValueError):
    """A configuration value breaks a rule.

    ``str()`` names the field (useful when a class is built in code); the loaders show
    :attr:`reason` after the path of the value instead.

    Args:
        reason: What is wrong and how to fix it, e.g. ``must be >= 1 (got 0)``.
        field: The field name, prefixed to ``str()``.
        at: A path below the object being structured (a nested key, a list index).
    """

    def __init__(self, reason: str, *, field: str | None = None, at: Path = ()) -> None:
        self.reason = reason
        self.at = at
        where = format_path(((field,) if field else ()) + at)
        super().__init__(f"{where}: {reason}" if where else reason)


class ConfigValueErrors(ConfigValueError):
    """Several problems of one value, each with its own path below it (a whole block).

    Args:
        errors: The problems, in the order to report them.
    """

    def __init__(self, errors: Iterable[ConfigValueError]) -> None:
        self.errors = list(errors)
        ValueError.__init__(self, "; ".join(str(error) for error in self.errors))
        self.reason = "; ".join(error.reason for error in self.errors)
        self.at = ()


@attrs.frozen
class Problem:
    """One problem found in a configuration file.

    Attributes:
        path: Where the offending value is, from the document root.
        reason: What is wrong.
        line: The line to show, when the path alone would point elsewhere (a duplicate key).
    """

    path: Path
    reason: str
    line: int | None = None


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_path(path: Iterable[PathPart]) -> str:
    """Render a path as ``destinations[1].config.headers['X-Key']``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def describe_value(value: Any, *, limit: int = 40) -> str:
    """A short, safe rendering of a value for an error message (long strings are cut)."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "...")
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return _type_name(value)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


# --- what a rule says in JSON Schema -----------------------------------------------------------

Schema = dict[str, Any]
_SCHEMA_ATTR = "__json_schema__"
F = TypeVar("F", bound=Callable[..., Any])


def json_schema(schema: Schema | Callable[[], Schema]) -> Callable[[F], F]:
    """Mark a validator, a rule or a value type with the JSON Schema keywords it enforces.

    The schema generator (:mod:`floe_sink.config.schema`) merges them into the field's (a
    validator) or the class's (a cross-field rule) schema, or takes them as the whole schema
    of a field of that type (a class with its own structure hook, such as a list of HTTP
    statuses), so that each rule and its JSON Schema counterpart are written side by side.
    What JSON Schema cannot say (a row filter that parses, names unique across list items)
    stays the loaders' alone.

    Args:
        schema: The keywords, or a function returning them (for a schema built from another
            model, computed when the schema is generated).
    """

    def mark(function: F) -> F:
        setattr(function, _SCHEMA_ATTR, schema)
        return function

    return mark


def schema_of(function: Any) -> Schema:
    """The JSON Schema keywords ``function`` (or a class) declares (``{}`` when none)."""
    declared = getattr(function, _SCHEMA_ATTR, None)
    if callable(declared):
        declared = declared()
    return dict(declared or {})


def field_json_schema(schema: Schema | Callable[[], Schema] | None) -> dict[str, Any]:
    """attrs field metadata: the JSON Schema keywords of a field its type cannot say.

    ``attrs.field(metadata=field_json_schema({...}))``: the generator merges them into the
    field's schema, as it does a validator's (a ``dict[str, Any]`` field holding a request
    template, a string naming one of a few presets).

    Args:
        schema: The keywords, or a function returning them (computed when the schema is
            generated); ``None``: the field is not a key of the file (a value the code fills
            in, such as a secret), left out of the schema.
    """
    return {_SCHEMA_ATTR: schema}


def field_schema_of(field: attrs.Attribute[Any]) -> Schema | None:
    """The keywords :func:`field_json_schema` gave ``field`` (``{}`` when none, ``None`` when
    the field is left out of the schema)."""
    if _SCHEMA_ATTR not in field.metadata:
        return {}
    declared = field.metadata[_SCHEMA_ATTR]
    if declared is None:
        return None
    return dict(declared() if callable(declared) else declared)


# --- strict scalars and collections -------------------------------------------------------

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
"""The one converter of floe-sink (see the module docstring)."""


def _structure_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise ConfigValueError(
            f"expected a string, got {_type_name(value)}"
            + (" (quote it in YAML to keep it as text)" if _is_scalar(value) else "")
        )
    return value


def _structure_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigValueError(f"expected an integer, got {_type_name(value)}")
    return value


def _structure_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigValueError(f"expected a number, got {_type_name(value)}")
    return float(value)


def _structure_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise ConfigValueError(f"expected true or false, got {_type_name(value)}")
    return value


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float)


def _structure_enum(value: Any, type_: type[enum.Enum]) -> enum.Enum:
    allowed = [str(member.value) for member in type_]
    if isinstance(value, str):
        try:
            return type_(value)
        except ValueError:
            pass
    raise ConfigValueError(f"must be one of {', '.join(allowed)} (got {describe_value(value)})")


def _strict_list_factory(type_: Any) -> Callable[[Any, Any], list[Any]]:
    inner = list_structure_factory(type_, converter)

    def structure_list(value: Any, _type: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ConfigValueError(f"expected a list, got {_type_name(value)}")
        result: list[Any] = inner(value, _type)
        return result

    return structure_list


def _strict_mapping_factory(type_: Any) -> Callable[[Any, Any], dict[Any, Any]]:
    inner = mapping_structure_factory(type_, converter)

    def structure_mapping(value: Any, _type: Any) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"expected a mapping, got {_type_name(value)}")
        mapping: dict[Any, Any] = inner(value, _type)
        return mapping

    return structure_mapping


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(bool, _structure_bool)


def register_enum(cls: type[enum.Enum]) -> None:
    """(Un)structure the enum ``cls`` by value, with a message listing the allowed values.

    Each enum is registered by name: the ``str`` hook above would otherwise win for
    ``StrEnum`` classes (hooks dispatch on the class hierarchy, and ``str`` comes first).
    """
    converter.register_structure_hook(cls, _structure_enum)
    # Plain values out, so that unstructured configs dump to YAML and JSON as they came in.
    converter.register_unstructure_hook(cls, lambda member: member.value)


converter.register_structure_hook_factory(
    lambda t: is_sequence(t) and not is_mapping(t), _strict_list_factory
)
converter.register_structure_hook_factory(is_mapping, _strict_mapping_factory)


# --- classes: every field checked, every problem kept --------------------------------------

PreCheck = Callable[[Mapping[str, Any]], tuple[list[ConfigValueError], set[str]]]
"""Looks at the raw mapping; returns problems and the keys it has already reported."""

CrossCheck = Callable[[Mapping[str, Any]], list[ConfigValueError]]
"""Looks at the structured field values (all valid on their own); returns problems."""


def _noted(exc: Exception, name: str, type_: Any) -> Exception:
    exc.__notes__ = [
        *getattr(exc, "__notes__", []),
        AttributeValidationNote(f"Structuring attribute {name}", name, type_),
    ]
    return exc


@attrs.frozen(kw_only=True)
class CheckedClass:
    """How a model registered with :func:`register_checked_class` is structured."""

    cls: type[Any]
    extra_keys: Literal["forbid", "ignore", "collect"]
    pre_check: PreCheck | None
    cross_check: CrossCheck | None
    collect_extra_into: str | None
    null_is_default: frozenset[str]


_CHECKED: dict[type[Any], CheckedClass] = {}


def checked_classes() -> dict[type[Any], CheckedClass]:
    """Every model registered with :func:`register_checked_class`, and how."""
    return dict(_CHECKED)


def register_checked_class(
    cls: type[T],
    *,
    extra_keys: Literal["forbid", "ignore", "collect"] = "forbid",
    pre_check: PreCheck | None = None,
    cross_check: CrossCheck | None = None,
    collect_extra_into: str | None = None,
    null_is_default: frozenset[str] = frozenset(),
) -> None:
    """Register a structure hook for the attrs class ``cls`` on :data:`converter`.

    Args:
        cls: A frozen, keyword-only attrs class.
        extra_keys: ``"forbid"`` (unknown keys are problems, with a "did you mean" hint),
            ``"ignore"`` (sections owned by someone else), or ``"collect"`` (kept in the field
            named by ``collect_extra_into``).
        pre_check: Rules on the raw mapping (e.g. credential-looking keys).
        cross_check: Rules between fields, run when every field is valid on its own.
        collect_extra_into: The ``dict`` field that receives unknown keys (``"collect"``).
        null_is_default: Fields for which a YAML ``null`` (``destinations:`` with nothing
            after it) means "use the default".
    """
    attrs.resolve_types(cls)  # type: ignore[type-var]  # T is an attrs class by contract
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    names = [field.name for field in fields if field.name != collect_extra_into]
    _CHECKED[cls] = CheckedClass(
        cls=cls,
        extra_keys=extra_keys,
        pre_check=pre_check,
        cross_check=cross_check,
        collect_extra_into=collect_extra_into,
        null_is_default=null_is_default,
    )

    def structure(data: Any, _type: Any) -> T:
        if not isinstance(data, Mapping):
            raise ConfigValueError(f"expected a mapping, got {_type_name(data)}")
        errors: list[Exception] = []
        reported: set[str] = set()
        if pre_check is not None:
            found, reported = pre_check(data)
            errors.extend(found)
        bad_keys = [key for key in data if not isinstance(key, str)]
        for key in bad_keys:
            errors.append(ConfigValueError(f"keys must be strings, got {describe_value(key)}"))
        extra = [key for key in data if isinstance(key, str) and key not in names]
        kwargs: dict[str, Any] = {}
        if extra_keys == "forbid":
            for key in extra:
                if key not in reported:
                    errors.append(ConfigValueError(_unknown_key(key, names), at=(key,)))
        elif extra_keys == "collect" and collect_extra_into is not None:
            kwargs[collect_extra_into] = {key: data[key] for key in extra if key not in reported}
        for field in fields:
            name = field.name
            if name == collect_extra_into:
                continue
            if name not in data or (data[name] is None and name in null_is_default):
                if field.default is attrs.NOTHING:
                    errors.append(_noted(ConfigValueError("required key missing"), name, None))
                continue
            try:
                value = converter.structure(data[name], field.type)
                if field.validator is not None:
                    field.validator(None, field, value)  # our validators never read the instance
            except Exception as exc:  # every failure is a problem to report, not a crash
                errors.append(_noted(exc, name, field.type))
                continue
            kwargs[name] = value
        if not errors and cross_check is not None:
            errors.extend(cross_check(kwargs))
        if errors:
            raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
        return cls(**kwargs)

    converter.register_structure_hook(cls, structure)


def _unknown_key(key: str, allowed: list[str]) -> str:
    hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key{suggestion} (allowed: {', '.join(allowed)})"


def near_miss(key: str, owned: Iterable[str]) -> str | None:
    """The owned key that ``key`` probably misspells (``destination`` -> ``destinations``)."""
    if not isinstance(key, str):
        return None
    owned = list(owned)
    squashed = {o.replace("_", "").lower(): o for o in owned}
    if key not in owned and key.replace("_", "").replace("-", "").lower() in squashed:
        return squashed[key.replace("_", "").replace("-", "").lower()]
    hint = difflib.get_close_matches(key, owned, n=1, cutoff=0.8)
    return hint[0] if hint and hint[0] != key else None


# --- exception tree -> problems --------------------------------------------------------------


def collect_problems(exc: BaseException, path: Path = ()) -> Iterator[Problem]:
    """Flatten a structuring failure into :class:`Problem` records, in document order.

    Args:
        exc: What :data:`converter` raised.
        path: The path of the structured object in the document.

    Yields:
        One problem per leaf exception.
    """
    if isinstance(exc, IterableValidationError | ClassValidationError):
        noted, others = exc.group_exceptions()
        for sub, note in noted:  # an item's index, or an attribute's name
            step = note.index if isinstance(note, IterableValidationNote) else note.name
            yield from collect_problems(sub, (*path, step))
        for sub in others:
            yield from collect_problems(sub, path)
    elif isinstance(exc, ConfigValueErrors):
        for error in exc.errors:
            yield Problem((*path, *error.at), error.reason)
    elif isinstance(exc, ConfigValueError):
        yield Problem((*path, *exc.at), exc.reason)
    elif isinstance(exc, ForbiddenExtraKeysError):
        yield Problem(path, f"unknown key(s): {', '.join(sorted(map(str, exc.extra_fields)))}")
    elif isinstance(exc, KeyError):
        yield Problem(path, "required key missing")
    elif isinstance(exc, RecursionError):
        yield Problem(path, "nested too deeply")
    else:  # a bug or an unforeseen input: say what, without dumping the value
        yield Problem(path, f"invalid value ({type(exc).__name__}: {str(exc)[:200]})")


def problem_lines(problems: Iterable[Problem]) -> list[str]:
    """Problems as lines ``path: reason`` (the reason alone for the root)."""
    lines = []
    for problem in problems:
        where = format_path(problem.path)
        lines.append(f"{where}: {problem.reason}" if where else problem.reason)
    return lines


def structure(data: Any, cls: type[T], *, what: str | None = None) -> T:
    """Structure ``data`` into ``cls`` with :data:`converter`, or report every problem.

    Args:
        data: Plain data (dicts, lists, scalars), e.g. parsed YAML or JSON.
        cls: The attrs class to build.
        what: The name of the input in the message (defaults to the class name).

    Returns:
        The structured instance.

    Raises:
        ProblemsError: Listing every problem, each with its path
            (``batch_size: must be >= 1 (got 0)``).
    """
    header = f"Invalid {what or cls.__name__}"
    try:
        return converter.structure(data, cls)
    except RecursionError as exc:
        raise ProblemsError(["nested too deeply"], header=header) from exc
    except Exception as exc:  # every failure becomes problems with paths; nothing raw escapes
        raise ProblemsError(problem_lines(collect_problems(exc)), header=header) from exc


def structure_options(config: SinkConfig, cls: type[T]) -> T:
    """Structure a sink's ``connection_config`` into its options model ``cls``.

    For plugins: ``cls`` is an attrs class registered with :func:`register_checked_class`
    (one field per key the sink reads). A key whose value is a
    :class:`~floe_sink.secrets.Secret` and that ``cls`` does not name is left out: it came
    from the destination's mounted Secret, which often holds more keys than one sink uses.

    Raises:
        ProblemsError: Every unknown key, wrong type and value outside its choices, each as
            ``invalid 'key': reason`` (a :class:`~floe_sink.errors.SinkConfigurationError`).
    """
    known = attrs.fields_dict(cls)  # type: ignore[arg-type]  # an attrs class by contract
    data = {
        key: value
        for key, value in config.connection_config.items()
        if key in known or not isinstance(value, Secret)
    }
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # every failure becomes problems with paths; nothing raw escapes
        problems = [
            f"invalid {format_path(problem.path)!r}: {problem.reason}"
            if problem.path
            else problem.reason
            for problem in collect_problems(exc)
        ]
        raise ProblemsError(
            problems, sink_type=config.sink_type, destination=config.destination
        ) from exc
