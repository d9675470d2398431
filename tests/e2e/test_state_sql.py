"""`state: backend: sql` through the command: state that outlives the runner's disk.

Every command of a test runs with a new, empty ``--state-dir`` (as a Kubernetes Job or a CI
runner gets): the journal, the run history and the sync state live only in the state
database (SQLite, DuckDB, PostgreSQL), and change-aware runs still send only what changed.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_syncs import ROWS, customers, db_rows, expected, rebuilt, sql_destination

from fixtures.command import CommandResult, FloeProject, run_and_kill

pytestmark = [pytest.mark.slow]

_runs = itertools.count()


class Runner:
    """Runs floe-sink commands in ``project``, each with a state dir never used before."""

    def __init__(self, project: FloeProject, scratch: Path) -> None:
        self.project = project
        self.scratch = scratch
        self.state_dirs: list[Path] = []

    def fresh_state_dir(self) -> Path:
        state_dir = self.scratch / f"runner-{next(_runs)}"
        self.state_dirs.append(state_dir)
        return state_dir

    def __call__(self, command: str, *args: str) -> CommandResult:
        return self.project.run(
            command,
            "floe.yaml",
            "--secrets-dir",
            "secrets",
            "--state-dir",
            str(self.fresh_state_dir()),
            *args,
        )

    def json(self, command: str, *args: str) -> Any:
        result = self(command, *args, "--output", "json")
        assert result.code == 0, result.stderr
        return result.json()

    def run(self, *args: str) -> dict[str, Any]:
        (record,) = self.json("run", *args)
        assert record["success"], record["errors"]
        return dict(record)


@pytest.fixture(params=["sqlite", "duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    suffix = "db" if request.param == "sqlite" else "duckdb"
    return f"{request.param}:///{tmp_path / 'shared' / f'floe-state.{suffix}'}"


@pytest.fixture
def sql_state_project(
    floe_project: FloeProject, tmp_path: Path, state_url: str
) -> Iterator[tuple[Runner, Path]]:
    database = tmp_path / "crm.db"
    floe_project.secret("db", url=f"sqlite:///{database}")
    floe_project.secret("floe-state", url=state_url)
    floe_project.write_manifest(state={"backend": "sql", "connection_secret_ref": "floe-state"})
    floe_project.warehouse.write("gold.customers", customers(range(ROWS)), files=2)
    runner = Runner(floe_project, tmp_path / "runners")
    yield runner, database
    for state_dir in runner.state_dirs:  # nothing of the state was left on the runner's disk
        if state_dir.exists():
            left = sorted(p.relative_to(state_dir).as_posix() for p in state_dir.rglob("*"))
            assert all(p == "tmp" or (p.startswith("tmp/") and "sql-state-" not in p) for p in left)


def test_change_aware_runs_on_runners_that_keep_nothing(
    sql_state_project: tuple[Runner, Path],
) -> None:
    """mirror (changes and deletes; ``changes`` alone is the same journal and sync state)."""
    runner, database = sql_state_project
    runner.project.write_floe([sql_destination("mirror")])
    first = runner.run()
    assert (first["rows_inserted"], first["rows_delivered"]) == (ROWS, ROWS)

    source, changed, removed, added = rebuilt(customers(range(ROWS)))
    runner.project.warehouse.overwrite("gold.customers", source)
    (plan,) = runner.json("plan")
    assert (plan["inserts"], plan["updates"], plan["deletes"]) == (
        len(added),
        len(changed),
        len(removed),
    )

    second = runner.run()
    assert (second["rows_inserted"], second["rows_updated"]) == (len(added), len(changed))
    assert second["rows_deleted"] == len(removed)
    assert db_rows(database) == expected(source)

    third = runner.run()
    assert (third["rows_delivered"], third["rows_unchanged"]) == (0, source.num_rows)

    history = runner.json("status")
    assert [run["rows_delivered"] for run in history] == [0, len(added) + len(changed), ROWS]
    assert all(run["success"] for run in history)

    reset = runner("reset", "--destination", "crm_db")
    assert reset.code == 0, reset.stderr
    assert runner.run()["rows_inserted"] == source.num_rows


def test_moving_local_state_to_sql_starts_over_once(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    """The documented move (docs/syncs.md): the first run on the new backend sends every row
    once (a merge: nothing duplicates), then only changes."""
    project = floe_project
    database = tmp_path / "crm.db"
    project.secret("db", url=f"sqlite:///{database}")
    project.secret("floe-state", url=f"sqlite:///{tmp_path / 'floe-state.db'}")
    project.warehouse.write("gold.customers", customers(range(ROWS)))
    project.write_floe([sql_destination("changes")])
    local = project.run_job("--output", "json")
    assert local.code == 0, local.stderr
    project.write_manifest(state={"backend": "sql", "connection_secret_ref": "floe-state"})
    runner = Runner(project, tmp_path / "runners")
    assert runner.run()["rows_inserted"] == ROWS  # the sql store starts empty
    assert runner.run()["rows_delivered"] == 0
    assert db_rows(database) == expected(customers(range(ROWS)))


def test_a_missing_state_secret_is_a_configuration_error(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    project = floe_project
    project.secret("db", url=f"sqlite:///{tmp_path / 'crm.db'}")
    project.warehouse.write("gold.customers", customers(range(10)))
    project.write_floe([sql_destination("changes")])
    project.write_manifest(state={"backend": "sql", "connection_secret_ref": "floe-state"})
    for command in ("run", "plan", "status"):
        message = Runner(project, tmp_path)(command).assert_clean_error()
        assert "manifest.yaml: state.connection_secret_ref: " in message, command
        assert "'floe-state' not found" in message, command


@pytest.mark.postgres
def test_the_state_password_never_reaches_any_output(
    floe_project: FloeProject, tmp_path: Path, postgres_url: str
) -> None:
    from fixtures.postgres import PASSWORD

    project = floe_project
    project.secret("db", url=f"sqlite:///{tmp_path / 'crm.db'}")
    project.secret("floe-state", url=postgres_url)
    project.write_manifest(state={"backend": "sql", "connection_secret_ref": "floe-state"})
    project.warehouse.write("gold.customers", customers(range(100)))
    project.write_floe([sql_destination("mirror")])
    runner = Runner(project, tmp_path / "runners")
    outputs = [
        runner("run", "-v", "--log-format", "json"),
        runner("plan", "-v"),
        runner("status", "-v"),
        runner("reset", "--destination", "crm_db", "-v"),
    ]
    wrong = postgres_url.replace(PASSWORD, PASSWORD[::-1])
    project.secret("floe-state", url=wrong)
    refused = runner("run", "-v")
    assert refused.code == 1
    assert "password authentication failed" in refused.stderr
    for result in [*outputs, refused]:
        assert PASSWORD not in result.stdout + result.stderr
        assert PASSWORD[::-1] not in result.stdout + result.stderr
    assert all(result.code == 0 for result in outputs), [r.stderr for r in outputs]


# -- killed runs ----------------------------------------------------------------------------


def acknowledged(url: str) -> int:
    """Batches the state database holds as acknowledged (0 while it is not there yet)."""
    try:
        if url.startswith("sqlite"):
            path = url.removeprefix("sqlite:///")
            if not Path(path).exists():
                return 0
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
                return int(db.execute("SELECT count(*) FROM floe_batches").fetchone()[0])
        import psycopg

        with psycopg.connect(url) as db:
            row = db.execute("SELECT count(*) FROM floe_batches").fetchone()
            return int(row[0]) if row else 0
    except Exception:  # not created yet, or busy
        return 0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def readable_state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state database another process can read while a run uses it (not DuckDB)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'floe-state.db'}"


def test_a_killed_mirror_run_is_finished_by_another_runner(
    floe_project: FloeProject, tmp_path: Path, readable_state_url: str
) -> None:
    project = floe_project
    database = tmp_path / "crm.db"
    project.secret("db", url=f"sqlite:///{database}")
    project.secret("floe-state", url=readable_state_url)
    project.write_manifest(state={"backend": "sql", "connection_secret_ref": "floe-state"})
    project.warehouse.write("gold.customers", customers(range(ROWS)), files=2)
    project.write_floe([sql_destination("mirror", batch_size=40)])
    runner = Runner(project, tmp_path / "runners")
    runner.run()
    source, _changed, _removed, _added = rebuilt(customers(range(ROWS), version=1))
    source = source.set_column(
        2, "score", customers(range(source.num_rows), version=2).column("score")
    )  # most rows change: a long second run
    project.warehouse.overwrite("gold.customers", source)

    run_and_kill(
        project,
        lambda: acknowledged(readable_state_url) >= 10,
        options=("--state-dir", str(runner.fresh_state_dir())),
    )
    assert db_rows(database) != expected(source)

    finished = runner.run()  # another runner, nothing on its disk: the journal resumes
    assert finished["rows_delivered"] < source.num_rows  # acknowledged batches not resent
    assert db_rows(database) == expected(source)
    assert runner.run()["rows_delivered"] == 0
