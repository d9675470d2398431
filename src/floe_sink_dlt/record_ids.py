"""Pick the record IDs out of an API response with a small JSON-path subset.

The grammar (``record_ids_path`` in a rest_api destination's config)::

    path    := ["$" "."] step ("." step)*
    step    := name ("[*]" | "[" index "]")*
    name    := one or more characters other than ".", "[", "]"

``name`` reads a key of an object, ``[*]`` every item of a list, ``[index]`` one item
(negative counts from the end). Examples: ``ids`` (``{"ids": ["a", "b"]}``), ``data[*].id``
(``{"data": [{"id": 1}, {"id": 2}]}``), ``$.results[*].record.id``. A path that ends on a list
yields its items. Values are returned as strings; missing keys and nulls are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import attrs

from floe_sink.structuring import json_schema

__all__ = ["RecordIdsPath"]

_STEP = re.compile(r"(?P<name>[^.\[\]]+)(?P<subscripts>(?:\[(?:\*|-?\d+)\])*)")
_SUBSCRIPT = re.compile(r"\[(\*|-?\d+)\]")

_WILDCARD = "*"


@json_schema({"type": "string", "minLength": 1})
@attrs.frozen
class RecordIdsPath:
    """A parsed ``record_ids_path``: call :meth:`find` on a decoded JSON response."""

    text: str
    steps: tuple[str | int, ...]
    """Object keys (``str``), list indices (``int``) and ``"*"`` wildcards, in order."""

    @classmethod
    def parse(cls, text: str) -> RecordIdsPath:
        """Parse ``text``.

        Raises:
            ValueError: ``text`` is not in the grammar of the module docstring.
        """
        body = text[2:] if text.startswith("$.") else text
        steps: list[str | int] = []
        for part in body.split(".") if body else [""]:
            match = _STEP.fullmatch(part)
            if match is None:
                raise ValueError(
                    f"invalid record_ids_path {text!r} at {part!r}: expected name, "
                    "name[*] or name[index] steps joined by '.', e.g. 'data[*].id'"
                )
            steps.append(match["name"])
            for subscript in _SUBSCRIPT.findall(match["subscripts"]):
                steps.append(_WILDCARD if subscript == _WILDCARD else int(subscript))
        return cls(text, tuple(steps))

    def find(self, document: Any) -> list[str]:
        """The IDs ``document`` holds at this path, as strings."""
        found: list[str] = []
        for value in _walk(document, self.steps):
            items = value if isinstance(value, list) else [value]
            found.extend(_as_id(item) for item in items if item is not None)
        return found


def _walk(value: Any, steps: tuple[str | int, ...]) -> Iterator[Any]:
    if not steps:
        yield value
        return
    step, rest = steps[0], steps[1:]
    if step == _WILDCARD:
        if isinstance(value, list):
            for item in value:
                yield from _walk(item, rest)
    elif isinstance(step, int):
        if isinstance(value, list) and -len(value) <= step < len(value):
            yield from _walk(value[step], rest)
    elif isinstance(value, dict) and step in value:
        yield from _walk(value[step], rest)


def _as_id(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)
