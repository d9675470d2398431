"""Crash and resume: a delivery SIGKILLed half-way is finished by the next run, exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import Database
from floe_sink.checksum import checksum_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.requirement("4G-FR-008")]

ROWS = 120_000
BATCH = 4_000

CHILD = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from floe_sink import SinkConfig
    from floe_sink_dlt.sql import SqlDatabaseSink

    url, pipelines, mode, data = sys.argv[1:5]
    table = pa.ipc.open_file(data).read_all()
    connection = {"url": url, "table": "crash", "pipelines_dir": pipelines,
                  "write_disposition": mode, "destination": "crash"}
    if mode == "merge":
        connection["primary_key"] = ["id"]
    sink = SqlDatabaseSink.from_config(SinkConfig(
        sink_type="sql_database", connection_config=connection, batch_size=int(sys.argv[5])))
    sink.write(table)
    """
)


def source() -> pa.Table:
    ids = pa.array(range(ROWS), pa.int64())
    return pa.table(
        {"id": ids, "label": pa.compute.cast(ids, pa.string()), "v": ids.cast(pa.float64())}
    )


def ledger_rows(db: Database) -> int:
    try:
        return int(db.query('SELECT count(*) FROM "_floe_sink_batches"')[0][0])
    except Exception:  # not created yet
        return 0


@pytest.mark.parametrize("mode", ["merge", "append"])
def test_killed_delivery_resumes_to_exactly_the_source_rows(
    pg: Database, tmp_path: Path, mode: str
) -> None:
    data = source()
    data_file = tmp_path / "data.arrow"
    with pa.OSFile(str(data_file), "wb") as sink, pa.ipc.new_file(sink, data.schema) as writer:
        writer.write_table(data)
    pipelines = tmp_path / "pipelines"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), pg.url, str(pipelines), mode, str(data_file), str(BATCH)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while ledger_rows(pg) < 3:
            assert child.poll() is None, "the child finished before it could be killed"
            assert time.monotonic() < deadline, "the child never started delivering"
            time.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    delivered = pg.count("crash")
    assert 0 < delivered < ROWS, "the kill must land in the middle of the delivery"

    sink = pg.sink(
        "crash",
        write_disposition=mode,
        primary_key=["id"] if mode == "merge" else None,
        batch_size=BATCH,
        destination="crash",
    )
    # merge: the same data again (a re-run); append: nothing new, just the resume
    result = sink.write(data if mode == "merge" else data.slice(0, 0))
    assert result.success, result.errors
    assert sink.resumed_rows > 0

    rows = pg.query('SELECT "id", "label", "v" FROM "crash" ORDER BY "id"')
    assert len(rows) == ROWS
    back = pa.table(
        {
            "id": pa.array([row[0] for row in rows], pa.int64()),
            "label": [row[1] for row in rows],
            "v": pa.array([row[2] for row in rows], pa.float64()),
        }
    )
    assert checksum_of(back) == checksum_of(data)
