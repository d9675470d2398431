"""Isolate the bad records of a refused request by resending it in halves.

When an API refuses a whole request without saying which record is at fault (a bare 400, a
413), or says that something failed without saying what, the good records can still go
through: send each half again, and keep halving the refused halves, down to single records.

How the delivery loop calls it
------------------------------
Positions are those of the records of the first request. ``send`` sends the records at the
given positions as one request (retrying transient failures itself, as for any request) and
returns the :class:`~floe_sink_dlt.saas.results.ResponseVerdict` of the answer::

    verdict = results.judge(keys, status, headers, body)       # the first answer
    if verdict.bisect:
        def send(positions):
            answer = post(compiled.body(records.take(positions)))
            return results.judge([keys[p] for p in positions], *answer)

        verdict_outcomes = bisect(verdict, send).outcomes    # one per record of the request

The bound
---------
With ``n`` records of which ``k`` are bad (a group is refused exactly when it holds a bad
record), each refused group of two or more records costs two requests (its halves), there are
at most ``k`` refused groups at each halving depth, and there are ``ceil(log2 n)`` depths
above single records. So isolating them takes at most ``2 k ceil(log2 n)`` requests (and
never more than ``2 n - 2``, the whole halving tree): one bad record in 1,000 costs 20
requests. :func:`bisection_bound` computes it; ``max_requests`` (default ``2 n``) caps a run:
when it is spent, the records not yet isolated are rejected with the refusal's message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs

from floe_sink_dlt.saas.results import RecordOutcome, RecordStatus, ResponseVerdict

__all__ = ["BisectionResult", "Send", "bisect", "bisection_bound"]

Send = Callable[[Sequence[int]], ResponseVerdict]
"""Sends the records at these positions as one request; returns the answer's verdict, its
outcomes in the order of the positions given."""


@attrs.frozen(kw_only=True)
class BisectionResult:
    """What bisection settled.

    Attributes:
        outcomes: One per record of the first request, in request order: those the first
            answer settled as it said, the others as bisection found.
        requests: How many requests bisection sent.
        exhausted: ``max_requests`` ran out before every record was isolated (the rest are
            rejected).
        fatal: An answer was fatal for the destination (authentication, URL): bisection
            stopped, and the records not yet settled are retryable.
    """

    outcomes: tuple[RecordOutcome, ...]
    requests: int
    exhausted: bool = False
    fatal: bool = False


def bisection_bound(records: int, bad: int = 1) -> int:
    """The most requests bisection sends to isolate ``bad`` bad records among ``records``.

    Args:
        records: Records in the refused request.
        bad: Bad records among them.

    Returns:
        ``min(2 * bad * ceil(log2(records)), 2 * records - 2)`` (0 for one record or none).
    """
    if records <= 1 or bad <= 0:
        return 0
    return min(2 * min(bad, records) * math.ceil(math.log2(records)), 2 * records - 2)


def bisect(
    first: ResponseVerdict,
    send: Send,
    *,
    max_requests: int | None = None,
) -> BisectionResult:
    """Resend the records ``first`` asks to bisect in halves, until each one is settled.

    Args:
        first: The verdict on the first request; its ``bisect`` positions are isolated.
        send: Sends a group of positions as one request (see :data:`Send`).
        max_requests: The most requests to send (default ``2 * len(first.bisect)``).

    Returns:
        The outcome of every record of the first request, and how many requests it took.

    Raises:
        ValueError: ``send`` returned a verdict whose outcomes do not match the group.
    """
    budget = 2 * len(first.bisect) if max_requests is None else max_requests
    settled: dict[int, RecordOutcome] = {outcome.position: outcome for outcome in first.outcomes}
    refusal: dict[int, RecordOutcome] = {position: settled[position] for position in first.bisect}
    stack: list[tuple[int, ...]] = list(reversed(_halves(tuple(first.bisect))))
    requests = 0
    exhausted = fatal = False
    while stack:
        group = stack.pop()
        if fatal or requests >= budget:
            exhausted = exhausted or not fatal
            for position in group:
                settled[position] = _unsettled(refusal[position], fatal=fatal)
            continue
        requests += 1
        verdict = send(group)
        if len(verdict.outcomes) != len(group):
            raise ValueError(
                f"send() answered {len(verdict.outcomes)} outcomes for {len(group)} records"
            )
        fatal = verdict.fatal
        again = set(verdict.bisect)
        retry: list[int] = []
        for index, (position, outcome) in enumerate(zip(group, verdict.outcomes, strict=True)):
            placed = attrs.evolve(outcome, position=position)
            if index in again and not fatal:
                refusal[position] = placed
                retry.append(position)
            else:
                settled[position] = placed
        if retry and len(group) == 1:
            # asked to isolate what is already alone: it is the bad one
            settled[group[0]] = attrs.evolve(refusal[group[0]], status=RecordStatus.REJECTED)
        elif retry:
            if len(retry) == len(group):
                stack.extend(reversed(_halves(tuple(retry))))
            else:
                stack.append(tuple(retry))
    return BisectionResult(
        outcomes=tuple(settled[outcome.position] for outcome in first.outcomes),
        requests=requests,
        exhausted=exhausted,
        fatal=fatal,
    )


def _halves(group: tuple[int, ...]) -> list[tuple[int, ...]]:
    if len(group) <= 1:
        return [group] if group else []
    middle = (len(group) + 1) // 2
    return [group[:middle], group[middle:]]


def _unsettled(refused: RecordOutcome, *, fatal: bool) -> RecordOutcome:
    if fatal:
        return attrs.evolve(refused, status=RecordStatus.RETRYABLE)
    return attrs.evolve(
        refused,
        status=RecordStatus.REJECTED,
        message=(refused.message or "refused") + " (not isolated: max_requests spent)",
    )
