"""The ``rest_api`` sink: batches of rows as JSON to an HTTP endpoint.

Configuration (``SinkConfig.connection_config``; ``batch_size`` defaults to 500):

``url`` (required)
    Where batches are sent (``http://`` or ``https://``).
``method``
    ``POST`` (default), ``PUT`` or ``PATCH``.
``records_key``
    Wrap each batch's JSON array in an object under this key: ``{"records": [...]}`` (without
    a ``template``; a template says where its records go).
``headers``
    Extra request headers (names and values are strings). ``Authorization`` is refused here:
    the credentials come from the secret.
``token``
    From the destination's secret (key ``token``): sent as ``Authorization: Bearer <token>``
    when there is no ``auth``. A :class:`floe_sink.secrets.Secret` or a string; never logged.
    Required when the config holds any Secret and no ``auth`` (a Secret without ``token`` is
    refused, naming the keys it has).
``auth``
    Another authentication (:mod:`floe_sink_dlt.saas.auth`): ``{type: bearer}`` (secret key
    ``token``), ``{type: api_key, header: X-Api-Key, prefix: ""}`` (``api_key``),
    ``{type: basic}`` (``username``, ``password``), ``{type: oauth2_client_credentials,
    token_url: ..., scope: ..., audience: ..., client_auth: basic|post}`` (``client_id``,
    ``client_secret``). The values always come from the destination's secret.
``template``
    The JSON shape of a record and of a request (:mod:`floe_sink_dlt.saas.template_syntax`).
``results``
    How to read per-record results out of an answer (:mod:`floe_sink_dlt.saas.results`).
``record_key``
    The column whose values the answers name records by (``results`` by key); default the
    template's first ``required: true`` column.
``max_body_bytes``, ``max_records_per_request``
    Limits of one request: a batch is cut into as many requests as they need.
``max_requests_per_second``
    Client-side rate limit across all requests of a write, retries included (default: none).
``rate_limit_headers``
    The response headers that say how many requests remain and when the count resets
    (:mod:`floe_sink_dlt.saas.pacing`); the common ``X-RateLimit-*`` names by default.
``preset``, ``preset_parameters``
    A ready-made destination (:mod:`floe_sink_dlt.saas.presets`): its config, with the
    parameters filled in, under the destination's own keys (a key given here wins).
``delete``
    The request that deletes records for ``sync: mirror``: a ``url`` naming the key
    (``.../contacts/{email}``, one request per key) or a body ``template`` of many keys, a
    ``method``, limits and ``results`` as above.
``max_concurrency``
    Batches in flight at once (default 1). Every batch keeps its idempotency key, and a batch
    is acknowledged in the journal only once its requests are settled.
``record_ids_path``
    Where the response holds the IDs of the created records, e.g. ``data[*].id`` or ``ids``
    (see :mod:`floe_sink_dlt.record_ids`); they go to ``EgressResult.destination_record_ids``.
    The response is parsed only when this is set.
``timeout``
    Seconds for one request (default: ``retry_config.timeout``, 30).

``SinkConfig.write_disposition`` must be ``append``; ``primary_key`` names the keys deletes
send.

Two ways of delivering:

* *plain* (no ``template``, ``results``, ``preset`` or request limits): one request per batch,
  a JSON array of the rows; any 4xx but 429 fails the write at once with the status and the
  start of the response body;
* *per record* (any of them): every row ends delivered or rejected (filed in the dead-letter
  store, sent again by the next ``changes``/``mirror`` run); see
  :mod:`floe_sink_dlt.rest_records`.

Every request carries an ``Idempotency-Key`` header, the same whenever the same records are
sent again (a retry, a resumed run). 429, 5xx, timeouts and connection errors are retried with
exponential backoff and jitter, honouring ``Retry-After``. The JSON encoding of values is
described in :mod:`floe_sink_dlt.json_encoding`.

The rooms of the sink: :mod:`floe_sink_dlt.rest_options` reads and checks the options (no
pyarrow, no httpx: ``floe-sink validate`` loads neither), :mod:`floe_sink_dlt.rest_client`
is the HTTP client of a write, :mod:`floe_sink_dlt.rest_records` sends a batch record by
record and settles each one, and this module runs the life cycle of a write.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from floe_sink import SinkConfig
from floe_sink.errors import ErrorCategory, SinkConfigurationError, SinkWriteError
from floe_sink.idempotency import idempotency_key
from floe_sink.logs import get_logger
from floe_sink.secrets import safe_url
from floe_sink_dlt.base import BatchReceipt, BatchSink, SinkSettings
from floe_sink_dlt.rest_options import KEYS, RestApiOptions, first_required
from floe_sink_dlt.saas.results import RecordStatus, ResultsSpec

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

    from floe_sink_dlt.rest_client import RestClient
    from floe_sink_dlt.rest_records import Answer, BatchOutcome
    from floe_sink_dlt.saas.presets import DeleteParts
    from floe_sink_dlt.saas.template import CompiledTemplate

__all__ = ["BODY_EXCERPT_CHARS", "KEYS", "RECORD_ROUNDS", "RestApiOptions", "RestApiSink"]

log = get_logger(__name__)

BODY_EXCERPT_CHARS: Final = 200
"""Characters of a refused request's response body quoted in the error."""

RECORD_ROUNDS: Final = 3
"""How many times a record is sent in all when answers leave it retryable (a request refused
for other records, an answer that does not say): then it is rejected, to go next run."""


class RestApiSink(BatchSink):
    """Delivers batches as JSON requests; see the module docstring for the configuration."""

    sink_type = "rest_api"
    default_batch_size = 500

    def __init__(self, settings: SinkSettings, options: RestApiOptions) -> None:
        super().__init__(settings)
        self.options = options
        self.concurrency = options.max_concurrency
        self.supports_deletes = options.delete is not None
        self._client: RestClient | None = None
        self._client_lock = threading.Lock()
        self._compiled: CompiledTemplate | None = None
        self._delete_compiled: dict[pa.Schema, CompiledTemplate] = {}

    @classmethod
    def from_config(cls, config: SinkConfig) -> RestApiSink:
        """Validate ``config`` and build the sink (nothing is sent yet).

        Raises:
            SinkConfigurationError: A key is missing, unknown or invalid (it is named).
        """
        try:
            settings = SinkSettings.from_config(config, default_batch_size=cls.default_batch_size)
        except SinkConfigurationError as exc:
            raise SinkConfigurationError(
                exc.message, sink_type=config.sink_type, destination=config.destination
            ) from exc
        options = RestApiOptions.from_config(config, default_timeout=settings.retry.timeout)
        return cls(settings, options)

    def describe(self) -> str:
        """The destination name, method and URL (without credentials or query)."""
        return f"{self.settings.destination} ({self.options.method} {safe_url(self.options.url)})"

    def __repr__(self) -> str:
        return f"RestApiSink({self.describe()})"

    # -- checks that need the schema (no connection) ------------------------------------------

    def schema_problems(self, schema: pa.Schema) -> list[str]:
        """Every reason the configuration cannot deliver batches of ``schema`` (mapped names).

        The template's columns and conversions, the record key, and the delete template's
        columns (against the key columns). Empty when it can.
        """
        options = self.options
        problems: list[str] = []
        if options.template is not None:
            problems.extend(options.template.problems(schema))
            key = options.record_key
            if key is not None and schema.get_field_index(key) < 0:
                problems.append(
                    f"config.record_key: column {key!r} is not in the table; columns: "
                    f"{', '.join(schema.names) or '(none)'}"
                )
        delete = options.delete
        if delete is not None and options.key_columns:
            import pyarrow as pa

            fields = [schema.field(name) for name in options.key_columns if name in schema.names]
            keys = pa.schema(fields)
            if delete.template is not None:
                problems.extend(delete.template.problems(keys))
            for name in delete.url_columns:
                if name not in keys.names:
                    problems.append(
                        f"config.delete.url: column {name!r} is not a key column; keys: "
                        f"{', '.join(options.key_columns)}"
                    )
        return problems

    def check_schema(self, schema: pa.Schema) -> None:
        """Refuse a configuration that cannot deliver batches of ``schema`` (mapped names),
        before anything is read or sent: ``floe-sink run``, ``run --dry-run`` and ``plan``
        call it with the table's mapped schema.

        Raises:
            SinkConfigurationError: Naming every problem (see :meth:`schema_problems`).
        """
        problems = self.schema_problems(schema)
        if problems:
            raise self._config_error("; ".join(problems))

    def _config_error(self, message: str) -> SinkConfigurationError:
        return SinkConfigurationError(
            message, sink_type=self.sink_type, destination=self.settings.destination
        )

    def _compile(self, schema: pa.Schema) -> CompiledTemplate:
        template = self.options.template
        assert template is not None
        self.check_schema(schema)
        try:
            return template.compile(schema)
        except SinkConfigurationError as exc:  # pragma: no cover - check_schema found it
            raise self._config_error(exc.message) from None

    # -- the client, one per write ----------------------------------------------------------

    def prepare(self, schema: pa.Schema) -> None:
        """Compile the template for ``schema`` and open the HTTP client (keep-alive
        connections for the whole write).

        Raises:
            SinkConfigurationError: The template names a column the table lacks, or asks a
                conversion its type cannot take (before anything is sent).
        """
        self._compiled = None
        if self.options.per_record and len(schema):
            self._compiled = self._compile(schema)
        self._open()

    def finish(self, *, success: bool) -> None:
        """Close the HTTP client (and the OAuth2 token client)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def open_deletes(self) -> None:
        """Open the client for a delivery's deletes."""
        self._open()

    def close_deletes(self) -> None:
        """Close the client of the deletes."""
        self.finish(success=True)

    def _open(self) -> RestClient:
        with self._client_lock:
            if self._client is None:
                from floe_sink_dlt.rest_client import RestClient  # httpx: only for a write

                self._client = RestClient(
                    self.options,
                    sink_type=self.sink_type,
                    destination=self.settings.destination,
                    max_wait=max(self.settings.retry.max_wait, 1.0),
                )
            return self._client

    # -- one batch --------------------------------------------------------------------------

    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Send ``batch`` under ``key``, retrying transient failures.

        Plain: one request, the JSON array of the rows. Per record: as many requests as the
        limits need, each answer judged per record (see :mod:`floe_sink_dlt.rest_records`).

        Raises:
            SinkConnectionError: The endpoint could not be reached, after every retry.
            SinkWriteError: The endpoint answered 429 or 5xx after every retry (transient),
                or refused with another status (permanent): in plain mode any 4xx, per record
                only a fatal one (401, 403, 404, ...), the others settle records.
        """
        if not self.options.per_record:
            return self._deliver_plain(batch, key=key)
        client = self._open()
        compiled = self._compiled
        if compiled is None or not compiled.schema.equals(batch.schema):
            compiled = self._compiled = self._compile(batch.schema)
        started = time.perf_counter()
        options = self.options
        outcome = self._send_each(
            client,
            batch,
            key=key,
            compiled=compiled,
            request=options,
            key_column=options.record_key,
        )
        return self._receipt(batch, key, outcome, started, event="batch_delivered")

    def _send_each(
        self,
        client: RestClient,
        batch: pa.RecordBatch,
        *,
        key: str,
        compiled: CompiledTemplate,
        request: RestApiOptions | DeleteParts,
        key_column: str | None,
    ) -> BatchOutcome:
        """Send ``batch`` record by record as ``request`` says (method, URL, limits, results):
        as many requests as the limits need, each answer judged per record."""
        from floe_sink_dlt.rest_records import send_records

        return send_records(
            batch,
            key=key,
            compiled=compiled,
            results=request.results,
            post=lambda body, request_key: self._post(
                client, request.method, request.url, body, key=request_key, results=request.results
            ),
            key_column=key_column,
            max_body_bytes=request.max_body_bytes,
            max_records=request.max_records_per_request,
            max_rounds=RECORD_ROUNDS,
            describe=lambda answer: client.scrub(_excerpt_of(answer.content)),
        )

    def _receipt(
        self,
        batch: pa.RecordBatch,
        key: str,
        outcome: BatchOutcome,
        started: float,
        *,
        event: str,
    ) -> BatchReceipt:
        record_ids: list[str] = []
        for answer in outcome.answers:
            record_ids.extend(self._ids_in(answer.content, key=key))
        log.info(
            event,
            destination=self.settings.destination,
            sink_type=self.sink_type,
            rows=outcome.delivered,
            rejected=len(outcome.rejected),
            requests=outcome.requests,
            status=outcome.last_status,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            key=key,
        )
        return BatchReceipt(
            rows=outcome.delivered,
            bytes=outcome.bytes,
            record_ids=record_ids,
            rejected=tuple(outcome.rejected),
        )

    def _deliver_plain(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        from floe_sink_dlt.json_encoding import encode_batch

        client = self._open()
        options = self.options
        body = encode_batch(batch, records_key=options.records_key)
        attempts = 0
        started = time.perf_counter()

        def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            response = client.request(options.method, options.url, body, key=key, attempt=attempts)
            status = response.status_code
            if 200 <= status < 300:
                return response
            raise client.refusal(response, attempt=attempts)

        response = self.with_retries(attempt, what="rest_api request", key=key, rows=batch.num_rows)
        record_ids = self._ids_in(response.content, key=key)
        log.info(
            "batch_delivered",
            destination=self.settings.destination,
            sink_type=self.sink_type,
            rows=batch.num_rows,
            attempt=attempts,
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
            key=key,
        )
        return BatchReceipt(rows=batch.num_rows, bytes=len(body), record_ids=record_ids)

    def _post(
        self,
        client: RestClient,
        method: str,
        url: str,
        body: bytes,
        *,
        key: str,
        results: ResultsSpec,
    ) -> Answer:
        """One request of the per-record loop: retried while the answer is retryable."""
        from floe_sink_dlt.rest_records import Answer

        attempts = 0

        def attempt() -> Answer:
            nonlocal attempts
            attempts += 1
            response = client.request(method, url, body, key=key, attempt=attempts)
            if response.status_code in results.retryable_statuses:
                raise client.refusal(response, attempt=attempts, transient=True)
            return Answer(
                status=response.status_code,
                headers=dict(response.headers),
                content=response.content,
                reason=response.reason_phrase,
            )

        answer: Answer = self.with_retries(attempt, what="rest_api request", key=key)
        return answer

    def _ids_in(self, content: bytes, *, key: str) -> list[str]:
        path = self.options.record_ids_path
        if path is None:
            return []
        try:
            document = json.loads(content) if content else None
        except ValueError:
            log.warning(
                "record_ids_unreadable",
                destination=self.settings.destination,
                reason="the response is not JSON",
                key=key,
            )
            return []
        return path.find(document)

    # -- deletes (sync: mirror) -------------------------------------------------------------

    def delete_keys(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Delete the records of one batch of keys (destination names) under ``key``.

        With a body template: as many requests as the limits need, judged per record like the
        upserts. With the key in the URL: one request per key, no body; an answer in
        ``absent_statuses`` (404, 410) means the record is not there: deleted.

        Raises:
            SinkWriteError: A fatal answer, or a retryable one after every retry.
            SinkConnectionError: The endpoint could not be reached, after every retry.
        """
        delete = self.options.delete
        if delete is None:
            raise NotImplementedError("rest_api has no 'delete' configured")
        client = self._open()
        started = time.perf_counter()
        if delete.template is not None:
            compiled = self._delete_compiled.get(batch.schema)
            if compiled is None:
                try:
                    compiled = delete.template.compile(batch.schema)
                except SinkConfigurationError as exc:
                    raise self._config_error(exc.message) from None
                self._delete_compiled[batch.schema] = compiled
            key_column = first_required(delete.template) or (
                self.options.key_columns[0] if self.options.key_columns else None
            )
            outcome = self._send_each(
                client, batch, key=key, compiled=compiled, request=delete, key_column=key_column
            )
        else:
            outcome = self._delete_one_by_one(client, batch, key=key, delete=delete)
        return self._receipt(batch, key, outcome, started, event="batch_deleted")

    def _delete_one_by_one(
        self, client: RestClient, batch: pa.RecordBatch, *, key: str, delete: DeleteParts
    ) -> BatchOutcome:
        from floe_sink.delivery import Rejection
        from floe_sink_dlt.rest_records import BatchOutcome, record_keys

        outcome = BatchOutcome()
        columns = {name: record_keys(batch, name) for name in delete.url_columns}
        for row in range(batch.num_rows):
            values = {name: texts[row] for name, texts in columns.items()}
            empty = [name for name, value in values.items() if value == ""]
            if empty:
                outcome.rejected.append(
                    Rejection(
                        index=row,
                        status="invalid",
                        message=f"not sent: the key column(s) {', '.join(map(repr, empty))} "
                        "are null or empty",
                    )
                )
                continue
            url = delete.url_for(values)
            request_key = f"{key}-{row}"
            answer = self._post(
                client, delete.method, url, b"", key=request_key, results=delete.results
            )
            outcome.requests += 1
            outcome.last_status = answer.status
            if answer.status in delete.absent_statuses:
                outcome.delivered += 1
                continue
            verdict = delete.results.judge(
                [str(row)], answer.status, answer.headers, answer.content
            )
            if verdict.fatal:
                raise SinkWriteError(
                    f"HTTP {answer.status} {answer.reason}, the destination refused the delete "
                    f"(not the record): {client.scrub(_excerpt_of(answer.content))}",
                    category=ErrorCategory.PERMANENT,
                    status=answer.status,
                    **client.context(delete.url, 1),
                )
            (result,) = verdict.outcomes
            if result.status is RecordStatus.DELIVERED:
                outcome.delivered += 1
                if 200 <= answer.status < 300:
                    outcome.answers.append(answer)
            else:
                outcome.rejected.append(
                    Rejection(
                        index=row,
                        status=str(answer.status),
                        message=result.message or f"HTTP {answer.status}",
                    )
                )
        return outcome

    # -- what a dry run shows ---------------------------------------------------------------

    def preview(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The rows of ``batch`` as they are sent: each record of the request body, parsed
        (a record the template does not shape as an object is shown under ``record``)."""
        from floe_sink_dlt.json_encoding import encode_batch

        if not self.options.per_record:
            rows: list[dict[str, Any]] = json.loads(encode_batch(batch))
            return rows
        compiled = self._compile(batch.schema)
        records = compiled.encode_records(batch).to_pylist()
        shown: list[dict[str, Any]] = []
        for text in records:
            value = json.loads(text)
            shown.append(value if isinstance(value, dict) else {"record": value})
        return shown

    def preview_request(self, batch: pa.RecordBatch) -> dict[str, Any]:
        """The first request a delivery of ``batch`` (its first rows) sends, exactly as sent:
        method, URL (without credentials or query), the headers but authentication, the
        number of records and the body. Connects to nothing.

        Raises:
            SinkConfigurationError: The template does not fit the table.
        """
        from floe_sink_dlt.json_encoding import encode_batch
        from floe_sink_dlt.saas.splitting import plan_requests

        options = self.options
        first = batch.slice(0, self.settings.batch_size)
        key = idempotency_key(self.settings.destination, first, 0)
        unsent = 0
        if not options.per_record:
            body = encode_batch(first, records_key=options.records_key)
            count = first.num_rows
        else:
            compiled = self._compile(batch.schema)
            sendable = first
            invalid = compiled.required_nulls(first)
            if invalid is not None and invalid.true_count:
                import pyarrow.compute as pc

                unsent = invalid.true_count
                sendable = first.filter(pc.invert(invalid))
            records = compiled.encode_records(sendable)
            plan = plan_requests(
                records,
                envelope_bytes=compiled.envelope_bytes,
                max_body_bytes=options.max_body_bytes,
                max_records=options.max_records_per_request,
            )
            unsent += len(plan.oversized)
            start, stop = plan.ranges[0] if plan.ranges else (0, 0)
            body = compiled.body(records.slice(start, stop - start))
            count = stop - start
            if stop - start != sendable.num_rows or plan.oversized:
                from floe_sink_dlt.rest_records import request_key

                key = request_key(key, range(start, stop), 1, whole=False)
        headers = {**options.headers, "Content-Type": "application/json", "Idempotency-Key": key}
        return {
            "method": options.method,
            "url": safe_url(options.url),
            "headers": headers,
            "records": count,
            "rejected_unsent": unsent,
            "bytes": len(body),
            "body": body.decode("utf-8"),
        }


def _excerpt_of(content: bytes) -> str:
    """The start of a response body, on one line, for an error message."""
    text = content[: BODY_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > BODY_EXCERPT_CHARS:
        return text[: BODY_EXCERPT_CHARS - 3] + "..."
    return text or "(empty body)"
