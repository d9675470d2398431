"""``run --dry-run`` shows the sample rows as the sink will send them, not Python's ``str()``."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fixtures.command import FloeProject
from floe_sink_dlt.json_encoding import encode_batch

WHEN = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def orders() -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array([1, 2, 3, 4], pa.int64()),
            "placed_at": pa.array([WHEN, WHEN, None, WHEN], pa.timestamp("us", tz="UTC")),
            "amount": pa.array(
                [Decimal("12.30"), Decimal("0.05"), None, Decimal("7.00")], pa.decimal128(10, 2)
            ),
            "day": pa.array([date(2024, 5, 1)] * 4, pa.date32()),
            "note": pa.array(["a", 'é "quoted"', None, "d"], pa.string()),
        }
    )


def destination(name: str, sink_type: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "rest_api": {"url": "http://127.0.0.1:9/orders", "records_key": "orders"},
        "sql_database": {"table": "orders"},
    }.get(sink_type, {})
    document: dict[str, Any] = {
        "name": name,
        "sink_type": sink_type,
        "connection_secret_ref": "crm-api" if sink_type == "rest_api" else "ops-db",
        "source_table": "gold.orders",
        "config": config,
        "field_mapping": {"order_id": "id", "placed_at": "placedAt", "amount": "amount"},
        "batch_size": 2,
    }
    document.update(overrides)
    return document


@pytest.fixture
def project(floe_project: FloeProject) -> FloeProject:
    floe_project.warehouse.write("gold.orders", orders())
    floe_project.secret("crm-api", token="tok-dry-run-not-sent")
    floe_project.secret("ops-db", url=f"sqlite:///{floe_project.root / 'ops.sqlite'}")
    return floe_project


def wire_rows(table: pa.Table, mapping: dict[str, str], rows: int = 3) -> list[dict[str, Any]]:
    """What the rest_api sink sends for the first rows: its own request body, parsed."""
    (batch,) = table.select(list(mapping)).rename_columns(list(mapping.values())).to_batches()
    parsed: list[dict[str, Any]] = json.loads(encode_batch(batch.slice(0, rows)))
    return parsed


@pytest.mark.parametrize("sink_type", ["rest_api", "sql_database"])
def test_dry_run_sample_uses_the_wire_format(project: FloeProject, sink_type: str) -> None:
    project.write_floe([destination("orders_out", sink_type)])
    result = project.run_job("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    (report,) = result.json()
    sample = report["sample"]
    assert sample[0] == {"id": 1, "placedAt": "2024-05-01T12:00:00.123456Z", "amount": "12.30"}
    assert sample[2] == {"id": 3, "placedAt": None, "amount": None}
    assert sample == wire_rows(
        orders(), {"order_id": "id", "placed_at": "placedAt", "amount": "amount"}
    )
    # the text report shows the same JSON
    text = project.run_job("--dry-run")
    assert text.code == 0, text.stderr
    assert '"placedAt": "2024-05-01T12:00:00.123456Z"' in text.stdout
    assert "2024-05-01 12:00:00" not in text.stdout
    assert not (project.root / "ops.sqlite").exists()  # the sink was created, never written


def test_dry_run_without_a_mapping_shows_every_column_as_sent(project: FloeProject) -> None:
    project.write_floe([destination("orders_out", "rest_api", field_mapping=None)])
    result = project.run_job("--dry-run", "--output", "json")
    assert result.code == 0, result.stderr
    (report,) = result.json()
    assert report["sample"][1] == {
        "order_id": 2,
        "placed_at": "2024-05-01T12:00:00.123456Z",
        "amount": "0.05",
        "day": "2024-05-01",
        "note": 'é "quoted"',
    }


def test_dry_run_reports_a_configuration_the_sink_refuses(project: FloeProject) -> None:
    project.write_floe(
        [
            destination("good", "sql_database"),
            destination("no_url", "rest_api", config={"records_key": "orders"}),
        ]
    )
    result = project.run_job("--dry-run", "--output", "json")
    assert result.code == 2, result.stderr
    error = result.json()["error"]
    assert error["kind"] == "configuration"
    (problem,) = error["problems"]
    assert "no_url" in problem
    assert "url" in problem
    assert "tok-dry-run-not-sent" not in result.stdout + result.stderr


PLUGIN = """
import floe_sink


class Previewing:
    def preview(self, batch):
        return [{"wire": f"row-{index}"} for index in range(batch.num_rows)]


class Broken:
    def preview(self, batch):
        return "not rows"


class Plain:
    pass


@floe_sink.hookimpl
def list_available_sinks():
    return ["previewing", "broken_preview", "plain"]


@floe_sink.hookimpl
def create_sink(config):
    kinds = {"previewing": Previewing, "broken_preview": Broken, "plain": Plain}
    return kinds[config.sink_type]()
"""


@pytest.fixture
def plugin_site(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    info = site / "previewing_sinks-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: previewing-sinks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[floe_sink]\npreviewing = previewing_sinks\n")
    (site / "previewing_sinks.py").write_text(textwrap.dedent(PLUGIN))
    return {"PYTHONPATH": str(site)}


def test_a_plugin_sink_decides_its_preview(
    project: FloeProject, plugin_site: dict[str, str]
) -> None:
    project.write_floe(
        [
            destination("own", "previewing", connection_secret_ref="ops-db"),
            destination("default", "plain", connection_secret_ref="ops-db"),
        ]
    )
    result = project.run_job("--dry-run", "--output", "json", env=plugin_site)
    assert result.code == 0, result.stderr
    own, default = result.json()
    assert own["sample"] == [{"wire": "row-0"}, {"wire": "row-1"}, {"wire": "row-2"}]
    # without a preview method: the JSON-ready Arrow values, timestamps in UTC with a Z
    assert default["sample"][0] == {
        "id": 1,
        "placedAt": "2024-05-01T12:00:00.123456Z",
        "amount": "12.30",
    }


def test_a_broken_preview_fails_that_destination_only(
    project: FloeProject, plugin_site: dict[str, str]
) -> None:
    project.write_floe(
        [
            destination("broken", "broken_preview", connection_secret_ref="ops-db"),
            destination("fine", "plain", connection_secret_ref="ops-db"),
        ]
    )
    result = project.run_job("--dry-run", "--output", "json", env=plugin_site)
    assert result.code == 1, result.stderr
    reports = {report["destination"]: report for report in result.json()}
    assert reports["fine"]["rows"] == 4
    assert "preview() must return a list" in reports["broken"]["errors"][0]
    assert "Traceback" not in result.stderr
