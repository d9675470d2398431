"""Helpers of the configuration tests: build floe.yaml text, collect a loader's problems."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from floe_sink.config import ConfigError, parse_floe_spec, parse_manifest

BASE_DESTINATION: dict[str, Any] = {
    "name": "crm-contacts",
    "sink_type": "rest_api",
    "connection_secret_ref": "crm-api",
}


def destination(**overrides: Any) -> dict[str, Any]:
    """A valid destination mapping with ``overrides`` applied (``None`` removes a key)."""
    data = {**BASE_DESTINATION, **overrides}
    return {key: value for key, value in data.items() if value is not None}


def floe_yaml(*destinations: dict[str, Any], **top: Any) -> str:
    """floe.yaml text with the given destinations and other top-level sections."""
    return yaml.safe_dump({**top, "destinations": list(destinations)}, sort_keys=False)


def floe_problems(text: str) -> list[str]:
    """The problems parse_floe_spec reports for ``text`` (fails if it loads)."""
    with pytest.raises(ConfigError) as info:
        parse_floe_spec(text)
    return info.value.problems


def manifest_problems(data: dict[str, Any] | str) -> list[str]:
    """The problems parse_manifest reports (fails if it loads)."""
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse_manifest(text)
    return info.value.problems
