"""The plugin manager: registration, routing by sink type, the typed hook methods, tracing."""

from __future__ import annotations

import abc
import types
from collections.abc import Sized
from typing import Any

import pluggy
import pyarrow as pa
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

import floe_sink
from floe_sink import (
    EgressResult,
    PluginConflictError,
    PluginContractError,
    SinkConfig,
    SinkConfigurationError,
    SinkConnector,
    SinkNotFoundError,
    SinkPluginManager,
    SinkWriteError,
)


class Auditable(abc.ABC):
    """Another ABC a connector may also derive from (the mixin case of 4G-FR-015)."""

    @abc.abstractmethod
    def audit_name(self) -> str: ...


class RecordingConnector(SinkConnector, Auditable):
    """A connector defined in a test file, next to another ABC, with no hookimpl markers."""

    def __init__(self, sink_types: list[str]) -> None:
        self.sink_types = sink_types
        self.calls: list[tuple[str, Any]] = []

    def audit_name(self) -> str:
        return "recording"

    def list_available_sinks(self) -> list[str]:
        return list(self.sink_types)

    def create_sink(self, config: SinkConfig) -> Any:
        self.calls.append(("create_sink", config.sink_type))
        return types.SimpleNamespace(sink_type=config.sink_type, owner=self)

    def write(self, sink: Any, data: Any) -> EgressResult:
        self.calls.append(("write", sink.sink_type))
        return EgressResult(success=True, rows_delivered=data.num_rows, checksum="c" * 64)

    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("get_source_config", catalog_config.get("table")))
        return {"catalog_name": "x", "catalog_properties": {}, "table": catalog_config["table"]}


class MarkedPlugin:
    """A plain class (no base) whose four methods are hookimpls; returns None for others."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return ["marked"]

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        self.calls.append(f"create_sink:{config.sink_type}")
        return {"kind": "marked"} if config.sink_type == "marked" else None

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any) -> EgressResult | None:
        self.calls.append("write")
        return EgressResult(success=True, rows_delivered=data.num_rows)

    @floe_sink.hookimpl
    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        return {"catalog_name": "marked", "catalog_properties": {}, "table": "m"}


TABLE = pa.table({"id": [1, 2, 3]})


# -- the hooks, one test each (tests/core/test_docs.py checks that these exist) ---------------


@pytest.mark.requirement("4G-FR-001")
def test_hook_list_available_sinks(sink_plugin_manager: SinkPluginManager) -> None:
    sink_plugin_manager.register(RecordingConnector(["b_sink", "a_sink"]))
    sink_plugin_manager.register(MarkedPlugin())

    assert sink_plugin_manager.list_available_sinks() == ["a_sink", "b_sink", "marked"]


@pytest.mark.requirement("4G-FR-001")
def test_hook_create_sink(sink_plugin_manager: SinkPluginManager) -> None:
    recording, marked = RecordingConnector(["rec"]), MarkedPlugin()
    sink_plugin_manager.register(recording)
    sink_plugin_manager.register(marked)

    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="rec"))

    assert sink.owner is recording
    assert recording.calls == [("create_sink", "rec")]
    assert marked.calls == []  # routed: the other plugin never saw the foreign sink type


@pytest.mark.requirement("4G-FR-001")
def test_hook_write(sink_plugin_manager: SinkPluginManager) -> None:
    recording, marked = RecordingConnector(["rec"]), MarkedPlugin()
    sink_plugin_manager.register(marked)
    sink_plugin_manager.register(recording)

    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="marked"))
    result = sink_plugin_manager.write(sink, TABLE)

    assert result == EgressResult(success=True, rows_delivered=3)
    assert marked.calls == ["create_sink:marked", "write"]
    assert recording.calls == []


@pytest.mark.requirement("4G-FR-001")
def test_hook_get_source_config(sink_plugin_manager: SinkPluginManager) -> None:
    recording, marked = RecordingConnector(["rec"]), MarkedPlugin()
    sink_plugin_manager.register(recording)
    sink_plugin_manager.register(marked)

    routed = sink_plugin_manager.get_source_config({"table": "gold.customers"}, sink_type="rec")
    assert routed["table"] == "gold.customers"
    assert recording.calls == [("get_source_config", "gold.customers")]
    # Without a sink type the first plugin that answers wins (pluggy: last registered first).
    assert sink_plugin_manager.get_source_config({"table": "t"})["catalog_name"] == "marked"


class Sourceless(SinkConnector):
    """A connector that leaves the source to the core (no get_source_config)."""

    def list_available_sinks(self) -> list[str]:
        return ["sourceless"]

    def create_sink(self, config: SinkConfig) -> Any:
        return types.SimpleNamespace(sink_type=config.sink_type)

    def write(self, sink: Any, data: Any) -> EgressResult:
        return EgressResult(success=True)


def test_a_plugin_without_get_source_config_gets_the_core_read_config(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    from floe_sink.source import source_config

    sink_plugin_manager.register(Sourceless(), name="sourceless")
    # the inherited default is not an implementation of the hook
    assert sink_plugin_manager.hook.get_source_config.get_hookimpls() == []
    built = source_config({"table": "gold.t", "state_dir": "/tmp/state"})
    answer = sink_plugin_manager.get_source_config(built, sink_type="sourceless")
    assert answer == built
    assert answer["create_catalog"] is True  # the embedded default, marked by the core


def test_a_plugin_may_change_the_read_config_without_touching_the_core_copy(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    class Tweaking(Sourceless):
        def list_available_sinks(self) -> list[str]:
            return ["tweaking"]

        def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
            catalog_config["catalog_properties"]["s3.region"] = "eu-west-1"  # in place
            return catalog_config

    sink_plugin_manager.register(Tweaking(), name="tweaking")
    built = {"catalog_name": "c", "catalog_properties": {"type": "sql"}, "table": "gold.t"}
    answer = sink_plugin_manager.get_source_config(built, sink_type="tweaking")
    assert answer["catalog_properties"] == {"type": "sql", "s3.region": "eu-west-1"}
    assert built["catalog_properties"] == {"type": "sql"}


# -- the acceptance case: a connector class from a test file ------------------------------------


@pytest.mark.requirement("4G-FR-004", "4G-FR-015")
def test_connector_subclass_with_another_abc_is_registered_and_routed(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    ours, other = RecordingConnector(["ours"]), RecordingConnector(["theirs"])
    assert isinstance(ours, SinkConnector)
    assert isinstance(ours, Auditable)

    sink_plugin_manager.register(ours, name="ours")
    sink_plugin_manager.register(other, name="other")
    assert sink_plugin_manager.list_available_sinks() == ["ours", "theirs"]

    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="ours"))
    sink_plugin_manager.write(sink, TABLE)
    assert ours.calls == [("create_sink", "ours"), ("write", "ours")]
    assert other.calls == []
    assert sink_plugin_manager.owner_of("theirs") == "other"


def test_plugin_returning_none_for_foreign_types_still_works(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    marked = MarkedPlugin()
    sink_plugin_manager.register(marked)
    sink_plugin_manager.register(RecordingConnector(["rec"]))
    # Routing means create_sink is never asked about "rec"; called directly it answers None.
    assert marked.create_sink(SinkConfig(sink_type="rec")) is None
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="rec"))
    assert sink_plugin_manager.write(sink, TABLE).rows_delivered == 3


def test_unknown_sink_type_lists_the_available_ones(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    sink_plugin_manager.register(RecordingConnector(["rec"]))

    with pytest.raises(SinkNotFoundError, match=r"'nope'.*available: rec") as raised:
        sink_plugin_manager.create_sink(SinkConfig(sink_type="nope"))
    assert raised.value.sink_type == "nope"
    assert isinstance(raised.value, SinkConfigurationError)


def test_two_plugins_claiming_one_sink_type(sink_plugin_manager: SinkPluginManager) -> None:
    sink_plugin_manager.register(RecordingConnector(["dup", "one"]), name="first")
    sink_plugin_manager.register(RecordingConnector(["dup"]), name="second")

    with pytest.raises(PluginConflictError, match="first, second") as raised:
        sink_plugin_manager.list_available_sinks()
    assert raised.value.sink_type == "dup"
    assert sink_plugin_manager.owner_of("one") == "first"


def test_create_sink_returning_nothing_is_the_plugins_bug_not_the_configuration(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    class Lister:
        @floe_sink.hookimpl
        def list_available_sinks(self) -> list[str]:
            return ["lonely"]

    sink_plugin_manager.register(Lister(), name="lister")
    with pytest.raises(PluginContractError, match="lists sink type 'lonely'") as raised:
        sink_plugin_manager.create_sink(SinkConfig(sink_type="lonely"))
    assert not isinstance(raised.value, SinkConfigurationError)  # exit 1, not 2
    assert (raised.value.plugin, raised.value.hook) == ("lister", "create_sink")
    assert "Plugin 'lister' broke the create_sink contract" in str(raised.value)


def test_a_source_config_that_is_not_a_mapping_is_the_plugins_bug(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    class Sloppy(Sourceless):
        def list_available_sinks(self) -> list[str]:
            return ["sloppy"]

        def get_source_config(self, catalog_config: dict[str, Any]) -> Any:
            return "a string"

    sink_plugin_manager.register(Sloppy(), name="sloppy")
    with pytest.raises(PluginContractError, match="get_source_config contract: it returned str"):
        sink_plugin_manager.get_source_config({"table": "gold.t"}, sink_type="sloppy")


def test_write_of_an_unknown_sink_needs_a_sink_type(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    recording = RecordingConnector(["rec"])
    sink_plugin_manager.register(recording)
    stranger = types.SimpleNamespace(sink_type="rec")

    with pytest.raises(SinkNotFoundError, match="pass sink_type="):
        sink_plugin_manager.write(stranger, TABLE)
    assert sink_plugin_manager.write(stranger, TABLE, sink_type="rec").rows_delivered == 3


def test_unhashable_sinks_are_routed_by_identity(sink_plugin_manager: SinkPluginManager) -> None:
    marked = MarkedPlugin()
    sink_plugin_manager.register(marked)
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="marked"))
    assert isinstance(sink, dict)

    assert sink_plugin_manager.write(sink, TABLE).success
    with pytest.raises(SinkNotFoundError):
        sink_plugin_manager.write(dict(sink), TABLE)  # an equal dict is not the sink


def test_write_must_return_an_egress_result(sink_plugin_manager: SinkPluginManager) -> None:
    class Sloppy(RecordingConnector):
        def write(self, sink: Any, data: Any) -> Any:
            return {"success": True}

    sink_plugin_manager.register(Sloppy(["sloppy"]))
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="sloppy"))
    with pytest.raises(PluginContractError, match="write contract: it returned dict"):
        sink_plugin_manager.write(sink, TABLE)


def test_plugin_errors_propagate_unchanged(sink_plugin_manager: SinkPluginManager) -> None:
    error = SinkWriteError("HTTP 503 from the API", sink_type="failing")

    class Failing(RecordingConnector):
        def write(self, sink: Any, data: Any) -> EgressResult:
            raise error

    sink_plugin_manager.register(Failing(["failing"]))
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="failing"))
    with pytest.raises(SinkWriteError) as raised:
        sink_plugin_manager.write(sink, TABLE)
    assert raised.value is error


@pytest.mark.requirement("4G-FR-010")
def test_every_write_is_wrapped_in_an_egress_span(
    sink_plugin_manager: SinkPluginManager, spans: InMemorySpanExporter
) -> None:
    sink_plugin_manager.register(RecordingConnector(["rec"]))
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="rec"))

    sink_plugin_manager.write(sink, TABLE, destination="crm")

    (span,) = spans.get_finished_spans()
    assert span.name == "floe_sink.egress"
    assert span.attributes is not None
    assert span.attributes["floe.sink.type"] == "rec"
    assert span.attributes["floe.sink.destination"] == "crm"
    assert span.attributes["floe.sink.rows_written"] == 3
    assert span.attributes["floe.sink.status"] == "success"
    assert span.attributes["floe.sink.checksum"] == "c" * 64
    assert span.status.status_code is StatusCode.OK


@pytest.mark.requirement("4G-FR-010")
def test_a_failing_write_gives_an_error_span(
    sink_plugin_manager: SinkPluginManager, spans: InMemorySpanExporter
) -> None:
    class Failing(RecordingConnector):
        def write(self, sink: Any, data: Any) -> EgressResult:
            raise SinkWriteError("refused", sink_type="failing")

    sink_plugin_manager.register(Failing(["failing"]))
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="failing"))
    with pytest.raises(SinkWriteError):
        sink_plugin_manager.write(sink, TABLE, destination="crm")

    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["floe.sink.status"] == "error"
    assert span.attributes["floe.sink.error_category"] == "transient"
    assert [event.name for event in span.events] == ["exception"]


def test_write_logs_start_and_finish(sink_plugin_manager: SinkPluginManager) -> None:
    sink_plugin_manager.register(RecordingConnector(["rec"]))
    sink = sink_plugin_manager.create_sink(SinkConfig(sink_type="rec"))
    with capture_logs() as logs:
        sink_plugin_manager.write(sink, TABLE, destination="crm")

    events = [entry["event"] for entry in logs]
    assert events == ["write_started", "write_finished"]
    assert logs[1]["rows"] == 3
    assert logs[1]["destination"] == "crm"


# -- registration -------------------------------------------------------------------------------


def test_registering_an_invalid_plugin_raises_pluggys_error_and_leaves_nothing(
    sink_plugin_manager: SinkPluginManager,
) -> None:
    class Invalid:
        @floe_sink.hookimpl
        def list_available_sinks(self) -> list[str]:
            return ["invalid"]

        @floe_sink.hookimpl
        def write(self, sink: Any, rows: Any) -> None: ...

    plugin = Invalid()
    with pytest.raises(pluggy.PluginValidationError) as raised:
        sink_plugin_manager.register(plugin, name="invalid")
    assert raised.value.plugin is plugin
    assert "rows" in str(raised.value)
    assert not sink_plugin_manager.has_plugin("invalid")
    assert sink_plugin_manager.list_available_sinks() == []
    # The name is free again, and a valid plugin registers after the failing one.
    sink_plugin_manager.register(RecordingConnector(["ok"]), name="invalid")
    assert sink_plugin_manager.list_available_sinks() == ["ok"]


def test_unknown_hook_is_caught_by_check_pending(sink_plugin_manager: SinkPluginManager) -> None:
    class Typo:
        @floe_sink.hookimpl
        def list_availabe_sinks(self) -> list[str]:
            return []

    sink_plugin_manager.register(Typo())
    with pytest.raises(pluggy.PluginValidationError, match="list_availabe_sinks"):
        sink_plugin_manager.check_pending()


def test_unregister_forgets_the_plugin(sink_plugin_manager: SinkPluginManager) -> None:
    recording = RecordingConnector(["rec"])
    name = sink_plugin_manager.register(recording, name="rec-plugin")
    assert name == "rec-plugin"
    assert "rec-plugin" in sink_plugin_manager.plugin_info

    sink_plugin_manager.unregister(recording)
    assert "rec-plugin" not in sink_plugin_manager.plugin_info
    assert sink_plugin_manager.list_available_sinks() == []


def test_list_available_sinks_must_return_a_list(sink_plugin_manager: SinkPluginManager) -> None:
    class Stringy:
        @floe_sink.hookimpl
        def list_available_sinks(self) -> str:
            return "webhook"

    sink_plugin_manager.register(Stringy(), name="stringy")
    with pytest.raises(PluginContractError, match="'stringy' broke the list_available_sinks"):
        sink_plugin_manager.list_available_sinks()


def test_a_connector_class_is_not_registered_as_an_instance() -> None:
    manager = floe_sink.get_plugin_manager(load_entrypoints=False)
    # Registering the class itself (a mistake) must not make its unbound methods hookimpls.
    manager.register(RecordingConnector, name="cls")
    assert manager.list_available_sinks() == []


def test_mixin_with_a_non_abc_base_too() -> None:
    class WithSized(RecordingConnector, Sized):
        def __len__(self) -> int:
            return 0

    assert isinstance(WithSized(["x"]), SinkConnector)


def test_equal_sinks_are_two_sinks_and_dropping_one_keeps_the_other() -> None:
    # found by the conformance kit: sinks were known by equality (a WeakKeyDictionary), so
    # dropping one of two equal attrs sinks made the manager forget the other
    import gc

    import attrs

    @attrs.frozen
    class Equal:
        url: str

    class Plugin:
        @floe_sink.hookimpl
        def list_available_sinks(self) -> list[str]:
            return ["equal"]

        @floe_sink.hookimpl
        def create_sink(self, config: floe_sink.SinkConfig) -> Equal:
            return Equal(url="same")

        @floe_sink.hookimpl
        def write(self, sink: Equal, data: Any) -> floe_sink.EgressResult:
            return floe_sink.EgressResult(success=True)

    manager = floe_sink.get_plugin_manager(load_entrypoints=False)
    manager.register(Plugin(), name="equal")
    config = floe_sink.SinkConfig(sink_type="equal")
    first, second = manager.create_sink(config), manager.create_sink(config)
    assert first == second
    assert first is not second
    del first
    gc.collect()
    assert manager.write(second, []).success  # routed without sink_type=
