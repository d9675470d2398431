"""A plugin of another distribution that claims ``fake_good`` too."""

from __future__ import annotations

import floe_sink


@floe_sink.hookimpl
def list_available_sinks() -> list[str]:
    return ["fake_good", "fake_other"]
