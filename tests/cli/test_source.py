"""The Iceberg source: the plugin's read config, scans, filters, projection, streaming."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pytest

from fixtures.command import FloeProject
from fixtures.iceberg import IcebergWarehouse, customers
from floe_sink.errors import ErrorCategory, SinkConfigurationError
from floe_sink.source import (
    SourceNotFoundError,
    SourceReadError,
    load_catalog,
    open_table,
    plan_scan,
    source_config,
)


@pytest.mark.requirement("4G-FR-009")
def test_source_config_defaults_to_the_embedded_catalog(tmp_path: Path) -> None:
    config = source_config({"table": "gold.customers", "state_dir": str(tmp_path / "state")})
    assert config["table"] == "gold.customers"
    assert config["catalog_name"] == "floe"
    properties = config["catalog_properties"]
    assert properties["type"] == "sql"
    assert properties["uri"] == f"sqlite:///{tmp_path / 'state' / 'catalog.db'}"
    assert properties["warehouse"] == (tmp_path / "state" / "warehouse").as_uri()


@pytest.mark.requirement("4G-FR-009")
def test_source_config_requires_a_table() -> None:
    with pytest.raises(SinkConfigurationError, match="table"):
        source_config({"type": "sql"})
    with pytest.raises(SinkConfigurationError, match=r"namespace\.table"):
        source_config({"table": "customers"})


@pytest.mark.requirement("4G-FR-009")
def test_source_config_passes_a_rest_catalog_through() -> None:
    config = source_config(
        {
            "name": "polaris",
            "type": "rest",
            "uri": "https://polaris.example.com/api/catalog",
            "warehouse": "gold_wh",
            "credential": "client:secret",
            "scope": "PRINCIPAL_ROLE:ALL",
            "table": "gold.customers",
        }
    )
    assert config["catalog_name"] == "polaris"
    assert config["catalog_properties"] == {
        "type": "rest",
        "uri": "https://polaris.example.com/api/catalog",
        "warehouse": "gold_wh",
        "credential": "client:secret",
        "scope": "PRINCIPAL_ROLE:ALL",
    }


def test_source_config_refuses_a_rest_catalog_without_uri_and_unknown_types() -> None:
    with pytest.raises(SinkConfigurationError, match="uri"):
        source_config({"type": "rest", "table": "gold.c"})
    with pytest.raises(SinkConfigurationError, match="hive"):
        source_config({"type": "hive", "table": "gold.c"})


@pytest.mark.requirement("4G-FR-013")
@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_a_catalog_uri_naming_a_missing_sqlite_file_is_refused_not_created(
    iceberg_warehouse: IcebergWarehouse, scheme: str
) -> None:
    iceberg_warehouse.write("gold.customers", customers(10))
    misspelt = iceberg_warehouse.root / "catalg.db"
    config = source_config(
        {
            **iceberg_warehouse.catalog_properties,
            "uri": f"{scheme}:///{misspelt}?timeout=5",
            "table": "gold.customers",
        }
    )
    assert "create_catalog" not in config
    with pytest.raises(SinkConfigurationError) as raised:
        load_catalog(config)
    message = str(raised.value)
    assert f"catalog.uri '{scheme}:///{misspelt}?timeout=5' in manifest.yaml" in message
    assert f"SQLite catalog file that does not exist: '{misspelt}'" in message
    assert not misspelt.exists()
    # the right uri still opens the catalog it names
    assert open_table(_config(iceberg_warehouse, "gold.customers")) is not None


@pytest.mark.requirement("4G-FR-009")
def test_the_embedded_catalog_is_created_on_first_use(tmp_path: Path) -> None:
    config = source_config({"table": "gold.customers", "state_dir": str(tmp_path / "state")})
    assert config["create_catalog"] is True
    load_catalog(config).create_namespace("gold")
    assert (tmp_path / "state" / "catalog.db").is_file()
    assert (tmp_path / "state" / "warehouse").is_dir()


def test_the_reference_plugin_reads_the_source_the_core_configured(tmp_path: Path) -> None:
    from floe_sink import get_plugin_manager

    manager = get_plugin_manager()
    built = source_config({"table": "gold.c", "state_dir": str(tmp_path)})
    assert manager.get_source_config(built, sink_type="sql_database") == built
    assert manager.get_source_config(built, sink_type="rest_api") == built


def test_a_sqlite_catalog_is_read_without_sqlalchemy(iceberg_warehouse: IcebergWarehouse) -> None:
    import subprocess
    import sys

    iceberg_warehouse.write("gold.customers", customers(20), files=2)
    config = _config(iceberg_warehouse, "gold.customers")
    code = (
        "import json, sys; from floe_sink.source import open_table, plan_scan; "
        f"t = open_table(json.loads({json.dumps(json.dumps(config))})); "
        "rows = plan_scan(t).reader().read_all().num_rows; "
        "print(json.dumps([rows, t.name(), 'sqlalchemy' in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    last = completed.stdout.strip().splitlines()[-1]  # after structlog's default lines
    assert json.loads(last) == [20, ["gold", "customers"], False]


def test_a_catalog_the_quick_reader_cannot_read_goes_to_pyiceberg(
    iceberg_warehouse: IcebergWarehouse,
) -> None:
    iceberg_warehouse.write("gold.customers", customers(3))
    with pytest.raises(SourceNotFoundError, match=r"gold\.nope"):
        open_table(_config(iceberg_warehouse, "gold.nope"))  # no row: pyiceberg says so
    view_free = iceberg_warehouse.catalog.load_table("gold.customers")
    assert open_table(_config(iceberg_warehouse, "gold.customers")).metadata == view_free.metadata


def test_the_old_import_path_still_works() -> None:
    import floe_sink.source
    import floe_sink_dlt.source

    assert floe_sink_dlt.source.source_config is floe_sink.source.source_config


def _config(warehouse: IcebergWarehouse, table: str) -> dict[str, object]:
    return source_config({**warehouse.catalog_properties, "table": table})


def test_scan_streams_every_row(iceberg_warehouse: IcebergWarehouse) -> None:
    data = customers(5_000)
    iceberg_warehouse.write("gold.customers", data, files=4)
    scan = plan_scan(open_table(_config(iceberg_warehouse, "gold.customers")))
    assert scan.files == 4
    assert scan.estimated_rows == 5_000
    reader = scan.reader()
    assert isinstance(reader, pa.RecordBatchReader)
    table = reader.read_all()
    assert table.num_rows == 5_000
    emails = table.sort_by("customer_id").column("email").cast(pa.string())
    assert emails.equals(data.column("email"))


def test_scan_with_filter_and_projection(iceberg_warehouse: IcebergWarehouse) -> None:
    iceberg_warehouse.write("gold.customers", customers(1_000), files=2)
    table = open_table(_config(iceberg_warehouse, "gold.customers"))
    scan = plan_scan(
        table, row_filter="customer_id > 900 and is_active = true", columns=["email", "is_active"]
    )
    assert scan.estimated_rows is None  # a filter makes the count unknown until read
    assert scan.schema.names == ["email", "is_active"]
    result = scan.reader().read_all()
    expected = customers(1_000).filter(
        pa.compute.and_(
            pa.compute.greater(customers(1_000)["customer_id"], 900),
            customers(1_000)["is_active"],
        )
    )
    assert result.num_rows == expected.num_rows
    assert all(result.column("is_active").to_pylist())


def test_scan_reads_files_lazily_one_after_the_other(iceberg_warehouse: IcebergWarehouse) -> None:
    """The second file is opened only when the first is consumed (memory stays bounded)."""
    iceberg_warehouse.write("gold.customers", customers(3_000), files=3)
    iceberg = open_table(_config(iceberg_warehouse, "gold.customers"))
    scan = plan_scan(iceberg)
    reader = scan.reader()
    first = reader.read_next_batch()
    assert first.num_rows > 0
    paths = [Path(urlparse(task.file.file_path).path) for task in iceberg.scan().plan_files()]
    read_so_far = first.num_rows
    # remove every data file not yet started: an eager reader would not notice
    remaining = [path for path in paths if path.exists()]
    for path in remaining:
        path.unlink()

    def drain() -> None:
        nonlocal read_so_far
        for batch in reader:
            read_so_far += batch.num_rows

    with pytest.raises(SourceReadError) as raised:
        drain()
    assert isinstance(raised.value.__cause__, FileNotFoundError)
    assert read_so_far < 3_000


def test_missing_table_and_bad_filter(iceberg_warehouse: IcebergWarehouse) -> None:
    iceberg_warehouse.write("gold.customers", customers(10))
    with pytest.raises(SourceNotFoundError, match=r"gold\.missing"):
        open_table(_config(iceberg_warehouse, "gold.missing"))
    table = open_table(_config(iceberg_warehouse, "gold.customers"))
    with pytest.raises(SinkConfigurationError, match="not a valid pyiceberg expression"):
        plan_scan(table, row_filter="customer_id ===")
    with pytest.raises(SinkConfigurationError, match="nope"):
        plan_scan(table, columns=["nope"])


def test_empty_table(iceberg_warehouse: IcebergWarehouse) -> None:
    iceberg_warehouse.catalog.create_namespace_if_not_exists("gold")
    iceberg_warehouse.catalog.create_table("gold.empty", schema=customers(1).schema)
    scan = plan_scan(open_table(_config(iceberg_warehouse, "gold.empty")))
    assert scan.estimated_rows == 0
    result = scan.reader().read_all()
    assert result.num_rows == 0
    assert result.schema.names == customers(1).schema.names


def test_plain_parquet_files_are_read_directly(
    iceberg_warehouse: IcebergWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No deletes, no filter, same names and field ids: pyarrow reads the file itself."""
    import floe_sink.source as source

    opened: list[str] = []
    read_plain = source._read_plain

    def spy(io: object, path: str, wanted: list[tuple[str, int]]) -> object:
        opened.append(path)
        return read_plain(io, path, wanted)

    monkeypatch.setattr(source, "_read_plain", spy)
    data = customers(2_000)
    iceberg_warehouse.write("gold.customers", data, files=2)
    scan = plan_scan(open_table(_config(iceberg_warehouse, "gold.customers")))
    table = scan.reader().read_all()
    assert len(opened) == 2
    assert table.schema.equals(scan.schema)
    got = table.sort_by("customer_id")
    for name in data.column_names:
        assert got.column(name).cast(data.schema.field(name).type).equals(data.column(name))


def test_evolved_schema_falls_back_to_pyiceberg(iceberg_warehouse: IcebergWarehouse) -> None:
    """A renamed and an added column: the file's names no longer match, pyiceberg maps them."""
    from pyiceberg.types import StringType

    iceberg_warehouse.write("gold.customers", customers(500), files=1)
    # floe-sink only reads: the table it opens commits nothing, the platform's catalog does
    with iceberg_warehouse.catalog.load_table("gold.customers").update_schema() as update:
        update.rename_column("email", "email_address")
        update.add_column("tier", StringType())
    table = open_table(_config(iceberg_warehouse, "gold.customers"))
    result = plan_scan(table).reader().read_all().sort_by("customer_id")
    assert result.num_rows == 500
    expected = customers(500).column("email")
    assert result.column("email_address").cast(pa.string()).equals(expected)
    assert result.column("tier").null_count == 500


def _data_files(table: Any) -> list[str]:
    return sorted(task.file.file_path for task in table.scan().plan_files())


@pytest.mark.requirement("4G-FR-013")
@pytest.mark.parametrize("row_filter", [None, "customer_id > 0"])  # pyarrow's path, pyiceberg's
@pytest.mark.parametrize("damaged", [0, 1])  # the first file, or one read later
def test_a_corrupt_data_file_is_named_with_its_table(
    iceberg_warehouse: IcebergWarehouse, row_filter: str | None, damaged: int
) -> None:
    iceberg = iceberg_warehouse.write("gold.customers", customers(2_000), files=2)
    path = _data_files(iceberg)[damaged]
    Path(urlparse(path).path).write_bytes(b"not parquet at all " * 64)
    table = open_table(_config(iceberg_warehouse, "gold.customers"))
    scan = plan_scan(table, row_filter=row_filter)
    with pytest.raises(SourceReadError) as raised:
        scan.reader().read_all()
    error = raised.value
    assert (error.path, error.table) == (path, "gold.customers")
    message = str(error)
    assert f"Cannot read data file '{path}' of Iceberg table 'gold.customers': " in message
    assert "Parquet" in message  # pyarrow's reason is kept
    assert error.category is ErrorCategory.PERMANENT


# -- row_filter on names outside ASCII, through the command, on a real Iceberg table -----------


def _unicode_project(floe_project: FloeProject, row_filter: str) -> FloeProject:
    floe_project.warehouse.write(
        "gold.kunden",
        pa.table(
            {
                "kunden_nr": pa.array([1, 2, 3, 4], pa.int64()),
                "größe": pa.array([150, 172, 181, 199], pa.int32()),
                "straße": pa.array(["Hauptstraße", "Ringstraße", None, "Bahnhofstraße"]),
                "ville": pa.array(["Paris", "Zürich", "Köln", "Montréal"]),
            }
        ),
    )
    floe_project.secret("ops-db", url=f"sqlite:///{floe_project.root / 'ops.sqlite'}")
    floe_project.write_floe(
        [
            {
                "name": "kunden",
                "sink_type": "sql_database",
                "connection_secret_ref": "ops-db",
                "source_table": "gold.kunden",
                "row_filter": row_filter,
                "config": {"table": "kunden"},
            }
        ]
    )
    return floe_project


@pytest.mark.parametrize(
    ("row_filter", "expected"),
    [
        ("größe > 175", [3, 4]),
        ('"größe" > 175', [3, 4]),  # quoting still works
        ("größe >= 170 and straße is not null", [2, 4]),
        ("straße = 'Ringstraße' or ville = 'Köln'", [2, 3]),  # literals are left alone
        ("ville in ('Zürich', 'Montréal') and not größe < 190", [4]),
    ],
)
def test_row_filter_accepts_non_ascii_column_names_as_written(
    floe_project: FloeProject, row_filter: str, expected: list[int]
) -> None:
    project = _unicode_project(floe_project, row_filter)
    validated = project.run("validate", "floe.yaml", "--secrets-dir", "secrets")
    assert validated.code == 0, validated.stderr
    result = project.run_job("--output", "json")
    assert result.code == 0, result.stderr
    assert result.json()[0]["rows_delivered"] == len(expected)
    with sqlite3.connect(project.root / "ops.sqlite") as db:
        ids = [row[0] for row in db.execute("SELECT kunden_nr FROM kunden ORDER BY 1")]
        names = [row[1] for row in db.execute("PRAGMA table_info(kunden)")]
    assert ids == expected
    assert {"größe", "straße"} <= set(names)


def test_row_filter_on_an_unknown_non_ascii_column_names_it(floe_project: FloeProject) -> None:
    project = _unicode_project(floe_project, "höhe > 3")
    message = project.run_job().assert_clean_error(2)
    assert "höhe" in message
    assert "größe" in message  # the columns are listed
