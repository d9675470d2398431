"""Per-record delivery of one batch: the loop of the ``rest_api`` sink when it has a template.

:func:`send_records` takes one batch (mapped names) and a ``post`` function that sends one
request body and returns the answer (retrying 429/5xx and transport errors itself, as every
request of the sink does). It settles every row of the batch as delivered or rejected:

1. rows whose ``required: true`` template fields are null are rejected without a request;
2. the other rows are encoded once (:meth:`CompiledTemplate.encode_records`) and cut into
   requests within ``max_body_bytes`` and ``max_records_per_request``
   (:func:`~floe_sink_dlt.saas.splitting.plan_requests`); a record over ``max_body_bytes``
   on its own is rejected unsent;
3. each answer is judged per record (:meth:`ResultsSpec.judge`): delivered, rejected (the
   status and the API's message), or retryable. A fatal answer (401, 403, 404, ...) fails the
   batch with :class:`~floe_sink.errors.SinkWriteError`: the destination is misconfigured, not
   the records;
4. a refusal that names no record is bisected (:func:`~floe_sink_dlt.saas.bisection.bisect`),
   so that the good records go through and only the bad ones are rejected;
5. retryable records (an answer that did not say what became of them, a request refused for
   other records) are sent again as a request of their own, at most ``max_rounds`` times in
   all; still unsettled, they are rejected with the last answer's status and message, so they
   stay unsynced and the next ``changes``/``mirror`` run sends them again.

Rejections carry the row of the batch (``index``): the core files them in the dead-letter
store with the record as sent. The API's messages may quote the record's values, so they go
only there, never into a log event or an exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from floe_sink.delivery import Rejection
from floe_sink.errors import ErrorCategory, SinkWriteError
from floe_sink_dlt.json_encoding import encode_values
from floe_sink_dlt.saas.bisection import bisect
from floe_sink_dlt.saas.results import RecordOutcome, RecordStatus, ResponseVerdict, ResultsSpec
from floe_sink_dlt.saas.splitting import plan_requests
from floe_sink_dlt.saas.template import CompiledTemplate

__all__ = [
    "INVALID",
    "TOO_LARGE",
    "Answer",
    "BatchOutcome",
    "Post",
    "record_keys",
    "request_key",
    "send_records",
]

INVALID: Final = "invalid"
"""The status of a row rejected unsent: a required template field is null."""
TOO_LARGE: Final = "too_large"
"""The status of a row rejected unsent: alone it is over ``max_body_bytes``."""

_EXCERPT_CHARS: Final = 200


@attrs.frozen(kw_only=True)
class Answer:
    """An HTTP answer: what judging it needs."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    reason: str = ""


Post = Callable[[bytes, str], Answer]
"""Sends one request body under an idempotency key; returns the answer (any status but a
retryable one: those are retried inside, and raise once retries run out)."""


@attrs.define(kw_only=True)
class BatchOutcome:
    """What became of the rows of one batch."""

    delivered: int = 0
    rejected: list[Rejection] = attrs.field(factory=list)
    bytes: int = 0
    requests: int = 0
    answers: list[Answer] = attrs.field(factory=list)
    """The 2xx answers, in order (the sink reads record ids out of them)."""
    last_status: int | None = None


def request_key(key: str, positions: Sequence[int], rounds: int, *, whole: bool) -> str:
    """The ``Idempotency-Key`` of one request of a batch.

    The batch's own key when the request carries the whole batch on its first round (so a
    batch sent in one request keeps the key it always had); else the key with a suffix from
    the records it carries and the round, the same whenever the same records are sent again.
    """
    if whole and rounds == 1:
        return key
    digest = hashlib.sha256(f"{rounds}:{','.join(map(str, positions))}".encode()).hexdigest()
    return f"{key}-{digest[:16]}"


def record_keys(batch: pa.RecordBatch, column: str | None) -> list[str]:
    """The text of each row's key (what an API's answer names it by), or the row numbers.

    Strings stay as they are; other values become their JSON text (``12``, ``true``); a null
    becomes the empty string (no answer names it).
    """
    if column is None:
        return [str(position) for position in range(batch.num_rows)]
    values = batch.column(column)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        text = pc.cast(values, pa.string())
    else:
        text = encode_values(values)
        if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
            text = pc.utf8_slice_codeunits(text, 1, -1)  # the JSON string, unquoted
    keys: list[str] = pc.fill_null(text, "").to_pylist()
    return keys


def _null_columns_message(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names)
    return f"not sent: the template requires a value in column(s) {shown}, and it is null"


def send_records(
    batch: pa.RecordBatch,
    *,
    key: str,
    compiled: CompiledTemplate,
    results: ResultsSpec,
    post: Post,
    key_column: str | None = None,
    max_body_bytes: int | None = None,
    max_records: int | None = None,
    max_rounds: int = 3,
    describe: Callable[[Answer], str] | None = None,
) -> BatchOutcome:
    """Deliver ``batch`` record by record (see the module docstring).

    Args:
        batch: Rows with the schema ``compiled`` was compiled for.
        key: The batch's idempotency key.
        compiled: The request template.
        results: How to read the answers.
        post: Sends one body (see :data:`Post`).
        key_column: The column an API's answers name records by (``results.key``).
        max_body_bytes: The most bytes one body may have.
        max_records: The most records one request may carry.
        max_rounds: How many times a record may be sent in all, when answers leave it
            retryable.
        describe: The text of a fatal answer for the error (default: status and excerpt).

    Returns:
        The outcome: rows delivered, rejections (rows of ``batch``), bytes and requests sent.

    Raises:
        SinkWriteError: A fatal answer (permanent), or a retryable one after every retry.
        SinkConnectionError: The endpoint could not be reached, after every retry.
    """
    outcome = BatchOutcome()
    rows = batch.num_rows
    origin: pa.Array | None = None  # row of the batch of each record sent (None: the same)
    invalid = compiled.required_nulls(batch)
    sendable = batch
    if invalid is not None and invalid.true_count:
        bad = pc.indices_nonzero(invalid).to_pylist()
        masks = [
            (name, pc.is_null(leaf(batch)).to_pylist())
            for name, leaf in compiled.required
            if leaf(batch).null_count
        ]
        for index in bad:
            names = [name for name, mask in masks if mask[index]]
            outcome.rejected.append(
                Rejection(index=index, status=INVALID, message=_null_columns_message(names))
            )
        origin = pc.indices_nonzero(pc.invert(invalid))
        sendable = batch.take(origin)
    if sendable.num_rows == 0:
        return outcome
    records = compiled.encode_records(sendable)
    keys = record_keys(sendable, key_column)
    plan = plan_requests(
        records,
        envelope_bytes=compiled.envelope_bytes,
        max_body_bytes=max_body_bytes,
        max_records=max_records,
    )
    rows_of = origin.to_pylist() if origin is not None else None

    def row(position: int) -> int:
        return rows_of[position] if rows_of is not None else position

    for position in plan.oversized:
        outcome.rejected.append(
            Rejection(
                index=row(position),
                status=TOO_LARGE,
                message=f"not sent: the record alone is over max_body_bytes ({max_body_bytes})",
            )
        )

    def send(positions: Sequence[int], rounds: int) -> ResponseVerdict | None:
        """One request of ``positions``: its verdict, or ``None`` when it accepted them all."""
        first, count = positions[0], len(positions)
        if positions[-1] - first + 1 == count:
            taken = records.slice(first, count)
        else:
            taken = records.take(pa.array(positions, pa.int64()))
        body = compiled.body(taken)
        whole = count == sendable.num_rows
        answer = post(body, request_key(key, positions, rounds, whole=whole))
        outcome.requests += 1
        outcome.bytes += len(body)
        outcome.last_status = answer.status
        if results.all_delivered(count, answer.status, answer.headers, answer.content):
            outcome.answers.append(answer)
            return None
        verdict = results.judge(
            [keys[p] for p in positions], answer.status, answer.headers, answer.content
        )
        if verdict.fatal:
            text = describe(answer) if describe is not None else _describe(answer)
            raise SinkWriteError(
                f"HTTP {answer.status} {answer.reason}, the destination refused the request "
                f"(not the records): {text}".replace("  ", " "),
                category=ErrorCategory.PERMANENT,
                status=answer.status,
            )
        if 200 <= answer.status < 300:
            outcome.answers.append(answer)
        return verdict

    def judged(positions: Sequence[int], rounds: int) -> ResponseVerdict:
        verdict = send(positions, rounds)
        if verdict is not None:
            return verdict
        return ResponseVerdict(
            http_status=outcome.last_status or 200,
            outcomes=tuple(
                RecordOutcome(
                    position=index,
                    key="",
                    status=RecordStatus.DELIVERED,
                    http_status=outcome.last_status or 200,
                )
                for index in range(len(positions))
            ),
        )

    def settle(positions: Sequence[int], rounds: int) -> None:
        verdict = send(positions, rounds)
        if verdict is None:  # every record accepted
            outcome.delivered += len(positions)
            return
        settled: Sequence[RecordOutcome] = verdict.outcomes
        if verdict.bisect:

            def again(group: Sequence[int]) -> ResponseVerdict:
                return judged([positions[index] for index in group], rounds)

            settled = bisect(verdict, again).outcomes
        retry: list[int] = []
        last: dict[int, RecordOutcome] = {}
        for result in settled:
            position = positions[result.position]
            if result.status is RecordStatus.DELIVERED:
                outcome.delivered += 1
            elif result.status is RecordStatus.REJECTED:
                outcome.rejected.append(
                    Rejection(
                        index=row(position),
                        status=str(result.http_status),
                        message=result.message or f"HTTP {result.http_status}",
                        attempts=rounds,
                    )
                )
            else:
                retry.append(position)
                last[position] = result
        if not retry:
            return
        if rounds < max_rounds:
            settle(retry, rounds + 1)
            return
        for position in retry:
            result = last[position]
            outcome.rejected.append(
                Rejection(
                    index=row(position),
                    status=str(result.http_status),
                    message=f"{result.message or 'not accepted'} (still not accepted after "
                    f"{rounds} attempts)",
                    attempts=rounds,
                )
            )

    for start, stop in plan.ranges:
        settle(range(start, stop), 1)
    outcome.rejected.sort(key=lambda rejection: rejection.index)
    assert outcome.delivered + len(outcome.rejected) == rows
    return outcome


def _describe(answer: Answer) -> str:
    text = answer.content[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > _EXCERPT_CHARS:
        return text[: _EXCERPT_CHARS - 3] + "..."
    return text or "(empty body)"
