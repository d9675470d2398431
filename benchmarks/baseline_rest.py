"""Hand-written baseline: an Iceberg table -> a REST API with pyiceberg, pyarrow and httpx.

What an engineer would write without floe-sink, to judge floe-sink's ``run`` against::

    python benchmarks/baseline_rest.py --catalog-uri sqlite:////tmp/lake/catalog.db \\
        --warehouse file:///tmp/lake/warehouse --table gold.bench \\
        --url http://127.0.0.1:8080/ingest --token TOKEN [--batch-size 500] [--json stdlib]

* Reads the table as a stream of Arrow batches with pyiceberg's
  ``table.scan().to_arrow_batch_reader()``, cut into batches of exactly ``--batch-size`` rows
  (500, floe-sink's default for rest_api).
* Per batch: ``batch.to_pylist()`` encoded as one JSON array (``--json stdlib``: ``json.dumps``
  with datetimes as ISO-8601; ``--json orjson``: ``orjson.dumps``, which does datetimes
  itself), one ``POST`` with ``Authorization: Bearer``, ``Content-Type: application/json`` and
  an ``Idempotency-Key`` (SHA-256 of the body), over one keep-alive ``httpx.Client``
  connection, one request at a time; a non-2xx answer stops the script.

No state, no resume, no retries, no logs: the whole process is the cost floor floe-sink is
compared with. Prints one JSON line (``rows``, ``requests``, ``bytes``, ``seconds``) on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from _batches import rebatch  # benchmarks/ is the script's directory, on sys.path
from pyiceberg.catalog import load_catalog


def _iso(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def stdlib_encoder() -> Callable[[list[dict[str, Any]]], bytes]:
    def encode(records: list[dict[str, Any]]) -> bytes:
        return json.dumps(records, default=_iso).encode()

    return encode


def orjson_encoder() -> Callable[[list[dict[str, Any]]], bytes]:
    import orjson

    def encode(records: list[dict[str, Any]]) -> bytes:
        return orjson.dumps(records)

    return encode


ENCODERS = {"stdlib": stdlib_encoder, "orjson": orjson_encoder}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog-name", default="bench", help="the SQL catalog's name")
    parser.add_argument("--catalog-uri", required=True, help="the SQL catalog's database URL")
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--table", required=True, help="the Iceberg table: namespace.table")
    parser.add_argument("--url", required=True, help="the endpoint batches are POSTed to")
    parser.add_argument("--token", required=True, help="sent as Authorization: Bearer")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", choices=sorted(ENCODERS), default="stdlib")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    started = time.perf_counter()
    encode = ENCODERS[args.json]()
    catalog = load_catalog(
        args.catalog_name, type="sql", uri=args.catalog_uri, warehouse=args.warehouse
    )
    reader = catalog.load_table(args.table).scan().to_arrow_batch_reader()
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    rows = requests = sent = 0
    with httpx.Client(headers=headers, timeout=args.timeout) as client:
        for batch in rebatch(reader, args.batch_size):
            body = encode(batch.to_pylist())
            key = hashlib.sha256(body).hexdigest()
            response = client.post(args.url, content=body, headers={"Idempotency-Key": key})
            response.raise_for_status()
            rows += batch.num_rows
            requests += 1
            sent += len(body)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "requests": requests, "bytes": sent, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
