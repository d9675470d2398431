"""What every dlt-backed sink shares: the dlt pipeline, resume, batching, keys, results.

A sink subclasses :class:`DltSink` and implements :meth:`DltSink.deliver` for one batch.
:meth:`DltSink.write` does the rest:

1. apply the field mapping, cut the data into batches of ``batch_size`` rows, and compute the
   content checksum and each batch's idempotency key (:mod:`floe_sink`'s primitives) on the
   way in;
2. hand the stream to a dlt pipeline whose destination is a ``dlt.destination`` function that
   calls :meth:`DltSink.deliver` once per batch. dlt writes the data to a load package under
   the pipeline directory and records, after every acknowledged batch, how far it got: a run
   killed half-way is resumed by the next ``write`` (the pending package is delivered first,
   never silently dropped and never mixed up with the new data);
3. retry each batch with tenacity (exponential backoff, jitter, ``Retry-After``), and stop dlt
   from retrying on its own (it would retry at once, without backoff);
4. return a complete :class:`floe_sink.EgressResult`.

Two details make this robust against dlt's own normalisation:

* column names travel through dlt hex-encoded (``h78...``) and are decoded before delivery,
  so no name is ever changed by a naming convention (quotes, case, unicode);
* the idempotency key of each batch travels with the batch as a dictionary-encoded column, so
  the key is the one computed from the input, whatever dlt does with files and offsets.
"""

from __future__ import annotations

import abc
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pyarrow as pa

from floe_sink import EgressResult, SinkConfig
from floe_sink.checksum import Checksum
from floe_sink.chunking import Rechunker, as_batches
from floe_sink.errors import ErrorCategory, SinkConfigurationError, SinkError, SinkWriteError
from floe_sink.idempotency import idempotency_key
from floe_sink.logs import get_logger
from floe_sink.mapping import apply_field_mapping
from floe_sink.retry import RetryPolicy, retrying
from floe_sink.secrets import Secret

# dlt must never send telemetry from a floe-sink process; set before dlt is imported.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
# dlt logs a failed batch with a full traceback on stderr; floe-sink reports the same failure
# once, as a structured event and in EgressResult.errors. Set RUNTIME__LOG_LEVEL to see dlt's.
os.environ.setdefault("RUNTIME__LOG_LEVEL", "CRITICAL")

import dlt
from dlt.common.destination.exceptions import DestinationTerminalException

__all__ = [
    "DEFAULT_PIPELINES_DIR",
    "KEY_COLUMN",
    "BatchReceipt",
    "DltSink",
    "SinkSettings",
]

log = get_logger(__name__)

DEFAULT_PIPELINES_DIR = Path(".floe") / "pipelines"
"""Where delivery state lives unless ``connection_config.pipelines_dir`` says otherwise."""

KEY_COLUMN = "_floe_idempotency_key"
"""The column that carries each batch's idempotency key through dlt (never delivered)."""

_GROUP_ROWS = 131_072
"""Rows handed to dlt per extract item (rounded to whole batches): dlt pays a few
milliseconds per item, so items are large even when delivered batches are small."""

_ROWS_PER_FILE = 200_000
"""Rows per extracted file (rounded to whole batches) when loading one job at a time. dlt reads
a file back with pyarrow's default ``pre_buffer=True``, which keeps every buffered column chunk
until the file is closed: one file for a whole table made memory grow with the table (about
33 bytes a row). Bounded files bound that; they are still loaded one after the other."""

_PARALLEL_FILE_BATCHES = 8
"""With :attr:`DltSink.load_parallelism` above 1: batches per extracted file. A file is one dlt
load job, the unit dlt runs in parallel; small files spread the work, each costs a few ms."""

_RESERVED_KEYS = frozenset({"destination", "pipelines_dir", "write_disposition", "primary_key"})


@attrs.frozen(kw_only=True)
class BatchReceipt:
    """What :meth:`DltSink.deliver` reports for one batch."""

    rows: int
    """Rows of the batch now at the destination (also when it was already there)."""
    bytes: int = 0
    """Bytes sent or written."""
    record_ids: list[str] = attrs.field(factory=list)
    """IDs the destination returned, where it does."""
    skipped: bool = False
    """True when the destination already had this batch (a resumed or repeated delivery)."""


@attrs.frozen(kw_only=True)
class SinkSettings:
    """The settings every dlt sink shares, read from a :class:`floe_sink.SinkConfig`."""

    destination: str
    batch_size: int
    field_mapping: dict[str, str] | None
    retry: RetryPolicy
    pipelines_dir: Path

    @classmethod
    def from_config(cls, config: SinkConfig, *, default_batch_size: int) -> SinkSettings:
        """Read the shared settings; ``destination`` defaults to the sink type."""
        connection = config.connection_config
        destination = str(connection.get("destination") or config.sink_type)
        pipelines_dir = Path(connection.get("pipelines_dir") or DEFAULT_PIPELINES_DIR)
        return cls(
            destination=destination,
            batch_size=config.batch_size or default_batch_size,
            field_mapping=dict(config.field_mapping) if config.field_mapping else None,
            retry=RetryPolicy.from_config(config.retry_config),
            pipelines_dir=pipelines_dir,
        )


def _pipeline_name(sink_type: str, destination: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", destination)
    return f"floe_sink__{sink_type}__{safe}"


def _encode_name(name: str) -> str:
    return "h" + name.encode().hex()


def _decode_name(encoded: str) -> str:
    return bytes.fromhex(encoded[1:]).decode() if encoded.startswith("h") else encoded


class DltSink(abc.ABC):
    """Base class of the dlt-backed sinks.

    Subclasses set :attr:`sink_type` and :attr:`default_batch_size`, build themselves in
    ``from_config`` and implement :meth:`deliver`; they may override :meth:`prepare`
    (before any batch: create tables, open clients) and :meth:`finish` (after the last batch:
    swap a replaced table, close clients).
    """

    sink_type: ClassVar[str]
    default_batch_size: ClassVar[int]

    load_parallelism: int = 1
    """Load jobs dlt may run at once, each calling :meth:`deliver` from its own thread.

    A sink sets it (on the instance, before ``write``) from its configuration. Above 1, the
    data is extracted into several files of whole batches (see :meth:`_rows_per_file`), so
    that dlt has several jobs to run; every job keeps its own saved offset, so resuming and
    the idempotency keys (computed from the input, before dlt) mean what they mean at 1.
    :meth:`deliver` must then be thread-safe.
    """

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self.resumed_rows = 0
        """Rows of a pending delivery resumed by the last ``write`` (before its own data)."""
        self._resuming = False
        self._resumed_keys: set[str] = set()
        self.in_resume = False
        """True from ``prepare`` to ``finish`` of a pending delivery being resumed (lets a sink
        tell a resumed delivery from a new one, e.g. to keep a staging table)."""
        self._reset_counters()

    # -- what a subclass implements ---------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: SinkConfig) -> DltSink:
        """Validate ``config`` and build the sink.

        Raises:
            SinkConfigurationError: A key is missing or invalid (it is named).
        """

    @abc.abstractmethod
    def deliver(self, batch: pa.RecordBatch, *, key: str) -> BatchReceipt:
        """Deliver one batch (mapped names, at most ``batch_size`` rows) under ``key``.

        Retry transient failures here (see :meth:`with_retries`) and raise a
        :class:`floe_sink.SinkError` when the batch cannot be delivered; the write then stops
        and reports it. The same batch may be delivered again after a crash (same ``key``).
        """

    def prepare(self, schema: pa.Schema) -> None:  # noqa: B027 - optional hook
        """Called once before the first batch with the mapped schema."""

    def finish(self, *, success: bool) -> None:  # noqa: B027 - optional hook
        """Called once after the last batch (also after a failure)."""

    def describe(self) -> str:
        """Where the data goes, for logs and errors; never containing a secret."""
        return self.settings.destination

    # -- shared machinery -------------------------------------------------------------------

    @staticmethod
    def check_reserved(config: SinkConfig, allowed: set[str]) -> None:
        """Refuse unknown ``connection_config`` keys, naming them and the allowed ones.

        Keys whose value is a :class:`floe_sink.secrets.Secret` came from the mounted
        Secret, which often holds more keys than one sink uses (a ``username`` next to the
        ``token``): those are left alone, not refused.
        """
        unknown = sorted(
            key
            for key, value in config.connection_config.items()
            if key not in allowed and key not in _RESERVED_KEYS and not isinstance(value, Secret)
        )
        if unknown:
            raise SinkConfigurationError(
                f"unknown key(s) in config: {', '.join(unknown)}; "
                f"{config.sink_type} accepts: {', '.join(sorted(allowed))}",
                sink_type=config.sink_type,
                destination=config.connection_config.get("destination"),
            )

    def with_retries(self, attempt: Any, *, what: str, **log_context: Any) -> Any:
        """Run ``attempt()`` under this sink's retry policy and return its result."""
        for try_ in retrying(
            self.settings.retry, what=what, destination=self.settings.destination, **log_context
        ):
            with try_:
                return attempt()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _reset_counters(self) -> None:
        self._rows = 0
        self._bytes = 0
        self._batches = 0
        self._skipped = 0
        self._record_ids: list[str] = []
        self._failure: BaseException | None = None
        self._schema: pa.Schema | None = None

    def _pipeline(self) -> Any:
        def deliver_batch(items: Any, table: Any) -> None:
            # dlt injects configuration into a plain function, not a bound method
            self._callable(items, table)

        pipeline_name = _pipeline_name(self.sink_type, self.settings.destination)
        parallel = self._parallel_options(pipeline_name)
        destination = dlt.destination(
            deliver_batch,
            batch_size=self.settings.batch_size,
            loader_file_format="parquet",
            name=f"floe_{self.sink_type}",
            naming_convention="direct",
            skip_dlt_columns_and_tables=True,
            max_table_nesting=0,
            **parallel,
        )
        return dlt.pipeline(
            pipeline_name=pipeline_name,
            pipelines_dir=str(self.settings.pipelines_dir),
            destination=destination,
            dataset_name="floe_sink",
        )

    # -- load parallelism (optional, see load_parallelism) ------------------------------------

    def _rows_per_file(self) -> int:
        """Rows per extracted file: whole batches, few when loading in parallel."""
        batch_size = self.settings.batch_size
        if self.load_parallelism <= 1:
            return max(batch_size, (_ROWS_PER_FILE // batch_size) * batch_size)
        return batch_size * _PARALLEL_FILE_BATCHES

    def _parallel_options(self, pipeline_name: str) -> dict[str, Any]:
        """``dlt.destination`` options for :attr:`load_parallelism`; sets the file split.

        dlt reads its data-writer settings from its configuration only; the variable is scoped
        to this pipeline's name, so other pipelines in the process are not affected.
        """
        variable = f"{pipeline_name.upper()}__DATA_WRITER__FILE_MAX_ITEMS"
        os.environ[variable] = str(self._rows_per_file())
        # one job at a time unless the sink asks for more: files are then delivered in turn
        return {"max_parallel_load_jobs": max(1, self.load_parallelism)}

    def _callable(self, items: pa.RecordBatch, table: dict[str, Any]) -> None:
        # Runs in dlt's load thread, once per batch of `batch_size` rows.
        if self._failure is not None:
            raise DestinationTerminalException("an earlier batch failed")
        try:
            batch, key = self._restore(items)
            if key in self._resumed_keys:
                # delivered moments ago by the resumed package of an interrupted run
                receipt = BatchReceipt(rows=batch.num_rows, skipped=True)
            else:
                receipt = self.deliver(batch, key=key)
        except BaseException as exc:  # recorded and reported by write(), never lost
            self._failure = exc
            raise DestinationTerminalException(str(exc)) from exc
        with self._lock:
            self._batches += 1
            self._rows += receipt.rows
            self._bytes += receipt.bytes
            self._record_ids.extend(receipt.record_ids)
            if receipt.skipped:
                self._skipped += 1
            if self._resuming:
                self._resumed_keys.add(key)
        log.debug(
            "batch_delivered",
            destination=self.settings.destination,
            sink_type=self.sink_type,
            rows=receipt.rows,
            skipped=receipt.skipped,
            key=key,
        )

    def _restore(self, items: pa.RecordBatch) -> tuple[pa.RecordBatch, str]:
        keys = items.column(KEY_COLUMN)
        if isinstance(keys, pa.DictionaryArray):
            keys = keys.dictionary_decode()
        first, last = keys[0].as_py(), keys[len(keys) - 1].as_py()
        if first != last:  # dlt re-batched across our batch boundaries: a broken invariant
            raise SinkWriteError(
                "internal error: a delivered batch spans two idempotency keys",
                category=ErrorCategory.PERMANENT,
                sink_type=self.sink_type,
                destination=self.settings.destination,
            )
        data = items.drop_columns([KEY_COLUMN])
        data = data.rename_columns([_decode_name(name) for name in data.schema.names])
        schema = self._schema
        if (
            schema is not None
            and data.schema.names == schema.names
            and not data.schema.equals(schema)
        ):
            # dlt stores naive timestamps as UTC and normalises time zones: give the sink the
            # types of the input, as the user declared them.
            data = data.cast(schema)
        return data, str(first)

    def _feed(
        self, data: Any, checksum: Checksum, first: pa.RecordBatch | None
    ) -> Iterator[pa.Table]:
        """Yield dlt items: groups of whole batches, columns renamed, keys attached."""
        batch_size = self.settings.batch_size
        # an item never spans two files, so that every file holds whole batches
        group_rows = min(
            self._rows_per_file(), max(batch_size, (_GROUP_ROWS // batch_size) * batch_size)
        )
        rechunker = Rechunker(batch_size)
        position = 0
        group: list[pa.RecordBatch] = []
        group_size = 0

        def keyed(batch: pa.RecordBatch) -> pa.RecordBatch:
            nonlocal position
            key = idempotency_key(self.settings.destination, batch, position)
            position += 1
            # int32 indices: a parquet file holds the keys of many batches in one dictionary,
            # and dlt reads it back with this index type (int8 overflowed past 127 batches)
            indices = pa.repeat(pa.scalar(0, pa.int32()), batch.num_rows)
            column = pa.DictionaryArray.from_arrays(indices, pa.array([key]))
            renamed = batch.rename_columns([_encode_name(name) for name in batch.schema.names])
            return renamed.append_column(KEY_COLUMN, column)

        def batches() -> Iterator[pa.RecordBatch]:
            if first is not None:
                yield first
            for batch in as_batches(data):
                mapped = apply_field_mapping(batch, self.settings.field_mapping)
                if mapped.num_rows:
                    yield mapped

        for mapped in batches():
            checksum.update(mapped)
            for chunk in rechunker.push(mapped):
                group.append(keyed(chunk))
                group_size += chunk.num_rows
                if group_size >= group_rows:
                    yield pa.Table.from_batches(group)
                    group, group_size = [], 0
        for chunk in rechunker.flush():
            group.append(keyed(chunk))
        if group:
            yield pa.Table.from_batches(group)

    def _first_batch(self, data: Any) -> tuple[pa.RecordBatch | None, pa.Schema | None, Any]:
        """Peek the first non-empty mapped batch to learn the schema; return the rest too."""
        iterator = iter(as_batches(data))
        schema: pa.Schema | None = None
        if isinstance(data, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
            empty = data.schema.empty_table()
            schema = apply_field_mapping(empty, self.settings.field_mapping).schema
        for batch in iterator:
            mapped = apply_field_mapping(batch, self.settings.field_mapping)
            if schema is None:
                schema = mapped.schema
            if mapped.num_rows:
                return mapped, schema, iterator
        return None, schema, iterator

    def _schema_path(self, pipeline: Any) -> Path:
        return Path(pipeline.working_dir) / "floe_sink_schema.arrow"

    def _save_schema(self, pipeline: Any, schema: pa.Schema) -> None:
        self._schema = schema
        self._schema_path(pipeline).write_bytes(schema.serialize().to_pybytes())

    def _load_schema(self, pipeline: Any) -> pa.Schema | None:
        path = self._schema_path(pipeline)
        if not path.exists():
            return None
        return pa.ipc.read_schema(pa.py_buffer(path.read_bytes()))

    def _resume_pending(self, pipeline: Any) -> int:
        """Deliver a package left pending by an interrupted run; return its rows."""
        if not pipeline.has_pending_data:
            return 0
        self._schema = self._load_schema(pipeline)
        self.in_resume = True
        if self._schema is not None:
            self.prepare(self._schema)
        log.warning(
            "resuming_pending_delivery",
            destination=self.settings.destination,
            sink_type=self.sink_type,
            pipelines_dir=str(self.settings.pipelines_dir),
        )
        self._resuming = True
        try:
            self._run_dlt(pipeline, None)
        finally:
            self._resuming = False
            if self._schema is not None:
                self.finish(success=self._failure is None)
            self.in_resume = False
        if self._failure is not None:
            return -1
        resumed = self._rows
        log.info(
            "resumed_pending_delivery",
            destination=self.settings.destination,
            rows=resumed,
            batches=self._batches,
        )
        return resumed

    def _run_dlt(self, pipeline: Any, resource: Any) -> None:
        from dlt.pipeline.exceptions import PipelineStepFailed

        try:
            if resource is None:
                pipeline.load()
            else:
                pipeline.run(resource)
        except PipelineStepFailed as exc:
            if self._failure is None:
                self._failure = exc
        if self._failure is not None and not _is_retryable(self._failure):
            # A permanent failure would fail again on resume and block every later run:
            # drop the package; batches already delivered keep their idempotency keys.
            with warnings.catch_warnings():
                # deprecated in dlt 1.30 for abort_packages(), which is missing before 1.30
                # and completes the package through another load(); dropping is what we mean
                warnings.filterwarnings("ignore", message=".*drop_pending_packages.*")
                pipeline.drop_pending_packages()

    def write(self, data: Any) -> EgressResult:
        """Deliver ``data`` (a table, a batch, a reader or batches) and report the outcome.

        Raises:
            SinkConfigurationError: The data does not fit the configuration (a mapped column
                is missing, ...). Delivery failures are reported in the result instead.
        """
        started = time.perf_counter()
        self._reset_counters()
        self._resumed_keys = set()
        checksum = Checksum()
        pipeline = self._pipeline()
        errors: list[str] = []

        resumed = self._resume_pending(pipeline)
        if resumed < 0:
            return self._result(started, checksum, [self._describe_failure("resuming")])
        self._reset_counters()
        self.resumed_rows = resumed

        first, schema, rest = self._first_batch(data)
        if first is None:
            if schema is not None:
                checksum.update(schema.empty_table())
            self.prepare(schema if schema is not None else pa.schema([]))
            self.finish(success=True)
            return self._result(started, checksum, errors)

        assert schema is not None  # a non-empty batch has a schema
        self._save_schema(pipeline, schema)
        self.prepare(schema)
        resource = dlt.resource(
            self._feed(rest, checksum, first),
            name="floe_batches",
            write_disposition="append",
        )
        success = False
        try:
            self._run_dlt(pipeline, resource)
            success = self._failure is None
        finally:
            self.finish(success=success)
        if not success:
            errors.append(self._describe_failure("delivering"))
        return self._result(started, checksum, errors)

    def _describe_failure(self, doing: str) -> str:
        failure = self._failure
        if isinstance(failure, SinkError):
            return str(failure)
        if failure is None:
            return f"{doing} failed"
        return f"{doing} failed: {type(failure).__name__}: {failure}"

    def _result(self, started: float, checksum: Checksum, errors: list[str]) -> EgressResult:
        digest = checksum.hexdigest()
        return EgressResult(
            success=not errors,
            rows_delivered=self._rows,
            bytes_transmitted=self._bytes,
            duration_seconds=time.perf_counter() - started,
            checksum=digest,
            delivery_timestamp=datetime.now(UTC).isoformat(timespec="milliseconds"),
            idempotency_key=idempotency_key(self.settings.destination, digest),
            destination_record_ids=list(self._record_ids),
            errors=errors,
        )


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, SinkError) and error.retryable
