"""``SinkConnector``: the contract as an abstract base class.

Two ways to be a connector:

* subclass :class:`SinkConnector` (alone or as a mixin next to other bases) and implement
  ``list_available_sinks``, ``create_sink`` and ``write``; an instance registers with the
  plugin manager as is, no markers needed;
* write any class whose three methods carry ``@floe_sink.hookimpl``: ``isinstance``
  recognises its instances too (a structural check, like :class:`collections.abc.Iterable`).

``get_source_config`` is optional either way: without it, a plugin reads the source the core
configured (see :func:`floe_sink.source.source_config`).

Modules cannot be instances of anything, so :func:`as_sink_connector` wraps a plugin module (or
any plugin object) into a connector that delegates to it.
"""

from __future__ import annotations

import abc
import inspect
from typing import TYPE_CHECKING, Any

from floe_sink.hookspecs import PROJECT_NAME

if TYPE_CHECKING:
    from floe_sink.models import EgressResult, SinkConfig

__all__ = ["HOOK_NAMES", "REQUIRED_HOOKS", "SinkConnector", "as_sink_connector", "is_hookimpl"]

HOOK_NAMES: tuple[str, ...] = (
    "list_available_sinks",
    "create_sink",
    "write",
    "get_source_config",
)
"""The four operations of the contract, in their documented order."""

REQUIRED_HOOKS: tuple[str, ...] = HOOK_NAMES[:3]
"""The hooks every sink plugin implements; ``get_source_config`` is optional."""

_IMPL_ATTR = PROJECT_NAME + "_impl"  # where pluggy's HookimplMarker records its options


def is_hookimpl(function: object) -> bool:
    """True when ``function`` is marked with ``@floe_sink.hookimpl``."""
    return getattr(function, _IMPL_ATTR, None) is not None


class SinkConnector(abc.ABC):
    """A sink plugin: lists its sink types, builds sinks, writes Arrow data, names its source.

    Subclass it and implement the three abstract methods; register an instance with
    ``get_plugin_manager().register(instance)`` or expose it through the ``floe_sink`` entry
    point. A subclass missing any of them cannot be instantiated. ``get_source_config`` is
    optional: the inherited one keeps the core's read config.
    """

    __slots__ = ()

    @abc.abstractmethod
    def list_available_sinks(self) -> list[str]:
        """Return the sink types this connector provides."""

    @abc.abstractmethod
    def create_sink(self, config: SinkConfig) -> Any:
        """Validate ``config`` and return the sink object for ``config.sink_type``."""

    @abc.abstractmethod
    def write(self, sink: Any, data: Any) -> EgressResult | None:
        """Deliver ``data`` (a ``pyarrow.Table`` or RecordBatches) to ``sink``.

        Return ``None`` for a sink this connector did not create.
        """

    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any] | None:
        """Return the Iceberg read configuration: ``catalog_config`` itself, or a changed copy.

        The default returns ``None``: the read config the core built is used as it is.
        """
        return None

    @classmethod
    def __subclasshook__(cls, subclass: type) -> bool:
        # Only the ABC itself answers structurally; a concrete subclass keeps the ordinary
        # nominal check, so isinstance(x, MyConnector) means what it says.
        if cls is SinkConnector and all(
            is_hookimpl(getattr(subclass, name, None)) for name in REQUIRED_HOOKS
        ):
            return True
        return NotImplemented  # type: ignore[no-any-return]


def _call_hook(plugin: object, hook: str, **kwargs: Any) -> Any:
    """Call ``plugin``'s hook with the spec arguments its implementation accepts.

    pluggy lets an implementation take a subset of the spec's arguments (``def
    get_source_config():`` is valid); the adapter honours that as pluggy's caller does.
    """
    function = getattr(plugin, hook)
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C function: pass everything
        return function(**kwargs)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return function(**kwargs)
    return function(**{name: value for name, value in kwargs.items() if name in parameters})


class _PluginConnector(SinkConnector):
    """A connector that delegates to a plugin module or object with the hookimpls."""

    __slots__ = ("plugin",)

    def __init__(self, plugin: object) -> None:
        self.plugin = plugin

    def __repr__(self) -> str:
        name = getattr(self.plugin, "__name__", type(self.plugin).__name__)
        return f"<SinkConnector adapter for {name}>"

    def list_available_sinks(self) -> list[str]:
        return list(_call_hook(self.plugin, "list_available_sinks") or ())

    def create_sink(self, config: SinkConfig) -> Any:
        return _call_hook(self.plugin, "create_sink", config=config)

    def write(self, sink: Any, data: Any) -> EgressResult | None:
        return _call_hook(self.plugin, "write", sink=sink, data=data)  # type: ignore[no-any-return]

    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any] | None:
        if not is_hookimpl(getattr(self.plugin, "get_source_config", None)):
            return None  # optional: the core's read config stands
        return _call_hook(  # type: ignore[no-any-return]
            self.plugin, "get_source_config", catalog_config=catalog_config
        )


def as_sink_connector(plugin: object) -> SinkConnector:
    """Adapt a registered plugin (module or object) into a :class:`SinkConnector`.

    A connector is returned as is.

    Args:
        plugin: A plugin with ``list_available_sinks``, ``create_sink`` and ``write`` (and
            optionally ``get_source_config``) implemented as ``@floe_sink.hookimpl`` functions.

    Returns:
        A connector whose methods call the plugin's hooks.

    Raises:
        TypeError: When the plugin lacks one or more of the required hooks (they are named).
    """
    if isinstance(plugin, SinkConnector):
        return plugin
    missing = [name for name in REQUIRED_HOOKS if not is_hookimpl(getattr(plugin, name, None))]
    if missing:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        raise TypeError(
            f"{name} is not a SinkConnector: missing @floe_sink.hookimpl for "
            f"{', '.join(missing)} (all of {', '.join(REQUIRED_HOOKS)} are required)"
        )
    return _PluginConnector(plugin)
