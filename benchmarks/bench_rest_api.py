"""Benchmark: the rest_api sink against a raw httpx client, to a local server that only counts.

    python benchmarks/bench_rest_api.py [--rows 200000] [--batch-size 1000] [--repeat 3]

Both cases send the same table (8 columns: int64 id, two ~20-character strings, float64,
timestamp with time zone, bool, int32, a 10-value category) in batches of ``--batch-size``
rows as JSON arrays, one POST per batch with an ``Idempotency-Key``, over one keep-alive
connection, to a counting HTTP server in its own process on 127.0.0.1:

* ``floe-sink``: ``RestApiSink.write(table)``: the core's delivery loop (batches, idempotency
  keys, the journal of acknowledged batches), checksum, retries, logs; everything a real run
  pays except imports;
* ``raw httpx``: a loop over ``table.to_batches()`` doing
  ``json.dumps(batch.to_pylist())`` and ``client.post(...)``: no state, no resume, no retry.

Each case runs in a fresh child process (so peak RSS is per case); ``--repeat`` runs every
case that many times, interleaved, and reports medians. Prints rows/s, peak RSS and the
ratio; exits 1 if the median ratio floe-sink/raw is below ``--min-ratio`` (0.8). Not part of
the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HERE = os.path.abspath(__file__)
LOGGING_QUIET = "FLOE_BENCH_QUIET"


# -- the table ----------------------------------------------------------------------------


def make_table(rows: int) -> Any:
    """The benchmark table, deterministic, built with Arrow compute (no Python row loop)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(range(rows), pa.int64())
    text = pc.cast(ids, pa.string())
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    tiers = pa.array([f"tier-{n}" for n in range(10)])
    return pa.table(
        {
            "id": ids,
            "first_name": pc.binary_join_element_wise("customer-first-", text, ""),
            "email": pc.binary_join_element_wise("user", text, "@example.com", ""),
            "score": pc.divide(pc.cast(ids, pa.float64()), 7.0),
            "updated_at": pc.add(
                pa.array([start] * rows, pa.timestamp("us", tz="UTC")),
                pc.cast(pc.multiply(ids, 1_000_003), pa.duration("us")),
            ),
            "active": pc.equal(pc.bit_wise_and(ids, 1), 0),
            "visits": pc.cast(pc.bit_wise_and(ids, 1023), pa.int32()),
            "tier": pa.DictionaryArray.from_arrays(
                pc.cast(pc.remainder(ids, 10), pa.int32()), tiers
            ),
        }
    )


# -- the counting server (own process) ----------------------------------------------------


class _Counter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    requests = 0
    received = 0
    answer_ids = False  # answer {"ids": [...]}, one new integer per record of the batch
    next_id = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        records = body.count(b"{") if _Counter.answer_ids else 0  # flat records only
        with _Counter.lock:
            _Counter.requests += 1
            _Counter.received += len(body)
            first = _Counter.next_id
            _Counter.next_id += records
        self._answer(self.reply(first, records))

    def reply(self, first: int, records: int) -> bytes:
        """The answer to a batch of ``records`` records, the first given the id ``first``."""
        if _Counter.answer_ids:
            return json.dumps({"ids": list(range(first, first + records))}).encode()
        return b"{}"

    def do_GET(self) -> None:
        with _Counter.lock:
            stats = {"requests": _Counter.requests, "bytes": _Counter.received}
        self._answer(json.dumps(stats).encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(*, answer_ids: bool = False) -> None:
    """Serve on a free port of 127.0.0.1 (printed on stdout) until killed.

    Args:
        answer_ids: Answer each POST with ``{"ids": [...]}``, one new ID per record (counted
            as the ``{`` of the body: flat JSON records), as an API that creates records does;
            otherwise with ``{}``.
    """
    _Counter.answer_ids = answer_ids
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def server_stats(port: int) -> dict[str, int]:
    import httpx

    return dict(httpx.get(f"http://127.0.0.1:{port}/stats").json())


# -- the cases (each in its own process) --------------------------------------------------


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def case_floe_sink(table: Any, url: str, batch_size: int) -> None:
    from floe_sink import SinkConfig
    from floe_sink_dlt.rest import RestApiSink

    sink = RestApiSink.from_config(
        SinkConfig(sink_type="rest_api", connection_config={"url": url}, batch_size=batch_size)
    )
    result = sink.write(table)
    if not result.success:
        raise SystemExit(f"floe-sink write failed: {result.errors}")


def case_raw_httpx(table: Any, url: str, batch_size: int) -> None:
    import uuid

    import httpx

    def default(value: Any) -> Any:
        if isinstance(value, datetime.datetime | datetime.date):
            return value.isoformat()
        raise TypeError(f"cannot encode {type(value).__name__}")

    with httpx.Client() as client:
        for batch in table.to_batches(max_chunksize=batch_size):
            body = json.dumps(batch.to_pylist(), default=default).encode()
            response = client.post(
                url,
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
            )
            response.raise_for_status()


CASES = {"floe-sink": case_floe_sink, "raw httpx": case_raw_httpx}


def run_case(name: str, port: int, rows: int, batch_size: int) -> None:
    """Child process: build the table, run one case, print one JSON line of figures."""
    import logging

    import psutil  # type: ignore[import-untyped]
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if name == "floe-sink":
        import floe_sink_dlt.rest  # noqa: F401 - imports are not part of the timing

    table = make_table(rows)
    # Nothing is chunked by the source here: a Gold table read from Iceberg arrives as
    # batches of a few thousand to 100k rows; the sink re-chunks them itself.
    table = table.combine_chunks()
    rss_with_table = psutil.Process().memory_info().rss / 2**20
    before = server_stats(port)
    started = time.perf_counter()
    CASES[name](table, f"http://127.0.0.1:{port}/ingest", batch_size)
    seconds = time.perf_counter() - started
    after = server_stats(port)
    print(
        json.dumps(
            {
                "case": name,
                "rows": rows,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "peak_rss_mb": _peak_rss_mb(),
                "rss_with_table_mb": rss_with_table,
                "requests": after["requests"] - before["requests"],
                "bytes": after["bytes"] - before["bytes"],
            }
        )
    )


# -- the driver ---------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-ratio", type=float, default=0.8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--answer-ids", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        serve(answer_ids=args.answer_ids)
        return 0
    if args.case:
        run_case(args.case, args.port, args.rows, args.batch_size)
        return 0

    env = dict(os.environ)
    server = subprocess.Popen(
        [sys.executable, HERE, "--serve"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
        for round_ in range(args.repeat):
            for name in CASES:
                out = subprocess.run(
                    [
                        sys.executable,
                        HERE,
                        "--case",
                        name,
                        "--port",
                        str(port),
                        "--rows",
                        str(args.rows),
                        "--batch-size",
                        str(args.batch_size),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                figures = json.loads(out.stdout.strip().splitlines()[-1])
                expected = -(-args.rows // args.batch_size)
                if figures["requests"] != expected:
                    raise SystemExit(f"{name}: {figures['requests']} requests, {expected} expected")
                results[name].append(figures)
                print(
                    f"  round {round_ + 1} {name:<10} {figures['rows_per_s']:>10,.0f} rows/s "
                    f"{figures['peak_rss_mb']:>7.0f} MB peak",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait()

    print(f"rest_api: {args.rows:,} rows, batches of {args.batch_size:,}, {machine()}")
    print(f"median of {args.repeat} run(s), each case in its own process")
    print(
        f"{'case':<10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} "
        f"{'RSS w/ table MB':>16} {'MB sent':>8}"
    )
    medians: dict[str, float] = {}
    for name, runs in results.items():
        rate = statistics.median(run["rows_per_s"] for run in runs)
        medians[name] = rate
        print(
            f"{name:<10} {statistics.median(run['seconds'] for run in runs):>8.2f} "
            f"{rate:>10,.0f} "
            f"{statistics.median(run['peak_rss_mb'] for run in runs):>12.0f} "
            f"{statistics.median(run['rss_with_table_mb'] for run in runs):>16.0f} "
            f"{statistics.median(run['bytes'] for run in runs) / 2**20:>8.1f}"
        )
    ratios = [
        ours["rows_per_s"] / raw["rows_per_s"]
        for ours, raw in zip(results["floe-sink"], results["raw httpx"], strict=True)
    ]
    ratio = statistics.median(ratios)
    verdict = "OK" if ratio >= args.min_ratio else "BELOW TARGET"
    print(
        f"ratio floe-sink / raw httpx: {ratio:.2f} (per round: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; target >= {args.min_ratio}) {verdict}"
    )
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
