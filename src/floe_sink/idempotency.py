"""Deterministic idempotency keys for batches and deliveries.

A key is a SHA-256 over the destination, the batch's position in the delivery and the batch's
content checksum. Re-sending the same batch (a retry, a resumed run, another process) gives the
same key; another batch, position or destination gives another key. Receivers that honour an
``Idempotency-Key`` header (Stripe-style APIs) apply each batch once.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["KEY_PREFIX", "idempotency_key"]

KEY_PREFIX = "floe-"


def idempotency_key(destination: str, content: Any, position: int | None = None) -> str:
    """Return the idempotency key of a batch (or of a whole delivery, with no ``position``).

    Args:
        destination: What the data is sent to: the destination name, or sink type and URL.
        content: The batch (anything :class:`~floe_sink.Checksum` accepts) or its checksum
            as a hex string.
        position: The batch's index in the delivery; ``None`` for the whole delivery.

    Returns:
        ``floe-`` followed by 64 hex digits.
    """
    if isinstance(content, str):
        checksum = content
    else:
        from floe_sink.checksum import checksum_of  # pyarrow only when a batch is given

        checksum = checksum_of(content)
    where = "all" if position is None else str(position)
    material = f"{destination}\x00{where}\x00{checksum}".encode()
    return KEY_PREFIX + hashlib.sha256(material).hexdigest()
