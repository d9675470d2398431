"""Small in-memory sinks for the conformance kit's own tests: one that keeps the contract and
one per way of breaking it.

Each sink type writes to a :class:`MemoryDestination` passed in ``connection_config``
(``destination``); :func:`target` builds a fresh one with its :class:`SinkTarget`, whose
faults are a :class:`CallFaults` on the destination's ``receive``.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

import floe_sink
from floe_sink import (
    EgressResult,
    ErrorCategory,
    SinkConfig,
    SinkConfigurationError,
    SinkWriteError,
)
from floe_sink.delivery import DeliveryTotals
from floe_sink.logs import get_logger
from floe_sink.secrets import reveal
from floe_sink.sync import DELETE_POSITIONS
from floe_sink.testing import BadConfig, CallFaults, SinkTarget

TOKEN = "mem-t0ken-5ecret"


class MemoryDestination:
    """Batches as received, with their keys."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.keys: list[str] = []

    def receive(self, batch: pa.RecordBatch, key: str) -> None:
        self.batches.append(batch)
        self.keys.append(key)

    def remove(self, keys: pa.RecordBatch) -> None:
        gone = keys.column("id")
        self.batches = [
            batch.filter(pc.invert(pc.is_in(batch.column("id"), value_set=gone)))
            for batch in self.batches
        ]

    def table(self, schema: pa.Schema) -> pa.Table:
        if not self.batches:
            return schema.empty_table()
        return pa.Table.from_batches(self.batches)


@attrs.frozen(kw_only=True)
class MemorySink:
    destination: MemoryDestination
    batch_size: int
    field_mapping: dict[str, str] | None
    token: str = attrs.field(repr=False)
    retry: floe_sink.RetryPolicy


class MemoryPlugin:
    """Keeps the contract: batches through deliver_batches, retries, a complete result."""

    sink_type = "memory"

    @floe_sink.hookimpl
    def list_available_sinks(self) -> list[str]:
        return [self.sink_type]

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        destination = config.connection_config.get("destination")
        if not isinstance(destination, MemoryDestination):
            raise SinkConfigurationError(
                "connection_config.destination must be a MemoryDestination",
                sink_type=config.sink_type,
            )
        return self.build(config, destination)

    def build(self, config: SinkConfig, destination: MemoryDestination) -> Any:
        return MemorySink(
            destination=destination,
            batch_size=config.batch_size or 100,
            field_mapping=config.field_mapping,
            token=reveal(config.connection_config.get("token", "")),
            retry=floe_sink.RetryPolicy.from_config(config.retry_config),
        )

    def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
        for attempt in floe_sink.retrying(sink.retry, what="memory batch"):
            with attempt:
                sink.destination.receive(batch, key)
        return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes)

    def batch_size(self, sink: Any) -> int:
        return int(sink.batch_size)

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        started = time.perf_counter()
        delivery = delivery or floe_sink.Delivery("memory")
        checksum = floe_sink.Checksum()
        totals = floe_sink.deliver_batches(
            data,
            delivery=delivery,
            batch_size=self.batch_size(sink),
            send=lambda batch, key: self.send(sink, batch, key),
            field_mapping=sink.field_mapping,
            checksum=checksum,
        )
        return self.result(delivery, totals, checksum, started)

    @floe_sink.hookimpl
    def delete(self, sink: Any, keys: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        started = time.perf_counter()
        delivery = delivery or floe_sink.Delivery("memory")
        checksum = floe_sink.Checksum()
        totals = floe_sink.deliver_batches(
            keys,
            delivery=delivery,
            batch_size=self.batch_size(sink),
            send=lambda batch, key: self.remove(sink, batch),
            checksum=checksum,
            first_position=self.first_delete_position,
        )
        return self.result(delivery, totals, checksum, started)

    first_delete_position = DELETE_POSITIONS

    def remove(self, sink: Any, batch: pa.RecordBatch) -> floe_sink.BatchReceipt:
        sink.destination.remove(batch)
        return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes)

    def result(
        self, delivery: floe_sink.Delivery, totals: Any, checksum: Any, started: float
    ) -> EgressResult:
        digest = checksum.hexdigest()
        return EgressResult(
            success=True,
            rows_delivered=totals.rows,
            bytes_transmitted=totals.bytes,
            duration_seconds=time.perf_counter() - started,
            checksum=digest,
            delivery_timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
            idempotency_key=floe_sink.idempotency_key(delivery.destination, digest),
            resumed_batches=totals.resumed_batches,
        )

    @floe_sink.hookimpl
    def get_source_config(self, catalog_config: dict[str, Any]) -> dict[str, Any]:
        return dict(catalog_config)


class WrongChecksum(MemoryPlugin):
    """Hashes the source columns, not the mapped ones it delivered."""

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        result = super().write(sink, data, delivery)
        return attrs.evolve(result, checksum=floe_sink.checksum_of(data))


class UnstableKeys(MemoryPlugin):
    """Its own loop: skips acknowledged positions, but keys each batch with a fresh nonce."""

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        started = time.perf_counter()
        delivery = delivery or floe_sink.Delivery("memory")
        checksum = floe_sink.Checksum()
        rows = sent = resumed = 0
        nonce = uuid.uuid4().hex
        for position, chunk in enumerate(floe_sink.iter_chunks(data, sink.batch_size)):
            batch = floe_sink.apply_field_mapping(chunk, sink.field_mapping)
            checksum.update(batch)
            rows += batch.num_rows
            if delivery.acknowledged(position) is not None:
                resumed += 1
                continue
            delivery.check_stop()
            key = floe_sink.idempotency_key(f"{delivery.destination}/{nonce}", batch, position)
            receipt = self.send(sink, batch, key)
            delivery.acknowledge(position, key, receipt)
            sent += receipt.bytes
        totals = DeliveryTotals(rows=rows, bytes=sent, resumed_batches=resumed)
        return self.result(delivery, totals, checksum, started)


class SwallowedErrors(MemoryPlugin):
    """Catches a failed batch and carries on as if it had been delivered."""

    def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
        try:
            return super().send(sink, batch, key)
        except floe_sink.SinkError:
            return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes)


class SecretInRepr(MemoryPlugin):
    """Its sink's repr shows the token."""

    def build(self, config: SinkConfig, destination: MemoryDestination) -> Any:
        return LeakySink(
            destination=destination,
            batch_size=config.batch_size or 100,
            field_mapping=config.field_mapping,
            token=reveal(config.connection_config.get("token", "")),
            retry=floe_sink.RetryPolicy.from_config(config.retry_config),
        )


@attrs.frozen(kw_only=True)
class LeakySink:
    destination: MemoryDestination = attrs.field(repr=False)
    batch_size: int
    field_mapping: dict[str, str] | None
    token: str  # shown by repr: the bug
    retry: floe_sink.RetryPolicy


class SecretInLogs(MemoryPlugin):
    """Logs the token with every batch."""

    def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
        get_logger("memory").info("sending", auth=f"Bearer {sink.token}")
        return super().send(sink, batch, key)


class SecretInErrors(MemoryPlugin):
    """Puts the token in the message of a failed batch (and so in the span)."""

    def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
        try:
            return super().send(sink, batch, key)
        except floe_sink.SinkError as exc:
            raise SinkWriteError(
                f"{exc} (sent with token {sink.token})", category=exc.category
            ) from exc


class IgnoresBatchSize(MemoryPlugin):
    """Sends everything as one batch."""

    def batch_size(self, sink: Any) -> int:
        return 1_000_000


class RetriesPermanentFailures(MemoryPlugin):
    """Retries whatever fails."""

    def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
        for attempt in floe_sink.retrying(sink.retry, retryable=lambda _error: True):
            with attempt:
                sink.destination.receive(batch, key)
        return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes)


class NoRetries(MemoryPlugin):
    """Gives up on the first failure, transient or not."""

    def send(self, sink: Any, batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
        sink.destination.receive(batch, key)
        return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes)


class ResendsOnResume(MemoryPlugin):
    """Hands deliver_batches a fresh journal: a resumed delivery sends everything again."""

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        assert delivery is not None
        forgetful = floe_sink.Delivery(delivery.destination, stop=delivery.stop)
        forgetful.acknowledge = delivery.acknowledge  # type: ignore[method-assign]
        return super().write(sink, data, forgetful)


class IgnoresDelivery(MemoryPlugin):
    """Declared as resuming exactly, but delivers with a journal of its own."""

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        return super().write(sink, data, None)


class DeletesNothing(MemoryPlugin):
    """Acknowledges deletes without deleting."""

    def remove(self, sink: Any, batch: pa.RecordBatch) -> floe_sink.BatchReceipt:
        return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=batch.nbytes)


class DeletesAmongTheWrites(MemoryPlugin):
    """Journals its deletes from position 0, where the write's batches are."""

    first_delete_position = 0


class LocalTimestamp(MemoryPlugin):
    """Reports the delivery time without a time zone."""

    @floe_sink.hookimpl
    def write(self, sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult:
        result = super().write(sink, data, delivery)
        return attrs.evolve(result, delivery_timestamp=datetime.now().isoformat())


class VagueConfigErrors(MemoryPlugin):
    """Refuses a bad config without saying which key is wrong."""

    @floe_sink.hookimpl
    def create_sink(self, config: SinkConfig) -> Any:
        destination = config.connection_config.get("destination")
        if not isinstance(destination, MemoryDestination):
            raise SinkConfigurationError("invalid configuration", sink_type=config.sink_type)
        return self.build(config, destination)


def target(*, faults: bool = True) -> SinkTarget:
    """A fresh in-memory destination and how the kit sees into it."""
    destination = MemoryDestination()
    injector = CallFaults(
        destination,
        "receive",
        transient=lambda: SinkWriteError("injected: try again"),
        permanent=lambda: SinkWriteError("injected: refused", category=ErrorCategory.PERMANENT),
    )
    return SinkTarget(
        config=SinkConfig(
            sink_type="memory",
            connection_config={"destination": destination, "token": TOKEN},
            retry_config={"max_attempts": 3, "initial_wait": 0, "jitter": 0},
            destination="mem",
        ),
        read_back=destination.table,
        secrets=[TOKEN],
        faults=injector if faults else None,
        sent_keys=lambda: list(destination.keys),
        batch_rows=lambda: [batch.num_rows for batch in destination.batches],
    )


def bad_configs(good: SinkTarget) -> list[BadConfig]:
    return [BadConfig.missing(good.config, "destination")]
