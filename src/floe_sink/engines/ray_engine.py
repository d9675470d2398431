"""The Ray engine: a destination's units delivered by Ray tasks, driven from this process.

Why Ray tasks over floe-sink's own plan (and not Ray Data with a ``Datasink``): the plan is
already made (the delivery's snapshot, its files in path order), the unit of retry has to be
a unit with a stable identity and a journal record (Ray Data re-partitions blocks as it
likes, and a retried write task would have no identity to key its batches by), and the sink
must be the same plugin object, built through the same entry points, fed by the core's
delivery loop (batching, keys, retries, the ledger). A task per unit is all of that with
nothing in between; the driver keeps the journal, the rate limit and the aggregation.

For one destination, :meth:`RayEngine.write`:

1. cuts the scan into units (:func:`floe_sink.units.plan_units`) and takes from the journal
   the units an earlier run of the delivery completed (they are not sent again);
2. has the sink make what the units share, once, here (``begin_units``: tables, a replace's
   staging table);
3. puts the destination's context (no secret values) in the object store, starts a
   :class:`~floe_sink.engines.ray_worker.TokenBucket` actor when the sink has a rate limit,
   and keeps up to ``max_tasks`` units in flight, each a task
   (:func:`~floe_sink.engines.ray_worker.deliver_unit`) retried by Ray up to
   ``max_retries`` times after a transient failure or a dead worker;
4. records each unit in the journal as its task returns (a killed driver's rerun skips it);
   a unit that failed for good is reported and the other units go on;
5. when every unit is in, completes the delivery once (``complete_units``: a replace's swap)
   and returns one result for the destination (:func:`floe_sink.units.aggregate`).

The run's OpenTelemetry context goes to every task, whose spans join the run's trace.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa

from floe_sink.delivery import BatchReceipt, Delivery, DeliveryInterrupted
from floe_sink.engines import RAY_EXTRA_HINT, EngineSettings, EngineUnavailableError
from floe_sink.errors import SinkConfigurationError, SinkError
from floe_sink.logs import get_logger
from floe_sink.units import Unit, UnitResult, aggregate, plan_units

if TYPE_CHECKING:
    from floe_sink.job import PreparedDestination
    from floe_sink.models import EgressResult

__all__ = ["RayEngine"]

log = get_logger(__name__)

_SETTLE_SECONDS = 10.0
"""After a stop: how long units in flight (cancelled) may take to report."""


def _worker_env() -> dict[str, str]:
    """Variables passed to the workers of a cluster we connect to (a local one inherits all):
    OpenTelemetry's, and floe-sink's tracing and plugin switches."""
    from floe_sink.manager import BLOCK_ENV, LOAD_ENV, STRICT_ENV
    from floe_sink.trace_export import OTEL_ENV

    named = {OTEL_ENV, BLOCK_ENV, LOAD_ENV, STRICT_ENV}
    return {k: v for k, v in os.environ.items() if k.startswith("OTEL_") or k in named}


class RayEngine:
    """Delivers destinations as Ray tasks, one per unit; see the module docstring.

    Args:
        settings: The engine settings (address, max_tasks, unit size, retries).
        catalog: The manifest's catalog section (``None``: the embedded catalog).
        secrets_dir: The command's ``--secrets-dir`` (workers use it when they have it).
        state_dir: The state directory (the embedded catalog lives below it).
        show_worker_logs: Let Ray print the workers' log lines here (on stderr).
    """

    def __init__(
        self,
        settings: EngineSettings,
        *,
        catalog: Any = None,
        secrets_dir: Path | None = None,
        state_dir: Path = Path(".floe"),
        show_worker_logs: bool = True,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.secrets_dir = None if secrets_dir is None else Path(secrets_dir).resolve()
        self.state_dir = Path(state_dir).resolve()
        self.show_worker_logs = show_worker_logs
        self._started_ray = False
        self._remote: Any = None
        self._bucket: Any = None
        self._warming: list[Any] = []

    # -- the cluster -----------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the cluster (or start a local Ray instance) unless Ray is running here.

        Raises:
            EngineUnavailableError: Ray cannot be imported.
            SinkConfigurationError: Ray refused to start or connect.
        """
        try:
            import ray
        except ImportError as exc:
            raise EngineUnavailableError(
                f"the Ray engine cannot import Ray ({exc}); {RAY_EXTRA_HINT}"
            ) from exc

        from floe_sink.engines import ray_worker

        if not ray.is_initialized():
            env = _worker_env()
            main = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGTERM) if main else None
            try:
                ray.init(
                    address=self.settings.address,
                    include_dashboard=False,
                    log_to_driver=self.show_worker_logs,
                    runtime_env={"env_vars": env} if env and self.settings.address else None,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = self.settings.address or "a local Ray instance"
                raise SinkConfigurationError(
                    f"cannot start the Ray engine on {where}: {exc}"
                ) from exc
            finally:
                if main and previous is not None:
                    signal.signal(signal.SIGTERM, previous)  # ray.init takes SIGTERM over
            self._started_ray = True
        log.info("ray_engine_started", resources=_cpus(ray), address=self.settings.address)
        self._remote = ray.remote(ray_worker.deliver_unit).options(
            num_cpus=1,
            max_retries=self.settings.max_retries,
            retry_exceptions=[ray_worker.UnitRetryableError],
        )
        self._bucket = ray.remote(num_cpus=0)(ray_worker.TokenBucket)
        # start the workers now (and import the plugins there) while the driver plans
        warm = ray.remote(ray_worker.warm_up).options(num_cpus=1, max_retries=0)
        self._warming = [warm.remote() for _ in range(self.settings.max_tasks or _cpus(ray))]

    def close(self) -> None:
        """Shut Ray down when :meth:`start` started or connected it."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    # -- one destination --------------------------------------------------------------------

    def write(self, prepared: PreparedDestination, manager: Any, reporter: Any) -> EgressResult:
        """Deliver one destination's units; see the module docstring.

        Raises:
            DeliveryInterrupted: A stop was requested (units in flight were cancelled; those
                that completed were recorded).
            SinkConfigurationError: The destination cannot be delivered in units.
        """
        from floe_sink.mapping import mapped_schema
        from floe_sink.tracing import egress_span, record_egress_result

        started = time.perf_counter()
        delivery = prepared.delivery or Delivery(prepared.name)
        config = prepared.sink_config
        sink = prepared.sink
        self._check(prepared)
        scan = prepared.source_scan
        schema = mapped_schema(scan.schema, config.field_mapping)
        units = plan_units(
            scan.tasks,
            destination=prepared.name,
            snapshot_id=scan.snapshot_id,
            target_bytes=self.settings.unit_bytes,
        )
        results: dict[int, UnitResult] = {}
        for unit in units:
            record = delivery.acknowledged(unit.index)
            if record is not None:
                results[unit.index] = UnitResult.from_journal(
                    record, unit, destination=prepared.name
                )
        with egress_span(
            prepared.sink_type, prepared.name, name="floe_sink.ray.destination"
        ) as span:
            span.set_attribute("floe.units", len(units))
            span.set_attribute("floe.units.resumed", len(results))
            log.info(
                "ray_delivery_started",
                destination=prepared.name,
                delivery_id=delivery.delivery_id,
                units=len(units),
                resumed_units=len(results),
                files=len(scan.tasks),
                trace_id=format(span.get_span_context().trace_id, "032x"),
            )
            begin = getattr(sink, "begin_units", None)
            if callable(begin):
                begin(schema, delivery)
            errors = self._run_units(prepared, delivery, units, results, reporter)
            if not errors and len(results) == len(units):
                complete = getattr(sink, "complete_units", None)
                if callable(complete):
                    try:
                        complete(schema, delivery)
                    except SinkError as exc:
                        errors.append(str(exc))
            result = aggregate(
                units,
                results,
                schema=schema,
                destination=prepared.name,
                errors=errors,
                started=started,
            )
            record_egress_result(span, result)
        return result

    def _check(self, prepared: PreparedDestination) -> None:
        config = prepared.sink_config
        if config.sync != "full":
            raise SinkConfigurationError(
                f"sync: {config.sync} is not delivered by the Ray engine yet; run this "
                "destination with --engine local",
                destination=prepared.name,
            )
        sink = prepared.sink
        whole = not (callable(getattr(sink, "begin_units", None))) or not callable(
            getattr(sink, "complete_units", None)
        )
        if whole and config.write_disposition == "replace":
            raise SinkConfigurationError(
                f"sink type {prepared.sink_type!r} cannot complete a delivery made of units "
                "(it has no begin_units/complete_units), so a replace would be cut into "
                "replaces of each unit; run this destination with --engine local",
                destination=prepared.name,
            )

    def _context(self, prepared: PreparedDestination, delivery: Delivery) -> Any:
        from floe_sink.engines.ray_worker import DestinationContext
        from floe_sink.secrets import Secret

        config = prepared.sink_config
        safe = {k: v for k, v in config.connection_config.items() if not isinstance(v, Secret)}
        table_scan = prepared.source_scan.table_scan
        return DestinationContext(
            name=prepared.name,
            sink_type=prepared.sink_type,
            delivery_id=delivery.delivery_id,
            sink_config=attrs.evolve(config, connection_config=safe),
            secret_ref=getattr(prepared.destination, "connection_secret_ref", None),
            secrets_dir=None if self.secrets_dir is None else str(self.secrets_dir),
            state_dir=str(self.state_dir),
            catalog=self.catalog,
            source_table=str(prepared.destination.source_table),
            table_metadata=table_scan.table_metadata,
            projection=table_scan.projection(),
            row_filter=table_scan.row_filter,
            case_sensitive=bool(table_scan.case_sensitive),
            schema=prepared.source_scan.schema,
            log_level=_log_level(),
            run_id=delivery.run_id,
            key_columns=tuple(delivery.key_columns),
            open_rejects=tuple(delivery.open_rejects),
        )

    def _run_units(
        self,
        prepared: PreparedDestination,
        delivery: Delivery,
        units: list[Unit],
        results: dict[int, UnitResult],
        reporter: Any,
    ) -> list[str]:
        """Keep up to ``max_tasks`` units in flight until each is in or failed for good."""
        import ray
        from opentelemetry import propagate

        from floe_sink.engines.ray_worker import ActorPacer, UnitSpec

        errors: list[str] = []
        todo = collections.deque(unit for unit in units if unit.index not in results)
        if not todo:
            return errors
        progress = _Progress(reporter, prepared.name, prepared.scan.estimated_rows)
        for done in results.values():
            progress.add(done.rows)
        context = ray.put(self._context(prepared, delivery))
        rate = getattr(prepared.sink, "rate_limit", None)
        bucket = self._bucket.remote(float(rate)) if rate else None
        pacer = ActorPacer(bucket) if bucket is not None else None
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        # without max_tasks, one unit more than the cluster runs: Ray starts it as soon as a
        # worker is free, without waiting for this process to hear of the one that finished
        limit = self.settings.max_tasks or max(1, _cpus(ray)) + 1
        in_flight: dict[Any, Unit] = {}

        def settle(ref: Any) -> None:
            unit = in_flight.pop(ref)
            try:
                result: UnitResult = ray.get(ref)
            except ray.exceptions.TaskCancelledError:
                return
            except ray.exceptions.RayError as exc:
                errors.append(f"{unit.describe()}: {_cause(exc)}")
                log.error(
                    "unit_failed", destination=prepared.name, unit=unit.index, error=_cause(exc)
                )
                return
            delivery.file_rejects(result.rejects, result.cleared_rejects)
            if not result.success:
                errors.extend(f"{unit.describe()}: {error}" for error in result.errors)
                log.error(
                    "unit_failed",
                    destination=prepared.name,
                    unit=unit.index,
                    errors=list(result.errors),
                )
                return
            delivery.acknowledge(
                unit.index, result.journal_key(), BatchReceipt(rows=result.rows, bytes=result.bytes)
            )
            results[unit.index] = result
            log.info(
                "unit_recorded",
                destination=prepared.name,
                unit=unit.index,
                rows=result.rows,
                seconds=round(result.duration_seconds, 3),
                worker=result.worker,
                trace_id=result.trace_id,
            )
            progress.add(result.rows)

        try:
            while todo or in_flight:
                if delivery.stop.requested:
                    raise DeliveryInterrupted(delivery.stop.signal_number or signal.SIGINT)
                while todo and len(in_flight) < limit:
                    unit = todo.popleft()
                    spec = UnitSpec(index=unit.index, unit_id=unit.unit_id, tasks=unit.tasks)
                    in_flight[self._remote.remote(context, spec, pacer, carrier)] = unit
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in ready:
                    settle(ref)
        except BaseException as exc:
            # stopped (or failing here): cancel what is in flight, record what still completes
            for ref in in_flight:
                ray.cancel(ref)
            patient = not isinstance(exc, KeyboardInterrupt)  # a second signal: stop at once
            deadline = time.monotonic() + (_SETTLE_SECONDS if patient else 0.0)
            while in_flight and time.monotonic() < deadline:
                ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0.5)
                for ref in ready:
                    settle(ref)
            raise
        finally:
            progress.close()
            if bucket is not None:
                ray.kill(bucket)
        return errors


class _Progress:
    """Feeds the run's progress reporter with the rows of each unit as it completes.

    The reporter counts the rows of a stream of batches; here the stream is one row-count
    batch (no columns) per unit, pulled right after each unit is added.
    """

    def __init__(self, reporter: Any, destination: str, total_rows: int | None) -> None:
        self._counts: collections.deque[int] = collections.deque()
        self._done = False
        feed = pa.RecordBatchReader.from_batches(pa.schema([]), self._feed())
        self._stream: Iterator[Any] = iter(reporter.track(destination, feed, total_rows))

    def _feed(self) -> Iterator[pa.RecordBatch]:
        while self._counts or not self._done:
            if not self._counts:
                return
            yield pa.RecordBatch.from_struct_array(pa.nulls(self._counts.popleft(), pa.struct([])))

    def add(self, rows: int) -> None:
        self._counts.append(rows)
        next(self._stream, None)

    def close(self) -> None:
        self._done = True
        for _ in self._stream:
            pass


def _cpus(ray: Any) -> int:
    try:
        return int(ray.cluster_resources().get("CPU", 1))
    except Exception:  # the cluster is going away; one at a time then
        return 1


def _log_level() -> int:
    """The level this process logs at (the workers log at the same)."""
    import structlog

    wrapper = structlog.get_config().get("wrapper_class")
    level = getattr(wrapper, "get_effective_level", None)
    try:
        return int(level(wrapper)) if callable(level) else logging.INFO
    except Exception:  # structlog's own default wrapper: everything
        return logging.INFO


def _cause(exc: BaseException) -> str:
    """The message of the error a task raised, without Ray's traceback around it."""
    from floe_sink.engines.ray_worker import UnitRetryableError
    from floe_sink.errors import FloeSinkError

    cause = getattr(exc, "cause", None)
    if isinstance(cause, UnitRetryableError):
        return f"failed transiently, also after Ray's retries: {cause}"
    if isinstance(cause, FloeSinkError):
        return str(cause)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()  # a dead worker, a lost object: Ray's own words
    return text[0] if text else type(exc).__name__
