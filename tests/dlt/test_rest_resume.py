"""Crash and resume: a rest_api write killed mid-delivery, then run again.

Round 1's version of this test was flaky at concurrency 3 under CPU load: dlt's load package
resumed with a stale per-job offset and lost rows 900-949. The cause is gone with the package:
the journal records each batch when its request succeeded, whatever thread sent it, and a
resume re-reads the same rows and skips exactly the recorded batches.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures.http_server import RecordingServer

CHILD = Path(__file__).with_name("rest_child.py")
ROWS = 1_000
BATCH = 50
KILL_AFTER = 6  # batches applied when the client is killed (before it sees the answer)


def run_child(server: RecordingServer, state_dir: Path, concurrency: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            server.url_for("/records"),
            str(state_dir),
            str(ROWS),
            str(BATCH),
            str(concurrency),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(child: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    return dict(json.loads(stdout.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.requirement("4G-FR-008")
@pytest.mark.requirement("4G-FR-016")
@pytest.mark.parametrize("concurrency", [1, 3])
def test_killed_delivery_resumes_without_duplicates_or_gaps(
    http_server: RecordingServer, tmp_path: Path, concurrency: int
) -> None:
    victim: list[subprocess.Popen[str]] = []

    def kill_client(batches_applied: int) -> None:
        # runs in the server after a batch was applied and before it is answered: the
        # client dies not knowing the batch arrived, the worst moment for a duplicate
        if batches_applied == KILL_AFTER and victim:
            os.kill(victim[0].pid, signal.SIGKILL)

    http_server.on_apply = kill_client
    if concurrency > 1:
        http_server.delay = 0.01  # keep several batches in flight at the kill
    first = run_child(http_server, tmp_path, concurrency)
    victim.append(first)
    first.communicate(timeout=120)
    assert first.returncode == -signal.SIGKILL
    assert KILL_AFTER <= len(http_server.applied_per_key) < ROWS // BATCH

    http_server.on_apply = None
    result = result_of(run_child(http_server, tmp_path, concurrency))

    assert result["success"], result["errors"]
    assert result["rows_delivered"] == ROWS
    assert result["resumed_batches"] >= KILL_AFTER - concurrency  # acknowledged: not resent
    ids = sorted(row["id"] for row in http_server.applied)
    assert ids == list(range(ROWS))  # none missing, none twice
    assert http_server.keys_applied_twice == []
    assert len(http_server.applied_per_key) == ROWS // BATCH
    # only batches in flight at the kill (at most `concurrency`) were sent again, each under
    # its own key; the batch being answered at the kill is one of them
    sent_twice = [key for key, count in http_server.requests_per_key.items() if count > 1]
    assert 1 <= len(sent_twice) <= concurrency
    assert max(http_server.requests_per_key.values()) == 2
