"""A plugin with a misspelt hook: ``get_sorce_config`` would never be called."""

from __future__ import annotations

from typing import Any

import floe_sink


@floe_sink.hookimpl
def list_available_sinks() -> list[str]:
    return ["fake_misspelt"]


@floe_sink.hookimpl
def create_sink(config: floe_sink.SinkConfig) -> object:
    return object()


@floe_sink.hookimpl
def write(sink: Any, data: Any) -> floe_sink.EgressResult:
    return floe_sink.EgressResult(success=True)


@floe_sink.hookimpl
def get_sorce_config(catalog_config: dict[str, Any]) -> dict[str, Any]:
    raise AssertionError("never called: loading refuses this plugin")
