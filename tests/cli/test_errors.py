"""Bad input through the command: exit 2, one clear message on stderr, no traceback, nothing sent.

Every destination here writes to a SQLite file; "nothing sent" is checked as "the file and the
delivery state were never created".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fixtures.command import FloeProject
from fixtures.iceberg import customers


def sqlite_destination(name: str = "ops_db", **overrides: Any) -> dict[str, Any]:
    destination: dict[str, Any] = {
        "name": name,
        "sink_type": "sql_database",
        "connection_secret_ref": "ops-db",
        "source_table": "gold.customers",
        "config": {"table": "customers"},
    }
    destination.update(overrides)
    return destination


@pytest.fixture
def project(floe_project: FloeProject) -> FloeProject:
    floe_project.warehouse.write("gold.customers", customers(200))
    floe_project.secret("ops-db", url=f"sqlite:///{floe_project.root / 'ops.sqlite'}")
    floe_project.write_floe([sqlite_destination()])
    return floe_project


def assert_nothing_sent(project: FloeProject) -> None:
    assert not (project.root / "ops.sqlite").exists()
    assert not (project.root / ".floe" / "pipelines").exists()


def test_invalid_floe_yaml(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(batch_size=-5)])
    message = project.run_job().assert_clean_error(2)
    assert "floe.yaml" in message
    assert "batch_size" in message
    assert_nothing_sent(project)


def test_floe_yaml_that_is_not_yaml(project: FloeProject) -> None:
    project.floe_yaml.write_text("destinations: [unclosed\n")
    message = project.run_job("--output", "json").assert_clean_error(2)
    assert "floe.yaml" in message
    assert_nothing_sent(project)


def test_unapproved_sink_stops_every_destination(project: FloeProject) -> None:
    project.write_floe(
        [
            sqlite_destination("ops_db"),
            sqlite_destination("crm", sink_type="rest_api", config={"url": "http://127.0.0.1:9/x"}),
        ]
    )
    project.write_manifest(approved_sinks=["sql_database"])
    result = project.run_job("--output", "json")
    message = result.assert_clean_error(2)
    assert "rest_api" in message
    assert "manifest.yaml" in message
    assert result.json()["error"]["kind"] == "configuration"  # and nothing else on stdout
    assert_nothing_sent(project)  # the approved destination was not run either


def test_missing_secret(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(connection_secret_ref="no-such-secret")])
    message = project.run_job().assert_clean_error(2)
    assert "no-such-secret" in message
    assert_nothing_sent(project)


@pytest.mark.requirement("4G-FR-018")
@pytest.mark.parametrize("written", ["\n", "sqlite:///ops.sqlite\n\n", "sqlite:///a\nsqlite:///b"])
def test_empty_or_multi_line_secret_value(project: FloeProject, written: str) -> None:
    (project.secrets_dir / "ops-db" / "url").write_text(written)
    message = project.run_job().assert_clean_error(2)
    assert "Key 'url' of secret 'ops-db'" in message
    assert "sqlite:///" not in message
    assert_nothing_sent(project)


UNREADABLE_AS_ROOT = Path("/proc/sys/vm/drop_caches")  # mode 0200: EACCES even for root


def _unreadable_as_root() -> bool:
    try:
        UNREADABLE_AS_ROOT.read_bytes()
    except PermissionError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.requirement("4G-FR-018")
@pytest.mark.skipif(not _unreadable_as_root(), reason=f"{UNREADABLE_AS_ROOT} is readable here")
def test_unreadable_secret_file(project: FloeProject) -> None:
    # chmod 000 does not stop root: a key linked to a write-only procfs file really is
    # unreadable, with the PermissionError a mis-set defaultMode gives in a pod.
    key = project.secrets_dir / "ops-db" / "url"
    key.unlink()
    key.symlink_to(UNREADABLE_AS_ROOT)
    message = project.run_job().assert_clean_error(2)
    assert "Cannot read 'secrets/ops-db/url' (key 'url' of secret 'ops-db'" in message
    assert "Permission denied" in message
    assert_nothing_sent(project)


def test_missing_source_table(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(source_table="gold.nope")])
    message = project.run_job().assert_clean_error(2)
    assert "gold.nope" in message
    assert "ops_db" in message
    assert_nothing_sent(project)


def test_missing_namespace(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(source_table="silver.customers")])
    message = project.run_job().assert_clean_error(2)
    assert "silver.customers" in message


def test_bad_row_filter(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(row_filter="customer_id >>> 3")])
    message = project.run_job().assert_clean_error(2)
    assert "row_filter" in message
    assert "floe.yaml" in message


def test_row_filter_on_an_unknown_column(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(row_filter="shoe_size > 40")])
    message = project.run_job().assert_clean_error(2)
    assert "shoe_size" in message


def test_field_mapping_of_an_unknown_column(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(field_mapping={"shoe_size": "size"})])
    message = project.run_job("--dry-run").assert_clean_error(2)
    assert "shoe_size" in message
    assert "ops_db" in message


def test_primary_key_not_read(project: FloeProject) -> None:
    project.write_floe(
        [
            sqlite_destination(
                write_disposition="merge", primary_key=["account_id"], columns=["email"]
            )
        ]
    )
    message = project.run_job().assert_clean_error(2)
    assert "account_id" in message


def test_key_in_config_and_secret(project: FloeProject) -> None:
    project.secret("ops-db", table="other")
    message = project.run_job().assert_clean_error(2)
    assert "table" in message
    assert "ops-db" in message
    assert_nothing_sent(project)


@pytest.mark.requirement("4G-FR-018")
def test_secret_without_the_key_the_sink_needs(project: FloeProject) -> None:
    (project.secrets_dir / "ops-db" / "url").rename(project.secrets_dir / "ops-db" / "uri")
    result = project.run_job()
    message = result.assert_clean_error(2)
    assert "destination 'ops_db': invalid 'url'" in message
    assert "has no key 'url' (keys found: uri)" in message
    assert "ops.sqlite" not in result.stdout + result.stderr  # the value of key 'uri'
    assert_nothing_sent(project)


@pytest.mark.requirement("4G-FR-013")
def test_misspelt_catalog_uri_is_refused_and_creates_no_catalog(project: FloeProject) -> None:
    misspelt = project.warehouse.root / "catalg.db"
    project.write_manifest(
        catalog={**project.warehouse.catalog_properties, "uri": f"sqlite:///{misspelt}"}
    )
    message = project.run_job().assert_clean_error(2)
    assert f"catalog.uri 'sqlite:///{misspelt}' in manifest.yaml" in message
    assert f"'{misspelt}'" in message
    assert not misspelt.exists()
    assert_nothing_sent(project)


def test_the_embedded_catalog_is_created_on_first_use(project: FloeProject) -> None:
    project.manifest_yaml.unlink()  # no manifest, no catalog: the embedded one under ./.floe
    message = project.run("run", "floe.yaml", "--secrets-dir", "secrets").assert_clean_error(2)
    assert "Source table 'gold.customers' does not exist" in message  # a new, empty catalog
    assert (project.root / ".floe" / "catalog.db").is_file()


def test_unknown_destination_selected(project: FloeProject) -> None:
    message = project.run_job("--destination", "nope").assert_clean_error(2)
    assert "nope" in message
    assert "ops_db" in message


def test_unknown_sink_type(project: FloeProject) -> None:
    project.write_floe([sqlite_destination(sink_type="fax")])
    message = project.run_job().assert_clean_error(2)
    assert "fax" in message


def test_every_problem_is_listed_in_one_message(project: FloeProject) -> None:
    project.write_floe(
        [
            sqlite_destination("a", source_table="gold.nope"),
            sqlite_destination("b", connection_secret_ref="missing-secret"),
        ]
    )
    message = project.run_job().assert_clean_error(2)
    assert "gold.nope" in message
    assert "missing-secret" in message


def test_secrets_dir_from_the_environment(project: FloeProject, tmp_path: Path) -> None:
    result = project.run(
        "run",
        "floe.yaml",
        "--dry-run",
        env={"FLOE_SECRETS_DIR": str(project.secrets_dir)},
    )
    assert result.code == 0, result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = project.run("run", "floe.yaml", "--dry-run", env={"FLOE_SECRETS_DIR": str(empty)})
    assert "ops-db" in failed.assert_clean_error(2)


def test_every_problem_of_the_retry_block_is_listed(project: FloeProject) -> None:
    project.write_floe(
        [
            sqlite_destination(
                retry={"max_attempts": 0, "multiplier": 0, "jitter": "soon", "backoff": 2}
            )
        ]
    )
    for result in (project.run("validate", "floe.yaml"), project.run_job()):
        message = result.assert_clean_error(2)
        assert "4 problems" in message
        assert "destinations[0].retry: retry_config has unknown key(s) backoff" in message
        assert "destinations[0].retry.max_attempts: must be >= 1 (got 0)" in message
        assert "destinations[0].retry.multiplier: must be > 0 (got 0)" in message
        assert "destinations[0].retry.jitter: expected a number, got 'soon'" in message
    assert_nothing_sent(project)


def test_secret_problems_of_every_destination_are_listed_together(project: FloeProject) -> None:
    project.write_floe(
        [
            sqlite_destination("a", connection_secret_ref="missing-a"),
            sqlite_destination("b", connection_secret_ref="missing-b"),
            sqlite_destination("c", sink_type="fax", connection_secret_ref="missing-c"),
            sqlite_destination("d", source_table="gold.nope"),  # sound but for its table
        ]
    )
    result = project.run_job("--output", "json")
    message = result.assert_clean_error(2)
    assert "5 problems" in message
    problems = result.json()["error"]["problems"]
    expected = [
        ("'a'", "missing-a"),
        ("'b'", "missing-b"),
        ("'c'", "fax"),
        ("'c'", "missing-c"),  # the unknown sink type does not hide the secret problem
        ("'d'", "gold.nope"),
    ]
    assert len(problems) == len(expected), problems
    for problem, (destination, detail) in zip(problems, expected, strict=True):
        assert destination in problem, problem
        assert detail in problem, problem
    assert_nothing_sent(project)


def test_a_catalog_secret_problem_does_not_hide_the_destinations_problems(
    project: FloeProject,
) -> None:
    catalog = {**project.warehouse.catalog_properties, "credential_secret_ref": "lake-creds"}
    project.write_manifest(catalog=catalog)
    project.write_floe([sqlite_destination(connection_secret_ref="missing-secret")])
    message = project.run_job().assert_clean_error(2)
    assert "2 problems" in message
    assert "catalog" in message
    assert "lake-creds" in message
    assert "missing-secret" in message
    assert_nothing_sent(project)


BUGGY_PLUGIN = """
import floe_sink


@floe_sink.hookimpl
def list_available_sinks():
    return ["buggy"]


@floe_sink.hookimpl
def create_sink(config):
    return None  # a bug: the contract asks for a sink object


@floe_sink.hookimpl
def write(sink, data):
    return None
"""


def test_a_plugins_own_bug_is_a_plugin_error_not_a_configuration_error(
    project: FloeProject, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    info = site / "buggy_sinks-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: buggy-sinks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[floe_sink]\nbuggy = buggy_sinks\n")
    (site / "buggy_sinks.py").write_text(BUGGY_PLUGIN)
    project.write_floe([sqlite_destination(sink_type="buggy")])
    result = project.run(
        "validate", "floe.yaml", "--secrets-dir", "secrets", env={"PYTHONPATH": str(site)}
    )
    message = result.assert_clean_error(1)  # exit 1: no change to floe.yaml fixes it
    assert "Plugin 'buggy' broke the create_sink contract" in message
    assert "bug in the plugin" in message
