"""A reverse-ETL job: floe.yaml + manifest.yaml + secrets -> one result per destination.

The order is what makes a run safe to start:

1. :func:`load_job` reads and validates both files and the governance rules.
2. :func:`configure` resolves every selected destination's secret and ``SinkConfig`` and has
   its plugin build the sink (each sink validates its own configuration, connecting to
   nothing). Problems of *every* destination are collected and raised together
   (:class:`JobConfigurationError`): nothing is read or sent when any destination is invalid.
   ``floe-sink validate`` stops here.
3. :func:`prepare` opens each source table, takes the destination's lock, resumes its
   unfinished delivery or starts a new one (see :func:`_open_delivery`), and plans the scan of
   that delivery's snapshot; missing tables and columns are configuration problems too.
4. :func:`deliver` streams each scan to its sink with the delivery's journal, then closes the
   delivery: done, failed, or (interrupted) still open for the next run to resume. One
   destination failing does not stop the others; :func:`dry_run` reads and maps instead.

Steps 1 and 2 import neither pyarrow nor pyiceberg (``floe-sink validate`` stops there); the
source and the delivery import them when they are reached.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from floe_sink.errors import (
    FloeSinkError,
    PluginContractError,
    ProblemsError,
    SinkConfigurationError,
    SinkError,
    problems_of,
)
from floe_sink.interrupts import StopRequest
from floe_sink.logs import get_logger
from floe_sink.models import EgressResult, SinkConfig
from floe_sink.secrets import Secret
from floe_sink.state import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from floe_sink.config import DestinationConfig, FloeSpec, GuardsConfig, PlatformManifest
    from floe_sink.delivery import Delivery
    from floe_sink.engines import Engine
    from floe_sink.manager import SinkPluginManager
    from floe_sink.progress import ProgressReporter
    from floe_sink.source import SourceScan
    from floe_sink.state import DeliveryRecord, StateStore
    from floe_sink.sync import SyncDiff

__all__ = [
    "Configured",
    "ConfiguredDestination",
    "DestinationOutcome",
    "DryRunReport",
    "Job",
    "JobConfigurationError",
    "PreparedDestination",
    "configure",
    "deliver",
    "delivery_plan",
    "dry_run",
    "dry_run_failure",
    "load_job",
    "prepare",
    "result_record",
]

log = get_logger(__name__)

SAMPLE_ROWS = 3


class JobConfigurationError(ProblemsError):
    """Raised when the files, the governance rules or a destination are not usable.

    Attributes:
        problems: Every problem found, each naming the file or destination and the field.
    """


@attrs.frozen(kw_only=True)
class Job:
    """The validated inputs of a run."""

    floe_yaml: Path
    manifest_path: Path | None
    spec: FloeSpec
    manifest: PlatformManifest | None
    destinations: tuple[DestinationConfig, ...]
    """The destinations selected for this run, in file order."""


def default_manifest(floe_yaml: Path) -> Path | None:
    """``$FLOE_MANIFEST``, else ``manifest.yaml`` beside floe.yaml when it exists."""
    env = os.environ.get("FLOE_MANIFEST")
    if env:
        return Path(env)
    beside = floe_yaml.parent / "manifest.yaml"
    return beside if beside.is_file() else None


def load_job(
    floe_yaml: Path,
    manifest_path: Path | None,
    *,
    select: Sequence[str] = (),
) -> Job:
    """Read both files, check governance and select the destinations.

    Args:
        floe_yaml: The data team's floe.yaml.
        manifest_path: The platform's manifest.yaml; ``None`` means no governance and the
            embedded catalog.
        select: Destination names to run (``--destination``); empty runs every enabled one.

    Raises:
        JobConfigurationError: A file is invalid, a sink is not approved, or a selected
            destination does not exist.
    """
    from floe_sink import config

    problems: list[str] = []
    spec = manifest = None
    try:
        spec = config.load_floe_spec(floe_yaml)
    except FloeSinkError as exc:
        problems.extend(problems_of(exc))
    if manifest_path is not None:
        try:
            manifest = config.load_manifest(manifest_path)
        except FloeSinkError as exc:
            problems.extend(problems_of(exc))
    if problems or spec is None:
        raise JobConfigurationError(problems)
    if manifest is None:
        manifest = config.PlatformManifest()
    for error in config.check_governance(spec, manifest):
        where = f"{manifest_path}: " if manifest_path is not None else ""
        problems.append(f"{where}{error}")
    declared = list(spec.destinations or [])
    names = [dest.name for dest in declared]
    unknown = [name for name in select if name not in names]
    if unknown:
        problems.append(
            f"{floe_yaml}: no destination named {', '.join(map(repr, unknown))}; "
            f"declared: {', '.join(names) or 'none'}"
        )
    if problems:
        raise JobConfigurationError(problems)
    chosen = (
        tuple(dest for dest in declared if dest.name in select)
        if select
        else tuple(dest for dest in declared if getattr(dest, "enabled", True))
    )
    return Job(
        floe_yaml=floe_yaml,
        manifest_path=manifest_path,
        spec=spec,
        manifest=manifest,
        destinations=chosen,
    )


@attrs.frozen(kw_only=True)
class ConfiguredDestination:
    """A destination whose configuration passed every check made without the network."""

    destination: DestinationConfig
    sink_config: SinkConfig = attrs.field(repr=False)
    sink: object = attrs.field(repr=False)
    """What the plugin's ``create_sink`` returned (it connects to nothing)."""

    @property
    def name(self) -> str:
        """The destination's name."""
        return self.destination.name

    @property
    def sink_type(self) -> str:
        """The destination's sink type."""
        return self.destination.sink_type


@attrs.frozen(kw_only=True)
class Configured:
    """The outcome of :func:`configure`."""

    job: Job
    destinations: tuple[ConfiguredDestination, ...]
    catalog: dict[str, Any] = attrs.field(repr=False)
    """The manifest's catalog as pyiceberg properties (``name`` included); ``{}``: embedded."""
    secrets: tuple[str, ...] = attrs.field(repr=False)
    """Every secret value resolved, so that messages can be scrubbed of them."""
    problems: tuple[str, ...] = ()
    """Every configuration problem found; the run stops before reading when there is one."""

    def raise_problems(self) -> None:
        """Raise :class:`JobConfigurationError` when a problem was found."""
        if self.problems:
            raise JobConfigurationError(self.problems)


def _sink_config(
    dest: DestinationConfig, secret: Mapping[str, Secret], *, state_dir: Path
) -> SinkConfig:
    """The destination's ``SinkConfig``: its config, secret and what the command knows."""
    try:
        base: SinkConfig = dest.to_sink_config(secret)
    except ValueError as exc:  # a key both in config and in the secret
        raise SinkConfigurationError(f"destination {dest.name!r}: {exc}") from exc
    return attrs.evolve(base, state_dir=str(state_dir))


def configure(
    job: Job, manager: SinkPluginManager, *, secrets_dir: Path | None, state_dir: Path
) -> Configured:
    """Every check a run makes before it reads or sends anything, for every destination.

    Resolves each destination's secret, builds its ``SinkConfig`` and has the plugin build the
    sink (``create_sink`` validates the sink's own configuration and connects to nothing).
    ``floe-sink validate``, ``run --dry-run`` and ``run`` all start here.

    Returns:
        The destinations that passed, and every problem of the others (see
        :meth:`Configured.raise_problems`): :func:`prepare` adds the source's problems of the
        ones that passed, so one message lists them all.
    """
    from floe_sink import config

    problems: list[str] = []
    secret_values: list[str] = []
    try:
        catalog, catalog_secrets = _catalog_config(job.manifest, secrets_dir)
        secret_values.extend(catalog_secrets)
    except SinkConfigurationError as exc:
        where = f"{job.manifest_path}: catalog: " if job.manifest_path else "catalog: "
        problems.extend(f"{where}{p}" for p in problems_of(exc))
        catalog = {}
    configured: list[ConfiguredDestination] = []
    for dest in job.destinations:
        # Each check runs even when an earlier one failed, so that one run lists every
        # problem of every destination: an unknown sink type does not hide a missing secret.
        found: list[str] = []
        owned = True
        try:
            manager.owner_of(dest.sink_type)
        except SinkConfigurationError as exc:
            found.extend(problems_of(exc))
            owned = False
        if not dest.source_table:
            found.append(
                f"destination {dest.name!r} has no source_table: name the Iceberg table "
                "to read (namespace.table) in floe.yaml"
            )
        sink_config = sink = None
        try:
            secret: dict[str, Secret] = dict(
                config.resolve_secret(dest.connection_secret_ref, secrets_dir)
            )
            secret_values.extend(value.reveal() for value in secret.values())
            sink_config = _sink_config(dest, secret, state_dir=state_dir)
            if owned:
                sink = manager.create_sink(sink_config)
                if sink_config.sync == "mirror" and not manager.supports_deletes(
                    dest.sink_type, sink
                ):
                    raise SinkConfigurationError(
                        f"destination {dest.name!r}: sync: mirror deletes rows at the "
                        f"destination, and sink type {dest.sink_type!r} cannot delete; "
                        "use sync: changes"
                    )
        except SinkConfigurationError as exc:
            found.extend(problems_of(exc))
        if found or sink_config is None:
            problems.extend(_prefixed(dest.name, found))
            continue
        configured.append(
            ConfiguredDestination(destination=dest, sink_config=sink_config, sink=sink)
        )
    return Configured(
        job=job,
        destinations=tuple(configured),
        catalog=catalog,
        secrets=tuple(secret_values),
        problems=tuple(problems),
    )


@attrs.frozen(kw_only=True)
class PreparedDestination(ConfiguredDestination):
    """A destination ready to run: its sink, its delivery and its planned source scan."""

    source_config: dict[str, Any]
    scan: SourceScan | SettledScan
    """The planned read of the delivery's snapshot."""
    delivery: Delivery | None = None
    """The :class:`floe_sink.delivery.Delivery` (``None`` for a dry run)."""
    settled: Any = None
    """A :class:`floe_sink.settled.Settled` when the table is unchanged since the complete
    sync state: nothing is read or sent (``scan`` is then a :class:`SettledScan`)."""

    @property
    def source_scan(self) -> SourceScan:
        """The planned read; a settled destination has none (it reads nothing)."""
        if isinstance(self.scan, SettledScan):
            raise TypeError(f"destination {self.name!r} is settled: it reads nothing")
        return self.scan


@attrs.frozen(kw_only=True)
class SettledScan:
    """What a run of an unchanged table knows of its snapshot, without opening the table."""

    table_name: str
    snapshot_id: int
    estimated_rows: int
    files: int = 0


@attrs.frozen(kw_only=True)
class DestinationOutcome:
    """What happened to one destination."""

    destination: str
    sink_type: str
    result: EgressResult
    configuration_error: bool = False
    target: str | None = None
    """Where the data went, as the sink describes it (never a secret)."""


@attrs.frozen(kw_only=True)
class Prepared:
    """The outcome of :func:`prepare`: destinations to run and those already failed."""

    ready: tuple[PreparedDestination, ...]
    failed: tuple[DestinationOutcome, ...]
    secrets: tuple[str, ...] = attrs.field(repr=False)
    """Every secret value resolved, so that messages can be scrubbed of them."""


def _catalog_config(
    manifest: PlatformManifest | None, secrets_dir: Path | None
) -> tuple[dict[str, Any], list[str]]:
    """The manifest's catalog as pyiceberg properties (``name`` included) and its secret values."""
    from floe_sink import config

    catalog = getattr(manifest, "catalog", None)
    if catalog is None:
        return {}, []
    secret: dict[str, Secret] = {}
    ref = getattr(catalog, "credential_secret_ref", None)
    if ref:
        secret = dict(config.resolve_secret(ref, secrets_dir))
    properties: dict[str, Any] = {"name": catalog.name, **catalog.to_pyiceberg_properties(secret)}
    return properties, [value.reveal() for value in secret.values()]


def _projection(dest: DestinationConfig) -> list[str] | None:
    columns = getattr(dest, "columns", None)
    if columns:
        return list(columns)
    mapping = getattr(dest, "field_mapping", None)
    if mapping:
        # the mapped columns, and the key columns a merge needs even when they are not mapped
        return list(dict.fromkeys([*mapping, *(getattr(dest, "primary_key", None) or [])]))
    return None


def _check_columns(dest: DestinationConfig, schema: pa.Schema) -> None:
    from floe_sink.mapping import mapped_schema

    try:
        mapped_schema(schema, getattr(dest, "field_mapping", None))
    except SinkConfigurationError as exc:
        raise SinkConfigurationError(f"destination {dest.name!r}: {exc.message}") from exc
    missing = [key for key in getattr(dest, "primary_key", None) or [] if key not in schema.names]
    if missing:
        raise SinkConfigurationError(
            f"destination {dest.name!r}: primary_key column(s) {', '.join(map(repr, missing))} "
            f"are not read from {dest.source_table!r}; columns: {', '.join(schema.names)}"
        )


def _check_sink_schema(item: ConfiguredDestination, schema: pa.Schema) -> None:
    """Ask the sink whether it can deliver rows of the mapped ``schema`` (a request template
    naming a column the table lacks): optional ``check_schema(schema)`` of the sink object,
    raising :class:`SinkConfigurationError`. Nothing is read or sent yet."""
    from floe_sink.mapping import mapped_schema

    check = getattr(item.sink, "check_schema", None)
    if callable(check):
        check(mapped_schema(schema, item.sink_config.field_mapping))


def _check_keys(
    item: ConfiguredDestination,
    table: Table,
    scan: SourceScan | None = None,
    store: StateStore | None = None,
) -> None:
    """Refuse NULL or repeated primary keys of a keyed write before anything is sent.

    Reads only the key columns of the rows the destination would receive (its row filter
    applies): a ``merge`` on such keys would invent or lose rows, or fail half-way. A
    change-aware destination whose local sync state vouches for part of the snapshot reads
    less (:func:`_keys_checked_before`).
    """
    from floe_sink.keys import check_primary_key
    from floe_sink.source import plan_scan

    config = item.sink_config
    key = config.primary_key
    if not key or (config.write_disposition != "merge" and config.sync == "full"):
        return
    dest = item.destination
    keys = plan_scan(table, row_filter=getattr(dest, "row_filter", None), columns=key)
    if (
        scan is not None
        and store is not None
        and _keys_checked_before(item, table, scan, keys, store)
    ):
        return
    check_primary_key(
        keys.reader(), key, destination=item.name, source_table=str(dest.source_table)
    )


def _keys_checked_before(
    item: ConfiguredDestination,
    table: Table,
    scan: SourceScan,
    keys: SourceScan,
    store: StateStore | None,
) -> bool:
    """True when the keys of ``scan`` are known to be valid without reading them all.

    A complete local sync state made with the same plan names the snapshot it was made from,
    and that run checked the keys of that snapshot. When it is this snapshot, nothing is
    read. When the table only grew by appends since, only the appended files' keys are
    checked (NULLs, duplicates among them, raising as a full check would), and they are
    valid when none of them is in the state (the state holds every key of its snapshot);
    otherwise the full check decides. Anything else: ``False``.
    """
    from floe_sink.keys import check_primary_key
    from floe_sink.source import appended_files
    from floe_sink.sync import read_state_info

    config = item.sink_config
    path_of = getattr(store, "sync_state_path", None)
    if config.sync == "full" or not callable(path_of):
        return False
    path = path_of(item.name)
    info = read_state_info(path)
    if (
        info is None
        or info.snapshot_id is None
        or info.source_rows is None
        or info.keys != tuple(config.primary_key or ())
        or info.plan != delivery_plan(item.destination, config)
        or scan.snapshot_id is None
    ):
        return False
    if info.snapshot_id == scan.snapshot_id:
        return True
    added = appended_files(table, info.snapshot_id, scan)
    if added is None:
        return False
    import pyarrow.parquet as pq

    appended = keys.only_files(added).reader().read_all()
    check_primary_key(
        appended,
        info.keys,
        destination=item.name,
        source_table=str(item.destination.source_table),
    )
    state_keys = pq.read_table(path, columns=[f"k{i}" for i in range(len(info.keys))])
    state_keys = state_keys.rename_columns(list(info.keys))
    appended = appended.select(list(info.keys))
    # the hash table is built on the right side: the appended keys (few), not the state
    found = state_keys.join(appended, keys=list(info.keys), join_type="left semi")
    return bool(found.num_rows == 0)


def delivery_plan(dest: DestinationConfig, sink_config: SinkConfig, engine: str = "local") -> str:
    """The fingerprint of what a delivery sends, and how: a resumed delivery must match it.

    It covers the source (table, filter, projection), the mapping and batching, the write
    disposition and key, and the sink's configuration from floe.yaml (never the secret: a
    rotated token does not make a delivery a different one). ``engine`` is the engine's own
    fingerprint (how it cuts the delivery, see :mod:`floe_sink.engines`): the local engine's
    adds nothing, so its fingerprints are those of a floe-sink without engines.
    """
    import hashlib

    document = {
        "sink_type": dest.sink_type,
        "source_table": dest.source_table,
        "row_filter": getattr(dest, "row_filter", None),
        "columns": getattr(dest, "columns", None),
        "field_mapping": sink_config.field_mapping,
        "batch_size": sink_config.batch_size,
        "write_disposition": sink_config.write_disposition,
        "primary_key": sink_config.primary_key,
        "sync": sink_config.sync,
        "config": getattr(dest, "config", None),
    }
    if engine != "local":
        document["engine"] = engine
    text = json.dumps(document, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _open_delivery(
    store: StateStore,
    configured: ConfiguredDestination,
    table: Table,
    stop: StopRequest,
    engine: str = "local",
) -> tuple[Delivery, int | None]:
    """Resume the destination's unfinished delivery, or start a new one; return its snapshot.

    An unfinished delivery is resumed when its plan is unchanged and Iceberg still has its
    snapshot, and it was interrupted (killed, stopped, a transient failure) or, after a
    permanent failure, when it is an ``append`` (exactly once: the failed batch is retried,
    the acknowledged ones not repeated) or the table has no newer snapshot. Otherwise it is
    abandoned (logged) and a new delivery of the current snapshot starts. A change-aware
    delivery already folded into the sync state is over (:func:`_unless_folded`).
    """
    from floe_sink.delivery import Delivery
    from floe_sink.state import ABANDONED, OPEN

    current = table.current_snapshot()
    current_id = None if current is None else int(current.snapshot_id)
    plan = delivery_plan(configured.destination, configured.sink_config, engine)
    previous = store.latest_unfinished(configured.name)
    if previous is not None and configured.sink_config.sync != "full":
        previous = _unless_folded(store, configured.name, previous)
    if previous is not None:
        available = previous.snapshot_id is None or (
            table.snapshot_by_id(previous.snapshot_id) is not None
        )
        superseded = (
            previous.status != OPEN
            and configured.sink_config.write_disposition != "append"
            and previous.snapshot_id != current_id
        )
        if previous.plan == plan and available and not superseded:
            delivery = Delivery(
                configured.name,
                delivery_id=previous.delivery_id,
                store=store,
                resumed=True,
                stop=stop,
            )
            log.warning(
                "resuming_delivery",
                destination=configured.name,
                delivery_id=previous.delivery_id,
                snapshot_id=previous.snapshot_id,
                acknowledged_batches=delivery.acknowledged_count,
            )
            return delivery, previous.snapshot_id
        reason = (
            "its configuration changed"
            if previous.plan != plan
            else "its snapshot no longer exists"
            if not available
            else "it failed and the table has a newer snapshot"
        )
        acknowledged = len(store.batches(previous.delivery_id))
        log.warning(
            "delivery_abandoned",
            destination=configured.name,
            delivery_id=previous.delivery_id,
            reason=reason,
            acknowledged_batches=acknowledged,
        )
        store.set_status(previous.delivery_id, ABANDONED)
    delivery_id = store.create_delivery(configured.name, plan, current_id)
    return Delivery(configured.name, delivery_id=delivery_id, store=store, stop=stop), current_id


def _unless_folded(store: StateStore, name: str, previous: DeliveryRecord) -> DeliveryRecord | None:
    """``previous``, unless a killed run had already folded it into the sync state.

    A change-aware delivery is folded (the acknowledged rows saved in the sync state, which
    then names the delivery) before the journal closes it: a kill in between leaves it open.
    It is over either way: complete (done), or failed or interrupted, when the state holds
    only what the destination acknowledged and a new delivery must diff afresh. Resuming it
    would diff against a state it changed itself, and skip batches it never delivered.
    """
    from floe_sink.state import ABANDONED, DONE
    from floe_sink.sync import read_state_info

    info = read_state_info(store.load_sync_state(name))
    if info is None or info.delivery_id != previous.delivery_id:
        return previous
    complete = info.source_rows is not None
    log.warning(
        "delivery_already_folded",
        destination=name,
        delivery_id=previous.delivery_id,
        complete=complete,
    )
    store.set_status(previous.delivery_id, DONE if complete else ABANDONED)
    return None


def prepare(
    configured: Configured,
    manager: SinkPluginManager,
    *,
    state_dir: Path,
    store: StateStore | None = None,
    stop: StopRequest | None = None,
    locks: contextlib.ExitStack | None = None,
    engine: str = "local",
) -> Prepared:
    """Open the source of every configured destination and its delivery.

    Args:
        configured: From :func:`configure`.
        manager: The plugin manager.
        state_dir: Where the embedded catalog lives.
        store: The state store; ``None`` for a dry run (no journal, no lock).
        stop: The run's stop request (interrupts).
        locks: Where each destination's lock is held until the run ends.
        engine: The engine's fingerprint (:attr:`floe_sink.engines.EngineSettings.plan`):
            part of each delivery's plan, so a delivery is resumed by the engine that cut it.

    Returns:
        The destinations ready to run, and those that failed for a reason other than
        configuration (an unreachable catalog, a destination locked by another run): they
        are reported, the others still run.

    Raises:
        JobConfigurationError: Listing every configuration problem of every destination
            (a source table or column that does not exist, a bad row filter).
    """
    from floe_sink.source import open_table, plan_scan, source_config
    from floe_sink.state import DestinationLockedError
    from floe_sink.tracing import egress_span

    problems: list[str] = list(configured.problems)
    planned: list[
        tuple[ConfiguredDestination, dict[str, Any], Table | None, SourceScan | None]
    ] = []
    failed: list[DestinationOutcome] = []
    settled: dict[str, Any] = {}
    # 1. every source is opened and planned before any state is touched: a problem anywhere
    #    stops the run with nothing locked, resumed or started
    for item in configured.destinations:
        dest = item.destination
        try:
            # the core reads the source; a plugin may adjust the read config, or not answer
            read_config = manager.get_source_config(
                source_config(
                    {**configured.catalog, "table": dest.source_table, "state_dir": state_dir}
                ),
                sink_type=dest.sink_type,
            )
            found = _settled_snapshot(item, read_config, store)
            if found is not None:
                settled[dest.name] = found
                planned.append((item, read_config, None, None))
                continue
            with egress_span(dest.sink_type, dest.name, name="floe_sink.source.plan") as span:
                table = open_table(read_config)
                scan = plan_scan(
                    table,
                    row_filter=getattr(dest, "row_filter", None),
                    columns=_projection(dest),
                )
                span.set_attribute("floe.source.table", scan.table_name)
                span.set_attribute("floe.source.files", scan.files)
            _check_columns(dest, scan.schema)
            _check_sink_schema(item, scan.schema)
            _check_keys(item, table, scan, store)
        except SinkConfigurationError as exc:
            problems.extend(_prefixed(dest.name, problems_of(exc)))
            continue
        except (SinkError, PluginContractError, OSError) as exc:
            failed.append(_failure(dest, exc))
            continue
        planned.append((item, read_config, table, scan))
    if problems:
        raise JobConfigurationError(problems)
    # 2. each destination's lock, and its delivery: resumed (its own snapshot) or new
    ready: list[PreparedDestination] = []
    stop = stop or StopRequest()
    for item, read_config, opened, planned_scan in planned:
        dest = item.destination
        delivery = None
        try:
            if store is not None:
                if locks is not None:
                    locks.enter_context(store.lock(dest.name))
                found = settled.get(dest.name)
                if found is not None and store.latest_unfinished(dest.name) is None:
                    ready.append(_settled_destination(item, read_config, found, store, stop))
                    continue
                if opened is None or planned_scan is None:
                    # found settled before the lock, not since: the ordinary path
                    opened, planned_scan = _open_source(item, read_config, store)
                delivery, snapshot_id = _open_delivery(store, item, opened, stop, engine)
                if snapshot_id != planned_scan.snapshot_id:
                    planned_scan = plan_scan(
                        opened,
                        row_filter=getattr(dest, "row_filter", None),
                        columns=_projection(dest),
                        snapshot_id=snapshot_id,
                    )
        except SinkConfigurationError as exc:
            failed.append(_failure(dest, exc, configuration=True))
            continue
        except (SinkError, PluginContractError, OSError, DestinationLockedError) as exc:
            failed.append(_failure(dest, exc))
            continue
        assert planned_scan is not None  # only a run with a state store finds one settled
        ready.append(
            PreparedDestination(
                **attrs.asdict(item, recurse=False),
                source_config=read_config,
                scan=planned_scan,
                delivery=delivery,
            )
        )
    return Prepared(ready=tuple(ready), failed=tuple(failed), secrets=configured.secrets)


def _open_source(item: ConfiguredDestination, read_config: Mapping[str, Any], store: Any) -> Any:
    """The table and planned scan of a destination, its columns, sink schema and keys
    checked (raising :class:`SinkConfigurationError`)."""
    from floe_sink.source import open_table, plan_scan

    dest = item.destination
    table = open_table(read_config)
    scan = plan_scan(table, row_filter=getattr(dest, "row_filter", None), columns=_projection(dest))
    _check_columns(dest, scan.schema)
    _check_sink_schema(item, scan.schema)
    _check_keys(item, table, scan, store)
    return table, scan


def _settled_snapshot(
    item: ConfiguredDestination, read_config: Mapping[str, Any], store: Any
) -> Any:
    """The :class:`floe_sink.settled.Settled` of a change-aware destination of the ``local``
    store whose table is unchanged since its complete sync state; ``None`` otherwise."""
    from floe_sink.settled import settled_snapshot

    path_of = getattr(store, "sync_state_path", None)
    config = item.sink_config
    if config.sync == "full" or not callable(path_of):
        return None
    return settled_snapshot(
        state_path=path_of(item.name),
        source_config=read_config,
        plan=delivery_plan(item.destination, config),
        keys=config.primary_key or (),
    )


def _settled_destination(
    item: ConfiguredDestination,
    read_config: Mapping[str, Any],
    settled: Any,
    store: StateStore,
    stop: StopRequest,
) -> PreparedDestination:
    """A destination whose table is unchanged: a new delivery of the settled snapshot (in
    the journal, done by :func:`deliver` without reading or sending anything)."""
    from floe_sink.delivery import Delivery

    plan = delivery_plan(item.destination, item.sink_config)
    delivery_id = store.create_delivery(item.name, plan, settled.snapshot_id)
    log.info(
        "sync_unchanged_snapshot",
        destination=item.name,
        snapshot_id=settled.snapshot_id,
        metadata_location=settled.metadata_location,
    )
    return PreparedDestination(
        destination=item.destination,
        sink_config=item.sink_config,
        sink=item.sink,
        source_config=dict(read_config),
        scan=SettledScan(
            table_name=str(read_config.get("table")),
            snapshot_id=settled.snapshot_id,
            estimated_rows=settled.source_rows,
        ),
        delivery=Delivery(item.name, delivery_id=delivery_id, store=store, stop=stop),
        settled=settled,
    )


def _settled_result(prepared: PreparedDestination, started: float) -> EgressResult:
    """The result of an unchanged table's run: every row unchanged, nothing sent."""
    import time

    from floe_sink.idempotency import idempotency_key
    from floe_sink.state import now_utc

    settled = prepared.settled
    return EgressResult(
        success=True,
        duration_seconds=time.perf_counter() - started,
        checksum=settled.checksum,
        delivery_timestamp=now_utc(),
        idempotency_key=idempotency_key(
            prepared.sink_config.destination or prepared.name, settled.checksum
        ),
        sync=prepared.sink_config.sync,
        rows_unchanged=settled.source_rows,
    )


def _prefixed(name: str, problems: Iterable[str]) -> list[str]:
    return [p if f"{name!r}" in p else f"destination {name!r}: {p}" for p in problems]


def _failure(
    dest: DestinationConfig, exc: BaseException, *, configuration: bool = False
) -> DestinationOutcome:
    message = str(exc) if isinstance(exc, FloeSinkError) else f"{type(exc).__name__}: {exc}"
    return DestinationOutcome(
        destination=dest.name,
        sink_type=dest.sink_type,
        result=EgressResult(success=False, errors=[message]),
        configuration_error=configuration,
    )


def _stoppable(batches: Iterable[pa.RecordBatch], stop: StopRequest) -> Iterator[pa.RecordBatch]:
    """``batches``, raising :class:`DeliveryInterrupted` as soon as a stop is requested."""
    from floe_sink.delivery import DeliveryInterrupted

    for batch in batches:
        if stop.requested:
            raise DeliveryInterrupted(stop.signal_number)
        yield batch


def guard_violations(diff: SyncDiff, guards: GuardsConfig | None) -> list[str]:
    """The guards a diff would break, each named with the numbers (empty when none)."""
    if guards is None:
        return []
    held = diff.state_rows
    found: list[str] = []
    if guards.max_deletes is not None and diff.deletes > guards.max_deletes:
        found.append(
            f"guard max_deletes: the run would delete {diff.deletes:,} rows, more than "
            f"{guards.max_deletes:,}"
        )
    for name, count, what in (
        ("max_delete_fraction", diff.deletes, "delete"),
        ("max_update_fraction", diff.updates, "update"),
    ):
        limit = getattr(guards, name)
        if limit is not None and held and count / held > limit:
            found.append(
                f"guard {name}: the run would {what} {count:,} of the {held:,} rows the "
                f"destination holds from floe-sink ({count / held:.1%}), more than {limit:.1%}"
            )
    return found


def diff_of(prepared: PreparedDestination, state_path: Path, work_dir: Path) -> SyncDiff:
    """The change-aware diff of a prepared destination's snapshot against its sync state.

    When the table only grew by appends since the snapshot of the sync state (and the
    configuration is the same), only the appended files are diffed.
    """
    from floe_sink.source import appended_files, open_table
    from floe_sink.sync import SyncDiff, read_state_info

    config = prepared.sink_config
    plan = delivery_plan(prepared.destination, config)
    scan = prepared.source_scan
    base_rows = None
    info = read_state_info(state_path)
    if (
        info is not None
        and info.plan == plan
        and info.snapshot_id is not None
        and info.source_rows is not None
        and info.snapshot_id != scan.snapshot_id
        and info.keys == tuple(config.primary_key or ())
    ):
        added = appended_files(open_table(prepared.source_config), info.snapshot_id, scan)
        if added is not None:
            scan, base_rows = scan.only_files(added), info.source_rows
    return SyncDiff(
        mode=config.sync,
        scan=scan,
        key_columns=list(config.primary_key or []),
        field_mapping=config.field_mapping,
        state_path=state_path,
        work_dir=work_dir,
        plan=plan,
        base_rows=base_rows,
    )


def _deliver_changes(
    prepared: PreparedDestination,
    manager: SinkPluginManager,
    reporter: ProgressReporter,
    store: StateStore,
    *,
    ignore_guards: bool,
) -> EgressResult:
    """Deliver what changed (``changes``/``mirror``) and fold the acknowledged part into the
    sync state; see :mod:`floe_sink.sync`."""
    import time

    if prepared.settled is not None:  # unchanged since the complete state: nothing to do
        return _settled_result(prepared, time.perf_counter())
    import pyarrow as pa

    from floe_sink.delivery import DeliveryInterrupted

    delivery = prepared.delivery
    assert delivery is not None
    config = prepared.sink_config
    path = store.load_sync_state(prepared.name)
    # a delivery the sync state names is never resumed (_unless_folded)
    work_dir = Path(config.state_dir or DEFAULT_STATE_DIR) / "tmp"
    diff = diff_of(prepared, path, work_dir)
    try:
        violations = guard_violations(diff, getattr(prepared.destination, "guards", None))
        counts: dict[str, Any] = {
            "sync": config.sync,
            "rows_inserted": diff.inserts,
            "rows_updated": diff.updates,
            "rows_deleted": 0,
            "rows_unchanged": diff.unchanged,
        }
        if violations and not ignore_guards:
            return EgressResult(success=False, errors=violations, **counts)
        diff.mark_pending(delivery.delivery_id)
        reader = reporter.track(prepared.name, diff.rows(), diff.to_send)
        stop = delivery.stop
        rows = pa.RecordBatchReader.from_batches(reader.schema, _stoppable(reader, stop))
        deleted: EgressResult | None = None
        try:
            result = manager.write(
                prepared.sink,
                rows,
                destination=prepared.name,
                sink_type=prepared.sink_type,
                delivery=delivery,
            )
            if result.success and diff.deletes:
                mapping = config.field_mapping or {}
                names = [mapping.get(column, column) for column in config.primary_key or []]
                deleted = manager.delete(
                    prepared.sink,
                    diff.deleted_keys(names),
                    destination=prepared.name,
                    sink_type=prepared.sink_type,
                    delivery=delivery,
                )
        except DeliveryInterrupted:
            _fold_acknowledged(diff, delivery, store, complete=False)
            raise
        complete = result.success and (deleted is None or deleted.success)
        _fold_acknowledged(diff, delivery, store, complete=complete)
        errors = [*result.errors, *(deleted.errors if deleted is not None else [])]
        counts["rows_deleted"] = deleted.rows_delivered if deleted is not None else 0
        final: EgressResult = attrs.evolve(
            result,
            success=complete,
            errors=errors,
            bytes_transmitted=result.bytes_transmitted
            + (deleted.bytes_transmitted if deleted is not None else 0),
            rows_rejected=result.rows_rejected
            + (deleted.rows_rejected if deleted is not None else 0),
            **counts,
        )
        return final
    finally:
        diff.close()


def _fold_acknowledged(
    diff: SyncDiff, delivery: Delivery, store: StateStore, *, complete: bool
) -> None:
    """Save the sync state with exactly what the destination acknowledged, in the store.

    Acknowledged deletes are folded whatever stopped the delivery (a failure, an interrupt,
    a resumed run failing before its own delete phase): a key deleted at the destination but
    kept in the state would count as delivered, and never be sent again when it comes back
    unchanged. Their batch size is the one this run used, else the upserts' (the same
    ``batch_size`` for a :class:`floe_sink_dlt.base.BatchSink`). Records the destination
    refused stay out of the state, so the next run sends them again.
    """
    from floe_sink.sync import DELETE_POSITIONS

    refused = [(p, i) for p, i in delivery.rejections if p < DELETE_POSITIONS]
    # deletes the destination refused stay in the state: the next mirror run sends them again
    refused_deletes = [
        (p - DELETE_POSITIONS, i) for p, i in delivery.rejections if p >= DELETE_POSITIONS
    ]
    if complete:
        diff.save_state(
            delivery_id=delivery.delivery_id,
            sent_batches=None,
            batch_size=delivery.batch_sizes.get(0),
            deleted_batches=None,
            delete_batch_size=delivery.batch_sizes.get(DELETE_POSITIONS),
            rejected=refused,
            rejected_deletes=refused_deletes,
        )
    else:
        diff.save_state(
            delivery_id=delivery.delivery_id,
            sent_batches=delivery.acknowledged_positions(0, DELETE_POSITIONS),
            batch_size=delivery.batch_sizes.get(0),
            deleted_batches=[
                position - DELETE_POSITIONS
                for position in delivery.acknowledged_positions(DELETE_POSITIONS)
            ],
            delete_batch_size=delivery.batch_sizes.get(
                DELETE_POSITIONS, delivery.batch_sizes.get(0)
            ),
            rejected=refused,
            rejected_deletes=refused_deletes,
        )
    if not diff.skipped_read:  # an unchanged snapshot leaves the state as it is
        store.save_sync_state(delivery.destination, diff.state_path)


def deliver(
    prepared: PreparedDestination,
    manager: SinkPluginManager,
    reporter: ProgressReporter,
    *,
    store: StateStore | None = None,
    ignore_guards: bool = False,
    engine: Engine | None = None,
) -> DestinationOutcome:
    """Stream one destination's scan to its sink and close its delivery in the journal.

    Never raises for a delivery problem: failures are returned as an unsuccessful result
    (``configuration_error`` set when the sink refused its configuration). ``engine`` (the
    Ray engine, :mod:`floe_sink.engines`) delivers instead of this process; ``None``: here.

    Raises:
        DeliveryInterrupted: A stop was requested; the delivery stays open, to be resumed.
    """
    from floe_sink.delivery import DeliveryInterrupted
    from floe_sink.state import ABANDONED, DONE, FAILED, RunRecord, now_utc

    dest = prepared.destination
    delivery = prepared.delivery
    run_id = uuid.uuid4().hex
    snapshot_id = prepared.scan.snapshot_id
    if store is not None and delivery is not None:
        store.start_run(
            RunRecord(
                destination=prepared.name,
                run_id=run_id,
                started_at=now_utc(),
                finished_at=None,
                success=None,
                sync=prepared.sink_config.sync,
                snapshot_id=snapshot_id,
                delivery_id=delivery.delivery_id,
            )
        )
    if delivery is not None:
        mapping = prepared.sink_config.field_mapping or {}
        key = [mapping.get(c, c) for c in prepared.sink_config.primary_key or []]
        delivery.run_id = run_id
        opened = store.rejects(prepared.name) if store is not None else []
        delivery.track_rejects(
            key, [json.dumps(r.key, sort_keys=True, default=str) for r in opened]
        )
    outcome: DestinationOutcome | None = None
    try:
        sink = prepared.sink
        target = _describe(sink)
        if prepared.sink_config.sync != "full" and store is not None:
            if engine is not None:  # the diff and its rows stay on the driver (scale-out.md)
                log.warning("sync_delivered_by_driver", destination=prepared.name)
            result = _deliver_changes(
                prepared, manager, reporter, store, ignore_guards=ignore_guards
            )
        else:
            if engine is not None:
                result = engine.write(prepared, manager, reporter)
            else:
                result = _write_here(prepared, manager, reporter)
            result = attrs.evolve(result, rows_inserted=result.rows_delivered)
        result = attrs.evolve(
            result,
            delivery_id=delivery.delivery_id if delivery is not None else "",
            snapshot_id=snapshot_id,
        )
        outcome = DestinationOutcome(
            destination=prepared.name, sink_type=prepared.sink_type, result=result, target=target
        )
    except DeliveryInterrupted:
        if store is not None:
            store.finish_run(run_id, success=False, result={"errors": ["interrupted"]})
            if delivery is not None and prepared.sink_config.sync != "full":
                # what was acknowledged is in the sync state: the next run diffs afresh
                store.set_status(delivery.delivery_id, ABANDONED)
        raise
    except SinkConfigurationError as exc:
        log.error("destination_failed", destination=prepared.name, error=str(exc))
        outcome = _failure(dest, exc, configuration=True)
    except Exception as exc:  # a plugin's failure is this destination's, not the run's
        log.error("destination_failed", destination=prepared.name, error=str(exc))
        outcome = _failure(dest, exc)
    outcome = _check_rejected_fraction(outcome, getattr(dest, "guards", None))
    if store is not None and delivery is not None:
        success = outcome.result.success
        # a failed change-aware delivery is folded into the sync state: the next run diffs
        # afresh instead of resuming it
        failed = FAILED if prepared.sink_config.sync == "full" else ABANDONED
        store.set_status(delivery.delivery_id, DONE if success else failed)
        store.finish_run(run_id, success=success, result=result_record(outcome))
    return outcome


def _check_rejected_fraction(
    outcome: DestinationOutcome, guards: GuardsConfig | None
) -> DestinationOutcome:
    """Fail a run whose destination refused more records than ``max_rejected_fraction``."""
    limit = getattr(guards, "max_rejected_fraction", None)
    result = outcome.result
    sent = result.rows_delivered + result.rows_rejected
    if limit is None or not sent or result.rows_rejected / sent <= limit:
        return outcome
    share = result.rows_rejected / sent
    error = (
        f"guard max_rejected_fraction: the destination refused {result.rows_rejected:,} of "
        f"the {sent:,} records sent ({share:.1%}), more than {limit:.1%}; see floe-sink rejects"
    )
    failed = attrs.evolve(result, success=False, errors=[*result.errors, error])
    return attrs.evolve(outcome, result=failed)


def _write_here(
    prepared: PreparedDestination, manager: SinkPluginManager, reporter: ProgressReporter
) -> EgressResult:
    """The local engine: stream the scan through the sink's ``write`` in this process."""
    import pyarrow as pa

    from floe_sink.checksum import FileBoundaries

    delivery = prepared.delivery
    stop = delivery.stop if delivery is not None else StopRequest()
    files = FileBoundaries()  # the checksum is per data file, as the Ray engine's
    if delivery is not None:
        delivery.files = files
    source = prepared.source_scan.reader(files=files)
    reader = reporter.track(
        prepared.name,
        pa.RecordBatchReader.from_batches(source.schema, _stoppable(source, stop)),
        prepared.scan.estimated_rows,
    )
    result: EgressResult = manager.write(
        prepared.sink,
        reader,
        destination=prepared.name,
        sink_type=prepared.sink_type,
        delivery=delivery,
    )
    return result


def _describe(sink: object) -> str | None:
    describe = getattr(sink, "describe", None)
    if callable(describe):
        try:
            return str(describe())
        except Exception:  # a description is a nicety; never fail a run over it
            return None
    return None


@attrs.frozen(kw_only=True)
class DryRunReport:
    """What a run would send to one destination."""

    destination: str
    sink_type: str
    source_table: str
    rows: int
    batches: int | None
    batch_size: int | None
    source_batches: int
    schema: list[dict[str, Any]]
    sample: list[dict[str, Any]]
    first_request: dict[str, Any] | None = None
    """The first request exactly as the sink would send it, when the sink can tell
    (its optional ``preview_request(batch)``): method, url, headers, records, body."""


def dry_run(prepared: PreparedDestination, reporter: ProgressReporter) -> DryRunReport:
    """Read the source of one destination and apply its field mapping, sending nothing.

    ``batches`` counts the batches of ``batch_size`` rows that would be sent; it is ``None``
    when the destination sets no ``batch_size`` (the sink's default applies, unknown here).
    ``sample`` shows the first rows as the destination's sink (created by :func:`configure`,
    never written to) will send them: see :func:`floe_sink.preview.preview_rows`.
    """
    import pyarrow as pa

    from floe_sink.mapping import apply_field_mapping, mapped_schema
    from floe_sink.preview import preview_rows

    mapping = prepared.sink_config.field_mapping
    schema = mapped_schema(prepared.source_scan.schema, mapping)
    rows = source_batches = 0
    sample: list[pa.RecordBatch] = []
    sample_rows = 0
    preview_request = getattr(prepared.sink, "preview_request", None)
    # the first batch, for the sink to show its first request (what it would send first)
    first_rows = (
        prepared.sink_config.batch_size or getattr(prepared.sink, "default_batch_size", 0) or 0
        if callable(preview_request)
        else 0
    )
    first: list[pa.RecordBatch] = []
    first_count = 0
    reader = reporter.track(
        prepared.name, prepared.source_scan.reader(), prepared.scan.estimated_rows
    )
    for batch in reader:
        if not batch.num_rows:
            continue
        mapped = apply_field_mapping(batch, mapping)
        rows += mapped.num_rows
        source_batches += 1
        if sample_rows < SAMPLE_ROWS:
            piece = mapped.slice(0, SAMPLE_ROWS - sample_rows)
            sample.append(piece)
            sample_rows += piece.num_rows
        if first_count < first_rows:
            piece = mapped.slice(0, first_rows - first_count)
            first.append(piece)
            first_count += piece.num_rows
    first_request: dict[str, Any] | None = None
    if callable(preview_request) and first:
        (first_batch,) = pa.Table.from_batches(first, schema=schema).combine_chunks().to_batches()
        first_request = preview_request(first_batch)
    batch_size = prepared.sink_config.batch_size
    batches = math.ceil(rows / batch_size) if batch_size else None
    sample_rows_list: list[dict[str, Any]] = []
    if sample:
        (rows_batch,) = pa.Table.from_batches(sample, schema=schema).combine_chunks().to_batches()
        sample_rows_list = preview_rows(prepared.sink, rows_batch)
    return DryRunReport(
        destination=prepared.name,
        sink_type=prepared.sink_type,
        source_table=prepared.scan.table_name,
        rows=rows,
        batches=batches,
        batch_size=batch_size,
        source_batches=source_batches,
        schema=[
            {"name": field.name, "type": str(field.type), "nullable": field.nullable}
            for field in schema
        ],
        sample=sample_rows_list,
        first_request=first_request,
    )


def dry_run_failure(prepared: PreparedDestination, exc: BaseException) -> DestinationOutcome:
    """The outcome of a dry run that failed: reading the source, or the sink's preview."""
    log.error("destination_failed", destination=prepared.name, error=str(exc))
    configuration = isinstance(exc, SinkConfigurationError)
    return _failure(prepared.destination, exc, configuration=configuration)


def result_record(outcome: DestinationOutcome) -> dict[str, Any]:
    """The JSON record of one destination: ``destination`` plus the ``EgressResult`` fields."""
    return {"destination": outcome.destination, **attrs.asdict(outcome.result)}
