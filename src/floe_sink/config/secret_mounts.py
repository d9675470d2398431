"""Resolve ``connection_secret_ref`` from a mounted Kubernetes Secret.

A Secret mounted as a volume is a folder with one file per key::

    /var/run/secrets/floe/            <- the secrets dir
      crm-api/                        <- connection_secret_ref: crm-api
        token                         <- key "token", the file's content is the value
        ..data -> ..2024_05_01_...    <- Kubernetes' own bookkeeping, ignored

The secrets dir is the ``secrets_dir`` argument (the command's ``--secrets-dir``), else
``$FLOE_SECRETS_DIR``, else ``/var/run/secrets/floe``. Values come back wrapped in
:class:`~floe_sink.secrets.Secret`; errors name the secret, the key and the directory, never a
value.
"""

from __future__ import annotations

import os
from pathlib import Path

from floe_sink.config.errors import SecretResolutionError
from floe_sink.config.validators import DNS_SUBDOMAIN
from floe_sink.logs import get_logger
from floe_sink.secrets import Secret

__all__ = ["DEFAULT_SECRETS_DIR", "SECRETS_DIR_ENV", "find_secrets_dir", "resolve_secret"]

DEFAULT_SECRETS_DIR = "/var/run/secrets/floe"
SECRETS_DIR_ENV = "FLOE_SECRETS_DIR"

log = get_logger(__name__)


def find_secrets_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The secrets directory: ``explicit``, else ``$FLOE_SECRETS_DIR``, else the default."""
    if explicit is not None and str(explicit):
        return Path(explicit)
    return Path(os.environ.get(SECRETS_DIR_ENV) or DEFAULT_SECRETS_DIR)


def resolve_secret(
    ref: str,
    secrets_dir: str | os.PathLike[str] | None = None,
    *,
    required_keys: tuple[str, ...] = (),
) -> dict[str, Secret]:
    """Read every key of the Secret ``ref``.

    Args:
        ref: The Secret's name (a destination's ``connection_secret_ref``).
        secrets_dir: Where Secrets are mounted; see the module docstring for the fallbacks.
        required_keys: Keys that must be present (e.g. ``("url",)`` for ``sql_database``).

    Returns:
        Key -> wrapped value. One trailing newline (``\\n`` or ``\\r\\n``, as left by ``echo``
        or an editor) is dropped.

    Raises:
        SecretResolutionError: ``ref`` is not a Secret name, the Secret or a required key is
            missing, it has no keys, a value is empty, has a line break inside or is not
            UTF-8 text, or a folder or file cannot be read (the path is named).
    """
    root = find_secrets_dir(secrets_dir)
    where = f"secrets dir {str(root)!r}"
    if not isinstance(ref, str) or len(ref) > 253 or not DNS_SUBDOMAIN.fullmatch(ref):
        # Also what keeps "../../etc" from leaving the secrets dir.
        raise SecretResolutionError(
            "connection_secret_ref is not a Kubernetes Secret name (lowercase letters, digits, "
            "'-' and '.'); the value is not shown, in case it is a credential",
            ref="<invalid>",
            secrets_dir=str(root),
        )
    folder = root / ref

    def unreadable(path: Path, exc: OSError, key: str | None = None) -> SecretResolutionError:
        what = f"key {key!r} of secret {ref!r}" if key else f"secret {ref!r}"
        failed = exc.filename if isinstance(exc.filename, str) and exc.filename else str(path)
        return SecretResolutionError(
            f"Cannot read {failed!r} ({what} in the {where}): "
            f"{exc.strerror or type(exc).__name__}. Make it readable by the user floe-sink runs "
            "as (in Kubernetes: the Secret volume's defaultMode and the pod's fsGroup).",
            ref=ref,
            secrets_dir=str(root),
            key=key,
        )

    try:
        root_is_dir, folder_is_dir = root.is_dir(), folder.is_dir()
    except OSError as exc:  # is_dir() is False for a missing path, but lets EACCES through
        raise unreadable(folder, exc) from None
    if not root_is_dir:
        state = "is not a directory" if root.exists() else "does not exist"
        raise SecretResolutionError(
            f"Cannot resolve secret {ref!r}: the {where} {state}. Mount the Kubernetes "
            f"Secret there, or point --secrets-dir / ${SECRETS_DIR_ENV} at the folder that "
            f"holds {ref}/<key> files.",
            ref=ref,
            secrets_dir=str(root),
        )
    if not folder_is_dir:
        raise SecretResolutionError(
            f"Secret {ref!r} not found in the {where} (expected a folder {ref}/ with one file "
            "per key). Create the Secret, or fix connection_secret_ref.",
            ref=ref,
            secrets_dir=str(root),
        )
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise unreadable(folder, exc) from None
    values: dict[str, Secret] = {}
    for entry in entries:
        # "..data" and "..<timestamp>" are how Kubernetes swaps a Secret atomically.
        if entry.name.startswith(".."):
            continue
        try:
            if not entry.is_file():
                continue
            text = entry.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise SecretResolutionError(
                f"Key {entry.name!r} of secret {ref!r} in the {where} is not UTF-8 text",
                ref=ref,
                secrets_dir=str(root),
                key=entry.name,
            ) from None
        except OSError as exc:
            raise unreadable(entry, exc, entry.name) from None
        values[entry.name] = Secret(_one_line(text, ref=ref, key=entry.name, root=root))
    if not values:
        raise SecretResolutionError(
            f"Secret {ref!r} in the {where} has no keys (its folder holds no files)",
            ref=ref,
            secrets_dir=str(root),
        )
    missing = [key for key in required_keys if key not in values]
    if missing:
        raise SecretResolutionError(
            f"Secret {ref!r} in the {where} has no key {missing[0]!r} "
            f"(it has: {', '.join(sorted(values))}). Add the key to the Secret.",
            ref=ref,
            secrets_dir=str(root),
            key=missing[0],
        )
    log.debug("secret_resolved", secret_ref=ref, keys=sorted(values))
    return values


def _one_line(text: str, *, ref: str, key: str, root: Path) -> str:
    """``text`` without one trailing newline; an empty or multi-line value is refused."""
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    problem = None
    if not text:
        problem = "is empty"
    elif "\n" in text or "\r" in text:
        # a token or URL with a line break inside becomes a broken (or injected) header or
        # a URL the driver misreads; it is nearly always a file written twice or pasted badly
        problem = "has a line break inside the value (only one trailing newline is dropped)"
    if problem is None:
        return text
    raise SecretResolutionError(
        f"Key {key!r} of secret {ref!r} in the secrets dir {str(root)!r} {problem}. Write the "
        f'value on one line, e.g. printf %s "$VALUE" > {str(root / ref / key)!r}',
        ref=ref,
        secrets_dir=str(root),
        key=key,
    )
