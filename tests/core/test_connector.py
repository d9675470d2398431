"""The SinkConnector ABC: subclassing, mixins, the structural check, the module adapter."""

from __future__ import annotations

import abc
import types
from typing import Any

import pytest

import floe_sink
from floe_sink import EgressResult, SinkConfig, SinkConnector, as_sink_connector
from floe_sink.connector import REQUIRED_HOOKS, is_hookimpl
from floe_sink.testing import assert_sink_connector


class Complete(SinkConnector):
    def list_available_sinks(self) -> list[str]:
        return ["complete"]

    def create_sink(self, config: SinkConfig) -> Any:
        return config

    def write(self, sink: Any, data: Any) -> EgressResult:
        return EgressResult(success=True)

    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        return dict(catalog_config)


class Marked:
    """No base class: four hookimpls make it a connector structurally."""

    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return ["marked"]

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        return config

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any) -> EgressResult:
        return EgressResult(success=True)

    @floe_sink.hookimpl
    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        return {}


class HalfMarked:
    """Only two of the four hooks: not a connector."""

    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return ["half"]

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        return config

    def write(self, sink: Any, data: Any) -> EgressResult:  # present but not a hookimpl
        return EgressResult(success=True)


@pytest.mark.requirement("4G-FR-001")
@pytest.mark.parametrize("missing", REQUIRED_HOOKS)
def test_an_incomplete_subclass_cannot_be_instantiated(missing: str) -> None:
    namespace = {name: getattr(Complete, name) for name in floe_sink.HOOK_NAMES if name != missing}
    incomplete = type("Incomplete", (SinkConnector,), namespace)
    with pytest.raises(TypeError, match=missing):
        incomplete()


@pytest.mark.requirement("4G-FR-004", "4G-FR-015")
def test_a_standalone_subclass_is_a_connector() -> None:
    assert isinstance(Complete(), SinkConnector)
    assert Complete.__mro__[1:] == (SinkConnector, abc.ABC, object)


@pytest.mark.requirement("4G-FR-015")
def test_mixin_next_to_another_abc_and_a_plain_base() -> None:
    class Base:
        def __init__(self, name: str) -> None:
            self.name = name

    class Other(abc.ABC):
        @abc.abstractmethod
        def other(self) -> int: ...

    class Mixed(Base, Complete, Other):
        def other(self) -> int:
            return 1

    mixed = Mixed("m")
    assert isinstance(mixed, SinkConnector)
    assert isinstance(mixed, Other)
    assert mixed.name == "m"
    assert_sink_connector(mixed, sink_types={"complete"})


@pytest.mark.requirement("4G-FR-004")
def test_structural_check_for_marked_classes() -> None:
    assert isinstance(Marked(), SinkConnector)
    assert issubclass(Marked, SinkConnector)


@pytest.mark.requirement("4G-FR-004")
@pytest.mark.parametrize(
    "plugin",
    [HalfMarked(), object(), "a string", types.SimpleNamespace(write=lambda sink, data: None)],
    ids=["half-marked", "object", "str", "namespace"],
)
def test_non_connectors_are_not_instances(plugin: object) -> None:
    assert not isinstance(plugin, SinkConnector)


def test_subclass_checks_stay_nominal_below_the_abc() -> None:
    # isinstance(x, Complete) means "x is a Complete", never "x has four hookimpls".
    assert not isinstance(Marked(), Complete)


@pytest.mark.requirement("4G-FR-004")
def test_adapter_for_a_module_plugin() -> None:
    module = types.ModuleType("webhook_plugin")
    seen: dict[str, Any] = {}

    @floe_sink.hookimpl
    def list_available_sinks() -> list[str]:
        return ["webhook"]

    @floe_sink.hookimpl
    def create_sink(config: SinkConfig) -> str:
        return f"sink:{config.sink_type}"

    @floe_sink.hookimpl
    def write(data: Any, sink: Any) -> EgressResult:  # any argument order, as pluggy allows
        seen["write"] = (sink, data)
        return EgressResult(success=True, rows_delivered=len(data))

    @floe_sink.hookimpl
    def get_source_config() -> dict[str, Any]:  # a subset of the spec's arguments
        return {"table": "gold.t"}

    for function in (list_available_sinks, create_sink, write, get_source_config):
        setattr(module, function.__name__, function)

    connector = as_sink_connector(module)
    assert isinstance(connector, SinkConnector)
    assert "webhook_plugin" in repr(connector)
    assert connector.list_available_sinks() == ["webhook"]
    sink = connector.create_sink(SinkConfig(sink_type="webhook"))
    assert sink == "sink:webhook"
    assert connector.write(sink, [1, 2]).rows_delivered == 2
    assert seen["write"] == ("sink:webhook", [1, 2])
    assert connector.get_source_config({"ignored": True}) == {"table": "gold.t"}


def test_adapter_returns_a_connector_as_is() -> None:
    complete = Complete()
    assert as_sink_connector(complete) is complete


def test_adapter_names_the_missing_hooks() -> None:
    with pytest.raises(TypeError, match=r"HalfMarked.*missing.*write \(all of"):
        as_sink_connector(HalfMarked())


class Sourceless(SinkConnector):
    """No get_source_config: the core's read config is used."""

    def list_available_sinks(self) -> list[str]:
        return ["sourceless"]

    def create_sink(self, config: SinkConfig) -> Any:
        return config

    def write(self, sink: Any, data: Any) -> EgressResult:
        return EgressResult(success=True)


def test_get_source_config_is_optional() -> None:
    connector = Sourceless()  # instantiable without it
    assert connector.get_source_config({"table": "gold.t"}) is None
    module = types.ModuleType("sourceless_plugin")
    for name in ("list_available_sinks", "create_sink", "write"):
        setattr(module, name, getattr(Marked, name))
    adapted = as_sink_connector(module)
    assert adapted.get_source_config({"table": "gold.t"}) is None
    assert isinstance(SourcelessMarked(), SinkConnector)
    assert_sink_connector(Sourceless(), sink_types={"sourceless"})


class SourcelessMarked:
    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return ["sourceless-marked"]

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        return config

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any) -> EgressResult:
        return EgressResult(success=True)


def test_is_hookimpl() -> None:
    assert is_hookimpl(Marked.write)
    assert not is_hookimpl(Complete.write)
    assert not is_hookimpl(None)


def test_assert_sink_connector_reports_problems() -> None:
    with pytest.raises(AssertionError, match="missing"):
        assert_sink_connector(HalfMarked())
    with pytest.raises(AssertionError, match="expected sink types"):
        assert_sink_connector(Complete(), sink_types={"other"})

    class Empty(Complete):
        def list_available_sinks(self) -> list[str]:
            return []

    with pytest.raises(AssertionError, match="no sink type"):
        assert_sink_connector(Empty())

    class BadArgs(Marked):
        @floe_sink.hookimpl
        def write(self, sink: Any, payload: Any) -> EgressResult:
            return EgressResult(success=True)

    with pytest.raises(AssertionError, match="does not match the hook specification"):
        assert_sink_connector(BadArgs())
