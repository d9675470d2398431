"""The state examples of the docs run: moving state from local to sql (docs/syncs.md) and a
platform's own backend through the get_state_store hook (docs/hooks.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

import floe_sink
from fixtures.command import FloeProject
from floe_sink.config import parse_manifest
from floe_sink.sqlstate import SqlStateStore
from floe_sink.state import open_state_store, state_settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    rest = text[start + len(heading) + 2 :]
    following = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.MULTILINE)
    return rest[: following.start()] if following else rest


def block(text: str, language: str) -> str:
    (found,) = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    return str(found)


@pytest.mark.slow
def test_moving_state_from_local_to_sql_as_documented(
    floe_project: FloeProject, tmp_path: Path
) -> None:
    from fixtures.iceberg import customers

    project = floe_project
    project.secret("db", url=f"sqlite:///{tmp_path / 'crm.db'}")
    project.secret("floe-state", url=f"sqlite:///{tmp_path / 'floe-state.db'}")
    project.warehouse.write("gold.customers", customers(500))
    project.write_floe(
        [
            {
                "name": "crm_db",
                "sink_type": "sql_database",
                "connection_secret_ref": "db",
                "source_table": "gold.customers",
                "config": {"table": "customers"},
                "write_disposition": "merge",
                "primary_key": ["customer_id"],
                "sync": "mirror",
            }
        ]
    )
    first = project.run_job("--output", "json")
    assert first.code == 0, first.stderr
    assert first.json()[0]["rows_inserted"] == 500

    (state,) = [
        yaml.safe_load(text)
        for text in re.findall(
            r"```yaml\n(.*?)```", section("syncs.md", "## Where state lives"), re.S
        )
    ]
    project.write_manifest(**state)
    recipe = block(section("syncs.md", "### Moving state from local to sql"), "python")
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOE_")}
    copied = subprocess.run(
        [sys.executable, "-c", recipe],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert copied.returncode == 0, copied.stderr

    # another runner, nothing on its disk: the copied state says the table did not change
    elsewhere = str(tmp_path / "new-runner")
    after = project.run_job("--state-dir", elsewhere, "--output", "json")
    assert after.code == 0, after.stderr
    (record,) = after.json()
    assert (record["rows_delivered"], record["rows_unchanged"]) == (0, 500)


def test_the_platform_backend_of_the_hook_reference_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = section("hooks.md", "## get_state_store")
    manifest = parse_manifest(block(text, "yaml"))
    plugin = types.ModuleType("acme_floe_state")
    exec(compile(block(text, "python"), "docs/hooks.md", "exec"), plugin.__dict__)
    secrets = tmp_path / "secrets"
    (secrets / "platform-state").mkdir(parents=True)
    (secrets / "platform-state" / "url").write_text(f"sqlite:///{tmp_path / 'platform.db'}\n")
    monkeypatch.setenv("FLOE_SECRETS_DIR", str(secrets))

    manager = floe_sink.get_plugin_manager()
    manager.register(plugin, name="platform-state")
    store: Any = open_state_store(
        tmp_path / "state", state_settings(manifest, Path("manifest.yaml")), manager=manager
    )
    try:
        assert isinstance(store, SqlStateStore)
        assert store.url.where == str(tmp_path / "platform.db")
        store.create_delivery("crm", "plan", None)
    finally:
        store.close()
    # the plugin leaves the built-in backends alone
    local = open_state_store(tmp_path / "state", manager=manager)
    assert type(local).__name__ == "LocalStateStore"
    local.close()
