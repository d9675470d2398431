"""The ``rest_api`` configuration through floe-sink's one structuring layer.

The option blocks (``results``, ``auth``, ``rate_limit_headers``, ``delete``, the keys
themselves) are attrs models registered on :data:`floe_sink.structuring.converter`;
:func:`structure_at` structures one of them and reports every problem as
``config.results.mode: must be one of ...`` (the path of the value in the destination, as
floe.yaml's loader names it), collected by :func:`floe_sink.structuring.collect_problems`.
The small value types and validators the blocks share live here too. Nothing here imports
pyarrow or httpx.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from floe_sink.errors import ProblemsError
from floe_sink.secrets import Secret, safe_url
from floe_sink.structuring import (
    ConfigValueError,
    collect_problems,
    converter,
    describe_value,
    format_path,
    json_schema,
)

__all__ = [
    "HttpStatuses",
    "check_http_url",
    "check_non_empty",
    "check_positive",
    "check_rate",
    "problems_at",
    "structure_at",
]

T = TypeVar("T")


def problems_at(exc: BaseException, where: str) -> list[str]:
    """The problems of a structuring failure, each as ``where.path: reason``."""
    lines = []
    for problem in collect_problems(exc):
        path = format_path(problem.path)
        place = f"{where}{'' if not path or path.startswith('[') else '.'}{path}"
        lines.append(f"{place}: {problem.reason}")
    return lines


def structure_at(data: Any, cls: type[T], *, where: str, secrets_may_be_extra: bool = False) -> T:
    """Structure ``data`` into the registered model ``cls``, or report every problem.

    Args:
        data: The block as loaded from YAML.
        cls: The attrs model.
        where: The block's place (``config``, ``config.results``), the start of every path.
        secrets_may_be_extra: Leave out the keys ``cls`` does not name whose value is a
            :class:`~floe_sink.secrets.Secret` (the destination's Secret holds more keys than
            one sink reads).

    Raises:
        ProblemsError: Every problem, each ``where.path: reason``.
    """
    if secrets_may_be_extra and isinstance(data, Mapping):
        known = attrs.fields_dict(cls)  # type: ignore[arg-type]  # an attrs class by contract
        data = {k: v for k, v in data.items() if k in known or not isinstance(v, Secret)}
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # every failure becomes problems with paths; nothing raw escapes
        raise ProblemsError(problems_at(exc, where)) from None


# -- shared values and validators --------------------------------------------------------------


@json_schema({"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 599}})
class HttpStatuses(frozenset[int]):
    """A set of HTTP statuses, written as a list in the configuration."""


def _structure_statuses(value: Any, _type: type) -> HttpStatuses:
    if not isinstance(value, list) or not all(
        isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599
        for status in value
    ):
        raise ConfigValueError("must be a list of HTTP statuses (100-599)")
    return HttpStatuses(value)


converter.register_structure_hook(HttpStatuses, _structure_statuses)
converter.register_unstructure_hook(HttpStatuses, sorted)


@json_schema({"pattern": "^https?://"})
def check_http_url(_instance: Any, _attribute: Any, value: Any) -> None:
    """An ``http://`` or ``https://`` URL with a host (``None`` passes)."""
    if value is None:
        return
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigValueError(f"must be an http:// or https:// URL (got {safe_url(value)!r})")


@json_schema({"minimum": 1})
def check_positive(_instance: Any, _attribute: Any, value: Any) -> None:
    """An integer >= 1 (``None`` passes)."""
    if value is not None and value < 1:
        raise ConfigValueError(f"must be an integer >= 1 (got {describe_value(value)})")


@json_schema({"minLength": 1})
def check_non_empty(_instance: Any, _attribute: Any, value: Any) -> None:
    """A non-empty string (``None`` passes)."""
    if value is not None and not value:
        raise ConfigValueError("must be a non-empty string")


@json_schema({"exclusiveMinimum": 0})
def check_rate(_instance: Any, _attribute: Any, value: Any) -> None:
    """A number > 0 (``None`` passes)."""
    if value is not None and not value > 0:
        raise ConfigValueError(f"must be a number > 0 (got {describe_value(value)})")
