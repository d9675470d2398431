"""``floe-sink init``: a commented project that ``validate`` and ``--dry-run`` accept."""

from __future__ import annotations

import pytest
import yaml

from fixtures.command import FloeProject
from fixtures.iceberg import customers, seed_embedded_catalog

SINK_TYPES = ["rest_api", "sql_database"]
SECRET = {"rest_api": "secrets/crm-api/token", "sql_database": "secrets/ops-db/url"}


@pytest.mark.parametrize("sink_type", SINK_TYPES)
def test_init_writes_a_project_that_validate_accepts(
    floe_project: FloeProject, sink_type: str
) -> None:
    result = floe_project.run("init", "new", "--sink-type", sink_type)
    assert result.code == 0, result.stderr
    new = floe_project.root / "new"
    for name in ("floe.yaml", "manifest.yaml", "secrets/README.md", SECRET[sink_type]):
        assert (new / name).is_file(), name
    floe = (new / "floe.yaml").read_text()
    assert floe.startswith("# floe.yaml")  # commented
    assert f"sink_type: {sink_type}" in floe
    manifest = yaml.safe_load((new / "manifest.yaml").read_text())
    assert manifest["approved_sinks"] == [sink_type]
    assert (new / SECRET[sink_type]).stat().st_mode & 0o077 == 0  # the owner's only
    readme = (new / "secrets" / "README.md").read_text()
    assert f"`{SECRET[sink_type].removeprefix('secrets/')}`" in readme  # the placeholder, told

    validated = floe_project.run("validate", "new/floe.yaml", "--secrets-dir", "new/secrets")
    assert validated.code == 0, validated.stderr
    assert "valid with new/manifest.yaml (1 destination(s))" in validated.stdout


@pytest.mark.parametrize("sink_type", SINK_TYPES)
def test_an_initialised_project_dry_runs_once_its_table_exists(
    floe_project: FloeProject, sink_type: str
) -> None:
    assert floe_project.run("init", "--sink-type", sink_type, "--force").code == 0
    seed_embedded_catalog(floe_project.root / ".floe", "gold.customers", customers(50))
    result = floe_project.run(
        "run", "floe.yaml", "--secrets-dir", "secrets", "--dry-run", "--output", "json"
    )
    assert result.code == 0, result.stderr
    (report,) = result.json()
    assert report["sink_type"] == sink_type
    assert report["rows"] > 0  # the row_filter of the template fits the table
    assert not list(floe_project.root.glob("*.sqlite"))  # nothing was written


def test_init_refuses_to_overwrite_and_writes_nothing(floe_project: FloeProject) -> None:
    (floe_project.root / "new").mkdir()
    mine = floe_project.root / "new" / "floe.yaml"
    mine.write_text("destinations: []  # mine\n")
    result = floe_project.run("init", "new", "--sink-type", "rest_api")
    message = result.assert_clean_error(2)
    assert "floe.yaml" in message
    assert "--force" in message
    assert mine.read_text() == "destinations: []  # mine\n"
    assert sorted(path.name for path in (floe_project.root / "new").iterdir()) == ["floe.yaml"]

    forced = floe_project.run("init", "new", "--sink-type", "rest_api", "--force")
    assert forced.code == 0, forced.stderr
    assert "sink_type: rest_api" in mine.read_text()
    assert floe_project.run("validate", "new/floe.yaml", "--secrets-dir", "new/secrets").code == 0


def test_init_in_the_current_directory_by_default(floe_project: FloeProject) -> None:
    # the fixture's project folder has a manifest.yaml already
    refused = floe_project.run("init")
    assert "manifest.yaml" in refused.assert_clean_error(2)
    floe_project.manifest_yaml.unlink()
    result = floe_project.run("init")
    assert result.code == 0, result.stderr
    assert "sink_type: sql_database" in floe_project.floe_yaml.read_text()
    assert floe_project.run("validate", "floe.yaml", "--secrets-dir", "secrets").code == 0
