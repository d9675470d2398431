"""An entry point that names a SinkConnector class (the manager instantiates it)."""

from __future__ import annotations

from typing import Any

import floe_sink


class ClassyConnector(floe_sink.SinkConnector):
    def list_available_sinks(self) -> list[str]:
        return ["fake_classy"]

    def create_sink(self, config: floe_sink.SinkConfig) -> Any:
        return {"sink_type": config.sink_type}  # not weak-referenceable: routed by identity

    def write(self, sink: Any, data: Any) -> floe_sink.EgressResult:
        return floe_sink.EgressResult(success=True, rows_delivered=data.num_rows)

    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        return {"catalog_name": "classy", "catalog_properties": {}, "table": "t"}
