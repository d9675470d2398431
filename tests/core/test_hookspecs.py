"""Contract tests (4G-SC-006): the hook names, their arguments, the ABC, the exports."""

from __future__ import annotations

import abc
import inspect

import pluggy
import pytest

import floe_sink
from floe_sink import HOOK_NAMES, SinkConnector, SinkConnectorSpec
from floe_sink.hookspecs import PROJECT_NAME, StateStoreSpec

# The contract, written out: changing any of these breaks every plugin in the wild.
CONTRACT: dict[str, tuple[str, ...]] = {
    "list_available_sinks": (),
    "create_sink": ("config",),
    "write": ("sink", "data", "delivery"),
    "get_source_config": ("catalog_config",),
}

OPTIONAL_HOOKS = {"delete": ("sink", "keys", "delivery")}
"""Hooks added after the contract's four: a plugin implements them only when it can."""

EXTRA_HOOKS = {"get_state_store": ("state_config", "secrets", "state_dir")}
"""Hooks outside the SinkConnector contract (their own spec class), optional likewise."""


@pytest.mark.requirement("4G-SC-006", "4G-FR-001")
def test_exactly_four_hooks_in_the_documented_order() -> None:
    specs = [
        name
        for name, value in vars(SinkConnectorSpec).items()
        if callable(value) and getattr(value, f"{PROJECT_NAME}_spec", None) is not None
    ]
    # the contract's four, then the optional hooks round 2 added (a plugin may leave them)
    assert [name for name in specs if name in CONTRACT] == list(CONTRACT)
    assert [name for name in specs if name not in CONTRACT] == list(OPTIONAL_HOOKS)
    assert tuple(CONTRACT) == HOOK_NAMES


def test_extra_hooks_are_outside_the_four() -> None:
    specs = [
        name
        for name, value in vars(StateStoreSpec).items()
        if callable(value) and getattr(value, f"{PROJECT_NAME}_spec", None) is not None
    ]
    assert specs == list(EXTRA_HOOKS)
    manager = floe_sink.get_plugin_manager(load_entrypoints=False)
    for hook, arguments in EXTRA_HOOKS.items():
        spec = getattr(StateStoreSpec, hook)
        assert tuple(inspect.signature(spec).parameters)[1:] == arguments
        assert getattr(manager.hook, hook).spec.opts["firstresult"] is True
        doc = inspect.getdoc(spec) or ""
        assert "Example::" in doc
        assert "@floe_sink.hookimpl" in doc
    assert not set(EXTRA_HOOKS) & set(HOOK_NAMES)
    assert not set(EXTRA_HOOKS) & SinkConnector.__abstractmethods__


@pytest.mark.requirement("4G-SC-006")
@pytest.mark.parametrize(("hook", "arguments"), CONTRACT.items())
def test_hook_argument_names(hook: str, arguments: tuple[str, ...]) -> None:
    signature = inspect.signature(getattr(SinkConnectorSpec, hook))
    assert tuple(signature.parameters)[1:] == arguments


@pytest.mark.requirement("4G-SC-006")
def test_firstresult_for_routed_hooks_and_collected_list() -> None:
    manager = floe_sink.get_plugin_manager(load_entrypoints=False)
    options = {name: getattr(manager.hook, name).spec.opts for name in CONTRACT}
    assert options["list_available_sinks"]["firstresult"] is False
    for hook in ("create_sink", "write", "get_source_config"):
        assert options[hook]["firstresult"] is True


@pytest.mark.requirement("4G-SC-006", "4G-FR-001")
def test_abc_has_the_three_required_methods_abstract() -> None:
    # get_source_config is the fourth method, optional: the source belongs to the core
    assert SinkConnector.__abstractmethods__ == frozenset(CONTRACT) - {"get_source_config"}
    assert issubclass(SinkConnector, abc.ABC)
    for hook, arguments in CONTRACT.items():
        parameters = tuple(inspect.signature(getattr(SinkConnector, hook)).parameters)[1:]
        # the ABC keeps the original arguments; pluggy lets an implementation accept a
        # subset of the spec's (write's `delivery` is optional to accept)
        assert parameters == tuple(a for a in arguments if a != "delivery"), hook


@pytest.mark.requirement("4G-SC-006")
def test_markers_and_project_name() -> None:
    assert PROJECT_NAME == "floe_sink"
    assert isinstance(floe_sink.hookimpl, pluggy.HookimplMarker)
    assert isinstance(floe_sink.hookspec, pluggy.HookspecMarker)
    assert floe_sink.hookimpl.project_name == "floe_sink"
    assert floe_sink.manager.ENTRY_POINT_GROUP == "floe_sink"


def test_every_hook_spec_has_a_docstring_with_an_example() -> None:
    for hook in CONTRACT:
        doc = inspect.getdoc(getattr(SinkConnectorSpec, hook)) or ""
        assert "Example::" in doc, hook
        assert "@floe_sink.hookimpl" in doc, hook


@pytest.mark.requirement("4G-SC-006")
def test_public_exports() -> None:
    assert len(set(floe_sink.__all__)) == len(floe_sink.__all__)  # ruff (RUF022) keeps it sorted
    for name in floe_sink.__all__:
        assert getattr(floe_sink, name) is not None, name
    assert set(dir(floe_sink)) >= set(floe_sink.__all__)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = floe_sink.nope
