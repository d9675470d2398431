"""Entry-point discovery, against the fake distributions checked in under tests/core/data."""

from __future__ import annotations

import sys
from pathlib import Path

import pluggy
import pyarrow as pa
import pytest
from structlog.testing import capture_logs

import floe_sink
from floe_sink import (
    PluginConflictError,
    PluginLoadError,
    SinkConfig,
    SinkConnector,
    as_sink_connector,
    get_plugin_manager,
)
from floe_sink.testing import assert_sink_connector

pytestmark = pytest.mark.usefixtures("fake_distributions")


def _without(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    monkeypatch.setenv("FLOE_SINK_BLOCK_PLUGINS", ",".join(names))


@pytest.mark.requirement("4G-FR-001")
def test_good_module_plugin_is_found_and_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "colliding")
    manager = get_plugin_manager()

    assert manager.list_available_sinks() == ["fake_classy", "fake_good"]
    good = sys.modules["fake_sinks_good"]
    good.CALLS.clear()
    sink = manager.create_sink(SinkConfig(sink_type="fake_good"))
    result = manager.write(sink, pa.table({"x": [1, 2, 3]}))
    assert result.rows_delivered == 3
    assert good.CALLS == [("create_sink", "fake_good"), ("write", "fake_good")]


@pytest.mark.requirement("4G-FR-004")
def test_module_plugin_is_a_connector_through_the_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "colliding")
    manager = get_plugin_manager()
    module = manager.get_plugin("good")

    assert not isinstance(module, SinkConnector)  # a module is an instance of nothing
    connector = as_sink_connector(module)
    assert isinstance(connector, SinkConnector)
    assert connector.list_available_sinks() == ["fake_good"]
    assert_sink_connector(module, sink_types={"fake_good"})


def test_entry_point_naming_a_connector_class_is_instantiated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "colliding")
    manager = get_plugin_manager()

    plugin = manager.get_plugin("classy")
    assert isinstance(plugin, SinkConnector)
    sink = manager.create_sink(SinkConfig(sink_type="fake_classy"))
    assert manager.write(sink, pa.table({"x": [1]})).rows_delivered == 1


def test_distribution_is_recorded() -> None:
    manager = get_plugin_manager()

    assert manager.plugin_info["good"] == floe_sink.manager.PluginInfo(
        name="good", distribution="fake-sinks", version="1.0"
    )
    assert manager.plugin_info["colliding"].describe() == "colliding (other-sinks 2.0)"


def test_plugin_that_fails_to_import_is_reported_and_others_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "colliding")
    with capture_logs() as logs:
        manager = get_plugin_manager()

    failures = {failure.name: failure for failure in manager.load_failures}
    assert set(failures) == {"broken", "invalid"}
    assert failures["broken"].distribution == "fake-sinks"
    assert "ModuleNotFoundError" in failures["broken"].error
    assert "a_module_that_is_not_installed" in failures["broken"].error
    assert manager.has_plugin("good")
    assert manager.has_plugin("classy")
    assert any(
        entry["event"] == "plugin_load_failed" and entry["plugin"] == "broken" for entry in logs
    )


def test_strict_mode_raises_on_import_failure() -> None:
    with pytest.raises(PluginLoadError) as raised:
        get_plugin_manager(strict=True)

    assert raised.value.plugin_name == "broken"
    assert raised.value.distribution == "fake-sinks"
    assert "FLOE_SINK_BLOCK_PLUGINS=broken" in str(raised.value)
    assert isinstance(raised.value.__cause__, ModuleNotFoundError)


def test_strict_mode_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_SINK_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError):
        get_plugin_manager()


def test_invalid_plugin_is_reported_not_half_registered() -> None:
    manager = get_plugin_manager()

    failure = next(f for f in manager.load_failures if f.name == "invalid")
    assert failure.error.startswith("PluginValidationError")
    assert "payload" in failure.error
    assert not manager.has_plugin("invalid")
    # pluggy had added its list_available_sinks before it found the bad write: rolled back.
    assert "fake_invalid" not in manager.sink_providers()


def test_strict_mode_raises_pluggys_validation_error_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "broken")
    with pytest.raises(pluggy.PluginValidationError) as raised:
        get_plugin_manager(strict=True)
    assert raised.value.plugin is sys.modules["fake_sinks_invalid"]


def test_a_misspelt_hook_is_reported_when_the_plugin_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOE_SINK_LOAD_PLUGINS", "good,misspelt")
    manager = get_plugin_manager()

    (failure,) = manager.load_failures
    assert failure.name == "misspelt"
    assert failure.distribution == "other-sinks"
    assert "unknown hook 'get_sorce_config'" in failure.error
    assert "did you mean 'get_source_config'?" in failure.error
    assert not manager.has_plugin("misspelt")
    assert manager.list_available_sinks() == ["fake_good"]  # nothing of it stays registered

    with pytest.raises(pluggy.PluginValidationError, match="get_sorce_config") as raised:
        get_plugin_manager(strict=True)
    assert raised.value.plugin is sys.modules["fake_sinks_misspelt"]


def test_collision_names_both_distributions() -> None:
    manager = get_plugin_manager()

    with pytest.raises(PluginConflictError) as raised:
        manager.list_available_sinks()
    message = str(raised.value)
    assert "'fake_good'" in message
    assert "good (fake-sinks 1.0)" in message
    assert "colliding (other-sinks 2.0)" in message
    assert raised.value.providers == ["colliding (other-sinks 2.0)", "good (fake-sinks 1.0)"]
    with pytest.raises(PluginConflictError):
        manager.create_sink(SinkConfig(sink_type="fake_good"))
    # A sink type only one plugin provides still works next to the conflict.
    assert manager.owner_of("fake_classy") == "classy"


def test_block_list_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "colliding", "broken", "invalid")
    with capture_logs() as logs:
        manager = get_plugin_manager()

    assert manager.load_failures == []
    assert sorted(name for name, _ in manager.list_name_plugin()) == ["classy", "good"]
    skipped = {
        entry["plugin"]
        for entry in logs
        if entry["event"] == "plugin_skipped"
        and entry["reason"] == "listed in FLOE_SINK_BLOCK_PLUGINS"
    }
    assert skipped == {"colliding", "broken", "invalid"}


def test_allow_list_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOE_SINK_LOAD_PLUGINS", "good")
    manager = get_plugin_manager()
    assert manager.list_available_sinks() == ["fake_good"]

    monkeypatch.setenv("FLOE_SINK_LOAD_PLUGINS", "")
    assert get_plugin_manager().list_available_sinks() == []


def test_load_entrypoints_false_gives_an_empty_manager() -> None:
    manager = get_plugin_manager(load_entrypoints=False)
    assert manager.list_name_plugin() == []
    assert manager.list_available_sinks() == []


def test_loading_twice_does_not_register_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, "colliding")
    manager = get_plugin_manager()
    assert manager.load_entrypoints() == 0
    assert manager.list_available_sinks() == ["fake_classy", "fake_good"]


def test_data_dir_holds_the_fake_distributions(fake_distributions: Path) -> None:
    import importlib.metadata

    assert importlib.metadata.version("fake-sinks") == "1.0"
    assert importlib.metadata.version("other-sinks") == "2.0"
    names = {ep.name for ep in importlib.metadata.entry_points(group="floe_sink")}
    assert {"good", "broken", "classy", "colliding", "invalid"} <= names
