"""A local Ray cluster for the Ray engine's tests, and a way to run a job in this process.

The cluster is started once per session (per xdist worker: the tests carry
``xdist_group("ray")`` so that one worker runs them all and only one cluster is started) with
2 CPUs, no dashboard, and workers' output kept in Ray's log files (``--output json`` stays
JSON). Workers inherit this process's environment at start, so ``FLOE_SINK_OTEL=console`` set
here gives them an OpenTelemetry SDK too.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import psutil
import pytest

from fixtures.command import FloeProject

pytestmark = pytest.mark.xdist_group("ray")


@attrs.frozen
class RayCluster:
    """The test session's Ray cluster: its address and the raylet that starts its workers."""

    address: str
    raylet_pid: int

    def unit_workers(self) -> list[psutil.Process]:
        """The worker processes of this cluster running a unit (``ray::deliver_unit``) now."""
        try:
            children = psutil.Process(self.raylet_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                title = " ".join(child.cmdline())
                if title.startswith("ray::deliver_unit"):
                    found.append(child)
        return found

    def kill_a_unit_worker(self) -> int | None:
        """SIGKILL one worker that is delivering a unit; its pid, or None if none runs."""
        for worker in self.unit_workers():
            with contextlib.suppress(psutil.Error):
                os.kill(worker.pid, signal.SIGKILL)
                return worker.pid
        return None


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """``ray.init(num_cpus=2)`` once for the session; shut down at its end."""
    import ray

    # isolate from other Ray users of the machine: no shared auth token file
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["FLOE_SINK_OTEL"] = "console"  # workers get an SDK (spans to their log files)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        del os.environ["FLOE_SINK_OTEL"]  # not for this process's other tests
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    try:
        yield RayCluster(address=node.address, raylet_pid=raylet)
    finally:
        ray.shutdown()


@attrs.frozen
class Outcome:
    """One destination's outcome of :func:`run_job`."""

    destination: str
    result: Any
    configuration_error: bool


def run_job(
    project: FloeProject,
    *,
    engine: str = "ray",
    select: Sequence[str] = (),
    unit_bytes: int = 1,
    max_tasks: int | None = 2,
    max_retries: int = 3,
) -> dict[str, Outcome]:
    """Run the project's job in this process, as ``floe-sink run`` does, with ``engine``.

    ``unit_bytes=1`` makes every data file a unit of its own.
    """
    from floe_sink.engines import EngineSettings, open_engine
    from floe_sink.job import configure, deliver, load_job, prepare
    from floe_sink.manager import get_plugin_manager
    from floe_sink.progress import track
    from floe_sink.state import open_state_store

    job = load_job(project.floe_yaml, project.manifest_yaml, select=select)
    settings = EngineSettings(
        type=engine,
        max_tasks=max_tasks,
        unit_size_mb=unit_bytes / (1024 * 1024),
        max_retries=max_retries,
    )
    state_dir = project.root / ".floe"
    manager = get_plugin_manager()
    outcomes: dict[str, Outcome] = {}
    with contextlib.ExitStack() as held:
        store = open_state_store(state_dir)
        held.callback(store.close)
        configured = configure(job, manager, secrets_dir=project.secrets_dir, state_dir=state_dir)
        configured.raise_problems()
        prepared = prepare(
            configured, manager, state_dir=state_dir, store=store, locks=held, engine=settings.plan
        )
        reporter = held.enter_context(track(enabled=False))
        runner = held.enter_context(
            open_engine(
                settings,
                catalog=job.manifest.catalog,
                secrets_dir=project.secrets_dir,
                state_dir=state_dir,
            )
        )
        for failed in prepared.failed:
            outcomes[failed.destination] = Outcome(failed.destination, failed.result, False)
        for ready in prepared.ready:
            done = deliver(ready, manager, reporter, store=store, engine=runner)
            outcomes[done.destination] = Outcome(
                done.destination, done.result, done.configuration_error
            )
    return outcomes


def data_files(project: FloeProject, table: str) -> list[str]:
    """The table's data files in path order (the order units are cut in)."""
    scan = project.warehouse.catalog.load_table(table).scan()
    return sorted(str(task.file.file_path) for task in scan.plan_files())


def file_of_each_id(
    project: FloeProject, table: str, column: str = "customer_id"
) -> dict[int, int]:
    """``id -> index of its data file`` (path order): with 1-byte units, its unit index."""
    import pyarrow.parquet as pq

    found: dict[int, int] = {}
    for index, path in enumerate(data_files(project, table)):
        for value in pq.read_table(Path(path.removeprefix("file://")), columns=[column])[
            column
        ].to_pylist():
            found[int(value)] = index
    return found
