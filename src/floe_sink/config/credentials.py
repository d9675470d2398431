"""Credential-looking keys and values: refused in floe.yaml and manifest.yaml.

Credentials live only in Kubernetes Secrets (``connection_secret_ref``); a password typed into a
config file ends up in Git, in CI logs and in every copy of the repository. This module finds
them, anywhere in a nested mapping, so that the loaders can refuse them with a path.

A key is credential-looking when its words (split at ``_``, ``-``, ``.``, spaces and camelCase)
contain one of :data:`CREDENTIAL_WORDS`, unless its last word says it is *about* a credential
rather than one (``connection_secret_ref``, ``token_url``, ``auth_type``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["CREDENTIAL_WORDS", "find_credentials", "is_credential_key"]

CREDENTIAL_WORDS: tuple[tuple[str, ...], ...] = (
    ("password",),
    ("passwd",),
    ("pwd",),
    ("secret",),
    ("token",),
    ("api", "key"),
    ("apikey",),
    ("access", "key"),
    ("accesskey",),
    ("private", "key"),
    ("privatekey",),
    ("connection", "string"),
    ("connectionstring",),
    ("credential",),
    ("authorization",),
)
"""Word sequences that make a key credential-looking (plurals are folded to singular)."""

# A last word that makes the key a *reference to* or a *description of* a credential: the
# name of a Kubernetes Secret, the URL of a token endpoint, the kind of auth scheme.
_NOT_A_CREDENTIAL = frozenset({"ref", "url", "uri", "endpoint", "type"})

_PLURALS = {
    "passwords": "password",
    "secrets": "secret",
    "tokens": "token",
    "keys": "key",
    "credentials": "credential",
    "apikeys": "apikey",
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")

# scheme://user:password@host -- a URL that carries its own password.
_URL_WITH_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")


def _words(key: str) -> list[str]:
    words: list[str] = []
    for chunk in _SEPARATORS.split(key):
        words.extend(part.lower() for part in _CAMEL.split(chunk) if part)
    return [_PLURALS.get(word, word) for word in words]


def is_credential_key(key: str) -> bool:
    """True when ``key`` names a credential (``password``, ``X-Api-Key``, ``s3.secret-key``).

    Args:
        key: A mapping key from a configuration file.

    Returns:
        Whether the key looks like it holds a credential.
    """
    words = _words(key)
    if not words or words[-1] in _NOT_A_CREDENTIAL:
        return False
    for sequence in CREDENTIAL_WORDS:
        size = len(sequence)
        for start in range(len(words) - size + 1):
            if tuple(words[start : start + size]) == sequence:
                return True
    return False


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
        elif isinstance(value, str) and _URL_WITH_PASSWORD.match(value):
            yield path, "URL with an embedded password"
