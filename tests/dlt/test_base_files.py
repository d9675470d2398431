"""The shared dlt driver splits a delivery into bounded files of whole batches."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import floe_sink_dlt.base as base
from floe_sink import SinkConfig, checksum_of, idempotency_key
from floe_sink_dlt.base import BatchReceipt, DltSink, SinkSettings


class _Collecting(DltSink):
    sink_type = "collecting"
    default_batch_size = 20

    def __init__(self, settings: SinkSettings) -> None:
        super().__init__(settings)
        self.delivered: list[tuple[str, pa.RecordBatch]] = []

    @classmethod
    def from_config(cls, config: SinkConfig) -> _Collecting:
        return cls(SinkSettings.from_config(config, default_batch_size=cls.default_batch_size))

    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        self.delivered.append((key, batch))
        return BatchReceipt(rows=batch.num_rows)


@pytest.mark.requirement("4G-FR-008")
def test_a_delivery_larger_than_a_file_arrives_whole_with_the_input_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt re-reads each file with pyarrow's pre_buffer, which holds what it read until the
    # file closes: files are bounded, and each must hold whole batches (one key per batch).
    monkeypatch.setattr(base, "_ROWS_PER_FILE", 50)  # 40 rows: two batches of 20 per file
    sink = _Collecting.from_config(
        SinkConfig(
            sink_type="collecting",
            connection_config={"destination": "files", "pipelines_dir": str(tmp_path)},
        )
    )
    assert sink._rows_per_file() == 40
    table = pa.table({"id": pa.array(range(1_000), pa.int64())})

    result = sink.write(table)

    assert result.success, result.errors
    assert result.rows_delivered == 1_000
    assert result.checksum == checksum_of(table)
    assert len(sink.delivered) == 50
    expected = {
        idempotency_key("files", table.slice(position * 20, 20), position) for position in range(50)
    }
    assert {key for key, _ in sink.delivered} == expected
    files = list(tmp_path.rglob("floe_batches.*.parquet"))  # completed jobs stay on disk
    assert len(files) == 25, files
    ids = sorted(i for _, batch in sink.delivered for i in batch.column("id").to_pylist())
    assert ids == list(range(1_000))
