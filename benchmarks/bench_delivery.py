"""Benchmark: the whole ``floe-sink run`` process against hand-written baselines, and its state.

Run from the repository root with the project's venv (not part of the test suite)::

    .venv/bin/python benchmarks/bench_delivery.py [--rows 1000000] [--repeat 3]
        [--cases append,merge,rest,state] [--state-runs 10] [--state-destinations ...]
        [--state-record-ids] [--rest-json stdlib|orjson]
        [--logs-dir DIR] [--profile DIR] [--json-out FILE] [--quiet]

Set-up (untimed): the 8-column table of ``_data.py`` is written with pyiceberg to a SQL
catalog with a local warehouse in a temp dir (``_lake.py``: 500,000-row data files); a
throwaway PostgreSQL starts with default durability (fsync on; ``tests/fixtures/postgres.py``,
as an unprivileged user when run as root); the counting HTTP server of ``bench_rest_api.py``
starts in its own process on 127.0.0.1.

Every case is two whole processes, timed from before the fork to the exit (start-up and
imports included), each in a database of its own (created before, dropped after; a
``CHECKPOINT`` before every timed process), in the same round, the order of the two sides
alternating from round to round:

* ``append``: ``floe-sink run`` (``sql_database``, ``append``, default batch size) into a new
  table, against ``baseline_postgres.py --mode append`` (pyiceberg stream -> psycopg
  ``COPY ... (FORMAT csv)`` per 100,000-row chunk).
* ``merge``: ``floe-sink run`` (``merge`` on ``id``) against ``baseline_postgres.py --mode merge``
  (``COPY`` into a temp table + ``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT
  FROM`` per chunk), both into a table that already holds 90 % of the ids (``PRIMARY KEY
  (id)``, vacuumed), a tenth of those with another ``amount``: 10 % inserts, 9 % updates,
  81 % unchanged rows.
* ``rest``: ``floe-sink run`` (``rest_api``, ``batch_size: 500``, ``max_concurrency: 1``)
  against ``baseline_rest.py`` (pyiceberg stream -> 500-row batches -> ``to_pylist`` ->
  JSON -> ``httpx`` POST, one at a time), to the same counting server.
* ``state``: ``floe-sink run`` of the ``--state-destinations`` above (default ``append``;
  ``append,merge,rest`` takes ~45 s a run on 2 cores) with one ``--state-dir`` and one
  database, ``--state-runs`` times (10); ``du`` of the state directory after each run. The
  table is read from a catalog outside the state directory, so ``du`` counts delivery state
  only. ``--state-record-ids`` repeats it with the REST destination reading the IDs a server
  answers, one per record (``record_ids_path: ids``), as an API that creates records does.

Every process writes and reads its bytecode under the temp dir (``_env.compiled_env``), as
an installed package has it; an untimed warm-up round of every case and side on a 1,000-row
table compiles it first.

Each result is checked (row count, distinct ids and column sums in PostgreSQL; requests and
bytes at the server). Prints the per-round figures (wall seconds, rows/s, peak RSS and CPU
seconds of the process, 1-minute load average before it), the medians, the ratios
floe-sink / baseline (rows/s) and the floors of issue 9; exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests"), str(ROOT / "src")]

from _env import compiled_env  # noqa: E402

FLOORS = {"append": 0.9, "merge": 0.8, "rest": 1.0}
STATE_BOUND_BYTES = 5_000_000
CASES = ("append", "merge", "rest", "state")
REST_BATCH = 500
TOKEN = "bench-token-0123456789"  # a throwaway token for the local server
DESTINATIONS = {"append": "bench_append", "merge": "bench_merge", "rest": "bench_rest"}
PREFILL_SHARE = 0.9  # merge: the share of the ids the table holds before the run
WARM_UP_ROWS = 1_000


# -- processes ----------------------------------------------------------------------------


@dataclass
class Measured:
    """One timed process."""

    case: str
    side: str
    round: int
    seconds: float
    rows: int
    peak_rss_mb: float
    cpu_seconds: float
    load_before: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


@dataclass
class Finished:
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    load_before: float
    stdout: str


_SIGNALLED = {130, 137, 143}  # floe-sink's exit codes after SIGINT, SIGKILL, SIGTERM


class KilledBySignal(Exception):
    """A process was stopped by a signal it did not get from us (a shared machine)."""


def again_when_killed(what: str, attempt: Callable[[], Any], tries: int = 6) -> Any:
    """``attempt()``, again (up to ``tries`` in all, 10 s apart: signals came in bursts)
    when a signal from outside stopped it."""
    for left in range(tries - 1, -1, -1):
        try:
            return attempt()
        except KilledBySignal as exc:
            if not left:
                raise SystemExit(f"{what}: {exc}, {tries} times") from None
            print(f"  {what}: {exc} (a signal from outside): run again", flush=True)
            time.sleep(10)
    raise AssertionError("unreachable")


def run_process(
    command: Sequence[str], *, cwd: Path, env: dict[str, str], stderr_path: Path
) -> Finished:
    """Run ``command`` to its exit; wall time from before the fork, rusage of the child."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as stdout, stderr_path.open("w") as stderr:
        wall_started = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        out = stdout.read()
    # beside the log: when the process was forked and reaped (log_timeline.py reads it)
    times = {"forked": wall_started, "exited": wall_started + seconds}
    stderr_path.with_suffix(".times.json").write_text(json.dumps(times))
    if process.returncode < 0 or process.returncode in _SIGNALLED:
        raise KilledBySignal(f"{Path(command[0]).name} ... exited with {process.returncode}")
    if process.returncode != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise SystemExit(
            f"{command[0]} ... exited with {process.returncode}\nstdout: {out[-2000:]}\n"
            f"stderr: {tail}"
        )
    return Finished(
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        load_before=load,
        stdout=out,
    )


def child_env(root: Path) -> dict[str, str]:
    """Every timed process's environment; bytecode cached under the temp dir ``root``."""
    env = compiled_env(root / "pycache")
    for name in ("FLOE_STATE_DIR", "FLOE_SECRETS_DIR", "FLOE_MANIFEST", "FLOE_SINK_OTEL"):
        env.pop(name, None)
    return env


def floe_sink_command(
    project: Path, state_dir: Path, destinations: Sequence[str], *, quiet: bool
) -> list[str]:
    script = Path(sys.executable).with_name("floe-sink")
    command = [str(script) if script.exists() else "floe-sink", "run", "floe.yaml"]
    command += ["--manifest", "manifest.yaml", "--secrets-dir", "secrets"]
    command += ["--state-dir", str(state_dir), "--output", "json", "--log-format", "json"]
    for name in destinations:
        command += ["-d", name]
    if quiet:
        command.append("-q")
    return command


# -- the project floe-sink runs -----------------------------------------------------------


def write_project(
    project: Path,
    lake: dict[str, str],
    *,
    databases: dict[str, str] | None = None,
    rest_url: str = "http://127.0.0.1:1/none",
    append_table: str = "bench",
    record_ids: bool = False,
) -> None:
    """floe.yaml (three destinations), manifest.yaml (the lake's catalog) and secrets/.

    ``databases``: the database URL of the ``append`` and ``merge`` destinations (by case).
    """
    import yaml
    from _lake import CATALOG_NAME, TABLE

    unused = "postgresql://unused@127.0.0.1:1/none"
    urls = databases or {}
    for ref, key, value in (
        ("bench-append-db", "url", urls.get("append", unused)),
        ("bench-merge-db", "url", urls.get("merge", unused)),
        ("bench-api", "token", TOKEN),
    ):
        (project / "secrets" / ref).mkdir(parents=True, exist_ok=True)
        (project / "secrets" / ref / key).write_text(value)
    common = {"sink_type": "sql_database", "source_table": TABLE}
    floe = {
        "destinations": [
            {
                "name": DESTINATIONS["append"],
                **common,
                "connection_secret_ref": "bench-append-db",
                "config": {"table": append_table},
                "write_disposition": "append",
            },
            {
                "name": DESTINATIONS["merge"],
                **common,
                "connection_secret_ref": "bench-merge-db",
                "config": {"table": "bench"},
                "write_disposition": "merge",
                "primary_key": ["id"],
            },
            {
                "name": DESTINATIONS["rest"],
                "sink_type": "rest_api",
                "source_table": TABLE,
                "connection_secret_ref": "bench-api",
                "config": {
                    "url": rest_url,
                    "max_concurrency": 1,
                    **({"record_ids_path": "ids"} if record_ids else {}),
                },
                "batch_size": REST_BATCH,
            },
        ]
    }
    manifest = {
        "scope": "enterprise",
        "approved_sinks": ["sql_database", "rest_api"],
        "catalog": {"name": CATALOG_NAME, **lake},
    }
    (project / "floe.yaml").write_text(yaml.safe_dump(floe, sort_keys=False))
    (project / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


# -- the source and its expected sums -----------------------------------------------------


@dataclass(frozen=True)
class Expected:
    rows: int
    quantity_sum: int
    amount_sum: float


def seed(lake_dir: Path, rows: int) -> tuple[dict[str, str], Any, Expected]:
    import pyarrow.compute as pc
    from _data import build_table
    from _lake import iceberg_ready, seed_lake

    started = time.perf_counter()
    properties = seed_lake(lake_dir, rows)
    table = iceberg_ready(build_table(rows))
    expected = Expected(
        rows=rows,
        quantity_sum=int(pc.sum(table["quantity"]).as_py()),
        amount_sum=float(pc.sum(table["amount"]).as_py()),
    )
    print(f"seeded {rows:,} rows into {lake_dir} in {time.perf_counter() - started:.1f} s")
    return properties, table, expected


def prefill_merge_target(url: str, table: Any) -> None:
    """The merge target before the run: 90 % of the ids, a tenth of them with another amount."""
    import psycopg
    import pyarrow.compute as pc
    from baseline_postgres import copy_chunk, create_table, rebatch

    held = table.slice(0, int(table.num_rows * PREFILL_SHARE))
    changed = pc.equal(pc.remainder(held["id"], 10), 0)
    amount = pc.if_else(changed, pc.add(held["amount"], 1.0), held["amount"])
    held = held.set_column(held.schema.get_field_index("amount"), "amount", amount)
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        create_table(conn, "bench", held.schema, "id")
        for chunk in rebatch(held.to_batches(), 100_000):
            copy_chunk(cursor, "bench", chunk)
        conn.commit()


def check_sql(cluster: Any, database: str, expected: Expected, what: str) -> None:
    out = cluster.psql(
        "SELECT count(*), count(DISTINCT id), sum(quantity), sum(amount) FROM bench", database
    )
    count, distinct, quantity, amount = out.strip().split("|")
    problems = []
    if int(count) != expected.rows or int(distinct) != expected.rows:
        problems.append(f"{count} rows ({distinct} distinct ids), {expected.rows:,} expected")
    if int(quantity) != expected.quantity_sum:
        problems.append(f"sum(quantity) {quantity}, {expected.quantity_sum} expected")
    if abs(float(amount) - expected.amount_sum) > 1e-6 * abs(expected.amount_sum):
        problems.append(f"sum(amount) {amount}, {expected.amount_sum} expected")
    if problems:
        raise SystemExit(f"{what}: wrong result in PostgreSQL: {'; '.join(problems)}")


# -- the counting server ------------------------------------------------------------------


class CountingServer:
    """``bench_rest_api.py``'s counting server in its own process, on 127.0.0.1.

    On the shared machine something outside stopped it once; :meth:`ensure` starts it again
    (on a new port) when it is gone.
    """

    def __init__(self, *, answer_ids: bool = False) -> None:
        self.answer_ids = answer_ids
        self.port = 0
        self._process: subprocess.Popen[str] | None = None
        self._start()

    def _start(self) -> None:
        command = [sys.executable, str(HERE / "bench_rest_api.py"), "--serve"]
        if self.answer_ids:
            command.append("--answer-ids")
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure(self) -> int:
        """The port, after starting the server again if it was stopped."""
        if not self.alive:
            print("  the counting server was stopped from outside: started again", flush=True)
            self._start()
        return self.port

    def stats(self) -> dict[str, int]:
        import httpx

        return dict(httpx.get(f"http://127.0.0.1:{self.port}/stats").json())

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._process = None

    def __enter__(self) -> CountingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the cases ----------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    root: Path
    lake: dict[str, str]
    table: Any
    expected: Expected
    cluster: Any
    server: CountingServer
    env: dict[str, str]
    logs: Path

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/ingest"

    def source_args(self) -> list[str]:
        """The baselines' options naming the Iceberg table."""
        from _lake import CATALOG_NAME, TABLE

        catalog = ["--catalog-name", CATALOG_NAME, "--catalog-uri", self.lake["uri"]]
        return [*catalog, "--warehouse", self.lake["warehouse"], "--table", TABLE]

    def stderr_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def _floe_sink(ctx: Context, case: str, round_: int, databases: dict[str, str]) -> Finished:
    project = ctx.root / f"project-{case}-{round_}"
    state_dir = project / ".floe"
    project.mkdir()
    write_project(project, ctx.lake, databases=databases, rest_url=ctx.rest_url)
    command = floe_sink_command(project, state_dir, [DESTINATIONS[case]], quiet=ctx.args.quiet)
    try:
        finished = run_process(
            command,
            cwd=project,
            env=ctx.env,
            stderr_path=ctx.stderr_path(f"floe-sink-{case}-{round_}"),
        )
        (record,) = json.loads(finished.stdout)
        if not record["success"] or record["rows_delivered"] != ctx.expected.rows:
            raise SystemExit(f"floe-sink {case}: {record}")
        return finished
    finally:
        shutil.rmtree(project, ignore_errors=True)


def _baseline_postgres(ctx: Context, case: str, round_: int, url: str) -> Finished:
    command = [sys.executable, str(HERE / "baseline_postgres.py"), *ctx.source_args()]
    command += ["--url", url, "--target", "bench", "--mode", case]
    finished = run_process(
        command,
        cwd=ctx.root,
        env=ctx.env,
        stderr_path=ctx.stderr_path(f"baseline-{case}-{round_}"),
    )
    if json.loads(finished.stdout)["rows"] != ctx.expected.rows:
        raise SystemExit(f"baseline {case}: {finished.stdout}")
    return finished


def sql_case(ctx: Context, case: str, side: str, round_: int) -> Measured:
    database = f"{case}_{side.replace('-', '_')}_{round_}"
    url = ctx.cluster.create_database(database)
    try:
        if case == "merge":
            prefill_merge_target(url, ctx.table)
            ctx.cluster.psql("VACUUM ANALYZE bench", database)
        ctx.cluster.psql("CHECKPOINT")
        if side == "floe-sink":
            finished = _floe_sink(ctx, case, round_, {case: url})
        else:
            finished = _baseline_postgres(ctx, case, round_, url)
        check_sql(ctx.cluster, database, ctx.expected, f"{side} {case}")
    finally:
        ctx.cluster.drop_database(database)
    return Measured(
        case=case,
        side=side,
        round=round_,
        seconds=finished.seconds,
        rows=ctx.expected.rows,
        peak_rss_mb=finished.peak_rss_mb,
        cpu_seconds=finished.cpu_seconds,
        load_before=finished.load_before,
    )


def _rest_side(ctx: Context, case: str, side: str, round_: int) -> Finished:
    if side == "floe-sink":
        return _floe_sink(ctx, case, round_, {})
    command = [sys.executable, str(HERE / "baseline_rest.py"), *ctx.source_args()]
    command += ["--url", ctx.rest_url, "--token", TOKEN]
    command += ["--batch-size", str(REST_BATCH), "--json", ctx.args.rest_json]
    return run_process(
        command,
        cwd=ctx.root,
        env=ctx.env,
        stderr_path=ctx.stderr_path(f"baseline-rest-{round_}"),
    )


def rest_case(ctx: Context, case: str, side: str, round_: int) -> Measured:
    ctx.server.ensure()
    before = ctx.server.stats()
    try:
        finished = _rest_side(ctx, case, side, round_)
    except SystemExit:
        if not ctx.server.alive:  # stopped from outside during the run: not a result
            raise KilledBySignal("the counting server stopped during the run") from None
        raise
    after = ctx.server.stats()
    requests = after["requests"] - before["requests"]
    expected = -(-ctx.expected.rows // REST_BATCH)
    if requests != expected:
        raise SystemExit(f"{side} rest: {requests} requests at the server, {expected} expected")
    return Measured(
        case=case,
        side=side,
        round=round_,
        seconds=finished.seconds,
        rows=ctx.expected.rows,
        peak_rss_mb=finished.peak_rss_mb,
        cpu_seconds=finished.cpu_seconds,
        load_before=finished.load_before,
        extra={"requests": requests, "mb_sent": (after["bytes"] - before["bytes"]) / 1e6},
    )


def du_bytes(path: Path, *, apparent: bool = False) -> int:
    """``du -s`` of ``path`` in bytes: disk usage, or the apparent size (``du -sb``)."""
    flags = ["-b"] if apparent else ["--block-size=1"]
    out = subprocess.run(["du", "-s", *flags, str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def state_case(ctx: Context, *, record_ids: bool = False) -> list[dict[str, Any]]:
    """``floe-sink run`` of the chosen destinations ``--state-runs`` times, ``du`` after each.

    ``record_ids``: the REST destination reads the created IDs (``record_ids_path: ids``) from
    a server that answers one per record.
    """
    chosen = [DESTINATIONS[name] for name in ctx.args.state_destinations]
    label = "state-ids" if record_ids else "state"
    database = label.replace("-", "_")
    url = ctx.cluster.create_database(database)
    project = ctx.root / f"project-{label}"
    project.mkdir()
    with contextlib.ExitStack() as stack:
        if record_ids:
            port = stack.enter_context(CountingServer(answer_ids=True)).port
        else:
            port = ctx.server.ensure()
        write_project(
            project,
            ctx.lake,
            databases={"append": url, "merge": url},
            rest_url=f"http://127.0.0.1:{port}/ingest",
            append_table="bench_append",  # merge writes "bench" of the same database
            record_ids=record_ids,
        )
        return _state_runs(ctx, label, project, chosen, database)


def _state_runs(
    ctx: Context, label: str, project: Path, chosen: list[str], database: str
) -> list[dict[str, Any]]:
    state_dir = project / ".floe"
    runs: list[dict[str, Any]] = []
    try:
        for run in range(1, ctx.args.state_runs + 1):
            command = floe_sink_command(project, state_dir, chosen, quiet=ctx.args.quiet)
            # killed from outside: the next run resumes the delivery; du is taken after it
            finished = again_when_killed(
                f"{label} run {run}",
                functools.partial(
                    run_process,
                    command,
                    cwd=project,
                    env=ctx.env,
                    stderr_path=ctx.stderr_path(f"floe-sink-{label}-{run}"),
                ),
            )
            records = json.loads(finished.stdout)
            failed = [r for r in records if not r["success"]]
            if failed or any(r["rows_delivered"] != ctx.expected.rows for r in records):
                raise SystemExit(f"state run {run}: {records}")
            parts = {
                entry.name: du_bytes(entry)
                for entry in sorted(state_dir.iterdir())
                if entry.exists()
            }
            figures = {
                "run": run,
                "seconds": finished.seconds,
                "du_bytes": du_bytes(state_dir),
                "apparent_bytes": du_bytes(state_dir, apparent=True),
                "files": sum(len(files) for _, _, files in os.walk(state_dir)),
                "parts": parts,
                "load_before": finished.load_before,
            }
            runs.append(figures)
            print(
                f"  {label} run {run:>2}: {finished.seconds:6.1f} s, "
                f"du {figures['du_bytes']:>12,} B "
                f"(apparent {figures['apparent_bytes']:,} B, {figures['files']} files) "
                f"{parts}  load {finished.load_before:.2f}",
                flush=True,
            )
    finally:
        shutil.rmtree(project, ignore_errors=True)
        ctx.cluster.drop_database(database)
    return runs


# -- profiling ----------------------------------------------------------------------------


def profile_floe_sink(ctx: Context, case: str, out_dir: Path) -> None:
    """One extra, untimed floe-sink run of ``case`` under cProfile: a .prof and a summary."""
    import pstats

    out_dir.mkdir(parents=True, exist_ok=True)
    database = f"profile_{case}"
    urls: dict[str, str] = {}
    if case != "rest":
        urls = {case: ctx.cluster.create_database(database)}
        if case == "merge":
            prefill_merge_target(urls["merge"], ctx.table)
            ctx.cluster.psql("VACUUM ANALYZE bench", database)
    project = ctx.root / f"project-profile-{case}"
    project.mkdir()
    write_project(project, ctx.lake, databases=urls, rest_url=ctx.rest_url)
    prof = out_dir / f"floe-sink-{case}.prof"
    command = floe_sink_command(project, project / ".floe", [DESTINATIONS[case]], quiet=False)
    command = [sys.executable, "-m", "cProfile", "-o", str(prof), *command]
    try:
        finished = run_process(
            command, cwd=project, env=ctx.env, stderr_path=out_dir / f"floe-sink-{case}.log"
        )
    finally:
        shutil.rmtree(project, ignore_errors=True)
        if urls:
            ctx.cluster.drop_database(database)
    with (out_dir / f"floe-sink-{case}.txt").open("w") as summary:
        summary.write(f"{case}: {finished.seconds:.2f} s wall under cProfile\n")
        stats = pstats.Stats(str(prof), stream=summary)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
    print(f"  profile of floe-sink {case}: {prof} ({finished.seconds:.1f} s under cProfile)")


# -- the driver ---------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each ratio case")
    parser.add_argument("--cases", type=_csv, default=list(CASES), help="of " + ",".join(CASES))
    parser.add_argument("--state-runs", type=int, default=10)
    parser.add_argument(
        "--state-destinations",
        type=_csv,
        default=["append"],
        help="the destinations of each state run, of append,merge,rest (default: append)",
    )
    parser.add_argument(
        "--state-record-ids",
        action="store_true",
        help="also the state runs with the REST destination reading record IDs (one per row)",
    )
    parser.add_argument("--rest-json", choices=("stdlib", "orjson"), default="stdlib")
    parser.add_argument("--quiet", action="store_true", help="floe-sink -q (default: info logs)")
    parser.add_argument("--logs-dir", type=Path, help="keep floe-sink's JSON logs here")
    parser.add_argument("--profile", type=Path, help="also run each floe-sink case in cProfile")
    parser.add_argument("--json-out", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASES) | set(args.state_destinations) - set(DESTINATIONS)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return args


def summarize(measured: list[Measured]) -> tuple[list[str], bool]:
    lines: list[str] = []
    failed = False
    header = f"{'case':<7} {'side':<9} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9} {'CPU s':>6}"
    lines.append(header)
    ratios: dict[str, list[float]] = {}
    for case in ("append", "merge", "rest"):
        runs = [m for m in measured if m.case == case]
        if not runs:
            continue
        for side in ("floe-sink", "baseline"):
            mine = [m for m in runs if m.side == side]
            lines.append(
                f"{case:<7} {side:<9} {statistics.median(m.seconds for m in mine):>8.2f} "
                f"{statistics.median(m.rows_per_s for m in mine):>10,.0f} "
                f"{statistics.median(m.peak_rss_mb for m in mine):>6.0f} MB "
                f"{statistics.median(m.cpu_seconds for m in mine):>6.2f}"
            )
        by_round: dict[int, dict[str, Measured]] = {}
        for m in runs:
            by_round.setdefault(m.round, {})[m.side] = m
        ratios[case] = [
            pair["floe-sink"].rows_per_s / pair["baseline"].rows_per_s
            for _, pair in sorted(by_round.items())
        ]
    for case, values in ratios.items():
        ratio = statistics.median(values)
        ok = ratio >= FLOORS[case]
        failed |= not ok
        lines.append(
            f"ratio {case}: {ratio:.2f} (per round {', '.join(f'{v:.2f}' for v in values)}; "
            f"floor >= {FLOORS[case]}) {'met' if ok else 'MISSED'}"
        )
    return lines, failed


def main() -> int:
    args = parse_args()
    from fixtures.postgres import PostgresCluster

    root = Path(tempfile.mkdtemp(prefix="floe-bench-delivery-"))
    logs = args.logs_dir or root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    measured: list[Measured] = []
    state_runs: list[dict[str, Any]] = []
    state_ids_runs: list[dict[str, Any]] = []
    failed = False

    def save(summary: list[str] | None = None) -> None:
        """Write every figure so far to ``--json-out`` (after each process: a run stopped
        half-way keeps what it measured)."""
        if args.json_out:
            figures = {
                "rows": args.rows,
                "machine": machine(),
                "measured": [asdict(m) for m in measured],
                "state_runs": state_runs,
                "state_record_ids_runs": state_ids_runs,
                "summary": summary,
            }
            args.json_out.write_text(json.dumps(figures, indent=1))

    try:
        lake, table, expected = seed(root / "lake", args.rows)
        with PostgresCluster.start(fsync=True) as cluster, CountingServer() as server:
            version = cluster.psql("SHOW server_version").strip()
            print(f"{machine()}; PostgreSQL {version} (fsync on); {args.rows:,} rows", flush=True)
            ctx = Context(args, root, lake, table, expected, cluster, server, child_env(root), logs)
            runners: dict[str, Callable[[Context, str, str, int], Measured]] = {
                "append": sql_case,
                "merge": sql_case,
                "rest": rest_case,
            }
            # untimed: every case and side once on a small table, to compile the bytecode
            warm_lake, warm_table, warm_expected = seed(root / "warm-up-lake", WARM_UP_ROWS)
            warm = replace(ctx, lake=warm_lake, table=warm_table, expected=warm_expected, logs=root)
            for case in (c for c in args.cases if c in runners):
                for side in ("floe-sink", "baseline"):
                    again_when_killed(
                        f"warm-up {case} {side}",
                        functools.partial(runners[case], warm, case, side, 0),
                    )
            for round_ in range(1, args.repeat + 1):
                for case in (c for c in args.cases if c in runners):
                    sides = ("floe-sink", "baseline")
                    for side in sides if round_ % 2 else sides[::-1]:
                        result = again_when_killed(
                            f"round {round_} {case} {side}",
                            functools.partial(runners[case], ctx, case, side, round_),
                        )
                        measured.append(result)
                        save()
                        print(
                            f"  round {round_} {case:<6} {side:<9} {result.seconds:7.2f} s "
                            f"{result.rows_per_s:>9,.0f} rows/s {result.peak_rss_mb:5.0f} MB "
                            f"CPU {result.cpu_seconds:6.2f} s  load {result.load_before:.2f}"
                            + "".join(f"  {k} {v:,.1f}" for k, v in result.extra.items()),
                            flush=True,
                        )
            if "state" in args.cases:
                state_runs = state_case(ctx)
            if args.state_record_ids:
                state_ids_runs = state_case(ctx, record_ids=True)
            if args.profile:
                for case in (c for c in args.cases if c in runners):
                    profile_floe_sink(ctx, case, args.profile)
        lines, failed = summarize(measured)
        for label, runs in (("state", state_runs), ("state with record IDs", state_ids_runs)):
            if not runs:
                continue
            largest = max(run["du_bytes"] for run in runs)
            ok = largest < STATE_BOUND_BYTES
            failed |= not ok and label == "state"  # the variant is information, no floor
            lines.append(
                f"{label} dir after {len(runs)} runs: {runs[-1]['du_bytes']:,} B "
                f"(largest {largest:,} B; bound < {STATE_BOUND_BYTES:,} B) "
                f"{'met' if ok else 'MISSED'}"
            )
        print(f"\nmedians of {args.repeat} round(s), {args.rows:,} rows, {machine()}")
        print("\n".join(lines))
        print(f"load average now: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        save(lines)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
