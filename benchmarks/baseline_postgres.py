"""Hand-written baseline: an Iceberg table -> PostgreSQL with pyiceberg, pyarrow and psycopg 3.

What an engineer would write without floe-sink, to judge floe-sink's ``run`` against::

    python benchmarks/baseline_postgres.py --catalog-uri sqlite:////tmp/lake/catalog.db \\
        --warehouse file:///tmp/lake/warehouse --table gold.bench \\
        --url postgresql://user:pw@127.0.0.1:5432/db --target bench --mode append

* Reads the table as a stream of Arrow batches with pyiceberg's
  ``table.scan().to_arrow_batch_reader()`` (no copy of the table in memory beyond what
  pyiceberg buffers), cut into chunks of ``--chunk-rows`` rows (100,000, floe-sink's default
  batch size for sql_database).
* ``append``: creates the target table if missing, then per chunk one
  ``COPY target (columns) FROM STDIN (FORMAT csv)`` fed by pyarrow's CSV writer (vectorised,
  no Python per row), and a commit.
* ``merge``: creates the target table with ``PRIMARY KEY (--key)`` if missing and a temporary
  staging table ``ON COMMIT DELETE ROWS``; per chunk, ``COPY`` into the staging table, one
  ``INSERT INTO target SELECT ... FROM staging ON CONFLICT (key) DO UPDATE SET ... WHERE
  (target columns) IS DISTINCT FROM (excluded columns)`` (rows that did not change are not
  rewritten, as floe-sink does), and a commit.

* ``--appended-since SNAPSHOT``: only the data files the current snapshot has beyond that
  snapshot's (the table grew by appends since, and the caller knows which snapshot it sent
  last), each read with ``pyarrow.parquet``: an incremental sync that keeps no state of its
  own, the least a process can do to send the rows of an append.

One connection, one transaction per chunk. No state, no resume, no retries, no logs: the
whole process is the cost floor floe-sink is compared with. Prints one JSON line
(``rows``, ``chunks``, ``seconds``) on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from _batches import rebatch  # benchmarks/ is the script's directory, on sys.path
from psycopg import sql
from pyiceberg.catalog import load_catalog

# Arrow type -> PostgreSQL column type, for the types of the benchmark table.
_PG_TYPES = {
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE PRECISION",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    pa.string(): "TEXT",
    pa.large_string(): "TEXT",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.timestamp("us", tz="+00:00"): "TIMESTAMPTZ",
    pa.timestamp("us"): "TIMESTAMP",
}


def create_table(conn: psycopg.Connection, name: str, schema: pa.Schema, key: str | None) -> None:
    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(field.name),
            sql.SQL(_PG_TYPES[field.type]),
            sql.SQL(" PRIMARY KEY" if field.name == key else ""),
        )
        for field in schema
    ]
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(name), sql.SQL(", ").join(columns)
        )
    )


def copy_chunk(cursor: psycopg.Cursor, table: str, batch: pa.RecordBatch) -> None:
    """``COPY table FROM STDIN (FORMAT csv)`` of one chunk, written by pyarrow's CSV writer."""
    buffer = io.BytesIO()
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, batch.schema.names))
    )
    with cursor.copy(statement) as copy:
        copy.write(buffer.getbuffer())


def upsert_statement(target: str, stage: str, names: list[str], key: str) -> sql.Composed:
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    others = [name for name in names if name != key]
    return sql.SQL(
        "INSERT INTO {target} AS t ({columns}) SELECT {columns} FROM {stage} "
        "ON CONFLICT ({key}) DO UPDATE SET {updates} WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        target=sql.Identifier(target),
        columns=columns,
        stage=sql.Identifier(stage),
        key=sql.Identifier(key),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(name)) for name in others
        ),
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(name)) for name in others),
        new=sql.SQL(", ").join(
            sql.SQL("excluded.{}").format(sql.Identifier(name)) for name in others
        ),
    )


def appended(table: Any, since: int) -> pa.RecordBatchReader:
    """The rows of the data files the current snapshot has beyond snapshot ``since``."""
    import pyarrow.parquet as pq

    def paths(snapshot_id: int | None) -> set[str]:
        return {task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()}

    added = sorted(paths(None) - paths(since))
    schema = table.schema().as_arrow()

    def batches() -> Iterator[pa.RecordBatch]:
        for path in added:
            with table.io.new_input(path).open() as stream:
                yield from pq.read_table(stream).cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog-name", default="bench", help="the SQL catalog's name")
    parser.add_argument("--catalog-uri", required=True, help="the SQL catalog's database URL")
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--table", required=True, help="the Iceberg table: namespace.table")
    parser.add_argument("--url", required=True, help="the PostgreSQL database URL")
    parser.add_argument("--target", required=True, help="the PostgreSQL table")
    parser.add_argument("--mode", choices=("append", "merge"), default="append")
    parser.add_argument("--key", default="id", help="merge: the primary-key column")
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--appended-since", type=int, help="send only the files added since")
    args = parser.parse_args()

    started = time.perf_counter()
    catalog = load_catalog(
        args.catalog_name, type="sql", uri=args.catalog_uri, warehouse=args.warehouse
    )
    table = catalog.load_table(args.table)
    if args.appended_since is None:
        reader = table.scan().to_arrow_batch_reader()
    else:
        reader = appended(table, args.appended_since)
    rows = chunks = 0
    with psycopg.connect(args.url) as conn, conn.cursor() as cursor:
        create_table(conn, args.target, reader.schema, args.key if args.mode == "merge" else None)
        if args.mode == "merge":
            stage = f"{args.target}__stage"
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DELETE ROWS").format(
                    sql.Identifier(stage), sql.Identifier(args.target)
                )
            )
            upsert = upsert_statement(args.target, stage, reader.schema.names, args.key)
        conn.commit()
        for chunk in rebatch(reader, args.chunk_rows):
            if args.mode == "append":
                copy_chunk(cursor, args.target, chunk)
            else:
                copy_chunk(cursor, stage, chunk)
                cursor.execute(upsert)
            conn.commit()
            rows += chunk.num_rows
            chunks += 1
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "chunks": chunks, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
