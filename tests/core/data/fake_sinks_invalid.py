"""A plugin whose ``write`` asks for an argument the specification does not have."""

from __future__ import annotations

from typing import Any

import floe_sink


@floe_sink.hookimpl
def list_available_sinks() -> list[str]:
    return ["fake_invalid"]


@floe_sink.hookimpl
def write(sink: Any, payload: Any) -> None:
    raise AssertionError("never called: registration refuses this plugin")
