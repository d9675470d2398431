"""Isolating the bad records of an unnamed refusal (floe_sink_dlt.saas.bisection), against
a fake sender that refuses any request holding a bad record."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink_dlt.saas.bisection import bisect, bisection_bound
from floe_sink_dlt.saas.results import RecordOutcome, RecordStatus, ResponseVerdict, ResultsSpec

D, R, T = RecordStatus.DELIVERED, RecordStatus.REJECTED, RecordStatus.RETRYABLE
PLAIN = ResultsSpec.parse(None)  # no per-record results: a refusal names nobody


class FakeApi:
    """Refuses (400, no record named) any request that holds a bad key; counts requests."""

    def __init__(self, keys: Sequence[str], bad: set[str], *, spec: ResultsSpec = PLAIN) -> None:
        self.keys = list(keys)
        self.bad = bad
        self.spec = spec
        self.requests: list[list[str]] = []
        self.answer: Callable[[list[str]], tuple[int, bytes]] = self.refuse_bad

    def refuse_bad(self, keys: list[str]) -> tuple[int, bytes]:
        if self.bad & set(keys):
            return 400, b'{"message": "Invalid input"}'
        return 200, b'{"status": "COMPLETE"}'

    def request(self, keys: list[str]) -> ResponseVerdict:
        self.requests.append(keys)
        status, body = self.answer(keys)
        return self.spec.judge(keys, status, {"content-type": "application/json"}, body)

    def send(self, positions: Sequence[int]) -> ResponseVerdict:
        return self.request([self.keys[position] for position in positions])


def keys_of(count: int) -> list[str]:
    return [f"user{n}@example.com" for n in range(count)]


def test_one_bad_record_in_1000_is_the_only_one_rejected_within_the_bound() -> None:
    keys = keys_of(1000)
    api = FakeApi(keys, {keys[613]})
    first = api.request(keys)
    assert first.bisect == tuple(range(1000))

    result = bisect(first, api.send)

    rejected = [outcome for outcome in result.outcomes if outcome.status is R]
    delivered = [outcome for outcome in result.outcomes if outcome.status is D]
    assert [outcome.key for outcome in rejected] == [keys[613]]
    assert rejected[0].http_status == 400
    assert rejected[0].message == '{"message": "Invalid input"}'
    assert len(delivered) == 999
    assert [outcome.position for outcome in result.outcomes] == list(range(1000))
    assert result.requests <= bisection_bound(1000, 1) == 20
    assert result.requests == len(api.requests) - 1
    assert not result.exhausted
    # every good record was accepted exactly once
    accepted = [key for sent in api.requests if keys[613] not in sent for key in sent]
    assert sorted(accepted) == sorted(set(keys) - {keys[613]})


@given(
    count=st.integers(1, 120),
    bad=st.sets(st.integers(0, 119), max_size=8),
)
def test_bisection_isolates_exactly_the_bad_records_within_the_bound(
    count: int, bad: set[int]
) -> None:
    keys = keys_of(count)
    bad_keys = {keys[n] for n in bad if n < count}
    api = FakeApi(keys, bad_keys)
    first = api.request(keys)
    result = bisect(first, api.send)
    assert {o.key for o in result.outcomes if o.status is R} == bad_keys
    assert {o.key for o in result.outcomes if o.status is D} == set(keys) - bad_keys
    if count > 1:
        assert result.requests <= bisection_bound(count, len(bad_keys))
    assert not result.exhausted


def test_the_budget_caps_the_requests_and_rejects_the_rest() -> None:
    keys = keys_of(64)
    api = FakeApi(keys, {keys[40]})
    result = bisect(api.request(keys), api.send, max_requests=3)
    # [0:32] delivered; [32:64] and [32:48] refused; [32:40], [40:48], [48:64] never sent
    assert result.requests == 3
    assert result.exhausted
    assert [o.status for o in result.outcomes] == [D] * 32 + [R] * 32
    assert all(
        o.message == '{"message": "Invalid input"} (not isolated: max_requests spent)'
        for o in result.outcomes[32:]
    )


def test_a_fatal_answer_stops_bisection_and_leaves_the_rest_retryable() -> None:
    keys = keys_of(16)
    api = FakeApi(keys, {keys[3]})
    first = api.request(keys)
    api.answer = lambda sent: (401, b'{"message": "expired"}')
    result = bisect(first, api.send)
    assert result.fatal
    assert result.requests == 1
    assert not result.exhausted
    assert {o.status for o in result.outcomes} == {T}


def test_a_partial_answer_bisects_only_the_records_it_left_ambiguous() -> None:
    spec = ResultsSpec.parse(
        {"mode": "by_key", "errors": "errors", "key": "id", "message": "message"}
    )
    keys = keys_of(8)
    api = FakeApi(keys, set(), spec=spec)

    def answer(sent: list[str]) -> tuple[int, bytes]:
        # keys[1] is named; keys[6] makes an error that names nobody
        errors = [{"id": keys[1], "message": "duplicate"}] if keys[1] in sent else []
        if keys[6] in sent:
            errors.append({"message": "internal validation failed"})
        return (207 if errors else 200), json.dumps({"errors": errors}).encode()

    api.answer = answer
    first = api.request(keys)
    assert first.bisect == (0, 2, 3, 4, 5, 6, 7)
    result = bisect(first, api.send)
    by_key = {o.key: o for o in result.outcomes}
    assert by_key[keys[1]].status is R
    assert by_key[keys[1]].message == "duplicate"
    assert by_key[keys[6]].status is R
    assert by_key[keys[6]].message == "internal validation failed"
    assert {k for k, o in by_key.items() if o.status is D} == set(keys) - {keys[1], keys[6]}


def refused_whole(verdict: ResponseVerdict) -> ResponseVerdict:
    """``verdict`` turned into an unnamed refusal that asks to bisect every record."""
    outcomes = tuple(
        RecordOutcome(position=o.position, key=o.key, status=T, http_status=400, message="no")
        for o in verdict.outcomes
    )
    return ResponseVerdict(http_status=400, outcomes=outcomes, bisect=tuple(range(len(outcomes))))


def test_a_lone_record_asked_to_be_bisected_again_is_rejected() -> None:
    keys = keys_of(2)
    api = FakeApi(keys, set())
    result = bisect(refused_whole(api.request(keys)), lambda p: refused_whole(api.send(p)))
    assert [o.status for o in result.outcomes] == [R, R]
    assert [o.message for o in result.outcomes] == ["no", "no"]
    assert result.requests == 2


def test_a_sender_answering_for_other_records_is_an_error() -> None:
    keys = keys_of(4)
    api = FakeApi(keys, {keys[0]})
    with pytest.raises(ValueError, match="answered 4 outcomes for 2 records"):
        bisect(api.request(keys), lambda positions: api.request(keys))


def test_nothing_to_bisect_sends_nothing() -> None:
    keys = keys_of(3)
    api = FakeApi(keys, set())
    first = api.request(keys)
    result = bisect(first, api.send)
    assert result.requests == 0
    assert result.outcomes == first.outcomes


@pytest.mark.parametrize(
    ("records", "bad", "bound"),
    [
        (0, 1, 0),
        (1, 1, 0),
        (2, 1, 2),
        (3, 1, 4),
        (1000, 1, 20),
        (1000, 3, 60),
        (4, 4, 6),
        (8, 0, 0),
    ],
)
def test_the_bound(records: int, bad: int, bound: int) -> None:
    assert bisection_bound(records, bad) == bound
