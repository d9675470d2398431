"""What a conformance check works on: the plugin, its destination, its journal, what it declares.

A plugin author describes a destination with :class:`SinkTarget` and the sink's support with
:class:`Capabilities`; :class:`SinkUnderTest` puts them together with a plugin manager and a
real journal (:class:`floe_sink.state.LocalStateStore`), and drives the sink the way the
command does. A broken property is raised as :class:`ConformanceError`, named by
:class:`Property`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from floe_sink.delivery import BatchReceipt, Delivery
from floe_sink.models import SinkConfig
from floe_sink.state import BatchRecord
from floe_sink.testing._faults import FaultInjector
from floe_sink.testing._samples import coerce_table

if TYPE_CHECKING:
    from floe_sink.manager import SinkPluginManager
    from floe_sink.state import LocalStateStore

__all__ = [
    "BadConfig",
    "Capabilities",
    "ConformanceError",
    "JournalDelivery",
    "Property",
    "SinkTarget",
    "SinkUnderTest",
    "broken",
]


class Property:
    """The names of the properties the kit checks: every failure starts with one."""

    EMPTY_INPUT = "empty input"
    ARROW_TYPE = "arrow type round-trip"
    BATCH_SIZE = "batch_size"
    RESULT = "EgressResult"
    CHECKSUM = "EgressResult.checksum"
    FIELD_MAPPING = "field_mapping"
    IDEMPOTENCY_KEY = "idempotency key"
    EXACT_RESUME = "exact resume"
    TRANSIENT_FAILURE = "transient failure retried"
    PERMANENT_FAILURE = "permanent failure reported"
    CONFIGURATION_ERROR = "configuration error names the key"
    SECRET_IN_REPR = "secret in repr"  # noqa: S105 - a property name
    SECRET_IN_LOGS = "secret in logs"  # noqa: S105 - a property name
    SECRET_IN_SPANS = "secret in spans"  # noqa: S105 - a property name
    SECRET_IN_ERRORS = "secret in errors"  # noqa: S105 - a property name
    RECORD_IDS = "record ids"
    DELETES = "deletes"
    KIT_SETUP = "kit set-up"
    """Not the sink's fault: the test class or its target is set up wrongly."""


class ConformanceError(AssertionError):
    """A property of the delivery contract does not hold; the message starts with its name.

    Attributes:
        property: The property broken (one of :class:`Property`).
        detail: What was observed, and how to fix it.
    """

    def __init__(self, property: str, detail: str) -> None:
        self.property = property
        self.detail = detail
        super().__init__(f"{property}: {detail}")


def broken(property: str, detail: str) -> ConformanceError:
    """The error to raise when ``property`` does not hold."""
    return ConformanceError(property, detail)


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a sink declares it supports; the kit checks what is declared.

    New capabilities are added as new fields with a default of "not supported", so a test
    class written today keeps working when the kit learns more.

    Attributes:
        arrow_types: The Arrow types the sink delivers faithfully, as ``pyarrow.DataType``
            objects, or as ``pyarrow.Array`` objects of sample values for types the kit has
            no samples of.
            Each round-trips in its own test (with an ``id: int64`` column next to it).
        exact_resume: The sink honours ``write``'s ``delivery`` (it sends through
            :func:`floe_sink.deliver_batches`, or uses the delivery's journal the same way),
            so an interrupted delivery resumes without re-sending acknowledged batches.
        record_ids: ``EgressResult.destination_record_ids`` holds one ID per row delivered.
        deletes: The plugin implements the ``delete`` hook (``sync: mirror``): rows whose
            keys it is given are gone from the destination.
        record_results: Reserved: the kit does not check per-record results (records the
            destination refuses one by one, ``BatchReceipt.rejected``) yet.
    """

    arrow_types: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    exact_resume: bool = False
    record_ids: bool = False
    deletes: bool = False
    record_results: bool = False


@attrs.frozen(kw_only=True)
class SinkTarget:
    """A fresh destination for one conformance test, and how the kit sees into it.

    Attributes:
        config: The :class:`floe_sink.SinkConfig` of a sink writing to this destination.
            The kit changes only ``batch_size``, ``field_mapping`` and ``destination`` (to
            ``config.destination`` or ``conformance-<sink type>``); make retries fast here
            (``retry_config``), the fault checks retry on purpose.
        read_back: Given the Arrow schema of what was written, return every row the
            destination holds as a ``pyarrow.Table`` (empty when the destination holds
            nothing or does not exist yet). Columns may come in any type pyarrow can cast to
            the schema's (ISO text for timestamps, integers for booleans); columns not in the
            schema are ignored.
        secrets: Values in ``config`` that must never be shown (tokens, passwords, a URL's
            password); each must occur in ``config.connection_config``.
        faults: What makes the destination fail on demand (see :class:`FaultInjector`,
            :class:`HttpFaultProxy`, :class:`CallFaults`); without it the fault checks skip.
        sent_keys: The idempotency keys the destination received, in order (where it sees
            them: an ``Idempotency-Key`` header, a ledger); optional.
        batch_rows: The rows of each batch the destination received, in order; optional
            (without ``exact_resume``, it is how the kit sees batch boundaries).
    """

    config: SinkConfig
    read_back: Callable[[Any], Any]
    secrets: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    faults: FaultInjector | None = None
    sent_keys: Callable[[], Sequence[str]] | None = None
    batch_rows: Callable[[], Sequence[int]] | None = None


@attrs.frozen(kw_only=True)
class BadConfig:
    """A configuration ``create_sink`` must refuse with a message naming ``key``."""

    config: SinkConfig
    key: str
    """The setting the :class:`floe_sink.SinkConfigurationError` message must name."""

    @classmethod
    def setting(cls, config: SinkConfig, key: str, value: Any) -> BadConfig:
        """``config`` with ``connection_config[key] = value``, which must be refused."""
        connection = {**config.connection_config, key: value}
        return cls(config=attrs.evolve(config, connection_config=connection), key=key)

    @classmethod
    def missing(cls, config: SinkConfig, key: str) -> BadConfig:
        """``config`` without ``connection_config[key]``, which must be refused."""
        connection = {name: v for name, v in config.connection_config.items() if name != key}
        return cls(config=attrs.evolve(config, connection_config=connection), key=key)


class JournalDelivery(Delivery):
    """A :class:`floe_sink.Delivery` on a real journal that remembers what this write sent.

    Args:
        destination: The destination name.
        store: The journal.
        delivery_id: Resume this delivery (``None`` starts a new one).
        stop_after: Request a stop (as SIGTERM would) once this many batches are
            acknowledged: the delivery loop then sends no further batch.
    """

    def __init__(
        self,
        destination: str,
        *,
        store: LocalStateStore,
        delivery_id: str | None = None,
        stop_after: int | None = None,
    ) -> None:
        resumed = delivery_id is not None
        if delivery_id is None:
            delivery_id = store.create_delivery(destination, "floe-sink conformance kit", None)
        super().__init__(destination, delivery_id=delivery_id, store=store, resumed=resumed)
        self.store = store
        self.stop_after = stop_after
        self.sent: list[BatchRecord] = []
        """The batches acknowledged through this object, in order."""
        self._sent_lock = threading.Lock()

    def acknowledge(self, position: int, key: str, receipt: BatchReceipt, *args: Any) -> None:
        super().acknowledge(position, key, receipt, *args)  # and the batch, where given
        record = BatchRecord(position=position, key=key, rows=receipt.rows, bytes=receipt.bytes)
        with self._sent_lock:
            self.sent.append(record)
            if self.stop_after is not None and len(self.sent) >= self.stop_after:
                self.stop.request(signal.SIGTERM)

    def journal(self) -> dict[int, BatchRecord]:
        """The acknowledged batches as the state store holds them, by position."""
        return self.store.batches(self.delivery_id)


class SinkUnderTest:
    """A plugin, one fresh destination and a journal: what every check works on.

    Args:
        plugin: The plugin (module, :class:`floe_sink.SinkConnector` or hookimpl object).
        target: The destination and how to see into it.
        capabilities: What the sink declares.
        workdir: An empty directory for the journal (``tmp_path``).
    """

    def __init__(
        self,
        *,
        plugin: object,
        target: SinkTarget,
        capabilities: Capabilities | None = None,
        workdir: Path,
    ) -> None:
        self.plugin = plugin
        self.target = target
        self.capabilities = capabilities or Capabilities()
        self.workdir = Path(workdir)
        self._manager: SinkPluginManager | None = None
        self._store: LocalStateStore | None = None

    def __repr__(self) -> str:
        return f"SinkUnderTest({self.sink_type!r}, destination={self.destination!r})"

    @property
    def sink_type(self) -> str:
        return self.target.config.sink_type

    @property
    def destination(self) -> str:
        """The destination name the kit writes under (keys and journals are keyed by it)."""
        return self.target.config.destination or f"conformance-{self.sink_type}"

    @property
    def manager(self) -> SinkPluginManager:
        """A plugin manager with only the plugin under test."""
        if self._manager is None:
            from floe_sink.manager import get_plugin_manager

            manager = get_plugin_manager(load_entrypoints=False)
            manager.register(self.plugin, name="plugin-under-test")
            self._manager = manager
        return self._manager

    @property
    def store(self) -> LocalStateStore:
        """The journal: a :class:`floe_sink.state.LocalStateStore` in ``workdir``."""
        if self._store is None:
            from floe_sink.state import LocalStateStore

            self._store = LocalStateStore(self.workdir / "floe-state")
        return self._store

    def config(self, **changes: Any) -> SinkConfig:
        """The target's config under the kit's destination name, with ``changes``."""
        return attrs.evolve(self.target.config, destination=self.destination, **changes)

    def create_sink(self, **changes: Any) -> Any:
        """A new sink for the target (``changes`` as in :meth:`config`)."""
        return self.manager.create_sink(self.config(**changes))

    def delivery(
        self, *, resume: JournalDelivery | None = None, stop_after: int | None = None
    ) -> JournalDelivery:
        """A new delivery in the journal, or the resumption of ``resume``."""
        return JournalDelivery(
            self.destination,
            store=self.store,
            delivery_id=resume.delivery_id if resume is not None else None,
            stop_after=stop_after,
        )

    def write(self, data: Any, *, delivery: Delivery | None = None, **changes: Any) -> Any:
        """Create a sink (``changes`` as in :meth:`config`) and write ``data`` through the
        plugin manager, as the command does; return the :class:`floe_sink.EgressResult`."""
        sink = self.create_sink(**changes)
        return self.manager.write(
            sink, data, destination=self.destination, sink_type=self.sink_type, delivery=delivery
        )

    def read_back(self, schema: Any, property: str) -> Any:
        """What the destination holds, as a table of ``schema`` (for ``property``'s check)."""
        try:
            table = self.target.read_back(schema)
        except Exception as exc:
            raise broken(
                Property.KIT_SETUP,
                f"read_back failed while checking {property}: {type(exc).__name__}: {exc}",
            ) from exc
        try:
            return coerce_table(table, schema)
        except ValueError as exc:
            raise broken(property, f"reading the destination back: {exc}") from None

    def close(self) -> None:
        """Close the journal."""
        if self._store is not None:
            self._store.close()
            self._store = None
