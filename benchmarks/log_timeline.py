"""Where a ``floe-sink run`` spent its time, from its JSON log lines and the fork/exit times.

    python benchmarks/log_timeline.py LOG [LOG ...]

``LOG`` is a stderr file kept by ``bench_delivery.py --logs-dir`` (JSON lines, one event
each, with an ISO-8601 ``timestamp``); the ``LOG`` stem's ``.times.json`` beside it holds
when the harness forked the process and reaped it. Prints, per event name, how many there
were and when the first and the last came (seconds after the fork), in order of the first,
then the time from the last event to the exit. The gap from the fork to the first event is
start-up (interpreter, imports, configuration); the gaps between events show the phases.
Event names are not assumed, so this works whatever the engine logs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any


def events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "timestamp" in record and "event" in record:
            stamp = datetime.datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
            record["_at"] = stamp.timestamp()
            found.append(record)
    return found


def timeline(log: Path) -> list[str]:
    sidecar = log.with_suffix(".times.json")
    records = events(log)
    if not records:
        return [f"{log}: no JSON events"]
    times = json.loads(sidecar.read_text()) if sidecar.exists() else None
    origin = times["forked"] if times else records[0]["_at"]
    per_event: dict[str, list[float]] = {}
    for record in records:
        per_event.setdefault(str(record["event"]), []).append(record["_at"] - origin)
    lines = [f"{log.name} (seconds after {'the fork' if times else 'the first event'})"]
    for name, stamps in sorted(per_event.items(), key=lambda item: item[1][0]):
        span = f"{stamps[0]:7.3f}" + (f" .. {stamps[-1]:7.3f}" if len(stamps) > 1 else "")
        lines.append(f"  {name:<28} x{len(stamps):<5} {span}")
    if times:
        last = records[-1]["_at"] - origin
        total = times["exited"] - times["forked"]
        lines.append(
            f"  {'(exit)':<28} {'':6} {total:7.3f}  (last event -> exit {total - last:.3f})"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    for log in parser.parse_args().logs:
        print("\n".join(timeline(log)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
