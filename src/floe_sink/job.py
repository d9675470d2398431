"""A reverse-ETL job: floe.yaml + manifest.yaml + secrets -> one result per destination.

The order is what makes a run safe to start:

1. :func:`load_job` reads and validates both files and the governance rules; any problem stops
   the run before anything is read or sent.
2. :func:`prepare` resolves every selected destination: its secret, its ``SinkConfig``, its
   source table and scan, and checks the field mapping and primary key against the table.
   Configuration problems of *every* destination are collected and raised together
   (:class:`JobConfigurationError`): nothing is sent when any destination is invalid.
3. :func:`deliver` creates each sink and streams its scan to it. One destination failing does
   not stop the others; :func:`dry_run` reads and maps instead, sending nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

if pa.default_memory_pool().backend_name == "jemalloc":
    # return freed memory to the system at once, so the peak RSS of a long run follows
    # what is live (a few batches), not what was ever allocated (see floe_sink.cli)
    pa.jemalloc_set_decay_ms(0)

from floe_sink.errors import (
    FloeSinkError,
    PluginConflictError,
    SinkConfigurationError,
    SinkError,
)
from floe_sink.logs import get_logger
from floe_sink.models import EgressResult, SinkConfig
from floe_sink.secrets import Secret

__all__ = [
    "DEFAULT_STATE_DIR",
    "DestinationOutcome",
    "DryRunReport",
    "Job",
    "JobConfigurationError",
    "PreparedDestination",
    "deliver",
    "dry_run",
    "load_job",
    "prepare",
    "result_record",
]

log = get_logger(__name__)

DEFAULT_STATE_DIR = Path(".floe")
SAMPLE_ROWS = 3


class JobConfigurationError(SinkConfigurationError):
    """Raised when the files, the governance rules or a destination are not usable.

    Attributes:
        problems: Every problem found, each naming the file or destination and the field.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        head = self.problems[0] if len(self.problems) == 1 else f"{len(self.problems)} problems"
        super().__init__(head)

    def render(self) -> str:
        """The problems as one message: one line, or a header and one line per problem."""
        if len(self.problems) == 1:
            return self.problems[0]
        return "\n".join([f"{len(self.problems)} problems:", *(f"  - {p}" for p in self.problems)])


def _problems_of(exc: BaseException) -> list[str]:
    problems = getattr(exc, "problems", None)
    if isinstance(problems, list) and problems:
        return [str(problem) for problem in problems]
    return [str(exc)]


@attrs.frozen(kw_only=True)
class Job:
    """The validated inputs of a run."""

    floe_yaml: Path
    manifest_path: Path | None
    spec: Any
    manifest: Any
    destinations: tuple[Any, ...]
    """The destinations selected for this run (``DestinationConfig``), in file order."""


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
        problems.extend(_problems_of(exc))
    if manifest_path is not None:
        try:
            manifest = config.load_manifest(manifest_path)
        except FloeSinkError as exc:
            problems.extend(_problems_of(exc))
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
class PreparedDestination:
    """A destination ready to run: its sink config (with secrets) and its planned source scan."""

    name: str
    sink_type: str
    destination: Any
    sink_config: SinkConfig = attrs.field(repr=False)
    source_config: dict[str, Any]
    scan: Any
    """A :class:`floe_sink.source.SourceScan`."""


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


def _sink_config(dest: Any, secret: Mapping[str, Secret], *, state_dir: Path) -> SinkConfig:
    """The destination's ``SinkConfig`` plus what the command adds for the sink."""
    try:
        base: SinkConfig = dest.to_sink_config(secret)
    except ValueError as exc:  # a key both in config and in the secret
        raise SinkConfigurationError(f"destination {dest.name!r}: {exc}") from exc
    disposition = getattr(dest, "write_disposition", "append")
    return attrs.evolve(
        base,
        connection_config={
            **base.connection_config,
            "destination": dest.name,
            "write_disposition": str(getattr(disposition, "value", disposition)),
            "primary_key": list(getattr(dest, "primary_key", None) or []),
            "pipelines_dir": str(state_dir / "pipelines"),
        },
    )


def _catalog_config(manifest: Any, secrets_dir: Path | None) -> tuple[dict[str, Any], list[str]]:
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


def _projection(dest: Any) -> list[str] | None:
    columns = getattr(dest, "columns", None)
    if columns:
        return list(columns)
    mapping = getattr(dest, "field_mapping", None)
    if mapping:
        # the mapped columns, and the key columns a merge needs even when they are not mapped
        return list(dict.fromkeys([*mapping, *(getattr(dest, "primary_key", None) or [])]))
    return None


def _check_columns(dest: Any, schema: pa.Schema) -> None:
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


def prepare(
    job: Job,
    manager: Any,
    *,
    secrets_dir: Path | None,
    state_dir: Path,
) -> Prepared:
    """Resolve secrets, configs and source scans of every selected destination.

    Args:
        job: From :func:`load_job`.
        manager: The plugin manager.
        secrets_dir: ``--secrets-dir`` (``None``: ``$FLOE_SECRETS_DIR`` or the default).
        state_dir: Where delivery state and the embedded catalog live.

    Returns:
        The destinations ready to run, and those that failed for a reason other than
        configuration (an unreachable catalog): they are reported, the others still run.

    Raises:
        JobConfigurationError: Listing every configuration problem of every destination.
    """
    from floe_sink import config
    from floe_sink.source import open_table, plan_scan
    from floe_sink.tracing import egress_span

    problems: list[str] = []
    ready: list[PreparedDestination] = []
    failed: list[DestinationOutcome] = []
    secret_values: list[str] = []
    try:
        catalog, catalog_secrets = _catalog_config(job.manifest, secrets_dir)
    except SinkConfigurationError as exc:
        where = f"{job.manifest_path}: catalog: " if job.manifest_path else ""
        raise JobConfigurationError([f"{where}{p}" for p in _problems_of(exc)]) from exc
    secret_values.extend(catalog_secrets)
    for dest in job.destinations:
        try:
            manager.owner_of(dest.sink_type)
            if not dest.source_table:
                raise SinkConfigurationError(
                    f"destination {dest.name!r} has no source_table: name the Iceberg table "
                    "to read (namespace.table) in floe.yaml"
                )
            secret: dict[str, Secret] = dict(
                config.resolve_secret(dest.connection_secret_ref, secrets_dir)
            )
            secret_values.extend(value.reveal() for value in secret.values())
            sink_config = _sink_config(dest, secret, state_dir=state_dir)
            source_config = manager.get_source_config(
                {**catalog, "table": dest.source_table, "state_dir": str(state_dir)},
                sink_type=dest.sink_type,
            )
            with egress_span(dest.sink_type, dest.name, name="floe_sink.source.plan") as span:
                table = open_table(source_config)
                scan = plan_scan(
                    table,
                    row_filter=getattr(dest, "row_filter", None),
                    columns=_projection(dest),
                )
                span.set_attribute("floe.source.table", scan.table_name)
                span.set_attribute("floe.source.files", scan.files)
            _check_columns(dest, scan.schema)
        except (SinkConfigurationError, PluginConflictError) as exc:
            problems.extend(_prefixed(dest.name, _problems_of(exc)))
            continue
        except (SinkError, OSError) as exc:
            failed.append(_failure(dest, exc))
            continue
        ready.append(
            PreparedDestination(
                name=dest.name,
                sink_type=dest.sink_type,
                destination=dest,
                sink_config=sink_config,
                source_config=source_config,
                scan=scan,
            )
        )
    if problems:
        raise JobConfigurationError(problems)
    return Prepared(ready=tuple(ready), failed=tuple(failed), secrets=tuple(secret_values))


def _prefixed(name: str, problems: Iterable[str]) -> list[str]:
    return [p if f"{name!r}" in p else f"destination {name!r}: {p}" for p in problems]


def _failure(dest: Any, exc: BaseException, *, configuration: bool = False) -> DestinationOutcome:
    message = str(exc) if isinstance(exc, FloeSinkError) else f"{type(exc).__name__}: {exc}"
    return DestinationOutcome(
        destination=dest.name,
        sink_type=dest.sink_type,
        result=EgressResult(success=False, errors=[message]),
        configuration_error=configuration,
    )


def deliver(prepared: PreparedDestination, manager: Any, reporter: Any) -> DestinationOutcome:
    """Create the sink of one destination and stream its source scan to it.

    Never raises for a delivery problem: failures are returned as an unsuccessful result
    (``configuration_error`` set when the sink refused its configuration).
    """
    dest = prepared.destination
    try:
        sink = manager.create_sink(prepared.sink_config)
        target = _describe(sink)
        reader = reporter.track(prepared.name, prepared.scan.reader(), prepared.scan.estimated_rows)
        result = manager.write(
            sink, reader, destination=prepared.name, sink_type=prepared.sink_type
        )
    except SinkConfigurationError as exc:
        log.error("destination_failed", destination=prepared.name, error=str(exc))
        return _failure(dest, exc, configuration=True)
    except Exception as exc:  # a plugin's failure is this destination's, not the run's
        log.error("destination_failed", destination=prepared.name, error=str(exc))
        return _failure(dest, exc)
    return DestinationOutcome(
        destination=prepared.name, sink_type=prepared.sink_type, result=result, target=target
    )


def _describe(sink: Any) -> str | None:
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


def dry_run(prepared: PreparedDestination, reporter: Any) -> DryRunReport:
    """Read the source of one destination and apply its field mapping, sending nothing.

    ``batches`` counts the batches of ``batch_size`` rows that would be sent; it is ``None``
    when the destination sets no ``batch_size`` (the sink's default applies, unknown here).
    """
    from floe_sink.mapping import apply_field_mapping, mapped_schema

    mapping = prepared.sink_config.field_mapping
    schema = mapped_schema(prepared.scan.schema, mapping)
    rows = source_batches = 0
    sample: list[pa.RecordBatch] = []
    sample_rows = 0
    reader = reporter.track(prepared.name, prepared.scan.reader(), prepared.scan.estimated_rows)
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
    batch_size = prepared.sink_config.batch_size
    batches = math.ceil(rows / batch_size) if batch_size else None
    sample_rows_list: list[dict[str, Any]] = (
        pa.Table.from_batches(sample, schema=schema).to_pylist() if sample else []
    )
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
    )


def result_record(outcome: DestinationOutcome) -> dict[str, Any]:
    """The JSON record of one destination: ``destination`` plus the ``EgressResult`` fields."""
    return {"destination": outcome.destination, **attrs.asdict(outcome.result)}
