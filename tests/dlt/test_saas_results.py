"""Per-record results (floe_sink_dlt.saas.results): an answer to delivered / rejected /
retryable per record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_sink.errors import SinkConfigurationError
from floe_sink_dlt.saas.results import (
    MESSAGE_CHARS,
    RecordOutcome,
    RecordStatus,
    ResponseVerdict,
    ResultsSpec,
)

JSON = {"Content-Type": "application/json"}
KEYS = ["a@x.io", "b@x.io", "c@x.io"]
D, R, T = RecordStatus.DELIVERED, RecordStatus.REJECTED, RecordStatus.RETRYABLE


def judge(spec: Any, status: int, body: Any, keys: list[str] = KEYS, **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ResultsSpec.parse(spec).judge(keys, status, kwargs.get("headers", JSON), raw)


def statuses(verdict: ResponseVerdict) -> list[RecordStatus]:
    return [outcome.status for outcome in verdict.outcomes]


def messages(verdict: ResponseVerdict) -> list[str | None]:
    return [outcome.message for outcome in verdict.outcomes]


# -- statuses without per-record results ---------------------------------------------------


def test_a_2xx_delivers_every_record() -> None:
    verdict = judge(None, 200, {"ok": True})
    assert statuses(verdict) == [D, D, D]
    assert [outcome.key for outcome in verdict.outcomes] == KEYS
    assert [outcome.position for outcome in verdict.outcomes] == [0, 1, 2]
    assert verdict.delivered == verdict.outcomes
    assert not verdict.bisect
    assert not verdict.fatal


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_make_every_record_retryable(status: int) -> None:
    verdict = judge({"mode": "by_key", "errors": "errors", "key": "id"}, status, b"busy")
    assert statuses(verdict) == [T, T, T]
    assert not verdict.fatal
    assert not verdict.bisect


@pytest.mark.parametrize("status", [301, 302, 401, 403, 404, 405, 407, 410, 101])
def test_fatal_statuses_blame_the_destination_not_the_records(status: int) -> None:
    verdict = judge(None, status, {"error": "nope"})
    assert verdict.fatal
    assert statuses(verdict) == [T, T, T]
    assert verdict.retryable == verdict.outcomes


def test_the_status_lists_are_configurable() -> None:
    spec = {"retryable_statuses": [409], "fatal_statuses": [418]}
    assert statuses(judge(spec, 409, b"")) == [T, T, T]
    assert judge(spec, 418, b"").fatal
    assert judge(spec, 429, b"").bisect == (0, 1, 2)  # no longer retryable: a refusal


def test_an_unnamed_4xx_is_bisected_or_for_one_record_rejected() -> None:
    verdict = judge(None, 400, {"message": "bad request"})
    assert verdict.bisect == (0, 1, 2)
    assert statuses(verdict) == [T, T, T]
    single = judge(None, 422, {"message": "invalid"}, keys=["only"])
    assert statuses(single) == [R]
    assert single.rejected[0].message == '{"message": "invalid"}'
    assert single.rejected[0].http_status == 422


def test_without_bisection_an_unnamed_4xx_rejects_all_with_the_batch_message() -> None:
    verdict = judge({"batch_message": "message", "bisect": False}, 400, {"message": "bad"})
    assert statuses(verdict) == [R, R, R]
    assert messages(verdict) == ["bad", "bad", "bad"]
    empty = judge({"bisect": False}, 400, b"")
    assert messages(empty) == ["HTTP 400"] * 3


# -- by position -------------------------------------------------------------------------------

SALESFORCE_LIKE = {
    "mode": "by_position",
    "items": "$",
    "success": "success",
    "message": "errors[*].message",
}


def test_results_by_position_reject_the_failed_items() -> None:
    body = [
        {"id": "001", "success": True, "errors": []},
        {"success": False, "errors": [{"message": "Required fields are missing"}]},
        {"id": "003", "success": True, "errors": []},
    ]
    verdict = judge(SALESFORCE_LIKE, 200, body)
    assert statuses(verdict) == [D, R, D]
    assert verdict.rejected[0].message == "Required fields are missing"
    assert verdict.partial


def test_results_by_position_without_a_success_flag_fail_items_with_a_message() -> None:
    spec = {"mode": "by_position", "items": "data", "message": "error"}
    body = {"data": [{"error": None}, {"error": "duplicate"}, {}]}
    assert statuses(judge(spec, 200, body)) == [D, R, D]
    assert statuses(judge({**spec, "items": "data[*]"}, 200, body)) == [D, R, D]
    flag_only = {"mode": "by_position", "items": "$", "success": "ok"}
    assert (
        messages(judge(flag_only, 200, [{"ok": True}, {"ok": False}, {}]))[1:]
        == ["refused by the API (no message)"] * 2
    )


def test_results_that_do_not_line_up_are_ambiguous() -> None:
    verdict = judge(SALESFORCE_LIKE, 200, [{"success": True}])
    assert statuses(verdict) == [T, T, T]
    assert verdict.bisect == (0, 1, 2)
    assert verdict.unattributed == ("the answer listed 1 results for 3 records",)
    assert judge(SALESFORCE_LIKE, 204, b"").unattributed == (
        "the answer listed no results for 3 records",
    )
    no_bisect = judge({**SALESFORCE_LIKE, "bisect": False}, 200, {"x": 1})
    assert statuses(no_bisect) == [T, T, T]
    assert not no_bisect.bisect
    assert statuses(judge(SALESFORCE_LIKE, 200, b"[]", keys=["one"])) == [T]


# -- by key ------------------------------------------------------------------------------------

HUBSPOT_LIKE = {"mode": "by_key", "errors": "errors", "key": "context.ids[*]", "message": "message"}


def test_a_207_rejects_the_records_its_errors_name() -> None:
    body = {
        "status": "COMPLETE",
        "results": [{"id": "1"}, {"id": "3"}],
        "errors": [
            {
                "status": "error",
                "category": "VALIDATION_ERROR",
                "message": "Invalid email",
                "context": {"ids": ["b@x.io"]},
            },
        ],
    }
    verdict = judge(HUBSPOT_LIKE, 207, body)
    assert statuses(verdict) == [D, R, D]
    assert verdict.rejected[0].message == "Invalid email"
    assert verdict.rejected[0].http_status == 207
    assert verdict.partial
    assert not verdict.bisect


def test_a_207_without_errors_is_still_partial_but_delivers() -> None:
    verdict = judge(HUBSPOT_LIKE, 207, {"results": []})
    assert statuses(verdict) == [D, D, D]
    assert verdict.partial


def test_several_errors_for_one_record_are_joined() -> None:
    body = {
        "errors": [
            {"message": "one", "context": {"ids": ["a@x.io", "c@x.io"]}},
            {"message": "two", "context": {"ids": ["a@x.io"]}},
        ]
    }
    verdict = judge(HUBSPOT_LIKE, 200, body)
    assert messages(verdict) == ["one; two", None, "one"]


def test_errors_naming_no_record_of_the_request_make_the_rest_ambiguous() -> None:
    body = {
        "errors": [
            {"message": "named", "context": {"ids": ["a@x.io"]}},
            {"message": "Something went wrong", "context": {}},
        ]
    }
    verdict = judge(HUBSPOT_LIKE, 207, body)
    assert statuses(verdict) == [R, T, T]
    assert verdict.bisect == (1, 2)
    assert verdict.unattributed == ("Something went wrong",)
    alone = judge(HUBSPOT_LIKE, 207, {"errors": [{"message": "boom"}]}, keys=["z"])
    assert statuses(alone) == [R]
    assert alone.rejected[0].message == "boom"


BRAZE_LIKE = {
    "mode": "by_key",
    "errors": "errors",
    "key": "index",
    "key_is": "index",
    "match": {"input_array": "attributes"},
    "message": "type",
    "batch_message": "message",
}


def test_errors_by_index_with_a_filter() -> None:
    body = {
        "message": "success",
        "attributes_processed": 2,
        "errors": [
            {"type": "'email' is not a valid email", "input_array": "attributes", "index": 1},
            {"type": "bad event", "input_array": "events", "index": 0},
            {"type": "out of range", "input_array": "attributes", "index": 7},
            {"type": "not a number", "input_array": "attributes", "index": "x"},
        ],
    }
    verdict = judge(BRAZE_LIKE, 201, body)
    assert statuses(verdict) == [T, R, T]
    assert verdict.rejected[0].message == "'email' is not a valid email"
    assert verdict.unattributed == ("out of range", "not a number")
    assert verdict.bisect == (0, 2)


def test_a_4xx_naming_records_rejects_them_and_keeps_the_others_for_a_resend() -> None:
    body = {
        "message": "Valid data must be provided in the 'attributes' field.",
        "errors": [{"type": "'external_id' is required", "input_array": "attributes", "index": 0}],
    }
    verdict = judge(BRAZE_LIKE, 400, body)
    assert statuses(verdict) == [R, T, T]
    assert verdict.rejected[0].message == "'external_id' is required"
    assert not verdict.bisect


def test_a_4xx_naming_none_quotes_the_batch_message() -> None:
    verdict = judge(BRAZE_LIKE, 400, {"message": "Invalid request"}, keys=["k"])
    assert messages(verdict) == ["Invalid request"]


def test_a_body_that_is_not_json_is_not_parsed() -> None:
    html = judge(HUBSPOT_LIKE, 200, b"<html>errors</html>", headers={"content-type": "text/html"})
    assert statuses(html) == [D, D, D]
    broken = judge(HUBSPOT_LIKE, 200, b"{not json")
    assert statuses(broken) == [D, D, D]


def test_messages_are_cut_and_kept_out_of_repr() -> None:
    long = "x" * (MESSAGE_CHARS * 2)
    body = {"errors": [{"message": long + " secret@row.io", "context": {"ids": ["a@x.io"]}}]}
    verdict = judge(HUBSPOT_LIKE, 200, body)
    message = verdict.rejected[0].message
    assert message is not None
    assert len(message) == MESSAGE_CHARS
    assert message.endswith("...")
    assert "secret" not in repr(verdict)
    assert "message=" not in repr(verdict.rejected[0])


def test_an_error_without_a_message_is_quoted_whole() -> None:
    spec = {"mode": "by_key", "errors": "failures", "key": "ref"}
    verdict = judge(spec, 200, {"failures": [{"ref": "c@x.io", "code": 7}]})
    assert messages(verdict) == [None, None, '{"code":7,"ref":"c@x.io"}']


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "config.results: expected a mapping, got a list"),
        ({"mode": "by_row"}, "config.results.mode: must be one of none, by_position, by_key"),
        ({"moed": "none"}, "config.results.moed: unknown key; did you mean 'mode'?"),
        ({"mode": "by_position"}, "config.results.items: is required for mode by_position"),
        ({"mode": "by_key", "key": "id"}, "config.results.errors: is required for mode by_key"),
        ({"mode": "by_key", "errors": "e"}, "config.results.key: is required for mode by_key"),
        ({"items": "x"}, "config.results.items: does not apply to mode none"),
        ({"message": "x"}, "config.results.message: does not apply to mode none"),
        ({"mode": "by_position", "items": "$", "key": "x"}, "results.key: does not apply"),
        ({"mode": "by_key", "errors": "e[", "key": "k"}, "config.results.errors: invalid"),
        ({"mode": "by_key", "errors": "", "key": "k"}, "config.results.errors: must be a path"),
        ({"mode": "by_key", "errors": "e", "key": "k", "key_is": "id"}, "key_is: must be one"),
        ({"mode": "by_key", "errors": "e", "key": "k", "match": ["x"]}, "results.match: must"),
        ({"bisect": "yes"}, "config.results.bisect: expected true or false"),
        ({"retryable_statuses": [429, 1000]}, "retryable_statuses: must be a list of HTTP"),
        ({"fatal_statuses": "401"}, "config.results.fatal_statuses: must be a list"),
    ],
)
def test_bad_results_configs_are_refused_naming_the_key(spec: Any, message: str) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        ResultsSpec.parse(spec)
    assert message in str(caught.value)


def test_outcomes_are_plain_records() -> None:
    outcome = RecordOutcome(position=0, key="k", status=R, http_status=400, message="m")
    assert outcome.status == "rejected"
    verdict = ResponseVerdict(http_status=400, outcomes=(outcome,))
    assert verdict.rejected == (outcome,)
    assert verdict.delivered == ()


# -- the fast path of the delivery loop ------------------------------------------------------

_ANSWER_BODIES = st.one_of(
    st.none(),
    st.just({}),
    st.lists(
        st.fixed_dictionaries(
            {"success": st.booleans(), "errors": st.lists(st.just({"message": "bad"}), max_size=1)}
        ),
        max_size=4,
    ),
    st.fixed_dictionaries(
        {
            "errors": st.lists(
                st.fixed_dictionaries(
                    {
                        "context": st.fixed_dictionaries(
                            {"ids": st.lists(st.sampled_from([*KEYS, "zz"]), max_size=2)}
                        ),
                        "message": st.just("m"),
                    }
                ),
                max_size=3,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "errors": st.lists(
                st.fixed_dictionaries(
                    {
                        "input_array": st.sampled_from(["attributes", "events"]),
                        "index": st.integers(0, 4),
                        "type": st.just("t"),
                    }
                ),
                max_size=3,
            )
        }
    ),
)


@given(
    spec=st.sampled_from([None, SALESFORCE_LIKE, HUBSPOT_LIKE, BRAZE_LIKE]),
    status=st.sampled_from([200, 201, 204, 207, 400, 401, 422, 429, 503]),
    body=_ANSWER_BODIES,
)
def test_all_delivered_says_exactly_what_judge_says_of_a_plain_acceptance(
    spec: Any, status: int, body: Any
) -> None:
    parsed = ResultsSpec.parse(spec)
    raw = json.dumps(body).encode() if body is not None else b""
    verdict = parsed.judge(KEYS, status, JSON, raw)
    every = all(outcome.status is D for outcome in verdict.outcomes) and not verdict.bisect
    fast = parsed.all_delivered(len(KEYS), status, JSON, raw)
    if fast:
        assert every
    if every and not verdict.partial and not verdict.fatal:
        assert fast
