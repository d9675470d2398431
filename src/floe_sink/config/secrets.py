"""Renamed :mod:`floe_sink.config.secret_mounts` (reading mounted Secrets); kept importable."""

from floe_sink.config.secret_mounts import (
    DEFAULT_SECRETS_DIR,
    SECRETS_DIR_ENV,
    find_secrets_dir,
    resolve_secret,
)

__all__ = ["DEFAULT_SECRETS_DIR", "SECRETS_DIR_ENV", "find_secrets_dir", "resolve_secret"]
