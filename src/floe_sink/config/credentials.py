"""Renamed :mod:`floe_sink.config.credential_scan` (credentials written in a file); kept
importable."""

from floe_sink.config.credential_scan import CREDENTIAL_WORDS, find_credentials, is_credential_key

__all__ = ["CREDENTIAL_WORDS", "find_credentials", "is_credential_key"]
