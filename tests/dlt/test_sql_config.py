"""create_sink for sql_database: the config is validated, every problem names its key."""

from __future__ import annotations

from typing import Any

import pytest

from floe_sink import SinkConfig, SinkConfigurationError
from floe_sink.secrets import Secret
from floe_sink_dlt.plugin import DltPlugin
from floe_sink_dlt.sql import SqlDatabaseSink

PASSWORD = "hunter2-not-shown"


def config(**connection: Any) -> SinkConfig:
    base: dict[str, Any] = {"url": "sqlite:///x.db", "table": "t"}
    base.update(connection)
    disposition = base.pop("write_disposition", "append")
    primary_key = base.pop("primary_key", None)
    return SinkConfig(
        sink_type="sql_database",
        connection_config={key: value for key, value in base.items() if value is not None},
        write_disposition=disposition,
        primary_key=primary_key,
    )


@pytest.mark.requirement("4G-FR-005")
@pytest.mark.requirement("4G-FR-007")
def test_create_sink_builds_the_sink_through_the_plugin() -> None:
    sink = DltPlugin().create_sink(
        config(url=Secret(f"postgresql://u:{PASSWORD}@db.example:6543/app"), table="s.t")
    )
    assert isinstance(sink, SqlDatabaseSink)
    assert sink.url.dialect == "postgresql"
    assert (sink.table.schema, sink.table.name) == ("s", "t")
    assert sink.write_disposition == "append"
    assert sink.settings.batch_size == SqlDatabaseSink.default_batch_size
    assert PASSWORD not in repr(sink)
    assert PASSWORD not in sink.describe()
    assert "db.example:6543/app" in sink.describe()


@pytest.mark.requirement("4G-FR-018")
def test_a_secret_without_url_names_the_keys_it_has_never_their_values() -> None:
    connection = {
        "url": None,
        "uri": Secret(f"postgresql://u:{PASSWORD}@h/db"),
        "user": Secret("u"),
    }
    with pytest.raises(SinkConfigurationError) as caught:
        SqlDatabaseSink.from_config(config(**connection))
    message = str(caught.value)
    assert "invalid 'url': missing: the destination's Secret has no key 'url'" in message
    assert "(keys found: uri, user)" in message
    assert PASSWORD not in message
    assert "postgresql://u" not in message


@pytest.mark.requirement("4G-FR-007")
@pytest.mark.parametrize(
    ("connection", "key"),
    [
        ({"url": None}, "'url'"),
        ({"url": ""}, "'url'"),
        ({"url": f"mysql://root:{PASSWORD}@h/db"}, "'url'"),
        ({"url": f"postgresql://root:{PASSWORD}@h"}, "'url'"),
        ({"url": f"postgresql://root:{PASSWORD}@h:notaport/db"}, "'url'"),
        ({"url": "sqlite://"}, "'url'"),
        ({"url": "duckdb:///:memory:"}, "'url'"),
        ({"url": 42}, "'url'"),
        ({"table": None}, "'table'"),
        ({"table": ""}, "'table'"),
        ({"table": ".t"}, "'table'"),
        ({"table": "s.t"}, "'table'"),  # SQLite has no schemas
        ({"write_disposition": "upsert"}, "'write_disposition'"),
        ({"write_disposition": "merge"}, "'primary_key'"),
        ({"write_disposition": "merge", "primary_key": [1]}, "'primary_key'"),
        ({"write_disposition": "merge", "primary_key": ["a", "a"]}, "'primary_key'"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_config_is_a_configuration_error_naming_the_key(
    connection: dict[str, Any], key: str
) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        SqlDatabaseSink.from_config(config(**connection))
    assert key in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.requirement("4G-FR-007")
def test_primary_key_is_mapped_and_must_survive_the_mapping() -> None:
    base = {"url": "sqlite:///x.db", "table": "t"}
    sink = SqlDatabaseSink.from_config(
        SinkConfig(
            sink_type="sql_database",
            connection_config=base,
            field_mapping={"src_id": "id", "v": "value"},
            write_disposition="merge",
            primary_key=["src_id"],
        )
    )
    assert sink.primary_key == ["id"]
    with pytest.raises(SinkConfigurationError, match="primary_key"):
        SqlDatabaseSink.from_config(
            SinkConfig(
                sink_type="sql_database",
                connection_config=base,
                field_mapping={"src_id": "id"},
                write_disposition="merge",
                primary_key=["other"],
            )
        )


@pytest.mark.requirement("4G-FR-007")
def test_schema_key_takes_the_table_name_literally() -> None:
    sink = SqlDatabaseSink.from_config(config(url="duckdb:///x.duckdb", table="a.b", schema="s"))
    assert (sink.table.schema, sink.table.name) == ("s", "a.b")


@pytest.mark.requirement("4G-FR-013")
def test_unreachable_postgres_names_host_and_port_not_the_password(tmp_path: Any) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = SqlDatabaseSink.from_config(
        SinkConfig(
            sink_type="sql_database",
            connection_config={
                "url": f"postgresql://floe:{PASSWORD}@127.0.0.1:{port}/app",
                "table": "t",
            },
            retry_config={"max_attempts": 2, "initial_wait": 0.01, "jitter": 0},
        )
    )
    import pyarrow as pa

    result = sink.write(pa.table({"a": [1]}))  # a delivery failure is reported, not raised
    assert not result.success
    (message,) = result.errors
    assert f"127.0.0.1:{port}" in message
    assert PASSWORD not in message
