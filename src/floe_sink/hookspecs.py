"""The ``SinkConnector`` contract as pluggy hook specifications.

A sink plugin is a module or an object with ``list_available_sinks``, ``create_sink`` and
``write`` (``delete`` and ``get_source_config`` are optional), each marked
with :data:`floe_sink.hookimpl`, found through the ``floe_sink`` entry-point group (or registered
in code with ``get_plugin_manager().register(plugin)``). The manager routes ``create_sink`` and
``write`` to the one plugin that listed the sink type, so an implementation only ever sees its
own sinks.

:class:`StateStoreSpec` adds one hook outside that contract, ``get_state_store``: where the
command keeps delivery state (the manifest's ``state:``), so a platform can bring its own.
:class:`SinkConfigSpec` adds another, ``get_config_model``: the model of a sink type's
``config``, from which the editor schema of floe.yaml describes that block.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from floe_sink.delivery import Delivery
    from floe_sink.models import EgressResult, SinkConfig
    from floe_sink.secrets import Secret
    from floe_sink.state import StateStore

__all__ = [
    "PROJECT_NAME",
    "SinkConfigSpec",
    "SinkConnectorSpec",
    "StateStoreSpec",
    "hookimpl",
    "hookspec",
]

PROJECT_NAME = "floe_sink"
"""The pluggy project name, also the entry-point group."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a hook specification (used by floe-sink itself)."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's implementation of a hook: ``@floe_sink.hookimpl``."""


class SinkConnectorSpec:
    """The four hooks of the ``SinkConnector`` contract, and the optional ``delete``."""

    @hookspec
    def list_available_sinks(self) -> list[str]:  # type: ignore[empty-body]
        """Return the sink types this plugin provides.

        Every plugin's list is collected; a sink type claimed by two plugins is an error that
        names both.

        Example::

            @floe_sink.hookimpl
            def list_available_sinks() -> list[str]:
                return ["webhook"]
        """

    @hookspec(firstresult=True)
    def create_sink(self, config: SinkConfig) -> Any:
        """Validate ``config`` and return the sink object for ``config.sink_type``.

        Only the plugin that listed ``config.sink_type`` is called. The sink object is
        whatever the plugin's ``write`` needs: a client, a dlt destination, a small record.
        Raise :class:`~floe_sink.SinkConfigurationError` naming the key for a bad config.

        Example::

            @floe_sink.hookimpl
            def create_sink(config: floe_sink.SinkConfig) -> WebhookSink:
                url = config.connection_config.get("url")
                if not url:
                    raise floe_sink.SinkConfigurationError(
                        "connection_config.url is required", sink_type=config.sink_type
                    )
                return WebhookSink(url=url, batch_size=config.batch_size or 100)
        """

    @hookspec(firstresult=True)
    def write(self, sink: Any, data: Any, delivery: Delivery | None) -> EgressResult | None:
        """Deliver ``data`` to ``sink`` and return an :class:`~floe_sink.EgressResult`.

        ``data`` is a ``pyarrow.Table`` or an iterable of ``pyarrow.RecordBatch``. Only the
        plugin that created ``sink`` is called; the manager wraps the call in an OpenTelemetry
        egress span, so a plugin is traced without doing anything.

        ``delivery`` (optional to accept) is the command's :class:`~floe_sink.Delivery`: the
        journal of this delivery. A plugin that hands it to
        :func:`floe_sink.deliver_batches` with its own one-batch ``send`` function gets
        batching, keys, skipping of batches an interrupted run delivered, concurrency and
        interrupts from the core, and its deliveries resume exactly. A plugin that ignores it
        still works: the command then records the delivery as a whole, and a run interrupted
        half-way is sent again in full by the next run (at least once).

        Example::

            @floe_sink.hookimpl
            def write(sink: WebhookSink, data, delivery) -> floe_sink.EgressResult:
                def send(batch, key):
                    httpx.post(sink.url, json=batch.to_pylist(),
                               headers={"Idempotency-Key": key}).raise_for_status()
                    return floe_sink.BatchReceipt(rows=batch.num_rows)

                checksum = floe_sink.Checksum()
                totals = floe_sink.deliver_batches(
                    data, delivery=delivery or floe_sink.Delivery("webhook"),
                    batch_size=sink.batch_size, send=send, checksum=checksum,
                    field_mapping=sink.field_mapping,
                )
                return floe_sink.EgressResult(
                    success=True, rows_delivered=totals.rows, checksum=checksum.hexdigest()
                )
        """

    @hookspec(firstresult=True)
    def delete(self, sink: Any, keys: Any, delivery: Delivery | None) -> EgressResult | None:
        """Delete the rows with ``keys`` at ``sink``'s destination (``sync: mirror``).

        Optional: only a plugin whose sinks can delete implements it; ``mirror`` is refused
        for the others when the configuration is checked (a sink object may also say
        ``supports_deletes = False``). ``keys`` is a ``pyarrow.Table`` of the primary-key
        columns under their destination names (after ``field_mapping``); every key is one
        that floe-sink delivered. ``delivery`` is the same journal as ``write``'s: pass it to
        :func:`floe_sink.deliver_batches` with ``first_position=floe_sink.sync.DELETE_POSITIONS``
        and no field mapping, so a resumed run does not repeat acknowledged delete batches.

        Example::

            @floe_sink.hookimpl
            def delete(sink: WebhookSink, keys, delivery) -> floe_sink.EgressResult:
                def send(batch, key):
                    httpx.post(sink.url + "/delete", json=batch.to_pylist(),
                               headers={"Idempotency-Key": key}).raise_for_status()
                    return floe_sink.BatchReceipt(rows=batch.num_rows)

                totals = floe_sink.deliver_batches(
                    keys, delivery=delivery or floe_sink.Delivery("webhook"),
                    batch_size=sink.batch_size, send=send,
                    first_position=floe_sink.sync.DELETE_POSITIONS,
                )
                return floe_sink.EgressResult(success=True, rows_delivered=totals.rows)
        """

    @hookspec(firstresult=True)
    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any] | None:
        """Return the read configuration of the Iceberg (Gold layer) source, or ``None``.

        Optional: the source belongs to the core. ``catalog_config`` is the complete read
        config the command built from manifest.yaml's ``catalog:`` (or the embedded default
        catalog under the state directory) and the destination's ``source_table``:
        ``catalog_name``, ``catalog_properties`` (handed to pyiceberg's ``load_catalog``),
        ``table``, and ``create_catalog: True`` for the embedded default (only that catalog
        may be created on first use; a missing SQLite catalog file is otherwise an error).
        Return it unchanged, a changed copy (a property your storage needs), or ``None``;
        a plugin that does not implement the hook reads exactly what the core configured.

        Example::

            @floe_sink.hookimpl
            def get_source_config(catalog_config: dict) -> dict:
                properties = {**catalog_config["catalog_properties"], "s3.region": "eu-west-1"}
                return {**catalog_config, "catalog_properties": properties}
        """


class StateStoreSpec:
    """Where delivery state lives: one optional hook, not part of the ``SinkConnector`` four."""

    @hookspec(firstresult=True)
    def get_state_store(
        self, state_config: dict[str, Any], secrets: Mapping[str, Secret], state_dir: Path
    ) -> StateStore | None:
        """Open the state store the manifest's ``state:`` asks for, or return ``None``.

        ``state_config`` is that section as plain data: ``backend`` (``local`` when the
        manifest has no ``state:``), and ``connection_secret_ref`` and ``options`` when set.
        ``secrets`` is the resolved ``connection_secret_ref`` (key -> :class:`~floe_sink.Secret`;
        ``{}`` without one). ``state_dir`` is the ``--state-dir``. The first plugin that returns
        a store wins; floe-sink's own ``local`` and ``sql`` backends answer last, so a platform
        plugin can add a backend or replace one. The store implements
        :class:`floe_sink.state.StateStore`; the command closes it. Raise
        :class:`~floe_sink.SinkConfigurationError` for settings it cannot use (never showing a
        secret value).

        Example::

            @floe_sink.hookimpl
            def get_state_store(state_config, secrets, state_dir):
                if state_config["backend"] != "platform":
                    return None  # not ours: local and sql stay floe-sink's
                return PlatformStateStore(
                    endpoint=state_config.get("options", {}).get("endpoint"),
                    token=secrets["token"].reveal(),
                    scratch=state_dir / "platform",
                )
        """


class SinkConfigSpec:
    """What a sink type's ``config`` may hold: one optional hook, for editors."""

    @hookspec(firstresult=True)
    def get_config_model(self, sink_type: str) -> type | None:
        """Return the attrs model of a ``config`` block of ``sink_type``, or ``None``.

        Optional: :func:`floe_sink.config.floe_yaml_json_schema` (``floe-sink schema``) asks
        the plugin that lists ``sink_type`` and describes the ``config`` of its destinations
        with the JSON Schema generated from the model, as it describes floe.yaml's own fields
        (:func:`floe_sink.config.schema.model_schema`: the field annotations, the
        ``Attributes:`` section of the docstrings, the JSON Schema validators and value types
        declare with :func:`floe_sink.structuring.json_schema`). Without a model, ``config``
        stays free-form. The command imports the model's module: keep it free of heavy
        imports (``floe-sink schema`` loads no sink's dependencies). The sink's own checks
        remain the authority.

        Example::

            @floe_sink.hookimpl
            def get_config_model(sink_type: str) -> type | None:
                return WebhookKeys if sink_type == "webhook" else None
        """
