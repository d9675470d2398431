"""What a Ray task runs: deliver one unit of a destination, in a Ray worker process.

:func:`deliver_unit` is the task. It builds everything the way the command does, in the
worker: the plugin manager from the ``floe_sink`` entry points, the sink from the same
``SinkConfig`` (its secret resolved here, from the mounted secrets: secret values are never
pickled), the source table from the manifest's catalog. It reads only its unit's data files,
with the driver's plan (metadata, projection, filter), and writes them with a
:class:`floe_sink.delivery.Delivery` that keeps the delivery's id and names the unit.

It returns a :class:`floe_sink.units.UnitResult`, or raises :class:`UnitRetryableError` when
the sink failed transiently (Ray then runs it again, up to the engine's ``max_retries``). A
worker killed mid-unit is retried by Ray the same way; the unit's keys and the sink's ledger
make the second delivery exact (``sql_database``) or repeat the same keys (``rest_api``).

Nothing here imports Ray at module level except :class:`ActorPacer`'s ``acquire``, so the
module can be unit-tested without a cluster.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from floe_sink.delivery import DeliveryUnit
from floe_sink.logs import get_logger
from floe_sink.models import SinkConfig
from floe_sink.units import UnitResult

__all__ = [
    "ActorPacer",
    "DestinationContext",
    "TokenBucket",
    "UnitRetryableError",
    "UnitSpec",
    "deliver_unit",
]

log = get_logger(__name__)


class UnitRetryableError(Exception):
    """A unit failed transiently (after the sink's own retries): Ray may run it again."""


@attrs.frozen(kw_only=True)
class DestinationContext:
    """What every task of one destination needs; put in Ray's object store once.

    Holds no secret value: ``sink_config`` lost its secret keys, which each worker resolves
    again from ``secret_ref``; the catalog is the manifest's section, whose secret is
    resolved the same way.
    """

    name: str
    sink_type: str
    delivery_id: str
    sink_config: SinkConfig
    secret_ref: str | None
    secrets_dir: str | None
    state_dir: str
    catalog: Any
    """The manifest's ``CatalogConfig`` (``None``: the embedded catalog under state_dir)."""
    source_table: str
    table_metadata: Any
    """The pyiceberg ``TableMetadata`` the driver planned with."""
    projection: Any
    """The pyiceberg ``Schema`` read (after column projection)."""
    row_filter: Any
    case_sensitive: bool
    schema: pa.Schema
    """The Arrow schema of the source batches."""
    log_level: int = logging.INFO
    run_id: str = ""
    key_columns: tuple[str, ...] = ()
    """The primary key under its destination names (what refused records are filed by)."""
    open_rejects: tuple[str, ...] = ()
    """Keys of refused records still open: a unit that delivers one clears it."""


@attrs.frozen(kw_only=True)
class UnitSpec:
    """One unit, as a task receives it."""

    index: int
    unit_id: str
    tasks: tuple[Any, ...]


class UnitJournal:
    """Stands in for the state store in a task: what the driver records when the unit is in.

    Batch records stay in memory (the driver records the unit as a whole); refused records
    and the keys they were cleared by are collected for the driver's dead-letter store.
    """

    def __init__(self) -> None:
        self.rejects: list[dict[str, Any]] = []
        self.cleared: list[str] = []

    def acknowledge(self, delivery_id: str, batch: Any) -> None:
        """Nothing: the driver journals the whole unit."""

    def reject(self, destination: str, **record: Any) -> None:
        self.rejects.append(dict(record))

    def clear_rejects(self, destination: str, keys: list[str]) -> None:
        self.cleared.extend(keys)


class TokenBucket:
    """A Ray actor (``ray.remote(num_cpus=0)`` of this class): requests evenly spaced.

    Every :meth:`reserve` takes the next free slot, ``1 / rate`` seconds after the previous
    one, and says how long the caller has to wait for it; the caller sleeps, not the actor.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = float("-inf")

    def reserve(self) -> float:
        """Seconds until the caller's slot."""
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        return slot - now


class ActorPacer:
    """A :class:`floe_sink.delivery.Pacer` backed by a :class:`TokenBucket` actor."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def acquire(self) -> float:
        import ray

        delay = float(ray.get(self._actor.reserve.remote()))
        if delay > 0:
            time.sleep(delay)
        return max(delay, 0.0)


# -- the worker process's own set-up ---------------------------------------------------------

_process_lock = threading.Lock()
_process_state: dict[Any, Any] = {}
_secret_values: set[str] = set()


def _scrub(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    from floe_sink.secrets import scrub_text

    if _secret_values:
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = scrub_text(value, _secret_values)
    return event_dict


def _set_up_process(context: DestinationContext) -> None:
    """Logging (JSON lines on stderr, secrets scrubbed) and tracing, once per process."""
    with _process_lock:
        if _process_state.get("set_up"):
            return
        import structlog

        from floe_sink.logs import configure_logging
        from floe_sink.trace_export import setup_tracing

        configure_logging(level=context.log_level, json=True, stream=sys.stderr)
        processors = list(structlog.get_config()["processors"])
        processors.insert(len(processors) - 1, _scrub)
        structlog.configure(processors=processors)
        setup_tracing()  # FLOE_SINK_OTEL / OTEL_EXPORTER_OTLP_* as the driver passed them
        _process_state["set_up"] = True


def _manager() -> Any:
    with _process_lock:
        manager = _process_state.get("manager")
        if manager is None:
            from floe_sink.manager import get_plugin_manager

            manager = get_plugin_manager()
            _process_state["manager"] = manager
        return manager


def _secrets_dir(context: DestinationContext) -> Path | None:
    """The driver's secrets dir when this machine has it, else this worker's default."""
    if context.secrets_dir and Path(context.secrets_dir).is_dir():
        return Path(context.secrets_dir)
    return None


def _sink_config(context: DestinationContext) -> SinkConfig:
    """The driver's ``SinkConfig`` with the destination's secret resolved here."""
    from floe_sink.config import resolve_secret

    connection = dict(context.sink_config.connection_config)
    if context.secret_ref:
        secret = resolve_secret(context.secret_ref, _secrets_dir(context))
        _secret_values.update(value.reveal() for value in secret.values())
        connection.update(secret)
    return attrs.evolve(context.sink_config, connection_config=connection)


def _catalog_properties(context: DestinationContext) -> dict[str, Any]:
    catalog = context.catalog
    if catalog is None:
        return {}
    from floe_sink.config import resolve_secret

    secret = {}
    if catalog.credential_secret_ref:
        secret = dict(resolve_secret(catalog.credential_secret_ref, _secrets_dir(context)))
        _secret_values.update(value.reveal() for value in secret.values())
    return {"name": catalog.name, **catalog.to_pyiceberg_properties(secret)}


def _table_io(context: DestinationContext, manager: Any) -> Any:
    """The table's ``FileIO``, loaded through the catalog once per delivery and process.

    Loading the table (one catalog call) gives the file access the catalog grants, vended
    credentials included; the files to read and how come from the driver's plan.
    """
    key = ("io", context.delivery_id, context.source_table)
    with _process_lock:
        cached = _process_state.get(key)
    if cached is not None:
        return cached
    from floe_sink.source import open_table, source_config

    # what the driver's prepare hands the plugin: the core's read config, then the hook's
    read_config = manager.get_source_config(
        source_config(
            {
                **_catalog_properties(context),
                "table": context.source_table,
                "state_dir": context.state_dir,
            }
        ),
        sink_type=context.sink_type,
    )
    io = open_table(read_config).io
    with _process_lock:
        for old in [k for k in _process_state if isinstance(k, tuple) and k[0] == "io"]:
            del _process_state[old]  # one delivery at a time per process is the usual case
        _process_state[key] = io
    return io


@attrs.frozen(kw_only=True)
class _UnitScan:
    """The ``DataScan`` attributes :func:`floe_sink.source.read_tasks` reads files with."""

    table_metadata: Any
    io: Any
    projected: Any
    row_filter: Any
    case_sensitive: bool
    limit: int | None = None

    def projection(self) -> Any:
        return self.projected


def _flush_spans() -> None:
    from opentelemetry import trace

    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if callable(flush):
        flush(5_000)


def _pieces(delivery: Any, result: Any) -> tuple[tuple[int, str], ...]:
    from floe_sink.checksum import DeliveryChecksum

    if isinstance(delivery.checksum, DeliveryChecksum):
        return tuple(delivery.checksum.pieces())
    # a sink that checksums on its own: its digest of the unit stands for the unit's files
    digest = str(getattr(result, "checksum", "") or "")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        import hashlib

        digest = hashlib.sha256(digest.encode()).hexdigest()
    rows = int(getattr(result, "rows_delivered", 0))
    return ((rows, digest),) if rows else ()


def warm_up() -> int:
    """A task that starts a worker and imports what units need, before the first unit."""
    import pyiceberg.io.pyarrow  # noqa: F401

    import floe_sink.source  # noqa: F401

    _manager()
    return os.getpid()


def deliver_unit(
    context: DestinationContext,
    spec: UnitSpec,
    pacer: Any = None,
    carrier: Mapping[str, str] | None = None,
) -> UnitResult:
    """Deliver one unit (the Ray task); see the module docstring.

    Raises:
        UnitRetryableError: The sink failed transiently; Ray may run the task again.
    """
    from opentelemetry import propagate, trace

    from floe_sink.checksum import FileBoundaries
    from floe_sink.delivery import Delivery
    from floe_sink.source import read_tasks

    _set_up_process(context)
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    parent = propagate.extract(dict(carrier or {}))
    tracer = trace.get_tracer("floe_sink")
    attributes: dict[str, str | int] = {
        "floe.sink.destination": context.name,
        "floe.sink.type": context.sink_type,
        "floe.unit.index": spec.index,
        "floe.unit.id": spec.unit_id,
        "floe.unit.files": len(spec.tasks),
    }
    try:
        with tracer.start_as_current_span(
            "floe_sink.unit", context=parent, attributes=attributes
        ) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            manager = _manager()
            sink = manager.create_sink(_sink_config(context))
            scan = _UnitScan(
                table_metadata=context.table_metadata,
                io=_table_io(context, manager),
                projected=context.projection,
                row_filter=context.row_filter,
                case_sensitive=context.case_sensitive,
            )
            files = FileBoundaries()
            journal = UnitJournal()
            delivery = Delivery(
                context.name,
                delivery_id=context.delivery_id,
                store=journal,  # type: ignore[arg-type]  # the part of a store a unit uses
                unit=DeliveryUnit(index=spec.index, unit_id=spec.unit_id),
                files=files,
                pacer=pacer,
            )
            delivery.run_id = context.run_id
            delivery.track_rejects(context.key_columns, context.open_rejects)
            reader = read_tasks(
                scan, spec.tasks, context.schema, table_name=context.source_table, files=files
            )
            result = manager.write(
                sink,
                reader,
                destination=context.name,
                sink_type=context.sink_type,
                delivery=delivery,
            )
            span.set_attribute("floe.sink.rows_written", result.rows_delivered)
            if not result.success:
                failure = delivery.failure
                if bool(getattr(failure, "retryable", False)):
                    log.warning(
                        "unit_failed_transiently",
                        destination=context.name,
                        unit=spec.index,
                        error="; ".join(result.errors),
                        worker=worker,
                    )
                    raise UnitRetryableError("; ".join(result.errors) or str(failure))
            unit_result = UnitResult(
                index=spec.index,
                unit_id=spec.unit_id,
                success=result.success,
                rows=result.rows_delivered,
                bytes=result.bytes_transmitted,
                batches=delivery.acknowledged_count,
                pieces=_pieces(delivery, result),
                record_ids=tuple(result.destination_record_ids),
                errors=tuple(result.errors),
                rows_rejected=int(getattr(result, "rows_rejected", 0)),
                rejects=tuple(journal.rejects),
                cleared_rejects=tuple(journal.cleared),
                duration_seconds=time.perf_counter() - started,
                trace_id=trace_id,
                worker=worker,
            )
        log.info(
            "unit_delivered" if unit_result.success else "unit_failed",
            destination=context.name,
            unit=spec.index,
            rows=unit_result.rows,
            seconds=round(unit_result.duration_seconds, 3),
            worker=worker,
        )
        return unit_result
    finally:
        _flush_spans()
