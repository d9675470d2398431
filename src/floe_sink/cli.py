"""The ``floe-sink`` command: ``run``, ``validate``, ``sinks``, ``schema`` and ``init``.

Exit codes (docs/cli.md): 0 success, 1 a delivery failed, 2 bad configuration or usage.
A configuration problem is one clear message on stderr naming the file or destination and the
field, never a traceback. Results go to stdout (``--output json``: one JSON document and nothing
else); logs, the progress bar and console spans go to stderr.

Secret values never reach any output: messages, results and log lines are scrubbed of every
secret value resolved for the run, on top of :class:`floe_sink.secrets.Secret` masking them.
"""

from __future__ import annotations

import os

# Arrow's default allocator (mimalloc) keeps the pages it freed: a command that streams a
# table much larger than its memory should hold gives them back soon instead (jemalloc,
# a short decay; see floe_sink.source). Set before pyarrow is imported; the variable still wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

import atexit
import contextlib
import functools
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import click

from floe_sink.delivery import DeliveryInterrupted
from floe_sink.errors import FloeSinkError, PluginConflictError, SinkConfigurationError
from floe_sink.interrupts import EXIT_CODES, StopRequest, stop_on_signals
from floe_sink.logs import configure_logging, get_logger
from floe_sink.secrets import scrub_text
from floe_sink.state import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from floe_sink.job import Configured, DestinationOutcome, DryRunReport, Job
    from floe_sink.manager import SinkPluginManager
    from floe_sink.state import StateStore

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "cli", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

DEBUG_ENV = "FLOE_SINK_DEBUG"
"""``1``: show the traceback of an unexpected error (for bug reports)."""

log = get_logger("floe_sink.cli")


class ConfigurationFailed(click.ClickException):
    """Bad configuration: exit 2 with one message on stderr.

    Attributes:
        summary: One line: the problem, or how many there are.
        problems: Every problem found, one line each.
    """

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, summary: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.summary = summary
        self.problems = list(problems)

    def show(self, file: Any = None) -> None:
        click.echo(f"floe-sink: error: {self.format_message()}", err=True)


class _Invocation:
    """What :func:`main` must know of the command being run to report an error."""

    json_errors = False
    """``--output json`` was given: an error is also one JSON document on stdout."""


_invocation = _Invocation()


class _Scrubber:
    """Replaces every known secret value in text with ``***``."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, values: Iterable[str]) -> None:
        self.values.update(values)

    def __call__(self, text: str) -> str:
        return scrub_text(text, self.values)

    def processor(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """structlog processor: scrub every string value."""
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = self(value)
        return event_dict


_scrub = _Scrubber()


LOG_LEVEL_ENV = "FLOE_SINK_LOG_LEVEL"
"""The log level when neither ``-v`` nor ``-q`` is given (default ``warning``)."""

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _setup_logging(*, level: int, log_format: str) -> None:
    as_json = {"auto": None, "json": True, "console": False}[log_format]
    # the scrubbing runs just before the renderer; structlog is imported on the first event
    configure_logging(level=level, json=as_json, stream=sys.stderr, processors=[_scrub.processor])


def _echo_json(data: Any) -> None:
    click.echo(_scrub(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


def _fail(message: str, problems: Sequence[str] | None = None) -> NoReturn:
    """Exit 2 with ``message`` on stderr (``--output json``: also ``problems`` on stdout)."""
    listed = [_scrub(problem) for problem in problems] if problems else [_scrub(message)]
    summary = listed[0] if len(listed) == 1 else f"{len(listed)} configuration problems"
    raise ConfigurationFailed(_scrub(message), summary=summary, problems=listed)


def _remember_output(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    # Eager, so that a usage error in any later parameter is reported as JSON too.
    if value == "json":
        _invocation.json_errors = True
    return value


def _output_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        is_eager=True,
        callback=_remember_output,
        help=help_text,
    )


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Logging options are accepted before and after the subcommand name; both land here.
    settings = ctx.find_root().meta.setdefault("floe_sink.logging", {})
    if param.name == "verbose":
        settings["verbose"] = settings.get("verbose", 0) + (value or 0)
    elif param.name == "quiet":
        settings["quiet"] = settings.get("quiet", False) or bool(value)
    elif value is not None:
        settings[param.name or ""] = value
    return value


def _common_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options of every command, accepted before and after the command name."""
    options = [
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_remember,
            help="More log lines: -v info, -vv debug.",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            callback=_remember,
            help="Only errors in the logs.",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["auto", "console", "json"]),
            default=None,
            expose_value=False,
            callback=_remember,
            envvar="FLOE_SINK_LOG_FORMAT",
            help="Log lines on stderr: console on a terminal, JSON lines otherwise (auto).",
        ),
        click.version_option(package_name="floe-sink", prog_name="floe-sink"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _logging_settings(ctx: click.Context) -> dict[str, Any]:
    settings: dict[str, Any] = ctx.find_root().meta.get("floe_sink.logging", {})
    return {
        "verbose": settings.get("verbose", 0),
        "quiet": settings.get("quiet", False),
        "log_format": settings.get("log_format") or "auto",
    }


def _log_level(settings: dict[str, Any], *, bar: bool) -> int:
    """-q: errors; -v: info; -vv: debug; else $FLOE_SINK_LOG_LEVEL, else warnings and errors.

    stdout holds the report, stderr what went wrong: routine info events are opt-in.
    """
    if settings["quiet"]:
        return logging.ERROR
    if settings["verbose"] >= 2:
        return logging.DEBUG
    if settings["verbose"] == 1:
        return logging.INFO
    name = os.environ.get(LOG_LEVEL_ENV, "").strip().lower() or "warning"
    if name not in _LEVELS:
        _fail(f"{LOG_LEVEL_ENV} must be one of {', '.join(_LEVELS)} (got {name!r})")
    level = _LEVELS[name]
    return max(level, logging.WARNING) if bar else level  # the bar replaces info lines


def _apply_logging(ctx: click.Context, *, bar: bool = False) -> None:
    settings = _logging_settings(ctx)
    _setup_logging(level=_log_level(settings, bar=bar), log_format=settings["log_format"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_common_options
def cli() -> None:
    """floe-sink: reverse ETL from Iceberg Gold tables to SaaS APIs and databases.

    Exit codes: 0 success, 1 a delivery failed, 2 bad configuration or usage.
    """


# -- sinks ------------------------------------------------------------------------------------


@cli.command()
@_output_option("Plain text, or one JSON object on stdout.")
@_common_options
@click.pass_context
def sinks(ctx: click.Context, output: str) -> int:
    """List the sink types available and the plugin providing each."""
    from floe_sink.manager import get_plugin_manager

    _apply_logging(ctx)

    manager = get_plugin_manager()
    providers = manager.sink_providers()
    records: list[dict[str, Any]] = [
        {
            "sink_type": sink_type,
            "plugin": infos[0].name if len(infos) == 1 else None,
            "distribution": infos[0].distribution if len(infos) == 1 else None,
            "version": infos[0].version if len(infos) == 1 else None,
            "conflict": [info.describe() for info in infos] if len(infos) > 1 else [],
        }
        for sink_type, infos in providers.items()
    ]
    failures = [attrs.asdict(failure) for failure in manager.load_failures]
    if output == "json":
        _echo_json({"sinks": records, "failed_plugins": failures})
    else:
        if not records:
            click.echo("No sink types available: install a floe-sink plugin package.")
        width = max((len(record["sink_type"]) for record in records), default=0)
        for record in records:
            if record["conflict"]:
                provider = "CONFLICT: " + ", ".join(record["conflict"])
            else:
                dist = record["distribution"] or "registered in code"
                version = f" {record['version']}" if record["version"] else ""
                provider = f"plugin {record['plugin']} ({dist}{version})"
            click.echo(f"{record['sink_type']:<{width}}  {provider}")
        for failure in failures:
            dist = f" ({failure['distribution']})" if failure["distribution"] else ""
            click.echo(f"failed to load: plugin {failure['name']}{dist}: {failure['error']}")
    conflicts = any(record["conflict"] for record in records)
    return EXIT_CONFIG if conflicts else EXIT_OK


# -- validate ---------------------------------------------------------------------------------

_floe_yaml_argument = click.argument(
    "floe_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
_manifest_option = click.option(
    "--manifest",
    "manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The platform's manifest.yaml [default: $FLOE_MANIFEST, else manifest.yaml beside "
    "FLOE_YAML when it exists].",
)


_destinations_option = click.option(
    "--destination",
    "-d",
    "destinations",
    multiple=True,
    metavar="NAME",
    help="Only this destination (repeatable); default: every enabled one.",
)


_secrets_dir_option = click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FLOE_SECRETS_DIR",
    default=None,
    help="Where secrets are mounted (<dir>/<connection_secret_ref>/<key>) "
    "[default: $FLOE_SECRETS_DIR, else /var/run/secrets/floe].",
)
_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FLOE_STATE_DIR",
    default=DEFAULT_STATE_DIR,
    show_default=True,
    help="Where the delivery journal (state.db, locks/) and the embedded Iceberg catalog "
    "live [env: FLOE_STATE_DIR].",
)


def _load(floe_yaml: Path, manifest: Path | None, select: Sequence[str] = ()) -> Job:
    from floe_sink.job import JobConfigurationError, default_manifest, load_job

    if manifest is None:
        manifest = default_manifest(floe_yaml)
    try:
        return load_job(floe_yaml, manifest, select=select)
    except JobConfigurationError as exc:
        _fail(exc.render(), exc.problems)


@attrs.frozen(kw_only=True)
class _Project:
    """The files and folders a command works on: FLOE_YAML, ``--manifest``,
    ``--destination``, ``--secrets-dir`` and ``--state-dir``."""

    floe_yaml: Path
    manifest: Path | None
    destinations: tuple[str, ...]
    secrets_dir: Path | None
    state_dir: Path

    def load(self, select: Sequence[str] | None = None) -> Job:
        """The job: both files read, the destinations selected (default ``--destination``)."""
        return _load(self.floe_yaml, self.manifest, self.destinations if select is None else select)

    def configure(self, job: Job, manager: SinkPluginManager) -> Configured:
        """Every check a run makes before reading (:func:`floe_sink.job.configure`); the
        secrets it resolved are scrubbed from all output from now on."""
        from floe_sink.job import configure

        configured = configure(job, manager, secrets_dir=self.secrets_dir, state_dir=self.state_dir)
        _scrub.add(configured.secrets)
        return configured

    def state_store(
        self, job: Job, manager: SinkPluginManager | None = None
    ) -> contextlib.AbstractContextManager[StateStore]:
        """The job's state store, closed after the block (:func:`_state_store`)."""
        return _state_store(self.state_dir, job, self.secrets_dir, manager)


def _project_options(*, select: bool = True) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """FLOE_YAML, ``--manifest``, ``--destination`` (with ``select``), ``--secrets-dir`` and
    ``--state-dir``, handed to the command as one ``project`` (a :class:`_Project`)."""

    def decorate(command: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(command)
        def with_project(
            *args: Any,
            floe_yaml: Path,
            manifest: Path | None,
            secrets_dir: Path | None,
            state_dir: Path,
            destinations: tuple[str, ...] = (),
            **kwargs: Any,
        ) -> int:
            project = _Project(
                floe_yaml=floe_yaml,
                manifest=manifest,
                destinations=destinations,
                secrets_dir=secrets_dir,
                state_dir=state_dir,
            )
            return command(*args, project=project, **kwargs)

        options = [_floe_yaml_argument, _manifest_option]
        if select:
            options.append(_destinations_option)
        options += [_secrets_dir_option, _state_dir_option]
        decorated: Callable[..., int] = with_project
        for option in reversed(options):
            decorated = option(decorated)
        return decorated

    return decorate


@cli.command()
@_project_options(select=False)
@_common_options
@click.pass_context
def validate(ctx: click.Context, project: _Project) -> int:
    """Check FLOE_YAML and the manifest as a run would, reading and sending nothing.

    Schema, governance, the sink types installed, each destination's secret, and each sink's
    own configuration checks (the same ones `run` makes before it sends anything).
    """
    from floe_sink.job import JobConfigurationError
    from floe_sink.manager import get_plugin_manager

    _apply_logging(ctx)
    job = project.load()
    configured = project.configure(job, get_plugin_manager())
    try:
        configured.raise_problems()
    except JobConfigurationError as exc:
        _fail(exc.render(), exc.problems)
    declared = list(job.spec.destinations or [])
    where = f" with {job.manifest_path}" if job.manifest_path else ""
    click.echo(f"{project.floe_yaml}: valid{where} ({len(declared)} destination(s))")
    for dest in declared:
        state = "" if getattr(dest, "enabled", True) else " [disabled]"
        click.echo(f"  {dest.name}: {dest.source_table} -> {dest.sink_type}{state}")
    return EXIT_OK


# -- schema -----------------------------------------------------------------------------------


@cli.command()
@click.argument("kind", type=click.Choice(["floe", "manifest", "all"]), default="all")
@_common_options
@click.pass_context
def schema(ctx: click.Context, kind: str) -> int:
    """Print the JSON Schema of floe.yaml, of manifest.yaml, or both (default)."""
    from floe_sink import config

    _apply_logging(ctx)

    schemas = {
        "floe": config.floe_yaml_json_schema,
        "manifest": config.manifest_json_schema,
    }
    if kind == "all":
        _echo_json({"floe.yaml": schemas["floe"](), "manifest.yaml": schemas["manifest"]()})
    else:
        _echo_json(schemas[kind]())
    return EXIT_OK


# -- init -------------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    metavar="[DIR]",
)
@click.option(
    "--sink-type",
    type=click.Choice(["rest_api", "sql_database"]),
    default="sql_database",
    show_default=True,
    help="The sink type of the example destination.",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
@_common_options
@click.pass_context
def init(ctx: click.Context, directory: Path, sink_type: str, force: bool) -> int:
    """Write a commented floe.yaml, manifest.yaml and secrets/ layout into DIR (default: .)."""
    from floe_sink import scaffold

    _apply_logging(ctx)

    existing = scaffold.existing_files(directory, sink_type)
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        _fail(
            f"{directory}: {', '.join(existing)} {verb} already; nothing was written. "
            "Use another directory, or --force to overwrite."
        )
    written = scaffold.write_project(directory, sink_type)
    click.echo(f"{directory}: wrote {', '.join(written)}")
    floe_yaml = directory / "floe.yaml"
    click.echo("next:")
    click.echo(f"  edit {floe_yaml} (source_table, config) and the placeholder under secrets/")
    click.echo(f"  floe-sink validate {floe_yaml} --secrets-dir {directory / 'secrets'}")
    click.echo(f"  floe-sink run {floe_yaml} --secrets-dir {directory / 'secrets'} --dry-run")
    return EXIT_OK


# -- run --------------------------------------------------------------------------------------


@cli.command()
@_floe_yaml_argument
@_manifest_option
@click.option(
    "--destination",
    "-d",
    "destinations",
    multiple=True,
    metavar="NAME",
    help="Run only this destination (repeatable); default: every enabled one.",
)
@click.option("--dry-run", is_flag=True, help="Read and map the data, report, send nothing.")
@_secrets_dir_option
@_state_dir_option
@_output_option("json: one JSON array of per-destination results on stdout, nothing else there.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Draw a progress bar [default: when stderr is a terminal].",
)
@click.option(
    "--otel-console",
    is_flag=True,
    help="Print OpenTelemetry spans on stderr (also FLOE_SINK_OTEL=console).",
)
@click.option(
    "--ignore-guards",
    is_flag=True,
    help="Deliver even when a destination's guards (max_deletes, ...) would stop it.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="local: this process delivers; ray: Ray tasks deliver each destination's units "
    "(pip install 'floe-sink[ray]') [default: the manifest's engine:, else local].",
)
@click.option(
    "--ray-address",
    metavar="ADDR",
    default=None,
    help="The Ray cluster for --engine ray (ray://host:10001, host:6379, auto) "
    "[default: the manifest's engine.address, else $RAY_ADDRESS, else a local Ray instance].",
)
@_common_options
@click.pass_context
def run(
    ctx: click.Context,
    floe_yaml: Path,
    manifest: Path | None,
    destinations: tuple[str, ...],
    dry_run: bool,
    secrets_dir: Path | None,
    state_dir: Path,
    output: str,
    progress: bool | None,
    otel_console: bool,
    ignore_guards: bool,
    engine: str | None,
    ray_address: str | None,
) -> int:
    """Send the source tables of FLOE_YAML's destinations to their sinks."""
    from floe_sink.trace_export import setup_tracing

    bar = sys.stderr.isatty() if progress is None else progress
    _apply_logging(ctx, bar=bar)
    shutdown = setup_tracing(console=otel_console)
    try:
        return _run(
            floe_yaml=floe_yaml,
            manifest=manifest,
            select=destinations,
            dry=dry_run,
            secrets_dir=secrets_dir,
            state_dir=state_dir,
            output=output,
            bar=bar,
            ignore_guards=ignore_guards,
            engine=engine,
            ray_address=ray_address,
        )
    finally:
        if shutdown is not None:
            shutdown()


def _run(
    *,
    floe_yaml: Path,
    manifest: Path | None,
    select: Sequence[str],
    dry: bool,
    secrets_dir: Path | None,
    state_dir: Path,
    output: str,
    bar: bool,
    ignore_guards: bool = False,
    engine: str | None = None,
    ray_address: str | None = None,
) -> int:
    from opentelemetry import trace

    from floe_sink.job import JobConfigurationError, configure, deliver, dry_run_failure, prepare
    from floe_sink.job import dry_run as rehearse
    from floe_sink.manager import get_plugin_manager
    from floe_sink.progress import track

    job = _load(floe_yaml, manifest, select)
    engine_settings = _engine_settings(job, engine, ray_address)
    if not job.destinations:
        log.warning("no_destinations", floe_yaml=str(floe_yaml))
        if output == "json":
            _echo_json([])
        else:
            click.echo(f"{floe_yaml}: no destinations to run.")
        return EXIT_OK
    manager = get_plugin_manager()
    tracer = trace.get_tracer("floe_sink")
    stop = StopRequest()
    with (
        tracer.start_as_current_span(
            "floe_sink.run",
            attributes={"floe.run.destinations": len(job.destinations), "floe.run.dry_run": dry},
        ) as span,
        contextlib.ExitStack() as held,
        stop_on_signals(stop),
    ):
        store = (
            None if dry else held.enter_context(_state_store(state_dir, job, secrets_dir, manager))
        )
        runner = None
        try:
            configured = configure(job, manager, secrets_dir=secrets_dir, state_dir=state_dir)
            _scrub.add(configured.secrets)
            if not dry and not configured.problems:  # Ray's workers start as sources are planned
                runner = held.enter_context(
                    _engine(engine_settings, job, secrets_dir, state_dir, output)
                )
            prepared = prepare(
                configured,
                manager,
                state_dir=state_dir,
                store=store,
                stop=stop,
                locks=held,
                engine=engine_settings.plan,
            )
        except JobConfigurationError as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, "configuration"))
            _fail(exc.render(), exc.problems)
        log.info(
            "run_started",
            floe_yaml=str(floe_yaml),
            destinations=[p.name for p in prepared.ready],
            dry_run=dry,
        )
        if dry:
            reports, refused = [], list(prepared.failed)
            with track(enabled=bar) as reporter:
                for ready in prepared.ready:
                    try:  # the sample rows as its sink (created, never written to) sends them
                        reports.append(rehearse(ready, reporter))
                    except Exception as exc:  # this destination's failure, not the run's
                        refused.append(dry_run_failure(ready, exc))
            _print_dry_run(reports, refused, output)
            if any(outcome.configuration_error for outcome in refused):
                return EXIT_CONFIG
            return EXIT_FAILED if refused else EXIT_OK
        outcomes = list(prepared.failed)
        with track(enabled=bar) as reporter:
            for ready in prepared.ready:
                if stop.requested:
                    break
                outcomes.append(
                    deliver(
                        ready,
                        manager,
                        reporter,
                        store=store,
                        ignore_guards=ignore_guards,
                        engine=runner,
                    )
                )
        if stop.requested:
            raise DeliveryInterrupted(stop.signal_number)
        order = {dest.name: index for index, dest in enumerate(job.destinations)}
        outcomes.sort(key=lambda outcome: order.get(outcome.destination, 0))
        failed = [o for o in outcomes if not o.result.success]
        span.set_attribute("floe.run.failed", len(failed))
        if failed:
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{len(failed)} failed"))
    _print_results(outcomes, output)
    if any(o.configuration_error for o in failed):
        return EXIT_CONFIG
    return EXIT_FAILED if failed else EXIT_OK


def _engine_settings(job: Any, engine: str | None, address: str | None) -> Any:
    """The run's engine (``--engine``, ``--ray-address``, manifest ``engine:``); exit 2 if bad."""
    from floe_sink.engines import engine_settings

    try:
        return engine_settings(job.manifest, engine=engine, address=address)
    except SinkConfigurationError as exc:
        _fail(str(exc))


@contextlib.contextmanager
def _engine(
    settings: Any, job: Any, secrets_dir: Path | None, state_dir: Path, output: str
) -> Iterator[Any]:
    """The engine for the deliveries (``None``: this process); exit 2 if it cannot start."""
    from floe_sink.engines import open_engine

    with contextlib.ExitStack() as stack:
        try:
            runner = stack.enter_context(
                open_engine(
                    settings,
                    catalog=getattr(job.manifest, "catalog", None),
                    secrets_dir=secrets_dir,
                    state_dir=state_dir,
                    show_worker_logs=output != "json",  # Ray prints workers' stdout on ours
                )
            )
        except SinkConfigurationError as exc:
            _fail(str(exc))
        yield runner


@contextlib.contextmanager
def _state_store(
    state_dir: Path, job: Job, secrets_dir: Path | None, manager: SinkPluginManager | None = None
) -> Iterator[StateStore]:
    """The state store the manifest's ``state:`` names (``local`` under ``state_dir`` by
    default), opened through the plugins' ``get_state_store``; closed after the block."""
    from floe_sink.manager import get_plugin_manager
    from floe_sink.state import open_state_store, state_settings

    try:
        settings = state_settings(job.manifest, job.manifest_path, secrets_dir=secrets_dir)
        _scrub.add(settings.secret_values())
        store = open_state_store(state_dir, settings, manager=manager or get_plugin_manager())
    except SinkConfigurationError as exc:
        _fail(str(exc))
    try:
        yield store
    finally:
        store.close()


def _print_results(outcomes: Sequence[DestinationOutcome], output: str) -> None:
    from floe_sink.job import result_record

    if output == "json":
        _echo_json([result_record(outcome) for outcome in outcomes])
        return
    for outcome in outcomes:
        result = outcome.result
        head = f"{outcome.destination} ({outcome.sink_type})"
        if result.success:
            target = f" -> {outcome.target}" if outcome.target else ""
            click.echo(
                _scrub(
                    f"ok      {head}{target}: {result.rows_delivered:,} rows, "
                    f"{result.bytes_transmitted:,} bytes in {result.duration_seconds:.2f} s"
                )
            )
            click.echo(f"        checksum sha256:{result.checksum}")
            click.echo(f"        idempotency key {result.idempotency_key}")
        else:
            delivered = f" after {result.rows_delivered:,} rows" if result.rows_delivered else ""
            click.echo(_scrub(f"FAILED  {head}{delivered}: {'; '.join(result.errors)}"))
    failed = sum(1 for outcome in outcomes if not outcome.result.success)
    click.echo(
        f"{len(outcomes)} destination(s): {len(outcomes) - failed} succeeded, {failed} failed"
    )


def _print_dry_run(
    reports: Sequence[DryRunReport], failed: Sequence[DestinationOutcome], output: str
) -> None:
    if output == "json":
        records: list[dict[str, Any]] = [
            {"dry_run": True, **attrs.asdict(report)} for report in reports
        ]
        from floe_sink.job import result_record

        records.extend({"dry_run": True, **result_record(outcome)} for outcome in failed)
        _echo_json(records)
        return
    for report in reports:
        if report.batches is None:
            batches = "in batches of the sink's default size"
        else:
            batches = f"in {report.batches:,} batch(es) of {report.batch_size:,}"
        click.echo(
            f"dry run {report.destination} ({report.sink_type}) from {report.source_table}: "
            f"would send {report.rows:,} rows {batches}"
        )
        fields = ", ".join(f"{f['name']}: {f['type']}" for f in report.schema)
        click.echo(f"        schema: {fields}")
        for row in report.sample:
            click.echo(f"        sample: {json.dumps(row, default=str, ensure_ascii=False)}")
        request = report.first_request
        if request is not None:
            click.echo(
                f"        first request: {request['method']} {request['url']} "
                f"({request['records']:,} records, {request['bytes']:,} bytes)"
            )
            click.echo(f"        {request['body']}")
    for outcome in failed:
        click.echo(_scrub(f"FAILED  {outcome.destination}: {'; '.join(outcome.result.errors)}"))
    click.echo("dry run: nothing was sent.")


# -- plan, status, reset ------------------------------------------------------------------------


@cli.command()
@_project_options()
@_output_option("Plain text, or one JSON array on stdout.")
@_common_options
@click.pass_context
def plan(ctx: click.Context, project: _Project, output: str) -> int:
    """Show what a run would send to each destination, sending nothing and writing no state."""
    from floe_sink.job import JobConfigurationError, diff_of, guard_violations, prepare
    from floe_sink.manager import get_plugin_manager

    _apply_logging(ctx)
    job = project.load()
    manager = get_plugin_manager()
    configured = project.configure(job, manager)
    try:
        prepared = prepare(configured, manager, state_dir=project.state_dir)
    except JobConfigurationError as exc:
        _fail(exc.render())
    records: list[dict[str, Any]] = []
    store = ctx.with_resource(project.state_store(job, manager))
    for item in prepared.ready:
        mode = item.sink_config.sync
        record: dict[str, Any] = {"destination": item.name, "sync": mode}
        if mode == "full":
            rows = item.scan.estimated_rows
            if rows is None:
                rows = sum(batch.num_rows for batch in item.source_scan.reader())
            record.update(inserts=rows, updates=0, deletes=0, unchanged=0, guard_violations=[])
            record["sample"] = {"inserts": [], "updates": [], "deletes": []}
        else:
            work = project.state_dir / "tmp"
            diff = diff_of(item, store.load_sync_state(item.name), work)
            try:
                record.update(
                    inserts=diff.inserts,
                    updates=diff.updates,
                    deletes=diff.deletes,
                    unchanged=diff.unchanged,
                    guard_violations=guard_violations(
                        diff, getattr(item.destination, "guards", None)
                    ),
                    sample={kind: diff.sample(kind) for kind in ("inserts", "updates", "deletes")},
                )
            finally:
                diff.close()
        records.append(record)
    for outcome in prepared.failed:
        records.append({"destination": outcome.destination, "errors": outcome.result.errors})
    if output == "json":
        _echo_json(records)
    else:
        for record in records:
            if "errors" in record:
                click.echo(
                    _scrub(f"FAILED  {record['destination']}: {'; '.join(record['errors'])}")
                )
                continue
            click.echo(
                f"{record['destination']} ({record['sync']}): {record['inserts']:,} inserts, "
                f"{record['updates']:,} updates, {record['deletes']:,} deletes, "
                f"{record['unchanged']:,} unchanged"
            )
            for kind, keys in record["sample"].items():
                if keys:
                    shown = ", ".join(json.dumps(key, default=str) for key in keys)
                    click.echo(f"        {kind}: {shown}")
            for violation in record["guard_violations"]:
                click.echo(f"        STOP {violation}")
        click.echo("plan: nothing was sent.")
    return EXIT_OK


_STATUS_FIELDS = (
    "rows_delivered",
    "rows_inserted",
    "rows_updated",
    "rows_deleted",
    "rows_rejected",
    "checksum",
)


@cli.command()
@_project_options()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_output_option("Plain text, or one JSON array on stdout.")
@_common_options
@click.pass_context
def status(ctx: click.Context, project: _Project, limit: int, output: str) -> int:
    """Show the run history of FLOE_YAML's destinations, most recent first."""
    _apply_logging(ctx)
    job = project.load()
    names = [dest.name for dest in job.destinations] if project.destinations else None
    runs: list[dict[str, Any]] = []
    with project.state_store(job) as store:
        for run_record in store.runs(limit=None):
            if names is not None and run_record.destination not in names:
                continue
            result = run_record.result
            runs.append(
                {
                    "destination": run_record.destination,
                    "run_id": run_record.run_id,
                    "started_at": run_record.started_at,
                    "finished_at": run_record.finished_at,
                    "success": run_record.success,
                    "sync": run_record.sync,
                    "snapshot_id": run_record.snapshot_id,
                    **{
                        field: result.get(field, "" if field == "checksum" else 0)
                        for field in _STATUS_FIELDS
                    },
                }
            )
            if len(runs) >= limit:
                break
    if output == "json":
        _echo_json(runs)
        return EXIT_OK
    if not runs:
        click.echo("No runs recorded yet.")
    for item in runs:
        state = {True: "ok", False: "FAILED", None: "running"}[item["success"]]
        click.echo(
            f"{item['started_at']}  {state:<7} {item['destination']} ({item['sync']}): "
            f"{item['rows_delivered']:,} delivered, {item['rows_inserted']:,} inserted, "
            f"{item['rows_updated']:,} updated, {item['rows_deleted']:,} deleted"
        )
    return EXIT_OK


@cli.command()
@_project_options(select=False)
@click.option("--destination", "-d", "destination", required=True, metavar="NAME")
@_common_options
@click.pass_context
def reset(ctx: click.Context, project: _Project, destination: str) -> int:
    """Forget a destination's sync state: its next changes/mirror run sends every row."""
    _apply_logging(ctx)
    job = project.load((destination,))
    with project.state_store(job) as store, store.lock(destination):
        store.forget(destination)
    click.echo(
        f"{destination}: sync state and unfinished deliveries forgotten; the next run "
        "compares against nothing and sends every row."
    )
    return EXIT_OK


@cli.command()
@_project_options()
@click.option(
    "--output",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
    help="Plain text, one JSON array, or CSV (one row per record) on stdout.",
)
@_common_options
@click.pass_context
def rejects(ctx: click.Context, project: _Project, output: str) -> int:
    """List the records destinations refused: key, reason, when, attempts."""
    _apply_logging(ctx)
    job = project.load()
    names = {dest.name for dest in job.destinations}
    with project.state_store(job) as store:
        found = [r for r in store.rejects() if r.destination in names]
    records = [
        {
            "destination": r.destination,
            "key": r.key,
            "status": r.status,
            "reason": r.message,
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
            "attempts": r.attempts,
            "run_id": r.run_id,
            "record": r.record,
        }
        for r in found
    ]
    if output == "json":
        _echo_json(records)
    elif output == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        fields = ["destination", "key", "status", "reason", "first_seen", "last_seen", "attempts"]
        writer.writerow(fields)
        for record in records:
            row = [record[field] for field in fields]
            row[1] = json.dumps(record["key"], default=str)
            writer.writerow(row)
    else:
        if not records:
            click.echo("No rejected records.")
        for record in records:
            click.echo(
                f"{record['destination']}  {json.dumps(record['key'], default=str)}  "
                f"{record['status']}: {record['reason']}  (attempts {record['attempts']}, "
                f"first {record['first_seen']}, last {record['last_seen']})"
            )
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------


def _exit_with_error(
    message: str, code: int, *, kind: str, problems: Sequence[str] | None = None
) -> NoReturn:
    click.echo(f"floe-sink: error: {_scrub(message)}", err=True)
    _print_error_document(kind, message, problems)
    sys.exit(code)


def _print_error_document(kind: str, message: str, problems: Sequence[str] | None) -> None:
    """With ``--output json``: ``{"error": {"kind", "message", "problems"}}`` on stdout."""
    if not _invocation.json_errors:
        return
    listed = list(problems) if problems else [message]
    _echo_json({"error": {"kind": kind, "message": message, "problems": listed}})


class _ExitWithoutTeardown:
    """The console script's last atexit callback: exit with the command's code, at once.

    Once the command is done, CPython's interpreter finalization (module teardown, mostly
    pyiceberg's pydantic models) took another 0.18-0.22 s of every ``floe-sink`` process.
    Registered at the start of :func:`main`, this callback runs after every atexit callback
    registered during the command (atexit is last in, first out: the tracer provider's
    shutdown, ``weakref.finalize``, Ray's), and after the non-daemon threads were joined;
    then it flushes stdout and stderr, shuts logging down and calls :func:`os._exit`, so the
    module teardown never runs.

    Without a recorded exit code (an uncaught exception, e.g. with ``FLOE_SINK_DEBUG=1``) or
    when a flush fails (a closed pipe), it does nothing: the usual teardown reports it.
    """

    def __init__(self) -> None:
        self.code: int | None = None

    def __call__(self) -> None:
        if self.code is None:
            return
        logging.shutdown()
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            return
        os._exit(self.code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script ``floe-sink``: run the command and exit with its code.

    Called as the console script (``argv`` None), the process then exits without the
    interpreter's teardown (:class:`_ExitWithoutTeardown`); not when atexit callbacks other
    than logging's were registered before (an embedding wrapper's: they would be skipped),
    nor when called with ``argv`` (in-process: tests, an application).
    """
    if argv is not None or atexit._ncallbacks() > 1:  # logging's: this module imports it
        _main(argv)
    fast_exit = _ExitWithoutTeardown()
    atexit.register(fast_exit)
    try:
        _main(None)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            fast_exit.code = exc.code or 0
        raise


def _main(argv: Sequence[str] | None) -> NoReturn:
    command: Callable[..., Any] = cli.main
    _invocation.json_errors = False
    try:
        code = command(
            args=list(argv) if argv is not None else None,
            prog_name="floe-sink",
            standalone_mode=False,
        )
    except DeliveryInterrupted as exc:
        code = EXIT_CODES.get(exc.signal_number, 130)
        name = signal.Signals(exc.signal_number).name if exc.signal_number else "SIGINT"
        _exit_with_error(
            f"interrupted by {name}: stopped after the batches in flight; "
            "run again to resume where it stopped",
            code,
            kind="interrupted",
        )
    except click.exceptions.Abort:
        _exit_with_error("interrupted", 130, kind="interrupted")
    except ConfigurationFailed as exc:
        exc.show()
        _print_error_document("configuration", exc.summary, exc.problems)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        _print_error_document("usage", _scrub(exc.format_message()), None)
        sys.exit(exc.exit_code)
    except (SinkConfigurationError, PluginConflictError) as exc:
        _exit_with_error(str(exc), EXIT_CONFIG, kind="configuration")
    except FloeSinkError as exc:
        _exit_with_error(str(exc), EXIT_FAILED, kind="error")
    except KeyboardInterrupt:
        _exit_with_error("interrupted", 130, kind="interrupted")
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _exit_with_error(
            f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)",
            EXIT_FAILED,
            kind="unexpected",
        )
    sys.exit(code if isinstance(code, int) else EXIT_OK)
