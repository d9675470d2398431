"""The floe_sink entry point of the dlt plugin: ``floe_sink_dlt.plugin:plugin``.

It is registered through the ``floe_sink`` entry-point group exactly like a third-party
plugin. :class:`DltPlugin` is a :class:`floe_sink.SinkConnector` whose methods are also
``floe_sink`` hookimpls, so it works both as an ABC instance and through pluggy. It does not
implement ``get_source_config``: it reads the catalog the core configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import floe_sink
from floe_sink import EgressResult, SinkConfig, SinkConnector

if TYPE_CHECKING:
    from floe_sink.delivery import Delivery

__all__ = ["SINK_TYPES", "DltPlugin", "plugin"]

SINK_TYPES = ("rest_api", "sql_database")


class DltPlugin(SinkConnector):
    """The reference plugin: the ``rest_api`` and ``sql_database`` sinks."""

    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return list(SINK_TYPES)

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        if config.sink_type == "rest_api":
            from floe_sink_dlt.rest import RestApiSink

            return RestApiSink.from_config(config)
        if config.sink_type == "sql_database":
            from floe_sink_dlt.sql import SqlDatabaseSink

            return SqlDatabaseSink.from_config(config)
        return None  # not ours: another plugin owns it

    @floe_sink.hookimpl
    def get_config_model(self, sink_type: str) -> type | None:
        if sink_type == "rest_api":
            from floe_sink_dlt.rest_options import RestApiKeys

            return RestApiKeys
        return None  # sql_database's config stays free-form in the editor schema

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: Delivery | None = None) -> EgressResult | None:
        from floe_sink_dlt.base import BatchSink

        if isinstance(sink, BatchSink):
            return sink.write(data, delivery)
        return None

    @floe_sink.hookimpl
    def delete(self, sink: Any, keys: Any, delivery: Delivery | None = None) -> EgressResult | None:
        from floe_sink_dlt.base import BatchSink

        if isinstance(sink, BatchSink) and sink.supports_deletes:
            return sink.delete(keys, delivery)
        return None


plugin = DltPlugin()
"""The instance the entry point names."""
