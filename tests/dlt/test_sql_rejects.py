"""sql_database per-row rejects: a refused row is isolated and rejected, the others written.

Against real PostgreSQL, SQLite and DuckDB: the batch's transaction fails on the row, trial
transactions (rolled back) find it, the good rows and the ledger row go in one transaction,
and the refused row comes back as a Rejection with the SQLSTATE or error name and a message
without row values. A crash while isolating leaves nothing; a batch delivered again after the
commit reports its refused rows again (from the database, next to the ledger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from structlog.testing import capture_logs
from test_sql_errors import CASES, LEAKS, NAMED, REFUSED, create_tables, row

from conftest import Database, make_database
from floe_sink import SinkConfigurationError
from floe_sink.delivery import Delivery
from floe_sink.state import LocalStateStore
from floe_sink_dlt.sql.sink import SqlDatabaseSink

pytestmark = pytest.mark.requirement("4G-FR-013")

ROWS = 10_000
BAD = 6_543
CHECK_STATUS = {
    "postgresql": "23514",
    "sqlite": "SQLITE_CONSTRAINT_CHECK",
    "duckdb": "ConstraintException",
}


def orders(rows: int = ROWS, *, bad: tuple[int, ...] = (BAD,), first: int = 0) -> pa.Table:
    ids = pa.array(range(first, first + rows), pa.int64())
    amount = pc.add(ids, 1)
    if bad:
        mask = pc.is_in(ids, value_set=pa.array([first + n for n in bad], pa.int64()))
        amount = pc.if_else(mask, pa.scalar(-987654, pa.int64()), amount)
    return pa.table(
        {
            "id": ids,
            "email": pc.binary_join_element_wise("buyer", pc.cast(ids, pa.string()), "@x.io", ""),
            "amount": amount,
        }
    )


def create_orders(db: Database) -> None:
    db.execute(
        'CREATE TABLE "orders" ("id" BIGINT PRIMARY KEY, "email" TEXT NOT NULL, '
        '"amount" BIGINT CONSTRAINT "amount_positive" CHECK ("amount" > 0))'
    )


def stored_delivery(tmp_path: Path, name: str = "dest") -> tuple[LocalStateStore, Delivery]:
    store = LocalStateStore(tmp_path / "state")
    delivery_id = store.create_delivery(name, "plan", None)
    delivery = Delivery(name, delivery_id=delivery_id, store=store)
    delivery.track_rejects(["id"], [])
    return store, delivery


def test_one_row_violating_a_check_in_10000_is_rejected_and_the_rest_written(
    db: Database, tmp_path: Path
) -> None:
    create_orders(db)
    sink = db.sink("orders", batch_size=ROWS)
    store, delivery = stored_delivery(tmp_path)
    with capture_logs() as logs:
        result = sink.write(orders(), delivery)
    assert result.success, result.errors
    assert (result.rows_delivered, result.rows_rejected) == (ROWS - 1, 1)
    assert db.count("orders") == ROWS - 1
    assert db.query(f'SELECT count(*) FROM "orders" WHERE "id" = {BAD}') == [(0,)]
    assert db.query('SELECT sum("amount") FROM "orders"')[0][0] == sum(
        n + 1 for n in range(ROWS) if n != BAD
    )
    (filed,) = store.rejects("dest")
    store.close()
    assert filed.key == {"id": BAD}
    assert filed.status == CHECK_STATUS[db.dialect]
    assert "amount_positive" in filed.message or "amount > 0" in filed.message
    assert "987654" not in filed.message
    assert f"buyer{BAD}" not in filed.message
    assert filed.record["amount"] == -987654  # the record as it was sent, in the store only
    (isolated,) = [event for event in logs if event["event"] == "sql_rows_isolated"]
    assert isolated["trials"] <= 15  # ceil(log2 10,000) prefixes, then the commit
    assert "987654" not in repr(logs)


@pytest.mark.parametrize(("dialect", "violation", "disposition"), CASES)
def test_every_kind_of_refusal_is_isolated_without_its_values(
    request: pytest.FixtureRequest, tmp_path: Path, dialect: str, violation: str, disposition: str
) -> None:
    db = make_database(request, dialect, tmp_path)
    create_tables(db)
    good = (555000111, "leaky-good@example.com", 7777)
    table = pa.concat_tables([row(good), row(REFUSED[violation])])
    sink = db.sink(
        write_disposition=disposition, primary_key=["id"] if disposition == "merge" else None
    )
    store, delivery = stored_delivery(tmp_path)
    with capture_logs() as logs:
        result = sink.write(table, delivery)
    assert result.success, result.errors
    assert (result.rows_delivered, result.rows_rejected) == (1, 1)
    (filed,) = store.rejects("dest")
    store.close()
    for name in NAMED[db.dialect, violation]:
        assert name in filed.message, filed.message
    for text in (filed.message, filed.status, repr(logs)):
        for value in (*LEAKS, "555000111"):
            assert value not in text, (value, text)
    assert db.query('SELECT count(*) FROM "target" WHERE "id" = 555000111') == [(1,)]


def test_not_null_and_unique_rows_of_an_append_are_isolated(db: Database) -> None:
    create_orders(db)
    assert db.sink("orders").write(orders(10, bad=())).success
    table = orders(20, bad=(), first=5)  # ids 5..9 are held already
    emails = table.column("email").to_pylist()
    emails[12] = None
    table = table.set_column(1, "email", pa.array(emails))
    table = pa.concat_tables([table, orders(1, bad=(), first=20)])  # id 20 twice in the batch
    delivery = Delivery("dest")
    result = db.sink("orders", batch_size=100).write(table, delivery)
    assert result.success, result.errors
    assert sorted(row for _, row in delivery.rejections) == [0, 1, 2, 3, 4, 12, 20]
    assert db.rows("orders", '"id"') == [(n,) for n in range(25) if n != 17]


def test_a_merge_isolates_a_row_its_update_would_make_invalid(db: Database) -> None:
    create_orders(db)
    sink = db.sink("orders", write_disposition="merge", primary_key=["id"])
    assert sink.write(orders(100, bad=())).success
    delivery = Delivery("dest")
    again = sink.write(orders(100, bad=(42,)), delivery)
    assert (again.rows_delivered, again.rows_rejected) == (99, 1)
    assert delivery.rejections == [(0, 42)]
    assert db.query('SELECT "amount" FROM "orders" WHERE "id" = 42') == [(43,)]  # kept as was


def test_too_many_refused_rows_fail_the_batch_as_before(db: Database) -> None:
    create_orders(db)
    result = db.sink("orders", max_rejects_per_batch=3).write(orders(100, bad=(1, 2, 3, 4)))
    assert not result.success
    assert "writing a batch of 100 rows" in result.errors[0]
    assert db.count("orders") == 0
    fast = db.sink("orders", max_rejects_per_batch=0).write(orders(100, bad=(7,)))
    assert not fast.success
    assert db.count("orders") == 0


@pytest.mark.parametrize("value", [-1, 1.5, "ten", True])
def test_max_rejects_per_batch_must_be_a_count(lite: Database, value: Any) -> None:
    with pytest.raises(SinkConfigurationError, match="invalid 'max_rejects_per_batch'"):
        lite.sink(max_rejects_per_batch=value)


class Killed(BaseException):
    """Stands for the process being killed: nothing after it runs (no commit)."""


def test_a_crash_while_isolating_leaves_nothing_and_the_rerun_is_exact(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_orders(db)
    store = LocalStateStore(tmp_path / "state")
    delivery_id = store.create_delivery("dest", "plan", None)
    table = orders(3_000, bad=(2_500,))
    sink = db.sink("orders", batch_size=1_000)
    trials = 0
    original = SqlDatabaseSink._trial

    def dies_on_the_fifth_trial(self: SqlDatabaseSink, *args: Any, **kwargs: Any) -> Any:
        nonlocal trials
        trials += 1
        if trials == 5:
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SqlDatabaseSink, "_trial", dies_on_the_fifth_trial)
    with pytest.raises(Killed):
        sink.write(table, Delivery("dest", delivery_id=delivery_id, store=store))
    assert db.count("orders") == 2_000  # the two good batches; nothing of the third
    assert sorted(store.batches(delivery_id)) == [0, 1]

    monkeypatch.setattr(SqlDatabaseSink, "_trial", original)
    resumed = Delivery("dest", delivery_id=delivery_id, store=store, resumed=True)
    result = db.sink("orders", batch_size=1_000).write(table, resumed)
    assert result.success, result.errors
    assert (result.rows_delivered, result.rows_rejected, result.resumed_batches) == (2_999, 1, 2)
    assert db.count("orders") == 2_999
    assert resumed.rejections == [(2, 500)]
    store.close()


def test_a_batch_delivered_again_after_its_commit_reports_its_refused_rows_again(
    db: Database,
) -> None:
    create_orders(db)
    sink = db.sink("orders", batch_size=1_000)
    delivery = Delivery("dest")
    sink.delivery = delivery
    sink.prepare(orders(1).schema)
    try:
        batch = orders(1_000, bad=(10, 900)).to_batches()[0]
        first = sink.deliver(batch, key="k-1")
        # killed before the journal's record: the batch comes again under the same key
        again = sink.deliver(batch, key="k-1")
    finally:
        sink.finish(success=True)
    assert not first.skipped
    assert again.skipped
    assert [r.index for r in first.rejected] == [10, 900]
    assert again.rejected == first.rejected
    assert (first.rows, again.rows) == (998, 998)
    assert db.count("orders") == 998
