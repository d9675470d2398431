"""Change-aware syncs: what changed since the last confirmed delivery, and the sync state.

A destination with ``sync: changes`` or ``mirror`` has a **sync state**: for every key
floe-sink delivered there, the fingerprint of the content it delivered (a 64-bit hash of the
mapped columns: a change in a column that is not sent is not a change). :class:`SyncDiff`
compares a snapshot with that state:

* **inserts**: keys the state lacks; **updates**: keys whose fingerprint differs;
  **unchanged**: the rest; **deletes** (``mirror`` only): keys of the state the snapshot lacks.
* The rows to send are the inserts and updates, streamed in the snapshot's own order from a
  second read of the (immutable) snapshot, so batch *n* of the delivery is always the same
  rows: a killed run's resume recomputes the same diff against the state the run left
  (below) and skips what the journal holds.
* Before anything is sent, the keys the delivery will upsert or delete are marked unknown
  (:meth:`SyncDiff.mark_pending`), in a small file beside the state (``<state>.pending``,
  only those keys: the state itself is not rewritten): a delivery that is killed and then
  abandoned (its plan changed, its snapshot expired) leaves nothing the state still vouches
  for that the destination may no longer hold; the next delivery sends or deletes those
  keys again (a ``changes`` delivery with no updates marks nothing: it never deletes, and a
  key the state lacks is an insert for every later diff).
* After delivery the state is replaced (:meth:`SyncDiff.save_state`) with exactly the rows of
  the batches the destination acknowledged, and it names the delivery that made it (a
  delivery the state names is over, even when a kill kept the journal from saying so: the
  next run starts a new delivery instead of resuming it).

The diff runs in DuckDB (vectorised hash joins, spilling to disk past its memory limit): the
process holds the keys and fingerprints, never the table. When the scan's files are local
Parquet files read as they are, DuckDB reads them itself, for the fingerprints and (when
they are few) the changed rows; otherwise the scan's Arrow stream is hashed and read again.
Iceberg's history makes it cheaper where it can: an unchanged snapshot (the state was made
from this very snapshot with the same configuration) is not read at all, and when the table
only grew by appends since the state's snapshot, only the appended data files are read (the
caller passes a scan of just those and ``base_rows``). Anything else (an overwrite such as a
dbt rebuild, deletes, an expired or rolled-back snapshot) gets the full fingerprint diff.

The state is a Parquet file per destination (see :mod:`floe_sink.state`): the key columns
``k0..kN`` (the primary key, in floe.yaml order), ``fp`` (UBIGINT), and metadata naming the key
columns, the snapshot, the delivery and the configuration fingerprint that produced it; the
marks of a delivery under way stand beside it (:meth:`SyncDiff.mark_pending`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa

from floe_sink.logs import get_logger
from floe_sink.settled import clear_settled, read_settled
from floe_sink.state import marks_path

__all__ = ["DELETE_POSITIONS", "StateInfo", "SyncDiff", "read_state_info"]

log = get_logger(__name__)

DELETE_POSITIONS = 1 << 40
"""Journal positions of a delivery's delete batches start here (upserts start at 0)."""

_META = b"floe.sync"
_MEMORY_LIMIT = "128MB"
_NATIVE_ROWS_FRACTION = 0.1
"""Changed rows up to this fraction of the snapshot are read back by DuckDB (sorted by row
number: few rows to sort); more go through the Arrow scan again, streamed as it is."""
_NATIVE_ROWS_MIN = 100_000
"""... and up to this many whatever the fraction (an append's new rows)."""
_BATCH_ROWS = 65_536
_FINGERPRINT_BITS = (1 << 64) - 2
"""A fingerprint is DuckDB's 64-bit ``hash`` of the mapped columns with its lowest bit 0."""


@attrs.frozen(kw_only=True)
class StateInfo:
    """What a sync state file says about itself."""

    keys: tuple[str, ...]
    snapshot_id: int | None
    delivery_id: str
    plan: str
    rows: int
    """Keys in the state (``changes`` keeps keys that left the source)."""
    source_rows: int | None
    """Rows of the snapshot the state was made from (``None`` for a partial state)."""
    pending: str | None = None
    """The delivery under way whose keys the state marks unknown (:meth:`SyncDiff.mark_pending`)."""
    marked: bool = False
    """Those marks stand beside the state (:func:`floe_sink.state.marks_path`)."""


def read_state_info(path: Path) -> StateInfo | None:
    """The metadata of the sync state at ``path``; ``None`` when there is none.

    While a delivery's marks stand beside the state (:meth:`SyncDiff.mark_pending`), the
    state is partial (no snapshot, no row count of one) and names that delivery as pending.
    """
    info = _file_info(path)
    if info is None:
        return None
    raw, rows = info
    marks = _marks_meta(path, str(raw.get("delivery_id", "")))
    if marks is not None:
        raw = {**raw, "snapshot_id": None, "source_rows": None, "pending": marks["pending"]}
    return StateInfo(
        keys=tuple(raw["keys"]),
        snapshot_id=raw.get("snapshot_id"),
        delivery_id=str(raw.get("delivery_id", "")),
        plan=str(raw.get("plan", "")),
        rows=rows,
        source_rows=raw.get("source_rows"),
        pending=raw.get("pending"),
        marked=marks is not None,
    )


def _file_info(path: Path) -> tuple[dict[str, Any], int] | None:
    """The floe metadata and row count of a Parquet file written by :func:`write_state`."""
    if not path.exists():
        return None
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    raw = (meta.metadata or {}).get(_META)
    if raw is None:
        return None
    return dict(json.loads(raw)), int(meta.num_rows)


def _marks_meta(state_path: Path, delivery_id: str) -> dict[str, Any] | None:
    """The metadata of the marks beside the state, when they were made against it (marks
    left by a kill after the state was replaced name another delivery: void)."""
    found = _file_info(marks_path(state_path))
    if found is None or found[0].get("base") != delivery_id:
        return None
    return found[0]


def _key_names(count: int) -> list[str]:
    return [f"k{index}" for index in range(count)]


class SyncDiff:
    """The diff of one snapshot against one destination's sync state (a DuckDB session).

    ``SyncDiff(...)`` diffs ``scan`` (a snapshot) against the sync state at ``state_path``
    (see the module doc). With ``base_rows``, ``scan`` reads only the files appended since
    the state's snapshot (which had ``base_rows`` rows): the cost follows the appended files.
    The caller closes the diff (it holds a DuckDB session).

    Attributes:
        mode: ``changes`` or ``mirror``.
        inserts, updates, deletes, unchanged: Row counts (``deletes`` is 0 for ``changes``).
        state_rows: Rows the destination holds from floe-sink (the state's size).
    """

    def __init__(
        self,
        *,
        mode: str,
        scan: Any,
        key_columns: Sequence[str],
        field_mapping: Mapping[str, str] | None,
        state_path: Path,
        work_dir: Path,
        plan: str,
        base_rows: int | None = None,
    ) -> None:
        import duckdb

        self.mode = mode
        self.scan = scan
        self.key_columns = tuple(key_columns)
        self.field_mapping = dict(field_mapping) if field_mapping else None
        self.state_path = state_path
        self.plan = plan
        self.base_rows = base_rows
        """Set when ``scan`` reads only the files appended since the state's snapshot: the
        rows of that snapshot, all unchanged (appends delete and rewrite nothing)."""
        self.inserts = self.updates = self.deletes = self.unchanged = 0
        self.state_rows = 0
        self.skipped_read = False
        self.read_natively = False
        """The fingerprints came from DuckDB reading the data files (:meth:`_native`)."""
        self._native_paths: list[str] = []  # the files DuckDB read (:meth:`_native`)
        self._scanned = 0  # rows the diff read
        self._prefetch: _Prefetch | None = None  # the read-back running in its thread
        self._state_delivery = ""
        work_dir.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(config={"memory_limit": _MEMORY_LIMIT, "threads": 2})
        self._db.sql(f"SET temp_directory = '{_sql_text(str(work_dir))}'")
        self._db.sql("SET TimeZone = 'UTC'")  # timestamps handed back keep their instant
        self._changed: pa.Array | None = None  # sorted row numbers to send; None: all rows
        self._all_changed = False
        self._keys = _key_names(len(self.key_columns))
        try:
            self._compute()
        except BaseException:
            self.close()
            raise
        log.info(
            "sync_diff",
            mode=mode,
            inserts=self.inserts,
            updates=self.updates,
            deletes=self.deletes,
            unchanged=self.unchanged,
            state_rows=self.state_rows,
            read=not self.skipped_read,
            read_natively=self.read_natively,
            incremental=base_rows is not None,
        )

    def close(self) -> None:
        """Release the DuckDB session."""
        self._idle()
        self._db.close()

    def _idle(self) -> None:
        """End the read-back (:meth:`rows`): its thread, and its result, which the session
        keeps open until drained or closed (a delivery that stopped early leaves it so)."""
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    # -- computing ------------------------------------------------------------------------

    def _compute(self) -> None:
        info = read_state_info(self.state_path)
        keys = ", ".join(self._keys)
        if info is not None and info.keys != self.key_columns:
            log.warning(
                "sync_state_keys_changed",
                state=str(self.state_path),
                was=list(info.keys),
                now=list(self.key_columns),
            )
            info = None  # another key: the old state says nothing about these rows
        has_state = info is not None
        if info is not None:
            self.state_rows = info.rows
        if (
            info is not None
            and info.snapshot_id is not None
            and info.snapshot_id == self.scan.snapshot_id
            and info.plan == self.plan
        ):
            # the state was made from this very snapshot, configured the same: nothing changed
            # (nor is the state loaded: the run neither sends nor saves anything)
            self.unchanged = info.source_rows if info.source_rows is not None else info.rows
            self._changed = _empty_positions()
            self.skipped_read = True
            self._state_delivery = info.delivery_id
            return
        if info is not None:  # the state (with the same keys)
            self._load_state(marked=info.marked)
        fingerprinted = self._native(self.scan.schema)
        self.read_natively = fingerprinted is not None
        if fingerprinted is None:
            fingerprinted = self._fingerprinted(self.scan.reader())
        fingerprinted.create("cur")
        if not has_state:
            self.inserts = self._count("SELECT count(*) FROM cur")
            self._all_changed = True
            return
        # one join: the changed rows, their new and old fingerprints (NULL: an insert)
        self._db.execute(
            f"CREATE TEMP TABLE chg AS SELECT {', '.join('cur.' + k for k in self._keys)}, "
            f"cur.rn, cur.fp, st.fp AS old FROM cur LEFT JOIN st USING ({keys}) "
            "WHERE st.fp IS NULL OR st.fp <> cur.fp"
        )
        counts = self._table(
            "SELECT count(*) FILTER (WHERE old IS NULL) AS inserts, "
            "count(*) FILTER (WHERE old IS NOT NULL) AS updates, "
            "(SELECT count(*) FROM cur) AS rows FROM chg"
        ).to_pylist()[0]
        self.inserts, self.updates = int(counts["inserts"]), int(counts["updates"])
        self._scanned = int(counts["rows"])
        self.unchanged = self._scanned - self.inserts - self.updates
        if self.base_rows is not None:
            self.unchanged += self.base_rows - self.updates
        elif self.mode == "mirror":
            self.deletes = self._count(f"SELECT count(*) FROM st ANTI JOIN cur USING ({keys})")
        self._changed = self._column("SELECT rn FROM chg ORDER BY rn")

    def _load_state(self, *, marked: bool) -> None:
        """The state as table ``st``: the file, with the marks of a delivery under way (also
        kept as table ``marks``, see :meth:`mark_pending`)."""
        keys = ", ".join(self._keys)
        self._db.execute(
            f"CREATE TEMP TABLE st AS SELECT {keys}, fp FROM read_parquet(?)",
            [str(self.state_path)],
        )
        if not marked:
            return
        self._db.execute(
            f"CREATE TEMP TABLE marks AS SELECT {keys}, fp FROM read_parquet(?)",
            [str(marks_path(self.state_path))],
        )
        self._db.execute(
            f"CREATE OR REPLACE TEMP TABLE st AS SELECT {keys}, fp FROM st "
            f"ANTI JOIN marks USING ({keys}) UNION ALL SELECT {keys}, fp FROM marks"
        )

    def _column(self, sql: str) -> pa.Array:
        """The one column of a query, as one Arrow array."""
        return self._table(sql).column(0).combine_chunks()

    def _count(self, sql: str) -> int:
        return int(self._table(sql).column(0)[0].as_py())

    def _table(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        table: pa.Table = self._db.sql(sql, params=list(params) or None).to_arrow_table()
        return table

    def _fingerprinted(self, reader: pa.RecordBatchReader) -> Any:
        """The key columns, the row number and the fingerprint of the mapped content."""
        from floe_sink.mapping import apply_field_mapping, mapped_schema

        mapped = mapped_schema(reader.schema, self.field_mapping)
        key_fields = [
            pa.field(name, reader.schema.field(column).type)
            for name, column in zip(self._keys, self.key_columns, strict=True)
        ]
        content = [pa.field(f"m{index}", field.type) for index, field in enumerate(mapped)]
        schema = pa.schema([*key_fields, pa.field("rn", pa.int64()), *content])

        def batches() -> Iterator[pa.RecordBatch]:
            offset = 0
            for batch in reader:
                if not batch.num_rows:
                    continue
                out = apply_field_mapping(batch, self.field_mapping)
                arrays = [batch.column(column) for column in self.key_columns]
                arrays.append(pa.array(range(offset, offset + batch.num_rows), pa.int64()))
                arrays.extend(out.columns)
                offset += batch.num_rows
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

        contents = ", ".join(field.name for field in content) or "1"
        keys = ", ".join(self._keys)
        staged = pa.RecordBatchReader.from_batches(schema, batches())
        # hash in DuckDB while streaming, so only keys, row numbers and fingerprints are kept;
        # a fingerprint's lowest bit is 0: a marked one (mark_pending) is odd, never one
        return self._db.from_arrow(staged).project(
            f"{keys}, rn, hash({contents}) & {_FINGERPRINT_BITS}::UBIGINT AS fp"
        )

    def _native(self, schema: pa.Schema) -> Any:
        """The fingerprints computed by DuckDB reading the data files itself (in parallel,
        no Arrow conversion): when the scan's files are local Parquet files read as they
        are, and DuckDB types every column read as it types the Arrow stream (the hash
        covers the type: the same rows give the same fingerprints on either path).
        ``None`` otherwise."""
        files_of = getattr(self.scan, "local_parquet_files", None)
        files = files_of() if callable(files_of) else None
        if not files:
            return None
        sources = list(self.field_mapping) if self.field_mapping else list(schema.names)
        read = [*self.key_columns, *sources]
        quoted = [_identifier(name) for name in read]
        paths = [path for path, _rows in files]
        every = ", ".join(_identifier(name) for name in schema.names)  # rows() reads them all
        native = self._db.sql(f"SELECT {every} FROM read_parquet(?)", params=[paths]).limit(0)
        streamed = self._db.from_arrow(schema.empty_table()).project(every)
        if [str(t) for t in native.types] != [str(t) for t in streamed.types]:
            log.debug("sync_diff_arrow_path", reason="types", columns=list(schema.names))
            return None
        self._native_paths = paths
        bases, offset = [], 0
        for _path, rows in files:
            bases.append(offset)
            offset += rows
        self._db.register("floe_files", pa.table({"filename": paths, "base": bases}))
        keys = ", ".join(f"{q} AS {k}" for q, k in zip(quoted, self._keys, strict=False))
        contents = ", ".join(quoted[len(self.key_columns) :]) or "1"
        return self._db.sql(
            f"SELECT {keys}, base + file_row_number AS rn, "
            f"hash({contents}) & {_FINGERPRINT_BITS}::UBIGINT AS fp "
            "FROM read_parquet(?, filename = true, file_row_number = true) "
            "JOIN floe_files USING (filename)",
            params=[paths],
        )

    # -- what to send -----------------------------------------------------------------------

    @property
    def to_send(self) -> int:
        """Rows to upsert (inserts and updates)."""
        return self.inserts + self.updates

    def rows(self) -> pa.RecordBatchReader:
        """The rows to upsert, source column names, in the snapshot's order (a second read)."""
        import pyarrow.compute as pc

        if self._all_changed:
            return self.scan.reader()
        changed = self._changed
        if changed is None or len(changed) == 0:
            return pa.RecordBatchReader.from_batches(self.scan.schema, iter(()))
        few = max(_NATIVE_ROWS_FRACTION * self._scanned, _NATIVE_ROWS_MIN)
        if self._native_paths and len(changed) <= few:
            return self._native_rows()
        reader = self.scan.reader()

        def batches() -> Iterator[pa.RecordBatch]:
            offset = low = 0
            for batch in reader:
                end = offset + batch.num_rows
                # row numbers are unique and sorted: this batch's are among the next num_rows
                window = changed.slice(low, batch.num_rows)
                high = low + int(pc.sum(pc.less(window, end)).as_py() or 0)
                if high > low:
                    rows = pc.subtract(changed.slice(low, high - low), offset)
                    yield batch.take(rows)
                low, offset = high, end
                if low >= len(changed):
                    break

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def _native_rows(self) -> pa.RecordBatchReader:
        """The changed rows read by DuckDB from the files it fingerprinted (:meth:`_native`),
        in the snapshot's order, as the scan's Arrow schema types them: DuckDB decodes the
        columns in parallel and hands over only the changed rows."""
        from floe_sink.source import conform

        schema = self.scan.schema
        every = ", ".join(_identifier(name) for name in schema.names)
        relation = self._db.sql(
            f"SELECT {every} FROM read_parquet(?, filename = true, file_row_number = true) "
            "JOIN floe_files USING (filename) "
            "SEMI JOIN chg ON chg.rn = base + file_row_number ORDER BY base + file_row_number",
            params=[self._native_paths],
        )
        # DuckDB runs the query (without the GIL) while the caller gets the sink ready: the
        # first batch is waited for only when it is asked for
        started = self._prefetch = _Prefetch(lambda: relation.to_arrow_reader(_BATCH_ROWS))

        def batches() -> Iterator[pa.RecordBatch]:
            reader, first = started.result()
            yield from itertools.chain(first, reader)

        return pa.RecordBatchReader.from_batches(schema, conform(batches(), schema))

    def deleted_keys(self, destination_names: Sequence[str]) -> pa.Table:
        """The keys to delete (``mirror``), named as the destination names the key columns."""
        self._idle()
        if self.mode != "mirror" or not self.deletes or self.base_rows is not None:
            return pa.table({name: pa.array([], pa.null()) for name in destination_names})
        keys = ", ".join(self._keys)
        table = self._table(f"SELECT {keys} FROM st ANTI JOIN cur USING ({keys}) ORDER BY {keys}")
        return table.rename_columns(list(destination_names))

    def sample(self, kind: str, limit: int = 3) -> list[dict[str, Any]]:
        """A few keys of ``inserts``, ``updates`` or ``deletes`` (source key names)."""
        self._idle()
        keys = ", ".join(self._keys)
        if self.skipped_read:
            return []
        if kind == "deletes":
            if self.mode != "mirror" or not self.deletes:
                return []
            sql = f"SELECT {keys} FROM st ANTI JOIN cur USING ({keys}) ORDER BY {keys} LIMIT ?"
        elif self._all_changed:
            if kind == "updates":
                return []
            sql = f"SELECT {keys} FROM cur ORDER BY rn LIMIT ?"
        else:
            where = "st.fp IS NULL" if kind == "inserts" else "st.fp <> cur.fp"
            sql = (
                f"SELECT {', '.join('cur.' + k for k in self._keys)} FROM cur "
                f"LEFT JOIN st USING ({keys}) WHERE {where} ORDER BY cur.rn LIMIT ?"
            )
        table = self._table(sql, [limit])
        rows: list[dict[str, Any]] = table.rename_columns(list(self.key_columns)).to_pylist()
        return rows

    # -- the new state ----------------------------------------------------------------------

    def mark_pending(self, delivery_id: str) -> None:
        """Before anything is sent: mark every key the delivery may touch as unknown.

        The marks are a Parquet file beside the state (:func:`floe_sink.state.marks_path`),
        written atomically, naming the delivery and the state it was made against (marks
        beside a state that since replaced that one are void); the state itself is not
        rewritten. Until the delivery is folded, the keys it upserts or deletes read with
        their fingerprint's lowest bit set (an odd value, which no fingerprint has: no
        longer what the state said the destination holds, still an update; marking twice
        changes nothing), and the keys it inserts with a NULL one (still an insert); the
        marks of an abandoned delivery stay. The fold keeps the marks of what it did not
        deliver. Should the delivery never be folded (killed, then abandoned because its
        plan changed or its snapshot expired), what it may have changed at the destination
        is sent or deleted again, even when the source went back to what the state said
        before. A resume of the delivery diffs to the same rows in the same order, so its
        batches and their keys are unchanged. A ``changes`` delivery of inserts only (a
        first run, appends) marks nothing: keys the state lacks are sent again by any later
        diff, and ``changes`` never deletes.
        """
        if self.skipped_read or not (self.to_send or self.deletes):
            return
        if self.mode == "changes" and not self.updates:
            # only inserts, and `changes` never deletes: a key the state lacks is sent again
            # by any later diff, marked or not (mirror marks them: it may have to delete them)
            return
        info = read_state_info(self.state_path)
        if info is not None and info.pending == delivery_id:
            return  # a resumed delivery: marked by the run that started it
        keys = ", ".join(self._keys)
        if info is None or not self._has_table("st"):
            # no state yet (a first mirror run): the marks are the state
            meta = {
                "keys": list(self.key_columns),
                "source_rows": None,
                "snapshot_id": None,
                "delivery_id": info.delivery_id if info is not None else "",
                "plan": self.plan,
                "pending": delivery_id,
            }
            marked = self._table(f"SELECT {keys}, NULL::UBIGINT AS fp FROM cur")
            write_state(self.state_path, marked, meta)
        else:
            # the touched keys alone, beside the state (which is not rewritten): an update
            # or a delete gets an odd fingerprint, an insert a NULL one; the marks of an
            # abandoned delivery stay
            marks = f"SELECT {keys}, old | 1::UBIGINT AS fp FROM chg"
            if self.mode == "mirror" and self.deletes:
                marks += (
                    f" UNION ALL SELECT {keys}, fp | 1::UBIGINT FROM st "
                    f"ANTI JOIN cur USING ({keys})"
                )
            if self._has_table("marks"):
                marks = (
                    f"SELECT {keys}, fp FROM marks UNION ALL "
                    f"SELECT {keys}, fp FROM ({marks}) ANTI JOIN marks USING ({keys})"
                )
            self._db.execute(f"CREATE OR REPLACE TEMP TABLE marks AS {marks}")
            meta = {
                "keys": list(self.key_columns),
                "pending": delivery_id,
                "base": info.delivery_id,
            }
            clear_settled(self.state_path)  # the state no longer says all it did
            write_state(marks_path(self.state_path), self._table("SELECT * FROM marks"), meta)
        log.info("sync_state_pending", state=str(self.state_path), delivery_id=delivery_id)

    def save_state(
        self,
        *,
        delivery_id: str,
        sent_batches: Sequence[int] | None,
        batch_size: int | None,
        deleted_batches: Sequence[int] | None,
        delete_batch_size: int | None,
        rejected: Sequence[tuple[int, int]] = (),
        rejected_deletes: Sequence[tuple[int, int]] = (),
    ) -> None:
        """Replace the sync state with what the destination acknowledged.

        Args:
            delivery_id: The delivery whose acknowledged batches are folded in.
            sent_batches: Positions of acknowledged upsert batches; ``None``: all of them.
            batch_size: Rows per upsert batch (needed when ``sent_batches`` is a subset).
            deleted_batches: Positions (from 0) of acknowledged delete batches; ``None``: all.
            delete_batch_size: Rows per delete batch.
            rejected: (position, row in batch) of upsert records the destination refused:
                they stay unsynced, so the next run sends them again.
            rejected_deletes: (position from 0, row in batch) of deletes the destination
                refused: their keys stay in the state, so the next mirror run deletes again.
        """
        self._idle()
        if self.skipped_read:
            # nothing changed, nothing sent: the state stays as it is (its sidecar written
            # if a kill came between the two, so the next run of this table reads nothing)
            if read_settled(self.state_path) is None:
                self._settle(self._state_delivery, self.unchanged)
            return
        keys = ", ".join(self._keys)
        changed = self._column("SELECT rn FROM cur ORDER BY rn") if self._all_changed else None
        every = changed if changed is not None else self._changed
        assert every is not None
        sent = _rows_of(every, sent_batches, batch_size)
        if rejected and batch_size:
            import pyarrow.compute as pc

            refused = every.take(pa.array([p * batch_size + i for p, i in rejected], pa.int64()))
            sent = sent.filter(pc.invert(pc.is_in(sent, value_set=refused)))
        self._db.register("sent", pa.table({"rn": sent}))
        has_state = self._has_table("st")
        rows = "chg" if has_state else "cur"  # the rows sent are among the changed ones
        parts = []
        if has_state:
            drop = f"SELECT {keys} FROM {rows} SEMI JOIN sent USING (rn)"
            if self.mode == "mirror" and self.deletes:
                gone = self.deleted_keys(self._keys)
                deleted = gone.slice(0, 0)
                every = pa.array(range(gone.num_rows), pa.int64())
                done: pa.Array | None = None
                if deleted_batches is None:
                    done = every
                elif delete_batch_size:
                    done = _rows_of(every, deleted_batches, delete_batch_size)
                if done is not None and rejected_deletes and delete_batch_size:
                    import pyarrow.compute as pc

                    kept = [p * delete_batch_size + i for p, i in rejected_deletes]
                    done = done.filter(
                        pc.invert(pc.is_in(done, value_set=pa.array(kept, pa.int64())))
                    )
                if done is not None:
                    deleted = gone.take(done)
                self._db.register("deleted", deleted)
                drop += f" UNION ALL SELECT {keys} FROM deleted"
            base = "st"
            if self._has_table("marks"):
                # what the delivery marked and did not deliver stays marked
                base = (
                    f"(SELECT {keys}, fp FROM st ANTI JOIN marks USING ({keys}) "
                    f"UNION ALL SELECT {keys}, fp FROM marks)"
                )
            parts.append(f"SELECT {keys}, fp FROM {base} ANTI JOIN ({drop}) USING ({keys})")
        parts.append(f"SELECT {keys}, fp FROM {rows} SEMI JOIN sent USING (rn)")
        new = self._table(" UNION ALL ".join(parts))
        # only a state holding every row of the snapshot may name it: with refused records
        # left out, the next run must diff again (and send them)
        complete = (
            sent_batches is None
            and deleted_batches is None
            and not rejected
            and not rejected_deletes
        )
        meta = {
            "keys": list(self.key_columns),
            "source_rows": (self.base_rows or 0) + self._count("SELECT count(*) FROM cur")
            if complete
            else None,
            "snapshot_id": self.scan.snapshot_id if complete else None,
            "delivery_id": delivery_id,
            "plan": self.plan,
        }
        write_state(self.state_path, new, meta)
        # the new state names this delivery: marks made against the old one are void
        marks_path(self.state_path).unlink(missing_ok=True)
        rows_of_snapshot = meta["source_rows"]
        if isinstance(rows_of_snapshot, int):  # complete
            self._settle(delivery_id, rows_of_snapshot)
        log.info(
            "sync_state_saved",
            state=str(self.state_path),
            rows=new.num_rows,
            delivery_id=delivery_id,
            complete=complete,
        )

    def _settle(self, delivery_id: str, source_rows: int) -> None:
        """Beside a complete state of the table's current snapshot, its sidecar: the next
        run of an unchanged table then reads nothing (:mod:`floe_sink.settled`)."""
        location = getattr(self.scan, "metadata_location", None)
        if not location or self.scan.snapshot_id is None:
            return
        from floe_sink.checksum import Checksum
        from floe_sink.mapping import mapped_schema
        from floe_sink.settled import Settled, write_settled

        empty = Checksum()
        empty.update(mapped_schema(self.scan.schema, self.field_mapping).empty_table())
        settled = Settled(
            metadata_location=str(location),
            snapshot_id=int(self.scan.snapshot_id),
            plan=self.plan,
            keys=self.key_columns,
            source_rows=source_rows,
            delivery_id=delivery_id,
            checksum=empty.hexdigest(),
        )
        write_settled(self.state_path, settled)

    def _has_table(self, name: str) -> bool:
        found = self._table(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]
        ).column(0)[0]
        return bool(found.as_py())


def write_state(path: Path, table: pa.Table, meta: Mapping[str, Any]) -> None:
    """Write a sync state file atomically (a temp file, fsynced, renamed over the old one)."""
    import pyarrow.parquet as pq

    from floe_sink.state import replace_durably

    path.parent.mkdir(parents=True, exist_ok=True)
    schema = table.schema.with_metadata({_META: json.dumps(dict(meta)).encode()})
    temporary = path.with_name(path.name + ".tmp")
    # the sidecar vouches for the file being replaced: gone first (floe_sink.settled)
    clear_settled(path)
    with pa.OSFile(str(temporary), "wb") as sink:
        # keys are unique and fingerprints random: a dictionary is tried, then dropped (it
        # doubled the time of writing a 1M-key state)
        pq.write_table(table.replace_schema_metadata(schema.metadata), sink, use_dictionary=False)
    replace_durably(temporary, path)


def _rows_of(rows: pa.Array, batches: Sequence[int] | None, batch_size: int | None) -> pa.Array:
    """The entries of ``rows`` carried by the given batch positions (``None``: all)."""
    if batches is None:
        return rows
    if not batch_size or not batches:
        return rows.slice(0, 0)
    return pa.concat_arrays([rows.slice(p * batch_size, batch_size) for p in sorted(batches)])


def _empty_positions() -> pa.Array:
    return pa.array([], pa.int64())


class _Prefetch:
    """A reader opened, and its first batch read, in a thread of its own."""

    def __init__(self, open_reader: Any) -> None:
        self._reader: Any = None
        self._first: list[pa.RecordBatch] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(open_reader,), name="floe-sync-rows", daemon=True
        )
        self._thread.start()

    def _run(self, open_reader: Any) -> None:
        try:
            self._reader = open_reader()
            with contextlib.suppress(StopIteration):
                self._first.append(self._reader.read_next_batch())
        except BaseException as exc:  # handed to the consumer
            self._error = exc

    def close(self) -> None:
        """Wait for the thread, then close the reader (DuckDB's result with it)."""
        self._thread.join()
        if self._reader is not None:
            self._reader.close()

    def result(self) -> tuple[Any, list[pa.RecordBatch]]:
        """The reader and its first batch (none: it was empty); raises what the thread did."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._reader, self._first


def _identifier(name: str) -> str:
    """A column name as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
