"""Child process of the crash/resume tests: one rest_api write with a journal, as the command.

Usage: ``python rest_child.py URL STATE_DIR ROWS BATCH_SIZE MAX_CONCURRENCY``. The table is
deterministic (``id`` 0..ROWS-1 and a name), so a second run reads the same batches. Like
``floe-sink run``, the child resumes the destination's unfinished delivery from the journal in
STATE_DIR, or starts one, and marks it done when the write succeeds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from floe_sink import SinkConfig
from floe_sink.delivery import Delivery
from floe_sink.state import DONE, LocalStateStore
from floe_sink_dlt.rest import RestApiSink

DESTINATION = "crash-test"


def main(url: str, state_dir: str, rows: int, batch_size: int, concurrency: int) -> None:
    ids = pa.array(range(rows), pa.int64())
    table = pa.table(
        {"id": ids, "name": pc.binary_join_element_wise("name-", pc.cast(ids, pa.string()), "")}
    )
    sink = RestApiSink.from_config(
        SinkConfig(
            sink_type="rest_api",
            connection_config={"url": url, "max_concurrency": concurrency},
            batch_size=batch_size,
            retry_config={"initial_wait": 0.01, "jitter": 0.01, "max_attempts": 5},
            destination=DESTINATION,
        )
    )
    store = LocalStateStore(Path(state_dir))
    with store.lock(DESTINATION):
        previous = store.latest_unfinished(DESTINATION)
        if previous is not None:
            delivery = Delivery(
                DESTINATION, delivery_id=previous.delivery_id, store=store, resumed=True
            )
        else:
            delivery_id = store.create_delivery(DESTINATION, "plan", None)
            delivery = Delivery(DESTINATION, delivery_id=delivery_id, store=store)
        result = sink.write(table, delivery)
        if result.success:
            store.set_status(delivery.delivery_id, DONE)
    print(
        json.dumps(
            {
                "success": result.success,
                "rows_delivered": result.rows_delivered,
                "resumed_batches": result.resumed_batches,
                "errors": result.errors,
            }
        )
    )


if __name__ == "__main__":
    url, state_dir, rows, batch_size, concurrency = sys.argv[1:6]
    main(url, state_dir, int(rows), int(batch_size), int(concurrency))
