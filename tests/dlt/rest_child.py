"""Child process of the crash/resume tests: one rest_api write, result as JSON on stdout.

Usage: ``python rest_child.py URL PIPELINES_DIR ROWS BATCH_SIZE MAX_CONCURRENCY``. The table is
deterministic (``id`` 0..ROWS-1 and a name), so a second run sends the same batches.
"""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink import SinkConfig
from floe_sink_dlt.rest import RestApiSink


def main(url: str, pipelines_dir: str, rows: int, batch_size: int, concurrency: int) -> None:
    ids = pa.array(range(rows), pa.int64())
    table = pa.table(
        {"id": ids, "name": pc.binary_join_element_wise("name-", pc.cast(ids, pa.string()), "")}
    )
    sink = RestApiSink.from_config(
        SinkConfig(
            sink_type="rest_api",
            connection_config={
                "url": url,
                "pipelines_dir": pipelines_dir,
                "destination": "crash-test",
                "max_concurrency": concurrency,
            },
            batch_size=batch_size,
            retry_config={"initial_wait": 0.01, "jitter": 0.01, "max_attempts": 5},
        )
    )
    result = sink.write(table)
    print(
        json.dumps(
            {
                "success": result.success,
                "rows_delivered": result.rows_delivered,
                "resumed_rows": sink.resumed_rows,
                "errors": result.errors,
            }
        )
    )


if __name__ == "__main__":
    url, pipelines_dir, rows, batch_size, concurrency = sys.argv[1:6]
    main(url, pipelines_dir, int(rows), int(batch_size), int(concurrency))
