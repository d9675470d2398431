"""A module plugin with the four hooks: sink type ``fake_good``."""

from __future__ import annotations

from typing import Any

import floe_sink

CALLS: list[tuple[str, Any]] = []


class GoodSink:
    def __init__(self, config: floe_sink.SinkConfig) -> None:
        self.config = config


@floe_sink.hookimpl
def list_available_sinks() -> list[str]:
    return ["fake_good"]


@floe_sink.hookimpl
def create_sink(config: floe_sink.SinkConfig) -> GoodSink:
    CALLS.append(("create_sink", config.sink_type))
    return GoodSink(config)


@floe_sink.hookimpl
def write(sink: GoodSink, data: Any) -> floe_sink.EgressResult:
    CALLS.append(("write", sink.config.sink_type))
    return floe_sink.EgressResult(success=True, rows_delivered=data.num_rows)


@floe_sink.hookimpl
def get_source_config(catalog_config: dict[str, Any]) -> dict[str, Any]:
    return {"catalog_name": "good", "catalog_properties": {}, "table": catalog_config["table"]}
