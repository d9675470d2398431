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
        Key -> wrapped value. A trailing newline (as left by ``echo`` or an editor) is dropped.

    Raises:
        SecretResolutionError: ``ref`` is not a Secret name, the Secret or a required key is
            missing, it has no keys, or a value is not UTF-8 text.
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
    if not root.is_dir():
        raise SecretResolutionError(
            f"Cannot resolve secret {ref!r}: the {where} does not exist. Mount the Kubernetes "
            f"Secret there, or point --secrets-dir / ${SECRETS_DIR_ENV} at the folder that "
            f"holds {ref}/<key> files.",
            ref=ref,
            secrets_dir=str(root),
        )
    if not folder.is_dir():
        raise SecretResolutionError(
            f"Secret {ref!r} not found in the {where} (expected a folder {ref}/ with one file "
            "per key). Create the Secret, or fix connection_secret_ref.",
            ref=ref,
            secrets_dir=str(root),
        )
    values: dict[str, Secret] = {}
    for entry in sorted(folder.iterdir()):
        # "..data" and "..<timestamp>" are how Kubernetes swaps a Secret atomically.
        if entry.name.startswith("..") or not entry.is_file():
            continue
        try:
            text = entry.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise SecretResolutionError(
                f"Key {entry.name!r} of secret {ref!r} in the {where} is not UTF-8 text",
                ref=ref,
                secrets_dir=str(root),
                key=entry.name,
            ) from None
        except OSError as exc:
            raise SecretResolutionError(
                f"Cannot read key {entry.name!r} of secret {ref!r} in the {where}: "
                f"{exc.strerror or type(exc).__name__}",
                ref=ref,
                secrets_dir=str(root),
                key=entry.name,
            ) from None
        values[entry.name] = Secret(text.removesuffix("\n").removesuffix("\r"))
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
