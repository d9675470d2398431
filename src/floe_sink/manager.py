"""The plugin manager: discovery through entry points, routing by sink type, tracing.

:func:`get_plugin_manager` returns a :class:`SinkPluginManager` with every plugin of the
``floe_sink`` entry-point group loaded. A plugin that fails to import is logged and listed in
:attr:`SinkPluginManager.load_failures` (or raises :class:`~floe_sink.PluginLoadError` in strict
mode); the others keep working.

Environment switches, read when entry points are loaded:

``FLOE_SINK_BLOCK_PLUGINS``
    Comma-separated entry-point names never to load (a broken plugin you cannot uninstall).
``FLOE_SINK_LOAD_PLUGINS``
    Comma-separated entry-point names to load, and no others. Set it empty to load none.
``FLOE_SINK_STRICT_PLUGINS``
    ``1``/``true``: a plugin that fails to load raises instead of being skipped.
"""

from __future__ import annotations

import copy
import difflib
import os
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pluggy

from floe_sink.connector import HOOK_NAMES, SinkConnector
from floe_sink.errors import (
    PluginConflictError,
    PluginContractError,
    PluginLoadError,
    SinkNotFoundError,
)
from floe_sink.hookspecs import PROJECT_NAME, SinkConfigSpec, SinkConnectorSpec, StateStoreSpec
from floe_sink.logs import get_logger
from floe_sink.models import EgressResult, SinkConfig
from floe_sink.tracing import egress_span, record_egress_result

__all__ = [
    "BLOCK_ENV",
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "STRICT_ENV",
    "PluginFailure",
    "PluginInfo",
    "SinkPluginManager",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = PROJECT_NAME
BLOCK_ENV = "FLOE_SINK_BLOCK_PLUGINS"
LOAD_ENV = "FLOE_SINK_LOAD_PLUGINS"
STRICT_ENV = "FLOE_SINK_STRICT_PLUGINS"

log = get_logger(__name__)


@attrs.frozen(kw_only=True)
class PluginInfo:
    """Where a registered plugin comes from."""

    name: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """``name (distribution version)``, for messages."""
        if self.distribution is None:
            return self.name
        version = f" {self.version}" if self.version else ""
        return f"{self.name} ({self.distribution}{version})"


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin whose entry point could not be loaded."""

    name: str
    distribution: str | None
    error: str


def _env_names(variable: str) -> set[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _truthy(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in {"1", "true", "yes", "on"}


class SinkPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` for sink plugins, with one typed method per hook.

    ``create_sink``, ``write``, ``delete`` and ``get_source_config`` are routed to the single
    plugin that lists the sink type; ``write`` runs inside an OpenTelemetry egress span. A
    plugin without ``get_source_config`` gets the core's read config unchanged.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(SinkConnectorSpec)
        self.add_hookspecs(StateStoreSpec)
        self.add_hookspecs(SinkConfigSpec)
        self.load_failures: list[PluginFailure] = []
        self.plugin_info: dict[str, PluginInfo] = {}
        # Sinks are known by identity, never by equality: two equal sinks (attrs records
        # compare by value) are two sinks. A sink that can be weakly referenced is forgotten
        # when it is collected; one that cannot (a dict, a tuple) is kept with the entry, so
        # that its id is not reused while the entry lives.
        self._sinks: dict[int, tuple[Any, str, str]] = {}

    # -- registration -----------------------------------------------------------------------

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> pluggy.HookimplOpts | None:
        """Let a ``SinkConnector`` subclass instance register without hookimpl markers."""
        opts = super().parse_hookimpl_opts(plugin, name)
        if (
            opts is None
            and name in HOOK_NAMES
            and isinstance(plugin, SinkConnector)
            and not isinstance(plugin, type)
            # the inherited default of an optional hook is no implementation of it
            and getattr(type(plugin), name, None) is not getattr(SinkConnector, name, None)
        ):
            return {
                "wrapper": False,
                "hookwrapper": False,
                "optionalhook": False,
                "tryfirst": False,
                "trylast": False,
                "specname": None,
            }
        return opts

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """Register ``plugin`` (a module, a connector instance, any object with hookimpls).

        Args:
            plugin: The plugin object.
            name: The name to register it under (pluggy's canonical name by default).

        Returns:
            The name it was registered under, or ``None`` for a blocked name.

        Raises:
            pluggy.PluginValidationError: A hook does not match its specification (an
                argument the spec lacks, a hook the spec does not have); pluggy's own error,
                unchanged. Nothing of the plugin stays registered.
            ValueError: The name or the plugin is already registered (pluggy's error).
        """
        already = self.is_registered(plugin)
        try:
            registered = super().register(plugin, name)
        except pluggy.PluginValidationError:
            # pluggy records the name and the hooks validated so far before it finds the bad
            # one; a half-registered plugin would still list its sinks and answer calls.
            if not already and self.is_registered(plugin):
                super().unregister(plugin)
            raise
        if registered is not None and registered not in self.plugin_info:
            self.plugin_info[registered] = PluginInfo(name=registered)
        return registered

    def unregister(self, plugin: Any | None = None, name: str | None = None) -> Any | None:
        """Unregister a plugin by object or name (pluggy's semantics)."""
        if name is None and plugin is not None:
            name = self.get_name(plugin)
        removed = super().unregister(plugin=plugin, name=name)
        if name is not None:
            self.plugin_info.pop(name, None)
        return removed

    def load_entrypoints(self, *, strict: bool | None = None) -> int:
        """Load and register every plugin of the ``floe_sink`` entry-point group.

        Args:
            strict: Raise on the first plugin that fails to load; ``None`` reads
                ``FLOE_SINK_STRICT_PLUGINS``.

        A plugin that fails to import, or whose hooks do not match the specification (an
        argument the spec lacks, a hook name it does not have: see :meth:`check_pending`), is
        listed in :attr:`load_failures` and logged; the others load normally.

        Returns:
            How many plugins were registered.

        Raises:
            PluginLoadError: In strict mode, when a plugin fails to import.
            pluggy.PluginValidationError: In strict mode, when a plugin's hooks do not match
                the spec (pluggy's error, unchanged: a wrong signature is a bug to fix).
        """
        import importlib.metadata  # not at module level: it costs a third of import time

        strict = _truthy(STRICT_ENV) if strict is None else strict
        blocked = _env_names(BLOCK_ENV) or set()
        allowed = _env_names(LOAD_ENV)
        count = 0
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = entry_point.name
            if name in blocked:
                log.info("plugin_skipped", plugin=name, reason=f"listed in {BLOCK_ENV}")
                continue
            if allowed is not None and name not in allowed:
                log.info("plugin_skipped", plugin=name, reason=f"not listed in {LOAD_ENV}")
                continue
            if self.has_plugin(name) or self.is_blocked(name):
                continue
            dist = entry_point.dist
            dist_name = dist.name if dist is not None else None
            version = dist.version if dist is not None else None
            try:
                plugin = entry_point.load()
                if isinstance(plugin, type) and issubclass(plugin, SinkConnector):
                    plugin = plugin()  # an entry point may name a connector class
            except Exception as exc:
                if strict:
                    raise PluginLoadError(name, dist_name, exc) from exc
                self._record_failure(name, dist_name, exc)
                continue
            try:
                self.register(plugin, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                if strict:
                    raise
                self._record_failure(name, dist_name, exc)
                continue
            try:
                self.check_pending(plugin)  # a misspelt hook would never be called
            except pluggy.PluginValidationError as exc:
                self.unregister(plugin)
                if strict:
                    raise
                self._record_failure(name, dist_name, exc)
                continue
            self.plugin_info[name] = PluginInfo(name=name, distribution=dist_name, version=version)
            log.debug("plugin_loaded", plugin=name, distribution=dist_name, version=version)
            count += 1
        return count

    def check_pending(self, plugin: Any = None) -> None:
        """pluggy's check that every hook implementation has a specification.

        Args:
            plugin: Check only this plugin's hooks; ``None`` checks every plugin's.

        Raises:
            pluggy.PluginValidationError: Naming the unknown hook, the plugin, and the
                specified hook it probably misspells.
        """
        relay = vars(self.hook)
        specified = sorted(name for name, caller in relay.items() if caller.has_spec())
        for name, caller in list(relay.items()):
            if name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook or (plugin is not None and impl.plugin is not plugin):
                    continue
                hint = difflib.get_close_matches(name, specified, n=1, cutoff=0.6)
                guess = f"; did you mean {hint[0]!r}?" if hint else ""
                raise pluggy.PluginValidationError(
                    impl.plugin,
                    f"unknown hook {name!r} in plugin {impl.plugin_name!r}{guess} "
                    f"(the hooks: {', '.join(specified)})",
                )

    def _record_failure(self, name: str, distribution: str | None, exc: BaseException) -> None:
        failure = PluginFailure(
            name=name, distribution=distribution, error=f"{type(exc).__name__}: {exc}"
        )
        self.load_failures.append(failure)
        log.warning(
            "plugin_load_failed", plugin=name, distribution=distribution, error=failure.error
        )

    # -- sink types -------------------------------------------------------------------------

    def sink_providers(self) -> dict[str, list[PluginInfo]]:
        """Map every sink type to the plugins that list it (more than one is a conflict)."""
        providers: dict[str, list[PluginInfo]] = {}
        for impl in self.hook.list_available_sinks.get_hookimpls():
            info = self.plugin_info.get(impl.plugin_name, PluginInfo(name=impl.plugin_name))
            listed = impl.function()
            if listed is None:
                continue
            if isinstance(listed, str) or not isinstance(listed, list | tuple | set | frozenset):
                raise PluginContractError(
                    info.describe(),
                    "list_available_sinks",
                    f"it returned {type(listed).__name__}, not a list of sink type names",
                )
            for sink_type in listed:
                entries = providers.setdefault(sink_type, [])
                if info not in entries:
                    entries.append(info)
        return dict(sorted(providers.items()))

    def list_available_sinks(self) -> list[str]:
        """Return every sink type provided, sorted.

        Raises:
            PluginConflictError: When two plugins claim the same sink type.
        """
        providers = self.sink_providers()
        for sink_type, infos in providers.items():
            if len(infos) > 1:
                raise PluginConflictError(sink_type, (info.describe() for info in infos))
        return list(providers)

    def owner_of(self, sink_type: str) -> str:
        """Return the name of the plugin that provides ``sink_type``.

        Raises:
            SinkNotFoundError: When no plugin provides it.
            PluginConflictError: When several do.
        """
        infos = self.sink_providers().get(sink_type)
        if not infos:
            available = ", ".join(self.sink_providers()) or "none"
            raise SinkNotFoundError(
                f"No installed plugin provides sink type {sink_type!r} (available: {available}). "
                "Install the plugin package that provides it, or fix sink_type.",
                sink_type=sink_type,
            )
        if len(infos) > 1:
            raise PluginConflictError(sink_type, (info.describe() for info in infos))
        return infos[0].name

    def _call_owner(self, hook_name: str, owner: str, **kwargs: Any) -> Any:
        others = [
            plugin
            for name, plugin in self.list_name_plugin()
            if name != owner and plugin is not None
        ]
        caller = self.subset_hook_caller(hook_name, remove_plugins=others)
        return caller(**kwargs)

    # -- the typed hook methods ---------------------------------------------------------------

    def create_sink(self, config: SinkConfig) -> Any:
        """Build the sink for ``config.sink_type`` with the plugin that provides it.

        Raises:
            SinkNotFoundError: No plugin provides the sink type.
            SinkConfigurationError: The plugin refused the config.
            PluginContractError: The plugin returned nothing (its bug, not the config's).
        """
        owner = self.owner_of(config.sink_type)
        sink = self._call_owner("create_sink", owner, config=config)
        if sink is None:
            raise PluginContractError(
                owner,
                "create_sink",
                f"it lists sink type {config.sink_type!r} but returned nothing for it",
            )
        self._remember(sink, owner, config.sink_type)
        log.debug("sink_created", sink_type=config.sink_type, plugin=owner)
        return sink

    def _remember(self, sink: Any, owner: str, sink_type: str) -> None:
        key = id(sink)
        try:
            held: Any = weakref.ref(sink, lambda _ref: self._sinks.pop(key, None))
        except TypeError:
            held = sink
        self._sinks[key] = (held, owner, sink_type)

    def _owner_of_sink(self, sink: Any) -> tuple[str, str] | None:
        entry = self._sinks.get(id(sink))
        if entry is None:
            return None
        held, owner, sink_type = entry
        alive = held() if isinstance(held, weakref.ref) else held
        return (owner, sink_type) if alive is sink else None

    def _route(self, sink: Any, sink_type: str | None) -> tuple[str, str]:
        """The plugin (and sink type) a sink belongs to: the one that created it, else the
        one that owns ``sink_type``."""
        known = self._owner_of_sink(sink)
        if known is not None:
            return known
        if sink_type is not None:
            return self.owner_of(sink_type), sink_type
        raise SinkNotFoundError(
            "This sink was not created by this plugin manager; pass sink_type= to route it"
        )

    def write(
        self,
        sink: Any,
        data: Any,
        *,
        destination: str | None = None,
        sink_type: str | None = None,
        delivery: Any = None,
    ) -> EgressResult:
        """Deliver ``data`` to ``sink`` through the plugin that created it, inside a span.

        Args:
            sink: A sink returned by :meth:`create_sink`.
            data: A ``pyarrow.Table`` or an iterable of ``pyarrow.RecordBatch``.
            delivery: The :class:`floe_sink.Delivery` (journal) of this write, if any.
            destination: The destination name, for the span, logs and error context.
            sink_type: Needed only for a sink not created by this manager.

        Raises:
            SinkNotFoundError: The sink's plugin cannot be found.
            SinkError: Whatever the plugin raises, unchanged.
            PluginContractError: The plugin returned something other than an EgressResult.
        """
        owner, sink_type = self._route(sink, sink_type)
        log.info("write_started", sink_type=sink_type, destination=destination, plugin=owner)
        with egress_span(sink_type, destination) as span:
            result = self._call_owner("write", owner, sink=sink, data=data, delivery=delivery)
            if not isinstance(result, EgressResult):
                raise PluginContractError(
                    owner, "write", f"it returned {type(result).__name__}, not an EgressResult"
                )
            record_egress_result(span, result)
        log.info(
            "write_finished",
            sink_type=sink_type,
            destination=destination,
            success=result.success,
            rows=result.rows_delivered,
            duration_seconds=round(result.duration_seconds, 3),
        )
        return result

    def supports_deletes(self, sink_type: str, sink: Any = None) -> bool:
        """True when the plugin of ``sink_type`` implements ``delete`` (and ``sink`` does not
        say ``supports_deletes = False``)."""
        owner = self.owner_of(sink_type)
        implemented = any(impl.plugin_name == owner for impl in self.hook.delete.get_hookimpls())
        return implemented and bool(getattr(sink, "supports_deletes", True))

    def delete(
        self,
        sink: Any,
        keys: Any,
        *,
        destination: str | None = None,
        sink_type: str | None = None,
        delivery: Any = None,
    ) -> EgressResult:
        """Delete ``keys`` at ``sink``'s destination through the plugin that created it.

        Raises:
            SinkNotFoundError: The sink's plugin cannot be found.
            PluginContractError: The plugin returned something other than an EgressResult
                (the configuration checks refuse ``mirror`` for a plugin without ``delete``).
        """
        owner, sink_type = self._route(sink, sink_type)
        with egress_span(sink_type, destination, name="floe_sink.delete") as span:
            result = self._call_owner("delete", owner, sink=sink, keys=keys, delivery=delivery)
            if not isinstance(result, EgressResult):
                raise PluginContractError(
                    owner,
                    "delete",
                    f"it returned {type(result).__name__}, not an EgressResult, for sink type "
                    f"{sink_type!r} (sync: changes does not delete)",
                )
            record_egress_result(span, result)
        return result

    def get_source_config(
        self, catalog_config: dict[str, Any], *, sink_type: str | None = None
    ) -> dict[str, Any]:
        """Return the Iceberg read config, as the plugin of ``sink_type`` (or the first plugin
        that answers) returns it.

        Args:
            catalog_config: The complete read config the core built
                (:func:`floe_sink.source.source_config`); the plugin receives a copy.
            sink_type: Ask only the plugin that provides it.

        Returns:
            The plugin's answer, or ``catalog_config`` unchanged when the plugin does not
            implement the hook or answers ``None``: the core's own behaviour.

        Raises:
            PluginContractError: The plugin answered something other than a mapping.
        """
        offered = copy.deepcopy(dict(catalog_config))
        owner = self.owner_of(sink_type) if sink_type is not None else None
        if owner is not None:
            result = self._call_owner("get_source_config", owner, catalog_config=offered)
        else:
            result = self.hook.get_source_config(catalog_config=offered)
        if result is None:
            return dict(catalog_config)
        if not isinstance(result, Mapping):
            raise PluginContractError(
                owner or "?",
                "get_source_config",
                f"it returned {type(result).__name__}, not the read config (a mapping)",
            )
        return dict(result)

    def config_models(self) -> dict[str, type]:
        """The model of the ``config`` of each listed sink type whose plugin declares one
        (``get_config_model``), by sink type, sorted.

        Raises:
            PluginConflictError: When two plugins claim the same sink type.
            PluginContractError: A plugin returned something other than a class.
        """
        models: dict[str, type] = {}
        for sink_type in self.list_available_sinks():
            owner = self.owner_of(sink_type)
            model = self._call_owner("get_config_model", owner, sink_type=sink_type)
            if model is None:
                continue
            if not isinstance(model, type):
                info = self.plugin_info.get(owner, PluginInfo(name=owner))
                raise PluginContractError(
                    info.describe(),
                    "get_config_model",
                    f"it returned {type(model).__name__}, not the model (an attrs class)",
                )
            models[sink_type] = model
        return models

    def get_state_store(
        self, state_config: dict[str, Any], secrets: Mapping[str, Any], state_dir: Path
    ) -> Any:
        """The state store of the first plugin that answers ``get_state_store``; floe-sink's
        own backends (``local``, ``sql``) answer last, also when they were not loaded.

        Returns:
            A :class:`floe_sink.state.StateStore`, or ``None`` when no plugin provides the
            backend.
        """
        from floe_sink import state_backends

        store = self.hook.get_state_store(
            state_config=state_config, secrets=secrets, state_dir=state_dir
        )
        if store is None and not self.is_registered(state_backends):
            store = state_backends.get_state_store(state_config, secrets, state_dir)
        return store


def get_plugin_manager(
    *, load_entrypoints: bool = True, strict: bool | None = None
) -> SinkPluginManager:
    """Return a new plugin manager with the ``floe_sink`` entry-point plugins loaded.

    Args:
        load_entrypoints: False gives an empty manager (tests, embedding applications).
        strict: See :meth:`SinkPluginManager.load_entrypoints`.

    Returns:
        A new manager; each call loads the entry points afresh.

    Raises:
        PluginLoadError: In strict mode, see :meth:`SinkPluginManager.load_entrypoints`.
    """
    manager = SinkPluginManager()
    if load_entrypoints:
        manager.load_entrypoints(strict=strict)
    return manager
