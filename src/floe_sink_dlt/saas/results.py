"""Per-record results: turn an API's answer into delivered, rejected or retryable per record.

How the delivery loop calls it
------------------------------
Parse the ``results`` config once, then judge every answer against the keys of the records the
request carried (in request order)::

    results = ResultsSpec.parse(config.get("results"))           # at from_config
    verdict = results.judge(keys, response.status_code, response.headers, response.content)
    if verdict.fatal:       # 401, 403, 404, a redirect...: no record is at fault; stop
        raise ...
    for outcome in verdict.outcomes:  # DELIVERED -> synced; REJECTED -> dead letters
        ...                           # RETRYABLE -> stays unsynced (retry now or next run)
    if verdict.bisect:      # positions to isolate: see floe_sink_dlt.saas.bisection
        ...

What an answer means
--------------------
=========================================  ===================================================
answer                                     records
=========================================  ===================================================
a retryable status (429, 5xx, 408, 425)    all retryable: send again after a wait
a fatal status (3xx, 401, 403, 404, 405,   all retryable, and ``fatal``: the destination is
407, 410)                                  misconfigured, not the records
2xx that names no failed record            all delivered
2xx that names failed records, or 207      the named ones rejected (status and the API's
                                           message), the others delivered
2xx/207 with errors that name no record    the unnamed records are to be bisected (or, with
of the request, or results that do not     ``bisect: false``, retryable): Census's rule, a
line up with the records                   record not known to be accepted is not delivered
another 4xx that names records             the named ones rejected, the others retryable (the
                                           request was refused whole: they were not applied)
another 4xx that names none                all to be bisected (one record: rejected); with
                                           ``bisect: false`` all rejected
=========================================  ===================================================

The configuration (``results:``)::

    mode: by_key                 # none (default) | by_position | by_key
    # by_position: one result per record, in request order
    items: results               # where the list is ("$": the body itself is the list)
    success: success             # in an item: a boolean (without it, an item fails when
                                 # it has a message)
    message: errors[*].message   # in an item (by_position) or an error (by_key)
    # by_key: a list of errors naming records
    errors: errors               # where the list is
    key: context.ids[*]          # in an error: the record key(s) it names
    key_is: key                  # key (default) | index (0-based position in the request)
    match: {input_array: attributes}   # only errors with these values (optional)
    # both
    batch_message: message       # the message of a whole-batch refusal (default: the body)
    bisect: true                 # isolate the bad records of an unnamed refusal
    retryable_statuses: [408, 425, 429, 500, 502, 503, 504]
    fatal_statuses: [401, 403, 404, 405, 407, 410]

Paths use the grammar of :mod:`floe_sink_dlt.record_ids` (``a.b``, ``[*]``, ``[n]``);
``$`` is the body itself, ``$[*].message`` the messages of a body that is a bare list.
Messages are the API's own words (cut to :data:`MESSAGE_CHARS`); they may quote the record's
values, so they belong with the record in the dead-letter store, not in logs or exceptions.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from floe_sink.structuring import (
    ConfigValueError,
    converter,
    json_schema,
    register_checked_class,
    register_enum,
)
from floe_sink_dlt.record_ids import RecordIdsPath
from floe_sink_dlt.structure import HttpStatuses, structure_at

__all__ = [
    "MESSAGE_CHARS",
    "KeyIs",
    "RecordOutcome",
    "RecordStatus",
    "ResponseVerdict",
    "ResultsMode",
    "ResultsSpec",
]

MESSAGE_CHARS: Final = 500
"""The most characters of an API message kept per record."""

_BY_POSITION_ONLY: Final = frozenset({"items", "success"})
_BY_KEY_ONLY: Final = frozenset({"errors", "key", "key_is", "match"})
_RETRYABLE: Final = (408, 425, 429, 500, 502, 503, 504)
_FATAL: Final = (401, 403, 404, 405, 407, 410)
_PARTIAL: Final = 207
_ROOT: Final = "$"


class ResultsMode(enum.StrEnum):
    """How an answer names the records' results."""

    NONE = "none"
    BY_POSITION = "by_position"
    BY_KEY = "by_key"


class KeyIs(enum.StrEnum):
    """What the key of an error (``results.key``) is."""

    KEY = "key"
    INDEX = "index"


register_enum(ResultsMode)
register_enum(KeyIs)


class RecordStatus(enum.StrEnum):
    """What became of one record."""

    DELIVERED = "delivered"
    """The API accepted it: mark it synced."""
    REJECTED = "rejected"
    """The API refused it (its status and message say why): a dead letter."""
    RETRYABLE = "retryable"
    """Not applied, for no fault of its own (yet known): send it again later."""


@attrs.frozen(kw_only=True)
class RecordOutcome:
    """The outcome of one record of a request.

    Attributes:
        position: The record's 0-based position in the request.
        key: The record's key, as the caller passed it.
        status: Delivered, rejected or retryable.
        http_status: The status of the answer that decided it.
        message: The API's message for a rejected record (or why a record is retryable);
            left out of ``repr`` since it may quote the record's values.
    """

    position: int
    key: str
    status: RecordStatus
    http_status: int
    message: str | None = attrs.field(default=None, repr=False)


@attrs.frozen(kw_only=True)
class ResponseVerdict:
    """Everything an answer says about the records of its request.

    Attributes:
        http_status: The answer's status.
        outcomes: One per record, in request order. The records listed in ``bisect`` are
            ``RETRYABLE`` here until bisection settles them.
        bisect: Positions of the records to isolate by resending them in halves.
        fatal: The answer is about the destination, not the records (authentication, a
            wrong URL): stop delivering to it.
        partial: Some records were accepted and others not (a 207, a 2xx with errors).
        unattributed: API messages that named no record of the request.
    """

    http_status: int
    outcomes: tuple[RecordOutcome, ...]
    bisect: tuple[int, ...] = ()
    fatal: bool = False
    partial: bool = False
    unattributed: tuple[str, ...] = attrs.field(default=(), repr=False)

    def _with(self, status: RecordStatus) -> tuple[RecordOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if outcome.status is status)

    @property
    def delivered(self) -> tuple[RecordOutcome, ...]:
        """The delivered records' outcomes."""
        return self._with(RecordStatus.DELIVERED)

    @property
    def rejected(self) -> tuple[RecordOutcome, ...]:
        """The rejected records' outcomes."""
        return self._with(RecordStatus.REJECTED)

    @property
    def retryable(self) -> tuple[RecordOutcome, ...]:
        """The retryable records' outcomes (those to bisect included)."""
        return self._with(RecordStatus.RETRYABLE)


@json_schema({"type": "string", "minLength": 1})
@attrs.frozen(kw_only=True)
class _Path:
    """A path into a decoded JSON answer; ``$`` is the document itself."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: Any) -> _Path:
        """Parse ``text``.

        Raises:
            ConfigValueError: ``text`` is not a path of the grammar.
        """
        if not isinstance(text, str) or not text:
            raise ConfigValueError("must be a path such as 'errors' or 'results[*].id'")
        if text == _ROOT:
            return cls(text=text, steps=())
        try:
            if text.startswith(_ROOT + "["):  # $[*].message: in the items of a bare list
                return cls(text=text, steps=RecordIdsPath.parse("_" + text[1:]).steps[1:])
            return cls(text=text, steps=RecordIdsPath.parse(text).steps)
        except ValueError as exc:
            raise ConfigValueError(str(exc)) from None

    def values(self, document: Any) -> list[Any]:
        """The values at this path (a ``[*]`` step yields every item)."""
        found: list[Any] = []
        _walk(document, self.steps, found)
        return found


def _walk(value: Any, steps: tuple[str | int, ...], found: list[Any]) -> None:
    if not steps:
        found.append(value)
        return
    step, rest = steps[0], steps[1:]
    if step == "*":
        if isinstance(value, list):
            for item in value:
                _walk(item, rest, found)
    elif isinstance(step, int):
        if isinstance(value, list) and -len(value) <= step < len(value):
            _walk(value[step], rest, found)
    elif isinstance(value, dict) and step in value:
        _walk(value[step], rest, found)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MESSAGE_CHARS:
        return text[: MESSAGE_CHARS - 3] + "..."
    return text


def _messages(values: Iterable[Any]) -> str | None:
    texts = [_text(value) for value in values if value is not None and value != ""]
    return _cut("; ".join(texts)) if texts else None


@json_schema(
    {
        "type": "object",
        "propertyNames": {"minLength": 1},
        "additionalProperties": {"type": ["string", "integer", "boolean"]},
    }
)
class PathMatches(tuple[tuple[_Path, str], ...]):
    """``match``: paths into an error and the values they must have, written as a mapping."""


def _structure_path(value: Any, _type: type) -> _Path:
    return _Path.parse(value)


def _structure_matches(value: Any, _type: type) -> PathMatches:
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str) and isinstance(expected, str | int | bool)
        for name, expected in value.items()
    ):
        raise ConfigValueError("must map paths to expected values")
    pairs = []
    for name, expected in value.items():
        try:
            pairs.append((_Path.parse(name), _text(expected)))
        except ConfigValueError as exc:
            raise ConfigValueError(exc.reason, at=(name,)) from None
    return PathMatches(pairs)


converter.register_structure_hook(_Path, _structure_path)
converter.register_structure_hook(PathMatches, _structure_matches)


_NO_MATCHES: Final = PathMatches()
_RETRYABLE_STATUSES: Final = HttpStatuses(_RETRYABLE)
_FATAL_STATUSES: Final = HttpStatuses(_FATAL)


def _mode_rules(given: Mapping[str, Any]) -> list[ConfigValueError]:
    """The keys each mode needs, and those it has no use for."""
    mode = given.get("mode") or ResultsMode.NONE
    problems = [
        ConfigValueError(f"does not apply to mode {mode}", at=(key,))
        for key in given
        if (key in _BY_POSITION_ONLY and mode != ResultsMode.BY_POSITION)
        or (key in _BY_KEY_ONLY and mode != ResultsMode.BY_KEY)
        or (key == "message" and mode == ResultsMode.NONE)
    ]
    needed = {
        ResultsMode.BY_POSITION: {"items": "is required for mode by_position ('$': the body)"},
        ResultsMode.BY_KEY: {
            "errors": "is required for mode by_key",
            "key": "is required for mode by_key",
        },
    }.get(mode, {})
    problems.extend(
        ConfigValueError(reason, at=(key,))
        for key, reason in needed.items()
        if given.get(key) is None
    )
    return problems


@attrs.frozen(kw_only=True)
class ResultsSpec:
    """How to read per-record results out of an answer (docs/sinks/rest_api.md, Per-record
    results; the module docstring).

    Attributes:
        mode: ``none`` (default), ``by_position`` or ``by_key``.
        items: by_position: where the list of results is (``$``: the body itself).
        success: by_position: an item's success flag.
        message: An item's (by_position) or an error's (by_key) message.
        errors: by_key: where the list of errors is.
        key: by_key: the record key(s) an error names.
        key_is: by_key: ``key`` (default) or ``index`` (0-based position in the request).
        match: by_key: only errors with these values.
        batch_message: The message of a whole-batch refusal (default: the body).
        bisect: Isolate the bad records of a refusal that names none.
        retryable_statuses: The statuses that leave every record retryable.
        fatal_statuses: The statuses that say the destination, not a record, is at fault.
    """

    mode: ResultsMode = ResultsMode.NONE
    items: _Path | None = None
    success: _Path | None = None
    message: _Path | None = None
    errors: _Path | None = None
    key: _Path | None = None
    key_is: KeyIs = KeyIs.KEY
    match: PathMatches = _NO_MATCHES
    batch_message: _Path | None = None
    bisect: bool = True
    retryable_statuses: HttpStatuses = _RETRYABLE_STATUSES
    fatal_statuses: HttpStatuses = _FATAL_STATUSES

    @classmethod
    def parse(cls, spec: Any, *, where: str = "config.results") -> ResultsSpec:
        """Validate a ``results`` config (``None`` gives the defaults: no per-record results).

        Args:
            spec: The mapping from the configuration, or ``None``.
            where: The config's place, the start of every error path.

        Returns:
            The parsed spec.

        Raises:
            SinkConfigurationError: Listing every key that is unknown, missing or invalid.
        """
        if spec is None:
            return cls()
        return structure_at(spec, cls, where=where)

    # -- judging an answer ------------------------------------------------------------------

    def judge(
        self,
        keys: Sequence[str],
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> ResponseVerdict:
        """What the answer ``status``/``headers``/``body`` says about each record.

        Args:
            keys: The keys of the request's records, in request order.
            status: The HTTP status.
            headers: The response headers (only ``Content-Type`` is looked at).
            body: The response body.

        Returns:
            The verdict: one outcome per record, the positions to bisect, whether the answer
            is fatal for the destination.
        """
        count = len(keys)
        if status in self.retryable_statuses:
            return self._all(keys, status, RecordStatus.RETRYABLE, f"HTTP {status}: try again")
        if status in self.fatal_statuses or 300 <= status < 400 or status < 200:
            verdict = self._all(
                keys, status, RecordStatus.RETRYABLE, f"HTTP {status}: the destination refused"
            )
            return attrs.evolve(verdict, fatal=True)
        document = _decode(headers, body)
        success = 200 <= status < 300
        named, unattributed, lined_up = self._named_failures(keys, document, success=success)
        if success:
            partial = bool(named) or bool(unattributed) or status == _PARTIAL or not lined_up
            ambiguous = bool(unattributed) or not lined_up
            if count == 1 and unattributed and lined_up and not named:
                # an error that names no record, in the answer to one record, is about it
                named = {0: _cut("; ".join(unattributed))}
                ambiguous = False
            outcomes = []
            to_bisect = []
            for position, key in enumerate(keys):
                if position in named:
                    outcomes.append(
                        self._outcome(position, key, status, RecordStatus.REJECTED, named[position])
                    )
                elif ambiguous:
                    outcomes.append(
                        self._outcome(
                            position,
                            key,
                            status,
                            RecordStatus.RETRYABLE,
                            "the answer reported errors it did not attribute to records",
                        )
                    )
                    if self.bisect and count > 1:
                        to_bisect.append(position)
                else:
                    outcomes.append(self._outcome(position, key, status, RecordStatus.DELIVERED))
            return ResponseVerdict(
                http_status=status,
                outcomes=tuple(outcomes),
                bisect=tuple(to_bisect),
                partial=partial,
                unattributed=tuple(unattributed),
            )
        # another 4xx: the request was refused whole
        if named:
            outcomes = [
                self._outcome(position, key, status, RecordStatus.REJECTED, named[position])
                if position in named
                else self._outcome(
                    position,
                    key,
                    status,
                    RecordStatus.RETRYABLE,
                    "not applied: the request was refused for other records",
                )
                for position, key in enumerate(keys)
            ]
            return ResponseVerdict(
                http_status=status, outcomes=tuple(outcomes), unattributed=tuple(unattributed)
            )
        message = self._batch_message(document, body) or f"HTTP {status}"
        if self.bisect and count > 1:
            verdict = self._all(keys, status, RecordStatus.RETRYABLE, message)
            return attrs.evolve(
                verdict, bisect=tuple(range(count)), unattributed=tuple(unattributed)
            )
        verdict = self._all(keys, status, RecordStatus.REJECTED, message)
        return attrs.evolve(verdict, unattributed=tuple(unattributed))

    def all_delivered(
        self, count: int, status: int, headers: Mapping[str, str], body: bytes
    ) -> bool:
        """Whether the answer accepts every one of the ``count`` records of its request:
        what :meth:`judge` would say with every outcome delivered, without building them
        (the common answer, on the hot path)."""
        if (
            not 200 <= status < 300
            or status == _PARTIAL
            or status in self.retryable_statuses
            or status in self.fatal_statuses
        ):
            return False  # judge() says what became of each record
        if self.mode == "none":
            return True
        document = _decode(headers, body)
        if self.mode == "by_position":
            failed, unattributed, lined_up = self._by_position(count, document)
            return lined_up and not failed and not unattributed
        if document is None:
            return True
        assert self.errors is not None
        found = self.errors.values(document)
        errors = found[0] if len(found) == 1 and isinstance(found[0], list) else found
        return not any(self._matches(error) for error in errors)

    def _all(
        self, keys: Sequence[str], status: int, kind: RecordStatus, message: str | None
    ) -> ResponseVerdict:
        return ResponseVerdict(
            http_status=status,
            outcomes=tuple(
                self._outcome(position, key, status, kind, message)
                for position, key in enumerate(keys)
            ),
        )

    @staticmethod
    def _outcome(
        position: int,
        key: str,
        status: int,
        kind: RecordStatus,
        message: str | None = None,
    ) -> RecordOutcome:
        return RecordOutcome(
            position=position, key=key, status=kind, http_status=status, message=message
        )

    def _batch_message(self, document: Any, body: bytes) -> str | None:
        if self.batch_message is not None and document is not None:
            found = _messages(self.batch_message.values(document))
            if found:
                return found
        text = body[: MESSAGE_CHARS * 4].decode("utf-8", errors="replace")
        return _cut(text) or None

    def _named_failures(
        self, keys: Sequence[str], document: Any, *, success: bool = True
    ) -> tuple[dict[int, str], list[str], bool]:
        """The failed positions with their messages, the messages naming no record, and
        whether by-position results lined up with the records."""
        if self.mode == "by_position":
            failed, unattributed, lined_up = self._by_position(len(keys), document, success=success)
            if not success and not lined_up:
                return {}, [], True  # a refusal's body that is not per-record results
            return failed, unattributed, lined_up
        if self.mode == "by_key" and document is not None:
            failed, unattributed = self._by_key(keys, document)
            return failed, unattributed, True
        return {}, [], True

    def _by_position(
        self, count: int, document: Any, *, success: bool = True
    ) -> tuple[dict[int, str], list[str], bool]:
        assert self.items is not None
        found = self.items.values(document) if document is not None else []
        items: list[Any] | None = None
        if len(found) == 1 and isinstance(found[0], list):
            items = found[0]
        elif "*" in self.items.steps:
            items = found
        # a refusal whose items carry no success flag (Salesforce's [{"message", "errorCode"}])
        # lists errors, not the records' results
        flagged = self.success
        if (
            items is not None
            and flagged is not None
            and success is False
            and not all(flagged.values(item) for item in items)
        ):
            items = None
        if items is None or len(items) != count:
            listed = "no" if items is None else str(len(items))
            return {}, [f"the answer listed {listed} results for {count} records"], False
        failed: dict[int, str] = {}
        for position, item in enumerate(items):
            message = _messages(self.message.values(item)) if self.message is not None else None
            if self.success is not None:
                flags = self.success.values(item)
                ok = bool(flags) and all(flag is True for flag in flags)
            else:
                ok = message is None
            if not ok:
                failed[position] = message or "refused by the API (no message)"
        return failed, [], True

    def _by_key(self, keys: Sequence[str], document: Any) -> tuple[dict[int, str], list[str]]:
        assert self.errors is not None
        assert self.key is not None
        found = self.errors.values(document)
        errors = found[0] if len(found) == 1 and isinstance(found[0], list) else found
        positions: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            positions.setdefault(key, []).append(position)
        failed: dict[int, list[str]] = {}
        unattributed: list[str] = []
        for error in errors:
            if not self._matches(error):
                continue
            message = (
                _messages(self.message.values(error)) if self.message is not None else None
            ) or _cut(_text(error))
            named = self._positions(error, keys, positions)
            if not named:
                unattributed.append(message)
            for position in named:
                failed.setdefault(position, []).append(message)
        return {
            position: _cut("; ".join(messages)) for position, messages in failed.items()
        }, unattributed

    def _matches(self, error: Any) -> bool:
        for path, expected in self.match:
            values = path.values(error)
            if not any(value is not None and _text(value) == expected for value in values):
                return False
        return True

    def _positions(
        self, error: Any, keys: Sequence[str], positions: Mapping[str, list[int]]
    ) -> list[int]:
        assert self.key is not None
        named: list[int] = []
        for value in self.key.values(error):
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item is None or isinstance(item, dict | list):
                    continue
                if self.key_is == "index":
                    if isinstance(item, bool):
                        continue
                    try:
                        index = int(item)
                    except ValueError:
                        continue
                    if 0 <= index < len(keys) and str(index) == _text(item).strip():
                        named.append(index)
                else:
                    named.extend(positions.get(_text(item), ()))
        return sorted(set(named))


register_checked_class(ResultsSpec, cross_check=_mode_rules)


def _decode(headers: Mapping[str, str], body: bytes) -> Any:
    """The JSON document of the body, or ``None`` when there is none."""
    if not body.strip():
        return None
    content_type = ""
    for name, value in headers.items():
        if name.lower() == "content-type":
            content_type = value.lower()
    if content_type and "json" not in content_type:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
