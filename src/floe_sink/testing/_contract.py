"""The static contract check and a fresh plugin manager (``sink_plugin_manager``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from floe_sink.connector import SinkConnector
    from floe_sink.manager import SinkPluginManager

__all__ = ["assert_sink_connector", "sink_plugin_manager"]


@pytest.fixture
def sink_plugin_manager() -> SinkPluginManager:
    """A new :class:`~floe_sink.SinkPluginManager` with no plugin loaded.

    Entry points are not read, so the plugins installed in the environment do not interfere;
    register the plugin under test with ``sink_plugin_manager.register(plugin)``.
    """
    from floe_sink.manager import get_plugin_manager

    return get_plugin_manager(load_entrypoints=False)


def assert_sink_connector(
    plugin: object, *, sink_types: Iterable[str] | None = None
) -> SinkConnector:
    """Check ``plugin`` against the ``SinkConnector`` contract, as floe-sink will use it.

    The plugin (a module, a :class:`~floe_sink.SinkConnector` instance, or any object with
    ``@floe_sink.hookimpl`` methods) must implement ``list_available_sinks``, ``create_sink``
    and ``write`` (``get_source_config`` and ``delete`` are optional) with the specification's
    argument names, register with a plugin manager without pluggy validation errors, and list
    its sink types as a list of distinct, non-empty strings.

    Args:
        plugin: The plugin to check.
        sink_types: When given, the exact set of sink types the plugin must list.

    Returns:
        The plugin as a :class:`~floe_sink.SinkConnector` (the adapter for a module).

    Raises:
        AssertionError: Naming what does not hold.
    """
    import pluggy

    from floe_sink.connector import SinkConnector, as_sink_connector
    from floe_sink.manager import get_plugin_manager

    try:
        connector = as_sink_connector(plugin)
    except TypeError as exc:
        raise AssertionError(str(exc)) from None
    assert isinstance(connector, SinkConnector)

    manager = get_plugin_manager(load_entrypoints=False)
    try:
        manager.register(plugin, name="plugin-under-test")
    except pluggy.PluginValidationError as exc:
        raise AssertionError(f"the plugin does not match the hook specification: {exc}") from None
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise AssertionError(f"the plugin implements an unknown hook: {exc}") from None

    listed = connector.list_available_sinks()
    assert isinstance(listed, list), (
        f"list_available_sinks must return a list, got {type(listed).__name__}"
    )
    assert listed, "list_available_sinks returned no sink type"
    assert all(isinstance(name, str) and name for name in listed), (
        f"sink types must be non-empty strings, got {listed!r}"
    )
    assert len(set(listed)) == len(listed), f"list_available_sinks repeats a name: {listed!r}"
    assert manager.list_available_sinks() == sorted(listed)
    if sink_types is not None:
        assert set(listed) == set(sink_types), (
            f"expected sink types {sorted(sink_types)}, the plugin lists {sorted(listed)}"
        )
    return connector
