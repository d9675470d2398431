"""The checks of the conformance kit: one function per property of the delivery contract.

Each ``check_*`` function takes a :class:`SinkUnderTest` (a fresh destination), writes through
the plugin manager as the command does, looks at the result, the journal and what the
destination holds, and raises a :class:`ConformanceError` naming the property broken; it skips
(``pytest.skip``) when the sink does not declare the capability or the target gives the kit no
way to observe it. :func:`check_sink` runs them all.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from floe_sink.delivery import DeliveryInterrupted
from floe_sink.errors import ErrorCategory, SinkConfigurationError, SinkError
from floe_sink.models import EgressResult
from floe_sink.secrets import Secret
from floe_sink.testing._faults import Fault, FaultInjector, injected
from floe_sink.testing._samples import describe_difference, standard_table, type_table
from floe_sink.testing._subject import (
    BadConfig,
    Capabilities,
    ConformanceError,
    JournalDelivery,
    Property,
    SinkTarget,
    SinkUnderTest,
    broken,
)

# -- helpers ----------------------------------------------------------------------------------


def _checksum(data: Any) -> str:
    from floe_sink.checksum import Checksum

    return Checksum(data).hexdigest()


def _mapped(data: Any, mapping: Mapping[str, str] | None) -> Any:
    from floe_sink.mapping import apply_field_mapping

    return apply_field_mapping(data, mapping)


def _write_ok(sut: SinkUnderTest, property: str, data: Any, **kwargs: Any) -> EgressResult:
    try:
        result = sut.write(data, **kwargs)
    except SinkError as exc:
        raise broken(property, f"the write failed: {type(exc).__name__}: {exc}") from exc
    if not result.success:
        raise broken(property, f"the write reported a failure: {result.errors}")
    assert isinstance(result, EgressResult)
    return result


def _expect_holds(sut: SinkUnderTest, property: str, expected: Any, when: str = "") -> None:
    difference = describe_difference(expected, sut.read_back(expected.schema, property))
    if difference is not None:
        raise broken(property, f"{when}{difference}")


@attrs.frozen
class _Window:
    started: datetime
    finished: datetime
    seconds: float


@contextlib.contextmanager
def _timed() -> Iterator[list[_Window]]:
    box: list[_Window] = []
    started, clock = datetime.now(UTC), time.perf_counter()
    try:
        yield box
    finally:
        box.append(_Window(started, datetime.now(UTC), time.perf_counter() - clock))


def _check_result(
    result: EgressResult,
    *,
    rows: int,
    checksum: str,
    window: _Window,
    resumed: int = 0,
    when: str = "",
) -> None:
    """A successful result is complete and says what happened."""
    if result.errors:
        raise broken(Property.RESULT, f"{when}errors must be empty on success: {result.errors}")
    if result.rows_delivered != rows:
        raise broken(
            Property.RESULT, f"{when}rows_delivered is {result.rows_delivered}, expected {rows}"
        )
    if not isinstance(result.bytes_transmitted, int) or result.bytes_transmitted < 0:
        raise broken(
            Property.RESULT,
            f"{when}bytes_transmitted must be an integer >= 0: {result.bytes_transmitted!r}",
        )
    if rows and result.bytes_transmitted == 0:
        raise broken(
            Property.RESULT,
            f"{when}bytes_transmitted is 0 for {rows} rows delivered: report the bytes sent "
            "or written (BatchReceipt.bytes)",
        )
    slack = 1.0
    if not 0 <= result.duration_seconds <= window.seconds + slack:
        raise broken(
            Property.RESULT,
            f"{when}duration_seconds is {result.duration_seconds!r}, the write took "
            f"{window.seconds:.3f} s",
        )
    if rows and result.duration_seconds == 0:
        raise broken(Property.RESULT, f"{when}duration_seconds is 0: measure the write")
    _check_timestamp(result.delivery_timestamp, window, when)
    if result.checksum != checksum:
        raise broken(
            Property.CHECKSUM,
            f"{when}the result says {result.checksum!r}, but floe_sink.Checksum of the "
            f"delivered (mapped) data is {checksum!r}: hash every mapped batch, skipped ones "
            "included (floe_sink.deliver_batches(..., checksum=floe_sink.Checksum()))",
        )
    if not isinstance(result.idempotency_key, str) or not result.idempotency_key:
        raise broken(
            Property.RESULT,
            f"{when}idempotency_key is empty: give the delivery's key "
            "(floe_sink.idempotency_key(destination, checksum))",
        )
    if result.resumed_batches != resumed:
        raise broken(
            Property.RESULT,
            f"{when}resumed_batches is {result.resumed_batches}, expected {resumed}",
        )


def _check_timestamp(text: str, window: _Window, when: str) -> None:
    try:
        stamp = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise broken(
            Property.RESULT,
            f"{when}delivery_timestamp {text!r} is not ISO-8601 "
            "(datetime.now(UTC).isoformat(timespec='milliseconds'))",
        ) from None
    offset = stamp.utcoffset()
    if offset is None or offset != timedelta(0):
        raise broken(
            Property.RESULT,
            f"{when}delivery_timestamp {text!r} is not in UTC (it needs a +00:00 or Z offset)",
        )
    slack = timedelta(seconds=1)
    if not window.started - slack <= stamp <= window.finished + slack:
        raise broken(
            Property.RESULT,
            f"{when}delivery_timestamp {text!r} is not the time of the write "
            f"({window.started.isoformat()} to {window.finished.isoformat()})",
        )


def _journal_rows(delivery: JournalDelivery) -> list[int]:
    journal = delivery.journal()
    return [journal[position].rows for position in sorted(journal)]


def _acknowledged_rows(delivery: JournalDelivery, property: str) -> list[int]:
    """The rows of each batch the journal acknowledges, for a write that delivered some."""
    rows = _journal_rows(delivery)
    if not rows:
        raise broken(
            property,
            "the sink declares Capabilities(exact_resume=True) but acknowledged no batch in "
            "the delivery's journal: hand write()'s `delivery` to floe_sink.deliver_batches",
        )
    return rows


def _require_faults(sut: SinkUnderTest) -> FaultInjector:
    if sut.target.faults is None:
        pytest.skip(
            "no fault injector: give SinkTarget(faults=...) (HttpFaultProxy, CallFaults or "
            "your own FaultInjector) to check retries and failure reports"
        )
    return sut.target.faults


def _never_hit(property: str) -> ConformanceError:
    return broken(
        Property.KIT_SETUP,
        f"while checking {property}, the injected fault was never hit: the target's fault "
        "injector does not sit between the sink and the destination (point the config at it)",
    )


@attrs.frozen
class _FaultedWrite:
    """A write made while the target's fault injector served a fault."""

    data: Any
    delivery: JournalDelivery
    result: EgressResult | None
    """``None`` when the write raised :attr:`error`."""
    error: SinkError | None
    hits: int
    """Operations the injector failed."""


def _write_under_fault(
    sut: SinkUnderTest, prop: str, fault: Fault, *, times: int, rows: int, batch_size: int
) -> _FaultedWrite:
    """Write ``rows`` rows while ``fault`` is injected ``times`` times.

    Raises:
        ConformanceError: The write raised something other than a :class:`SinkError`.
    """
    faults = _require_faults(sut)
    data = standard_table(rows)
    delivery = sut.delivery()
    result: EgressResult | None = None
    error: SinkError | None = None
    with injected(faults, fault, times=times):
        try:
            result = sut.write(data, delivery=delivery, batch_size=batch_size)
        except SinkError as exc:
            error = exc
        except Exception as exc:
            raise broken(
                prop,
                f"the failure escaped as {type(exc).__name__}, not a floe_sink.SinkError "
                f"(wrap the client's errors, with a category): {exc}",
            ) from exc
        hits = faults.injected
    return _FaultedWrite(data=data, delivery=delivery, result=result, error=error, hits=hits)


# -- the checks -------------------------------------------------------------------------------


def check_empty_table(sut: SinkUnderTest) -> None:
    """A table with a schema and no rows: a successful, complete result; nothing sent."""
    empty = standard_table(0)
    delivery = sut.delivery()
    with _timed() as window:
        result = _write_ok(sut, Property.EMPTY_INPUT, empty, delivery=delivery)
    _check_result(
        result, rows=0, checksum=_checksum(empty), window=window[0], when="for an empty table: "
    )
    if delivery.sent:
        raise broken(
            Property.EMPTY_INPUT,
            f"{len(delivery.sent)} batches acknowledged for a table without rows",
        )
    _expect_holds(sut, Property.EMPTY_INPUT, empty)


def check_empty_stream(sut: SinkUnderTest) -> None:
    """No record batch at all (no schema either): a successful, complete result."""
    from floe_sink.checksum import Checksum

    delivery = sut.delivery()
    with _timed() as window:
        result = _write_ok(sut, Property.EMPTY_INPUT, iter(()), delivery=delivery)
    _check_result(
        result,
        rows=0,
        checksum=Checksum().hexdigest(),
        window=window[0],
        when="for a stream of no batches: ",
    )
    if delivery.sent:
        raise broken(
            Property.EMPTY_INPUT, f"{len(delivery.sent)} batches acknowledged for no batches"
        )
    _expect_holds(sut, Property.EMPTY_INPUT, standard_table(0))


def check_arrow_type(sut: SinkUnderTest, sample: Any) -> None:
    """Sample values of one declared type (with a null) reach the destination unchanged."""
    try:
        table = type_table(sample)
    except TypeError as exc:
        raise broken(Property.KIT_SETUP, str(exc)) from None
    label = str(table.schema.field("v").type)
    what = f"{label}: "
    try:
        result = sut.write(table, delivery=sut.delivery())
    except SinkError as exc:
        raise broken(
            Property.ARROW_TYPE, f"{what}the write failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not result.success:
        raise broken(Property.ARROW_TYPE, f"{what}the write reported a failure: {result.errors}")
    if result.rows_delivered != table.num_rows:
        raise broken(
            Property.ARROW_TYPE,
            f"{what}rows_delivered is {result.rows_delivered}, expected {table.num_rows}",
        )
    if result.checksum != _checksum(table):
        raise broken(Property.CHECKSUM, f"{what}the checksum is not that of the data sent")
    _expect_holds(sut, Property.ARROW_TYPE, table, when=f"{label} does not round-trip: ")


def check_batch_size(sut: SinkUnderTest) -> None:
    """8 rows (in source batches of 1, 5 and 2) with ``batch_size=3`` go as 3, 3 and 2."""
    data = standard_table(8, chunks=[1, 5, 2])
    expected = [3, 3, 2]
    delivery = sut.delivery()
    _write_ok(sut, Property.BATCH_SIZE, data, delivery=delivery, batch_size=3)
    observed = False
    if sut.capabilities.exact_resume:
        rows = _acknowledged_rows(delivery, Property.BATCH_SIZE)
        journal = delivery.journal()
        if sorted(journal) != list(range(len(journal))):
            raise broken(
                Property.BATCH_SIZE,
                f"the journal holds batch positions {sorted(journal)}: a delivery's batches "
                "are numbered 0, 1, 2, ... in source order",
            )
        if rows != expected:
            raise broken(
                Property.BATCH_SIZE,
                f"8 rows with batch_size=3 go as batches of {expected} rows; the journal "
                f"acknowledged batches of {rows}",
            )
        observed = True
    if sut.target.batch_rows is not None:
        received = list(sut.target.batch_rows())
        if sum(received) != 8 or any(size > 3 for size in received):
            raise broken(
                Property.BATCH_SIZE,
                f"8 rows with batch_size=3: the destination received batches of {received} "
                "rows (none may exceed batch_size)",
            )
        observed = True
    if not observed:
        pytest.skip(
            "the kit cannot see batch boundaries: declare exact_resume (the journal shows "
            "them) or give SinkTarget(batch_rows=...)"
        )
    _expect_holds(sut, Property.BATCH_SIZE, data)


def check_egress_result(sut: SinkUnderTest) -> None:
    """A 7-row write with a field mapping: the result is complete and matches the data."""
    source = standard_table(7, chunks=[2, 4, 1], extra=True)
    mapping = {"id": "id", "name": "label"}
    expected = _mapped(source, mapping)
    delivery = sut.delivery()
    with _timed() as window:
        result = _write_ok(
            sut, Property.RESULT, source, delivery=delivery, field_mapping=mapping, batch_size=3
        )
    _check_result(result, rows=7, checksum=_checksum(expected), window=window[0])
    _expect_holds(
        sut,
        Property.FIELD_MAPPING,
        expected,
        when="with field_mapping {'id': 'id', 'name': 'label'} (only mapped columns, renamed): ",
    )
    if sut.capabilities.exact_resume:
        acknowledged = sum(_acknowledged_rows(delivery, Property.RESULT))
        if acknowledged != 7:
            raise broken(
                Property.RESULT, f"the journal acknowledges {acknowledged} rows, 7 were delivered"
            )


def check_idempotency_keys(sut: SinkUnderTest) -> None:
    """Two deliveries of the same data carry the same key per batch; batches' keys differ."""
    data = standard_table(7, chunks=[3, 4])
    first, second = sut.delivery(), sut.delivery()
    one = _write_ok(sut, Property.IDEMPOTENCY_KEY, data, delivery=first, batch_size=2)
    wire_before = len(sut.target.sent_keys()) if sut.target.sent_keys is not None else 0
    two = _write_ok(sut, Property.IDEMPOTENCY_KEY, data, delivery=second, batch_size=2)
    if one.idempotency_key != two.idempotency_key:
        raise broken(
            Property.IDEMPOTENCY_KEY,
            f"EgressResult.idempotency_key is {one.idempotency_key!r} for one delivery and "
            f"{two.idempotency_key!r} for the next delivery of the same data",
        )
    observed = False
    journal_keys: list[str] = []
    if sut.capabilities.exact_resume:
        before, after = first.journal(), second.journal()
        journal_keys = [before[position].key for position in sorted(before)]
        if len(set(journal_keys)) != len(journal_keys):
            raise broken(
                Property.IDEMPOTENCY_KEY,
                f"batches of one delivery share a key: {journal_keys}",
            )
        for position in sorted(before):
            if position not in after or after[position].key != before[position].key:
                again = after[position].key if position in after else None
                raise broken(
                    Property.IDEMPOTENCY_KEY,
                    f"batch {position} of the same data carried key {before[position].key!r} "
                    f"and then {again!r}: a re-sent batch must carry the same key "
                    "(floe_sink.idempotency_key(destination, batch, position))",
                )
        observed = True
    if sut.target.sent_keys is not None:
        wire = list(sut.target.sent_keys())
        once, again_keys = wire[:wire_before], wire[wire_before:]
        if not once:
            raise broken(Property.IDEMPOTENCY_KEY, "the destination received no idempotency key")
        if sorted(once) != sorted(again_keys):
            raise broken(
                Property.IDEMPOTENCY_KEY,
                f"the destination received keys {once} for one delivery and {again_keys} for "
                "the next delivery of the same data",
            )
        if journal_keys and set(once) != set(journal_keys):
            raise broken(
                Property.IDEMPOTENCY_KEY,
                f"the destination received keys {once}, the journal acknowledged {journal_keys}: "
                "send each batch under the key deliver_batches hands to send()",
            )
        observed = True
    if not observed:
        pytest.skip(
            "the kit cannot see idempotency keys: declare exact_resume (the journal shows "
            "them) or give SinkTarget(sent_keys=...)"
        )


def check_exact_resume(sut: SinkUnderTest) -> None:
    """Stopped after 2 of its 10 batches, a delivery resumes sending only the others."""
    if not sut.capabilities.exact_resume:
        pytest.skip(
            "the sink does not declare Capabilities(exact_resume=True): the command "
            "re-sends such a sink's interrupted deliveries in full (at least once)"
        )
    prop = Property.EXACT_RESUME
    # 10 batches: a sink with up to 8 batches in flight still has some left to not send
    data = standard_table(30, chunks=[11, 19])
    first = sut.delivery(stop_after=2)
    try:
        sut.write(data, delivery=first, batch_size=3)
    except DeliveryInterrupted:
        pass
    except SinkError as exc:
        raise broken(
            prop, f"the interrupted write failed instead of stopping: {type(exc).__name__}: {exc}"
        ) from exc
    else:
        raise broken(
            prop,
            f"a stop requested after 2 of 10 batches was ignored ({len(first.sent)} "
            "acknowledged): send through floe_sink.deliver_batches, or call "
            "delivery.check_stop() before sending each batch",
        )
    journal = first.journal()
    if not journal:
        raise broken(prop, "no batch was acknowledged in the journal before the stop")
    held = sut.read_back(data.schema, prop).num_rows
    acknowledged = sum(record.rows for record in journal.values())
    if acknowledged > held:
        raise broken(
            prop,
            f"the journal acknowledges {acknowledged} rows, the destination holds {held}: "
            "acknowledge a batch only once the destination has it",
        )
    second = sut.delivery(resume=first)
    result = _write_ok(sut, prop, data, delivery=second, batch_size=3)
    resent = sorted(record.position for record in second.sent if record.position in journal)
    if resent:
        raise broken(
            prop,
            f"batches {resent} were acknowledged before the interruption and sent again: "
            "skip the batches delivery.acknowledged(position) holds",
        )
    final = second.journal()
    if sorted(final) != list(range(10)):
        raise broken(prop, f"after the resume the journal holds batches {sorted(final)}")
    for position, record in journal.items():
        if final[position].key != record.key:
            raise broken(Property.IDEMPOTENCY_KEY, f"batch {position} changed its key on resume")
    if result.resumed_batches != len(journal):
        raise broken(
            prop,
            f"EgressResult.resumed_batches is {result.resumed_batches}; {len(journal)} batches "
            "were skipped",
        )
    if result.rows_delivered != data.num_rows:
        raise broken(
            prop,
            f"EgressResult.rows_delivered is {result.rows_delivered}: it counts the whole "
            f"delivery ({data.num_rows} rows), resumed batches included",
        )
    if result.checksum != _checksum(data):
        raise broken(
            Property.CHECKSUM,
            "after a resume, the checksum must cover the whole delivery, skipped batches included",
        )
    _expect_holds(sut, prop, data, when="after the resume, ")


def check_transient_failure(sut: SinkUnderTest) -> None:
    """One injected transient failure is retried: the write succeeds, every row once."""
    prop = Property.TRANSIENT_FAILURE
    outcome = _write_under_fault(sut, prop, Fault.TRANSIENT, times=1, rows=6, batch_size=2)
    data, delivery, result = outcome.data, outcome.delivery, outcome.result
    if outcome.hits == 0:
        raise _never_hit(prop) from outcome.error
    if result is None:
        raise broken(
            prop,
            "the write failed on one transient fault instead of retrying it: "
            f"{type(outcome.error).__name__}: {outcome.error}",
        ) from outcome.error
    if not result.success:
        raise broken(
            prop, f"the write reported a failure after one transient fault: {result.errors}"
        )
    if result.rows_delivered != data.num_rows:
        raise broken(prop, f"rows_delivered is {result.rows_delivered}, expected {data.num_rows}")
    if sut.capabilities.exact_resume:
        acknowledged = _acknowledged_rows(delivery, prop)
        if sum(acknowledged) != data.num_rows:
            raise broken(prop, f"the journal acknowledges batches of {acknowledged} rows")
    _expect_holds(sut, prop, data, when="after a retried transient fault, ")


def check_permanent_failure(sut: SinkUnderTest) -> None:
    """An injected permanent failure is reported (raised or in the result), and not retried."""
    prop = Property.PERMANENT_FAILURE
    # one batch: each fault hit is then an attempt at the same batch, however many batches a
    # sink keeps in flight
    outcome = _write_under_fault(sut, prop, Fault.PERMANENT, times=100, rows=4, batch_size=4)
    data, delivery, result, error = outcome.data, outcome.delivery, outcome.result, outcome.error
    hits = outcome.hits
    if error is not None and hits and error.category is ErrorCategory.TRANSIENT:
        raise broken(
            prop,
            f"a permanent failure was raised as a transient {type(error).__name__} (a "
            f"caller would retry it): {error}",
        ) from error
    if error is not None and hits and isinstance(error, SinkConfigurationError):
        raise broken(
            prop,
            "a refusal by the destination was raised as a configuration error "
            f"(SinkConfigurationError): {error}",
        ) from error
    if hits == 0:
        raise _never_hit(prop)
    if result is not None:
        if result.success:
            raise broken(
                prop,
                "the write reported success although the destination refused every batch "
                "(an error was swallowed)",
            )
        if not result.errors:
            raise broken(prop, "the result says success=False but its errors are empty")
    if hits > 1:
        raise broken(
            prop,
            f"a permanent failure was tried {hits} times: it must fail at once "
            "(ErrorCategory.PERMANENT is not retried)",
        )
    held = sut.read_back(data.schema, prop).num_rows
    if result is not None and result.rows_delivered > held:
        raise broken(
            prop,
            f"rows_delivered is {result.rows_delivered}, the destination holds {held} rows",
        )
    if sut.capabilities.exact_resume and sum(_journal_rows(delivery)) > held:
        raise broken(
            prop,
            f"the journal acknowledges {sum(_journal_rows(delivery))} rows, the destination "
            f"holds {held}: acknowledge a batch only once the destination has it",
        )


def check_bad_configs(sut: SinkUnderTest, bad_configs: Iterable[BadConfig]) -> None:
    """Every bad config is refused by ``create_sink`` with a message naming its key."""
    bad = list(bad_configs)
    if not bad:
        pytest.skip("no bad configs declared: return BadConfig(...)s from bad_configs()")
    for number, item in enumerate(bad, 1):
        label = f"bad config #{number} (expected to name {item.key!r})"
        try:
            sut.manager.create_sink(item.config)
        except SinkConfigurationError as exc:
            message = str(exc)
            if item.key not in message:
                raise broken(
                    Property.CONFIGURATION_ERROR,
                    f"{label}: the SinkConfigurationError does not name {item.key!r}: {message}",
                ) from None
            _no_secret(sut, Property.SECRET_IN_ERRORS, f"the error for {label}", message)
        except Exception as exc:
            raise broken(
                Property.CONFIGURATION_ERROR,
                f"{label}: create_sink raised {type(exc).__name__}, not a "
                f"floe_sink.SinkConfigurationError: {exc}",
            ) from exc
        else:
            raise broken(Property.CONFIGURATION_ERROR, f"{label}: create_sink accepted it")


def _config_values(value: Any) -> Iterator[str]:
    if isinstance(value, Secret):
        yield value.reveal()
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _config_values(item)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _config_values(item)
    elif value is not None:
        yield str(value)


def _declared_secrets(sut: SinkUnderTest) -> tuple[str, ...]:
    secrets = sut.target.secrets
    if not secrets:
        pytest.skip("no secrets declared: give SinkTarget(secrets=[...]), the config's secrets")
    values = list(_config_values(sut.target.config.connection_config))
    for number, secret in enumerate(secrets, 1):
        if not secret or not any(secret in value for value in values):
            raise broken(
                Property.KIT_SETUP,
                f"declared secret #{number} is not a value of the config's connection_config",
            )
    return secrets


def _no_secret(sut: SinkUnderTest, property: str, where: str, text: str) -> None:
    for number, secret in enumerate(sut.target.secrets, 1):
        found = text.find(secret) if secret else -1
        if found >= 0:
            excerpt = text[max(0, found - 60) : found + len(secret) + 60]
            for other, value in enumerate(sut.target.secrets, 1):
                if value:
                    excerpt = excerpt.replace(value, f"<secret #{other}>")
            raise broken(property, f"{where} shows declared secret #{number}: ...{excerpt}...")


def check_secrets_not_in_repr(sut: SinkUnderTest) -> None:
    """``repr``, ``str`` and ``describe()`` of the sink show no declared secret."""
    _declared_secrets(sut)
    sink = sut.create_sink()
    shown = {"repr(sink)": repr(sink), "str(sink)": str(sink)}
    describe = getattr(sink, "describe", None)
    if callable(describe):
        shown["sink.describe()"] = str(describe())
    for where, text in shown.items():
        _no_secret(sut, Property.SECRET_IN_REPR, where, text)


def _exercise(sut: SinkUnderTest) -> list[tuple[str, str]]:
    """Create a sink and write (then fail a write, when faults can be injected); return what
    the sink said back: the results and the errors raised."""
    said: list[tuple[str, str]] = []
    data = standard_table(4)

    def attempt(what: str) -> None:
        try:
            result = sut.write(data, delivery=sut.delivery(), batch_size=2)
        except Exception as exc:
            said.append((f"the error of {what}", f"{type(exc).__name__}: {exc}"))
        else:
            said.append((f"the result of {what}", repr(result)))

    attempt("a write")
    if sut.target.faults is not None:
        with injected(sut.target.faults, Fault.PERMANENT, times=100):
            attempt("a failed write")
    return said


def check_secrets_not_in_logs(sut: SinkUnderTest) -> None:
    """No log event (structlog or stdlib), error or result of a write shows a secret."""
    from floe_sink.testing._capture import captured_logs

    _declared_secrets(sut)
    with captured_logs() as logs:
        said = _exercise(sut)
    if not logs:
        raise broken(Property.KIT_SETUP, "no log event was captured (the manager logs writes)")
    for text in logs:
        _no_secret(sut, Property.SECRET_IN_LOGS, "a log event", text)
    for where, text in said:
        _no_secret(sut, Property.SECRET_IN_ERRORS, where, text)


def check_secrets_not_in_spans(sut: SinkUnderTest) -> None:
    """No OpenTelemetry span of a write (attributes, events, status) shows a secret."""
    from floe_sink.testing._capture import captured_spans

    _declared_secrets(sut)
    with captured_spans() as spans:
        _exercise(sut)
    if not spans:
        raise broken(Property.KIT_SETUP, "no span was captured (the manager traces writes)")
    for text in spans:
        _no_secret(sut, Property.SECRET_IN_SPANS, "a span", text)


def check_record_ids(sut: SinkUnderTest) -> None:
    """``destination_record_ids`` holds one distinct, non-empty ID per row delivered."""
    if not sut.capabilities.record_ids:
        pytest.skip("the sink does not declare Capabilities(record_ids=True)")
    data = standard_table(5)
    result = _write_ok(sut, Property.RECORD_IDS, data, delivery=sut.delivery(), batch_size=2)
    ids = list(result.destination_record_ids)
    if len(ids) != data.num_rows:
        raise broken(
            Property.RECORD_IDS,
            f"{len(ids)} destination_record_ids for {data.num_rows} rows delivered: {ids}",
        )
    if not all(isinstance(value, str) and value for value in ids) or len(set(ids)) != len(ids):
        raise broken(Property.RECORD_IDS, f"IDs must be distinct, non-empty strings: {ids}")


def check_deletes(sut: SinkUnderTest) -> None:
    """Deleting keys removes exactly those rows, journaled apart from the write's batches;
    deleting them again (a new delivery) changes nothing and is not an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from floe_sink.sync import DELETE_POSITIONS

    if not sut.capabilities.deletes:
        pytest.skip("the sink does not declare Capabilities(deletes=True)")
    prop = Property.DELETES
    data = standard_table(8)
    delivery = sut.delivery()
    _write_ok(sut, prop, data, delivery=delivery, batch_size=3)
    written = delivery.journal()
    gone = pa.array([1, 4, 6], pa.int64())
    keys = pa.table({"id": gone})
    expected = data.filter(pc.invert(pc.is_in(data.column("id"), value_set=gone)))
    for when, deleting in (("", delivery), ("deleting them again: ", sut.delivery())):
        sink = sut.create_sink(batch_size=2)
        try:
            result = sut.manager.delete(
                sink,
                keys,
                destination=sut.destination,
                sink_type=sut.sink_type,
                delivery=deleting,
            )
        except SinkError as exc:
            raise broken(
                prop, f"{when}deleting ids [1, 4, 6] failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not result.success:
            raise broken(prop, f"{when}deleting ids [1, 4, 6] failed: {result.errors}")
        _expect_holds(sut, prop, expected, when=f"{when}after deleting ids [1, 4, 6], ")
    if result.rows_delivered != 3:
        raise broken(prop, f"rows_delivered is {result.rows_delivered} for 3 keys deleted")
    if sut.capabilities.exact_resume:
        journal = delivery.journal()
        added = sorted(set(journal) - set(written))
        kept = all(journal.get(position) == record for position, record in written.items())
        if not added or not kept or any(position < DELETE_POSITIONS for position in added):
            raise broken(
                prop,
                f"the delete journaled batches at positions {added} (the write's: "
                f"{sorted(written)}){'' if kept else ', replacing the write batches'}: "
                "deliver keys with floe_sink.deliver_batches(..., "
                "first_position=floe_sink.sync.DELETE_POSITIONS), so that a resumed delivery "
                "repeats no acknowledged delete",
            )


def check_record_results(sut: SinkUnderTest) -> None:
    """Reserved for per-record results (records the destination refuses one by one)."""
    if not sut.capabilities.record_results:
        pytest.skip("the sink does not declare Capabilities(record_results=True)")
    pytest.skip("the kit does not check per-record results (BatchReceipt.rejected) yet")


# -- all of it --------------------------------------------------------------------------------


def check_sink(
    plugin: object,
    target: Callable[[], SinkTarget],
    *,
    capabilities: Capabilities | None = None,
    bad_configs: Iterable[BadConfig] = (),
    workdir: Path,
) -> list[str]:
    """Run every check, each against a fresh ``target()``; the one-function form of the kit.

    Args:
        plugin: The plugin under test.
        target: Returns a fresh destination each time it is called.
        capabilities: What the sink declares.
        bad_configs: Configurations ``create_sink`` must refuse.
        workdir: A directory for the journals (one sub-directory per check).

    Returns:
        The checks skipped, with their reasons.

    Raises:
        AssertionError: Listing every broken property, one per line.
    """
    capabilities = capabilities or Capabilities()
    checks: list[tuple[str, Callable[[SinkUnderTest], None]]] = [
        (check.__name__, check) for check in _CHECKS
    ]
    checks += [
        (f"check_arrow_type[{getattr(sample, 'type', sample)}]", _arrow_check(sample))
        for sample in capabilities.arrow_types
    ]
    bad = list(bad_configs)
    checks.append(("check_bad_configs", lambda sut: check_bad_configs(sut, bad)))
    failures: list[str] = []
    skipped: list[str] = []
    for number, (name, check) in enumerate(checks):
        sut = SinkUnderTest(
            plugin=plugin,
            target=target(),
            capabilities=capabilities,
            workdir=Path(workdir) / f"{number:02d}",
        )
        try:
            check(sut)
        except ConformanceError as exc:
            failures.append(f"{name}: {exc}")
        except pytest.skip.Exception as exc:
            skipped.append(f"{name}: {exc.msg}")
        finally:
            sut.close()
    if failures:
        raise AssertionError(
            f"{len(failures)} conformance check(s) failed:\n" + "\n".join(failures)
        )
    return skipped


def _arrow_check(sample: Any) -> Callable[[SinkUnderTest], None]:
    return lambda sut: check_arrow_type(sut, sample)


_CHECKS: tuple[Callable[[SinkUnderTest], None], ...] = (
    check_empty_table,
    check_empty_stream,
    check_batch_size,
    check_egress_result,
    check_idempotency_keys,
    check_exact_resume,
    check_transient_failure,
    check_permanent_failure,
    check_secrets_not_in_repr,
    check_secrets_not_in_logs,
    check_secrets_not_in_spans,
    check_record_ids,
    check_deletes,
    check_record_results,
)
