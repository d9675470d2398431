"""Secrets: values wrapped so that ``repr``, ``str``, logs and tracebacks never show them, and
the one place that decides what *looks like* a credential (a key name, a URL with a password).

The config loaders refuse credential-looking keys, the log processor hides their values, and
the command and the sinks scrub known secret values and URL passwords from every message: all
of them ask this module, so the rules cannot drift apart.

A key is credential-looking when its words (split at ``_``, ``-``, ``.``, spaces and camelCase)
contain one of :data:`CREDENTIAL_WORDS`, unless its last word says it is *about* a credential
rather than one (``connection_secret_ref``, ``token_url``, ``auth_type``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "CREDENTIAL_WORDS",
    "REDACTED",
    "URL_WITH_PASSWORD",
    "Secret",
    "is_credential_key",
    "redact_url",
    "reveal",
    "safe_url",
    "scrub_text",
    "secret_keys",
]

REDACTED = "***"


class Secret:
    """A secret string. ``str()`` and ``repr()`` give ``'***'``; :meth:`reveal` gives the value.

    Two secrets compare equal when their values are; a secret is never equal to a plain string
    (so it cannot be matched by accident in a log filter or a dict lookup).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value. Call it only where the value is handed to the destination."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not picklable")  # keeps them out of caches and state


def reveal(value: Any) -> Any:
    """The plain value of a :class:`Secret`; anything else is returned as is."""
    return value.reveal() if isinstance(value, Secret) else value


def secret_keys(config: Mapping[str, Any]) -> list[str]:
    """The keys of ``config`` whose values are :class:`Secret`: those a resolved Secret gave.

    A sink that misses the key it needs names these (never their values) in its error, so that
    a misspelt key in the Secret (``tokn``) is seen at once.
    """
    return sorted(key for key, value in config.items() if isinstance(value, Secret))


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
URL_WITH_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")


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


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    if password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (any of them may hold a credential): what
    a message or a log may show of an endpoint."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<invalid url>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty string of ``secrets`` replaced.

    The longest secrets are replaced first, so that one containing another goes whole.
    """
    for secret in sorted({secret for secret in secrets if secret}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
