"""``floe-sink run --engine``: the options, and a clear error when Ray is not installed.

Ray is installed in the test environment; "not installed" is a ``sitecustomize`` on the
child's path that makes ``import ray`` (and finding it) fail, as on a machine without the
``ray`` extra. The local engine runs under the same blocker: it never imports Ray.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fixtures.command import FloeProject
from fixtures.iceberg import customers

BLOCK_RAY = """
import importlib.abc, sys

class _NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, _NoRay())
"""


@pytest.fixture
def without_ray(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "no-ray"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCK_RAY)
    return {"PYTHONPATH": str(folder)}


@pytest.fixture
def project(floe_project: FloeProject) -> FloeProject:
    floe_project.warehouse.write("gold.customers", customers(300), files=3)
    floe_project.secret("db", url=f"sqlite:///{floe_project.root / 'out.db'}")
    floe_project.write_floe(
        [
            {
                "name": "db",
                "sink_type": "sql_database",
                "connection_secret_ref": "db",
                "source_table": "gold.customers",
                "config": {"table": "customers"},
            }
        ]
    )
    return floe_project


def test_run_help_shows_the_engine_options(floe_project: FloeProject) -> None:
    result = floe_project.run("run", "--help")
    assert result.code == 0
    assert "--engine [local|ray]" in result.stdout
    assert "--ray-address ADDR" in result.stdout


def test_engine_ray_without_ray_is_a_configuration_error_naming_the_extra(
    project: FloeProject, without_ray: dict[str, str]
) -> None:
    message = project.run_job("--engine", "ray", env=without_ray).assert_clean_error(2)
    assert "pip install 'floe-sink[ray]'" in message
    assert not (project.root / "out.db").exists()  # nothing was read or sent
    project.write_manifest(engine={"type": "ray"})
    message = project.run_job(env=without_ray).assert_clean_error(2)
    assert "floe-sink[ray]" in message


def test_the_local_engine_runs_without_ray(
    project: FloeProject, without_ray: dict[str, str]
) -> None:
    result = project.run_job("--engine", "local", env=without_ray)
    assert result.code == 0, result.stderr
    with sqlite3.connect(project.root / "out.db") as db:
        assert db.execute("SELECT count(*) FROM customers").fetchone() == (300,)


def test_ray_address_with_the_local_engine_is_a_usage_error(project: FloeProject) -> None:
    message = project.run_job("--engine", "local", "--ray-address", "auto").assert_clean_error(2)
    assert "--engine ray" in message


def test_a_bad_engine_section_in_the_manifest_is_reported(project: FloeProject) -> None:
    project.write_manifest(engine={"type": "spark", "max_tasks": 0})
    message = project.run_job().assert_clean_error(2)
    assert "engine.type" in message
    assert "engine.max_tasks" in message
