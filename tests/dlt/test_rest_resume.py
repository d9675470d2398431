"""Crash and resume: a rest_api write killed mid-delivery, then run again."""

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


def run_child(
    server: RecordingServer, pipelines_dir: Path, concurrency: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            server.url_for("/records"),
            str(pipelines_dir),
            str(ROWS),
            str(BATCH),
            str(concurrency),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
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
    assert result["resumed_rows"] > 0  # the interrupted package was delivered first
    ids = sorted(row["id"] for row in http_server.applied)
    assert ids == list(range(ROWS))  # none missing, none twice
    assert http_server.keys_applied_twice == []
    assert len(http_server.applied_per_key) == ROWS // BATCH
    # the batch in flight at the kill was sent again under the same key, and not re-applied
    assert max(http_server.requests_per_key.values()) >= 2
