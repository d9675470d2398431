"""Benchmark: request templates against the plain encoding, and rest_api with a HubSpot-shaped
template against a hand-written httpx client.

    python benchmarks/bench_rest_templates.py [--rows 200000] [--repeat 3]

1. **Encoding** (in this process): the same batches of ``--batch-size`` rows of the benchmark
   table (``bench_rest_api.make_table``: int64, two strings, float64, UTC timestamp, bool,
   int32, a 10-value category) encoded

   * *plain*: ``encode_batch`` (a JSON array of flat objects), and
   * *template*: a HubSpot-shaped template with nesting and string conversions
     (``{"inputs": [{"idProperty": "email", "id": <email as string>, "properties":
     {<every other column as a string, nulls left out>}}]}``, 10% of the scores null), the
     body of each batch built by ``CompiledTemplate.encode``;

   reported as MB/s of bodies built; target: the template costs at most ``--max-cost`` (1.3)
   times the plain encoding per byte (``plain MB/s / template MB/s <= 1.3``).
2. **Throughput** to a counting server in its own process on 127.0.0.1 that answers like
   HubSpot (``200 {"status": "COMPLETE", "results": []}``), at concurrency 1 and 4:

   * *floe-sink*: ``RestApiSink.write(table)`` with ``preset: hubspot_contacts`` (its template,
     100 inputs a request, its results parsing, the pacer; ``max_requests_per_second`` off);
   * *hand-written*: an httpx client that builds the same bodies (``to_pylist``, the dicts,
     ``json.dumps``), posts them (threads sharing the client at concurrency 4) and checks
     the status;
   * *send-only* (for reference): the very bodies floe-sink sends, built before the clock
     starts, only posted by such a client: what the HTTP exchange alone costs;

   target: floe-sink's rows/s at least ``--min-ratio`` (0.9) times the hand-written client's
   (the send-only ratio is printed, not checked).
   Each case runs in a fresh child process; ``--repeat`` interleaves rounds, medians reported.

Exits 1 when a target is missed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from typing import Any

HERE = os.path.abspath(__file__)
sys.path.insert(0, os.path.dirname(HERE))

from bench_rest_api import _Counter, machine, make_table  # noqa: E402

HUBSPOT_TEMPLATE = {
    "records_key": "inputs",
    "record": {
        "idProperty": "email",
        "id": {"column": "email", "as": "string", "required": True},
        "properties": {"remaining": {"as": "string", "on_null": "omit"}},
    },
}
RECORDS_PER_REQUEST = 100
TOKEN = "bench-private-app-token"


def table_with_nulls(rows: int) -> Any:
    """The benchmark table with 10% of its scores null (so ``on_null: omit`` has work)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = make_table(rows).combine_chunks()
    ids = table.column("id")
    score = pc.if_else(
        pc.equal(pc.remainder(ids, 10), 3), pa.scalar(None, pa.float64()), table.column("score")
    )
    return table.set_column(table.schema.get_field_index("score"), "score", score)


# -- 1. encoding ------------------------------------------------------------------------------


def bench_encoding(rows: int, batch_size: int, repeat: int) -> dict[str, Any]:
    from floe_sink_dlt.json_encoding import encode_batch
    from floe_sink_dlt.saas.template import RequestTemplate

    batches = table_with_nulls(rows).to_batches(max_chunksize=batch_size)
    compiled = RequestTemplate.parse(HUBSPOT_TEMPLATE).compile(batches[0].schema)

    def plain() -> int:
        return sum(len(encode_batch(batch)) for batch in batches)

    def template() -> int:
        return sum(len(compiled.encode(batch)) for batch in batches)

    figures: dict[str, list[float]] = {"plain": [], "template": []}
    sizes: dict[str, int] = {}
    plain(), template()  # warm up
    for _ in range(repeat):
        for name, build in (("plain", plain), ("template", template)):
            started = time.perf_counter()
            size = build()
            seconds = time.perf_counter() - started
            sizes[name] = size
            figures[name].append(size / seconds / 1e6)
    rates = {name: statistics.median(values) for name, values in figures.items()}
    ratios = [p / t for p, t in zip(figures["plain"], figures["template"], strict=True)]
    return {
        "mb_per_s": rates,
        "mb": {name: size / 1e6 for name, size in sizes.items()},
        "cost": statistics.median(ratios),
        "costs": ratios,
    }


# -- 2. throughput ---------------------------------------------------------------------------


class _HubSpotCounter(_Counter):
    """bench_rest_api's counting server, answering as HubSpot's batch upsert does."""

    ANSWER = json.dumps({"status": "COMPLETE", "results": []}).encode()

    def reply(self, first: int, records: int) -> bytes:
        return self.ANSWER


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubSpotCounter)
    server.daemon_threads = True
    server.request_queue_size = 64
    print(server.server_address[1], flush=True)
    server.serve_forever()


def stats(port: int) -> dict[str, int]:
    import httpx

    return dict(httpx.get(f"http://127.0.0.1:{port}/stats").json())


def case_floe_sink(table: Any, url: str, batch_size: int, concurrency: int) -> None:
    from floe_sink import SinkConfig
    from floe_sink.secrets import Secret
    from floe_sink_dlt.rest import RestApiSink

    config = SinkConfig(
        sink_type="rest_api",
        connection_config={
            "token": Secret(TOKEN),
            "preset": "hubspot_contacts",
            "url": url,
            "max_requests_per_second": None,
            "max_concurrency": concurrency,
        },
        batch_size=batch_size,
    )
    result = RestApiSink.from_config(config).write(table)
    if not result.success or result.rows_rejected:
        raise SystemExit(f"floe-sink write failed: {result.errors}")


def _hubspot_body(rows: list[dict[str, Any]]) -> bytes:
    inputs = []
    for row in rows:
        email = row.pop("email")
        properties = {}
        for name, value in row.items():
            if value is None:
                continue
            if isinstance(value, bool):
                properties[name] = "true" if value else "false"
            elif hasattr(value, "isoformat"):
                properties[name] = value.isoformat().replace("+00:00", "Z")
            else:
                properties[name] = str(value)
        inputs.append({"idProperty": "email", "id": str(email), "properties": properties})
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def case_hand_written(table: Any, url: str, batch_size: int, concurrency: int) -> None:
    import uuid

    import httpx

    def post(client: httpx.Client, rows: list[dict[str, Any]]) -> None:
        response = client.post(
            url,
            content=_hubspot_body(rows),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {TOKEN}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        response.raise_for_status()
        response.json()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as client:

        def requests() -> Any:
            for batch in table.to_batches(max_chunksize=batch_size):
                rows = batch.to_pylist()
                for start in range(0, len(rows), RECORDS_PER_REQUEST):
                    yield rows[start : start + RECORDS_PER_REQUEST]

        if concurrency == 1:
            for rows in requests():
                post(client, rows)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for future in [pool.submit(post, client, rows) for rows in requests()]:
                    future.result()


def prebuilt_bodies(table: Any, batch_size: int) -> list[bytes]:
    """The exact bodies floe-sink sends (its own encoder), built before the clock starts."""
    from floe_sink_dlt.saas.template import RequestTemplate

    compiled = RequestTemplate.parse(HUBSPOT_TEMPLATE).compile(table.schema)
    bodies = []
    for batch in table.to_batches(max_chunksize=batch_size):
        records = compiled.encode_records(batch)
        for start in range(0, len(records), RECORDS_PER_REQUEST):
            bodies.append(compiled.body(records.slice(start, RECORDS_PER_REQUEST)))
    return bodies


def case_send_only(bodies: list[bytes], url: str, batch_size: int, concurrency: int) -> None:
    import uuid

    import httpx

    def post(client: httpx.Client, body: bytes) -> None:
        response = client.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {TOKEN}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        response.raise_for_status()
        response.json()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as client:
        if concurrency == 1:
            for body in bodies:
                post(client, body)
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for future in [pool.submit(post, client, body) for body in bodies]:
                    future.result()


CASES = {
    "floe-sink": case_floe_sink,
    "hand-written": case_hand_written,
    "send-only": case_send_only,
}


def run_case(name: str, port: int, rows: int, batch_size: int, concurrency: int) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    import floe_sink_dlt.rest  # noqa: F401 - imports are not part of the timing

    table = table_with_nulls(rows)
    data = prebuilt_bodies(table, batch_size) if name == "send-only" else table
    before = stats(port)
    started = time.perf_counter()
    CASES[name](data, f"http://127.0.0.1:{port}/crm/v3/objects/contacts/batch/upsert",
                batch_size, concurrency)  # fmt: skip
    seconds = time.perf_counter() - started
    after = stats(port)
    print(
        json.dumps(
            {
                "case": name,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "requests": after["requests"] - before["requests"],
                "bytes": after["bytes"] - before["bytes"],
            }
        )
    )


def bench_throughput(
    rows: int, batch_size: int, repeat: int, concurrency: int, port: int
) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    for round_ in range(repeat):
        for name in CASES:
            out = subprocess.run(
                [sys.executable, HERE, "--case", name, "--port", str(port), "--rows", str(rows),
                 "--batch-size", str(batch_size), "--concurrency", str(concurrency)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            expected = -(-rows // RECORDS_PER_REQUEST)
            if figures["requests"] != expected:
                raise SystemExit(f"{name}: {figures['requests']} requests, {expected} expected")
            results[name].append(figures)
            print(
                f"  concurrency {concurrency} round {round_ + 1} {name:<12} "
                f"{figures['rows_per_s']:>10,.0f} rows/s {figures['bytes'] / 2**20:6.1f} MB",
                flush=True,
            )
    ratios = [
        ours["rows_per_s"] / theirs["rows_per_s"]
        for ours, theirs in zip(results["floe-sink"], results["hand-written"], strict=True)
    ]
    send_only = [
        ours["rows_per_s"] / theirs["rows_per_s"]
        for ours, theirs in zip(results["floe-sink"], results["send-only"], strict=True)
    ]
    return {
        "ratio_send_only": statistics.median(send_only),
        "ratios_send_only": send_only,
        "rows_per_s": {
            name: statistics.median(run["rows_per_s"] for run in runs)
            for name, runs in results.items()
        },
        "mb_sent": {
            name: statistics.median(run["bytes"] for run in runs) / 2**20
            for name, runs in results.items()
        },
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-cost", type=float, default=1.3)
    parser.add_argument("--min-ratio", type=float, default=0.9)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    if args.case:
        run_case(args.case, args.port, args.rows, args.batch_size, args.concurrency)
        return 0

    print(f"rest_api templates: {args.rows:,} rows, batches of {args.batch_size:,}, {machine()}")
    encoding = bench_encoding(args.rows, args.batch_size, max(args.repeat, 3))
    rates, sizes = encoding["mb_per_s"], encoding["mb"]
    ok = encoding["cost"] <= args.max_cost
    print(f"encoding (median of {max(args.repeat, 3)}):")
    for name in ("plain", "template"):
        print(f"  {name:<9} {rates[name]:8.1f} MB/s of bodies  ({sizes[name]:.1f} MB built)")
    print(
        f"  cost template / plain per byte: {encoding['cost']:.2f} (per round "
        f"{', '.join(f'{c:.2f}' for c in encoding['costs'])}; target <= {args.max_cost}) "
        f"{'OK' if ok else 'ABOVE TARGET'}"
    )

    server = subprocess.Popen([sys.executable, HERE, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for concurrency in (1, 4):
            figures = bench_throughput(args.rows, args.batch_size, args.repeat, concurrency, port)
            good = figures["ratio"] >= args.min_ratio
            ok = ok and good
            rates = figures["rows_per_s"]
            print(
                f"throughput at concurrency {concurrency}: floe-sink {rates['floe-sink']:,.0f} "
                f"rows/s, hand-written {rates['hand-written']:,.0f} rows/s; ratio "
                f"{figures['ratio']:.2f} (per round "
                f"{', '.join(f'{r:.2f}' for r in figures['ratios'])}; target >= "
                f"{args.min_ratio}) {'OK' if good else 'BELOW TARGET'}"
            )
            print(
                f"  against the same bodies pre-built and only sent ({rates['send-only']:,.0f} "
                f"rows/s): {figures['ratio_send_only']:.2f} (per round "
                f"{', '.join(f'{r:.2f}' for r in figures['ratios_send_only'])})"
            )
    finally:
        server.terminate()
        server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
