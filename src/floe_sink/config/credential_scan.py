"""Credential-looking keys and values: refused in floe.yaml and manifest.yaml.

Credentials live only in Kubernetes Secrets (``connection_secret_ref``); a password typed into a
config file ends up in Git, in CI logs and in every copy of the repository. This module finds
them, anywhere in a nested mapping, so that the loaders can refuse them with a path.

What counts as credential-looking is decided by :mod:`floe_sink.secrets`, shared with the log
redaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from floe_sink.secrets import CREDENTIAL_WORDS, URL_WITH_PASSWORD, is_credential_key
from floe_sink.structuring import ConfigValueError

__all__ = ["CREDENTIAL_WORDS", "credential_problems", "find_credentials", "is_credential_key"]


def credential_problems(
    data: Mapping[str, Any], hint: str, *, skip: frozenset[str] = frozenset()
) -> tuple[list[ConfigValueError], set[str]]:
    """Every credential written in ``data``, as problems (a checked class's ``pre_check``).

    Args:
        data: The raw mapping of one section.
        hint: Where credentials belong instead, appended to each problem.
        skip: Keys whose values are not settings (column names), left alone.

    Returns:
        The problems, and the top-level keys they report (not to be reported again).
    """
    problems: list[ConfigValueError] = []
    reported: set[str] = set()
    for path, finding in find_credentials(data, skip=skip):
        problems.append(ConfigValueError(f"{finding} refused: {hint}", at=path))
        if len(path) == 1 and isinstance(path[0], str):
            reported.add(path[0])
    return problems, reported


def find_credentials(
    data: Any, *, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Find credential-looking keys and password-carrying URLs anywhere in ``data``.

    Args:
        data: A parsed YAML value (mappings, lists, scalars). Shared (aliased) parts are
            visited once, and self-references do not loop.
        skip: Top-level keys not to look into (e.g. ``field_mapping``, whose keys are column
            names, not settings).

    Yields:
        ``(path, reason)`` for each finding; the reason never contains the value.
    """
    seen: set[int] = set()
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, Mapping | list):
            if id(value) in seen:
                continue
            seen.add(id(value))
        if isinstance(value, Mapping):
            children: list[tuple[tuple[str | int, ...], Any]] = []
            for key, item in value.items():
                if not path and key in skip:
                    continue
                if isinstance(key, str) and is_credential_key(key):
                    yield (*path, key), "credential-looking key"
                    continue
                children.append(((*path, key), item))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))
        elif isinstance(value, str) and URL_WITH_PASSWORD.match(value):
            yield path, "URL with an embedded password"
