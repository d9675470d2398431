"""Rejected records: filed in the dead-letter store, left unsynced, resent, then cleared.

A sink built on the core's delivery loop reports per-record refusals in its receipts; the
job runs in-process (the same functions the command calls) against a real Iceberg table and
a real state store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

import floe_sink
from fixtures.iceberg import IcebergWarehouse
from floe_sink import EgressResult, SinkConfig
from floe_sink.delivery import BatchReceipt, Delivery, Rejection, deliver_batches
from floe_sink.idempotency import idempotency_key
from floe_sink.job import configure, deliver, load_job, prepare
from floe_sink.progress import track
from floe_sink.state import LocalStateStore

ROWS = 1_000


class PickySink:
    """Keeps what it accepts; refuses ids in ``refuse`` with a per-record 422."""

    def __init__(self, config: SinkConfig) -> None:
        self.held: dict[int, str] = {}
        self.refuse: set[int] = set()
        self.sent: list[int] = []
        self.batch_size = config.batch_size or 100
        self.mapping = config.field_mapping

    def send(self, batch: pa.RecordBatch, key: str) -> BatchReceipt:
        ids = batch.column("id").to_pylist()
        self.sent.extend(ids)
        rejected = tuple(
            Rejection(index=index, status="422", message="email is invalid")
            for index, id_ in enumerate(ids)
            if id_ in self.refuse
        )
        for id_, email in zip(ids, batch.column("email").to_pylist(), strict=True):
            if id_ not in self.refuse:
                self.held[id_] = email
        return BatchReceipt(rows=len(ids) - len(rejected), rejected=rejected)


class PickyPlugin:
    sinks: list[PickySink] = []

    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return ["picky"]

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> PickySink | None:
        if config.sink_type != "picky":
            return None
        sink = PickySink(config)
        self.sinks.append(sink)
        return sink

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: Delivery | None) -> EgressResult | None:
        checksum = floe_sink.Checksum()
        totals = deliver_batches(
            data,
            delivery=delivery or Delivery("picky"),
            batch_size=sink.batch_size,
            send=sink.send,
            field_mapping=sink.mapping,
            checksum=checksum,
        )
        return EgressResult(
            success=True,
            rows_delivered=totals.rows,
            rows_rejected=totals.rejected,
            checksum=checksum.hexdigest(),
        )


def people(ids: range) -> pa.Table:
    keys = pa.array(list(ids), pa.int64())
    return pa.table(
        {
            "id": keys,
            "email": pc.binary_join_element_wise("p", pc.cast(keys, pa.string()), "@x.io", ""),
        }
    )


def run_once(
    warehouse: IcebergWarehouse, state: Path, plugin: PickyPlugin, refuse: set[int], **guards: Any
) -> tuple[EgressResult, PickySink]:
    manager = floe_sink.get_plugin_manager(load_entrypoints=False)
    manager.register(plugin, name="picky")
    state.mkdir(parents=True, exist_ok=True)
    destination: dict[str, Any] = {
        "name": "picky-dest",
        "sink_type": "picky",
        "connection_secret_ref": "none",
        "source_table": "gold.people",
        "primary_key": ["id"],
        "sync": "changes",
        "batch_size": 100,
    }
    if guards:
        destination["guards"] = guards
    (state / "floe.yaml").write_text(yaml.safe_dump({"destinations": [destination]}))
    (state / "manifest.yaml").write_text(yaml.safe_dump({"catalog": warehouse.catalog_properties}))
    job = load_job(state / "floe.yaml", state / "manifest.yaml")
    secrets = state / "secrets"
    (secrets / "none").mkdir(parents=True, exist_ok=True)
    (secrets / "none" / "unused").write_text("x")
    configured = configure(job, manager, secrets_dir=secrets, state_dir=state)
    configured.raise_problems()
    store = LocalStateStore(state)
    try:
        prepared = prepare(configured, manager, state_dir=state, store=store)
        (ready,) = prepared.ready
        ready.sink.refuse = refuse
        with track(enabled=False) as reporter:
            outcome = deliver(ready, manager, reporter, store=store)
    finally:
        store.close()
    return outcome.result, ready.sink


@pytest.mark.requirement("4G-FR-008")
def test_refused_records_are_filed_left_unsynced_resent_and_cleared(tmp_path: Path) -> None:
    warehouse = IcebergWarehouse(root=tmp_path / "lake")
    warehouse.write("gold.people", people(range(ROWS)))
    state = tmp_path / "state"
    plugin = PickyPlugin()

    first, sink = run_once(warehouse, state, plugin, refuse={7, 507})
    assert first.success, first.errors
    assert (first.rows_delivered, first.rows_rejected) == (ROWS - 2, 2)
    store = LocalStateStore(state)
    filed = store.rejects("picky-dest")
    store.close()
    # Listed by first sighting: batches complete in any order under concurrency.
    assert sorted(r.key["id"] for r in filed) == [7, 507]
    assert {r.status for r in filed} == {"422"}
    by_id = {r.key["id"]: r for r in filed}
    assert by_id[7].record == {"id": 7, "email": "p7@x.io"}  # the record as sent

    # the destination still refuses 507: only the two refused records are sent again
    second, sink = run_once(warehouse, state, plugin, refuse={507})
    assert sorted(sink.sent) == [7, 507]
    assert (second.rows_delivered, second.rows_rejected) == (1, 1)
    store = LocalStateStore(state)
    (still,) = store.rejects("picky-dest")
    store.close()
    assert still.key == {"id": 507}
    assert still.attempts == 2

    _, sink = run_once(warehouse, state, plugin, refuse=set())
    assert sink.sent == [507]
    store = LocalStateStore(state)
    assert store.rejects("picky-dest") == []  # accepted at last: cleared
    store.close()
    _, sink = run_once(warehouse, state, plugin, refuse=set())
    assert sink.sent == []


def test_max_rejected_fraction_fails_a_run_that_rejects_too_much(tmp_path: Path) -> None:
    warehouse = IcebergWarehouse(root=tmp_path / "lake")
    warehouse.write("gold.people", people(range(ROWS)))
    result, _ = run_once(
        warehouse,
        tmp_path / "state",
        PickyPlugin(),
        refuse=set(range(0, ROWS, 10)),
        max_rejected_fraction=0.05,
    )
    assert not result.success
    assert result.rows_rejected == ROWS // 10
    assert "max_rejected_fraction" in result.errors[-1]


def test_a_resumed_delivery_keeps_the_refusals_of_the_batches_it_skips(tmp_path: Path) -> None:
    """A run that saw a record refused was stopped before its fold (a kill): the next run
    resumes the delivery and skips that batch (acknowledged). The refusal, still open in the
    dead-letter store, is the resumed run's too: the sync state must not take the record
    for delivered, and the result counts it."""
    store = LocalStateStore(tmp_path / ".floe")
    try:
        delivery_id = store.create_delivery("picky", "plan", 1)
        first = Delivery("picky", delivery_id=delivery_id, store=store)
        first.track_rejects(["id"], [])
        batch = pa.record_batch({"id": pa.array([0, 1, 2], pa.int64()), "v": ["a", "b", "c"]})
        refused = Rejection(index=1, status="422", message="invalid v")
        key = idempotency_key(first.key_scope, batch, 0)
        first.acknowledge(0, key, BatchReceipt(rows=2, bytes=10, rejected=[refused]), batch)
        assert first.rejections == [(0, 1)]
        # killed before the fold; the next run resumes the delivery
        opened = [json.dumps(r.key, sort_keys=True, default=str) for r in store.rejects("picky")]
        assert opened == ['{"id": 1}']  # as floe_sink.job.deliver hands them over
        resumed = Delivery("picky", delivery_id=delivery_id, store=store, resumed=True)
        resumed.track_rejects(["id"], opened)
        sent: list[pa.RecordBatch] = []

        def send(chunk: pa.RecordBatch, key: str) -> BatchReceipt:
            sent.append(chunk)
            return BatchReceipt(rows=chunk.num_rows, bytes=1)

        totals = deliver_batches(
            pa.Table.from_batches([batch]), delivery=resumed, batch_size=3, send=send
        )
        assert sent == []  # acknowledged: not sent again
        assert resumed.rejections == [(0, 1)]
        assert totals.rejected == 1
    finally:
        store.close()
