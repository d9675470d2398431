"""The public surface: names exported by floe_sink.config and, lazily, by floe_sink."""

from __future__ import annotations

import subprocess
import sys

import pytest

import floe_sink
import floe_sink.config

SC004 = pytest.mark.requirement("4G-SC-004")

LAZY_NAMES = [
    "CatalogConfig",
    "ConfigError",
    "DestinationConfig",
    "FloeSpec",
    "PlatformManifest",
    "SinkWhitelistError",
    "WriteDisposition",
    "check_governance",
    "enforce_governance",
    "load_floe_spec",
    "load_manifest",
    "resolve_secret",
    "validate_sink_whitelist",
]


@SC004
def test_config_all_is_sorted_and_complete() -> None:
    names = floe_sink.config.__all__
    assert names == sorted(names)
    for name in [*LAZY_NAMES, "floe_yaml_json_schema", "manifest_json_schema"]:
        assert name in names
        assert hasattr(floe_sink.config, name)


@SC004
@pytest.mark.parametrize("name", LAZY_NAMES)
def test_floe_sink_re_exports_lazily(name: str) -> None:
    assert name in floe_sink.__all__
    assert getattr(floe_sink, name) is getattr(floe_sink.config, name)


def test_import_floe_sink_does_not_load_yaml_or_config() -> None:
    code = (
        "import sys, floe_sink; "
        "assert 'yaml' not in sys.modules, 'yaml'; "
        "assert 'floe_sink.config' not in sys.modules, 'config'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
