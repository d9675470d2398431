"""floe-sink-webhook: the ``webhook`` sink POSTs each batch as a JSON array to a URL.

``connection_config``: ``url`` (required, http or https), ``token`` (optional, sent as
``Authorization: Bearer ...``; put it in the destination's secret, never in floe.yaml),
``headers`` (optional, extra headers). Every request carries an ``Idempotency-Key`` header that
is the same when the same batch is sent again, so a receiver can apply each batch once.

Batching, keys and the journal come from the core's delivery loop,
:func:`floe_sink.deliver_batches`: the plugin only says how to send one batch. A run that was
interrupted is resumed exactly: the batches it delivered are not sent again.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import httpx

import floe_sink
from floe_sink import (
    EgressResult,
    ErrorCategory,
    SinkConfig,
    SinkConfigurationError,
    SinkConnectionError,
    SinkWriteError,
)
from floe_sink.secrets import reveal

if TYPE_CHECKING:
    import pyarrow as pa

SINK_TYPE = "webhook"
DEFAULT_BATCH_SIZE = 500


@attrs.frozen(kw_only=True)
class WebhookSink:
    """What ``write`` needs, validated once by ``create_sink``."""

    url: str
    headers: dict[str, str] = attrs.field(repr=False)  # may hold the bearer token
    batch_size: int
    field_mapping: dict[str, str] | None
    retry: floe_sink.RetryPolicy


@floe_sink.hookimpl
def list_available_sinks() -> list[str]:
    return [SINK_TYPE]


@floe_sink.hookimpl
def create_sink(config: SinkConfig) -> WebhookSink | None:
    if config.sink_type != SINK_TYPE:
        return None  # not ours (the manager only routes our types here, but be polite)
    settings = config.connection_config
    url = settings.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise SinkConfigurationError(
            "connection_config.url must be an http:// or https:// URL", sink_type=SINK_TYPE
        )
    headers = {str(key): str(value) for key, value in dict(settings.get("headers", {})).items()}
    token = settings.get("token")
    if token:
        headers["Authorization"] = f"Bearer {reveal(token)}"  # a Secret or a plain str
    return WebhookSink(
        url=url,
        headers=headers,
        batch_size=config.batch_size or DEFAULT_BATCH_SIZE,
        field_mapping=config.field_mapping,
        retry=floe_sink.RetryPolicy.from_config(config.retry_config),
    )


@floe_sink.hookimpl
def write(sink: Any, data: Any, delivery: floe_sink.Delivery | None) -> EgressResult | None:
    if not isinstance(sink, WebhookSink):
        return None
    started = time.perf_counter()
    # The command's delivery holds the journal of this delivery; used from Python directly,
    # a delivery of our own keeps it in memory for this one write.
    delivery = delivery or floe_sink.Delivery(sink.url)
    checksum = floe_sink.Checksum()
    with httpx.Client(timeout=sink.retry.timeout) as client:

        def send(batch: pa.RecordBatch, key: str) -> floe_sink.BatchReceipt:
            """POST one batch (mapped, at most batch_size rows) under its idempotency key."""
            body = json.dumps(batch.to_pylist(), default=str).encode()
            headers = {**sink.headers, "Content-Type": "application/json", "Idempotency-Key": key}
            for attempt in floe_sink.retrying(sink.retry, what="webhook batch", key=key):
                with attempt:
                    _post(client, sink.url, body, headers)
            return floe_sink.BatchReceipt(rows=batch.num_rows, bytes=len(body))

        # Maps, cuts into batch_size rows, keys each batch, skips the batches the journal
        # holds, calls send() for the others and records each one once it is delivered.
        totals = floe_sink.deliver_batches(
            data,
            delivery=delivery,
            batch_size=sink.batch_size,
            send=send,
            field_mapping=sink.field_mapping,
            checksum=checksum,
        )
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


def _post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.TransportError as exc:
        raise SinkConnectionError(f"cannot reach {url}: {exc}", sink_type=SINK_TYPE) from exc
    status = response.status_code
    if status == 429 or status >= 500:
        raise SinkWriteError(
            f"HTTP {status} from {url}",
            sink_type=SINK_TYPE,
            retry_after=floe_sink.parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 400:
        raise SinkWriteError(
            f"HTTP {status} from {url}: {response.text[:200]}",
            category=ErrorCategory.PERMANENT,
            sink_type=SINK_TYPE,
        )
