"""Is a ``row_filter`` written in pyiceberg's expression syntax? Told without pyiceberg.

pyiceberg's parser (``pyiceberg.expressions.parser``) costs half a second to import (pyparsing,
pydantic and its expression classes), which ``floe-sink validate`` cannot afford for every
destination. :func:`looks_valid` answers with a small recursive-descent reading of the same
grammar::

    expr      := term (OR term)*            term := factor (AND factor)*
    factor    := NOT factor | '(' expr ')' | predicate
    predicate := column op literal | literal op column        (op: < <= > >= = == != <>)
               | column BETWEEN literal AND literal
               | column [NOT] IN '(' literals of one kind ')'
               | column IS [NOT] NULL | column IS [NOT] NAN
               | column [NOT] LIKE 'string'         (a '%' only at the end)
    column    := name ('.' name)*           name := word | "quoted"

or a bare ``true`` or ``false`` (in parentheses or not) as the whole filter.

Keywords are case-insensitive; literals are 'strings' ('' inside), integers, decimals
(``1.5``, ``.5``) and true/false. It is used only to *accept*: a filter it refuses is given to
pyiceberg's parser, which has the last word (and says where it stopped), and the run parses
every filter with pyiceberg before it reads anything.
"""

from __future__ import annotations

import re

__all__ = ["looks_valid"]

_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<string>'(?:[^'\n\r\\]|''|\\.)*')
    | (?P<quoted>"[^"\\.]*")
    | (?P<number>[+-]?(?:\d+\.\d*|\.\d+|\d+))
    | (?P<op><=|>=|<>|!=|==|<|>|=)
    | (?P<punct>[(),.])
    | (?P<word>(?:[A-Za-z_]|[^\x00-\x7f\s])(?:[\w$]|[^\x00-\x7f\s])*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "is", "in", "null", "nan", "like", "between"}
_BOOLEANS = {"true", "false"}
_INNER_WILDCARD = re.compile(r"(?<!\\)%")


class _Refused(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _Refused
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "number" and "." in value and found and found[-1][0] in ("word", "quoted"):
            raise _Refused  # "a.5": a dotted name never has a part starting with a digit
        if kind == "punct":
            kind = value
        elif kind == "word" and value.lower() in _KEYWORDS:
            kind = value.lower()
        elif kind == "word" and value.lower() in _BOOLEANS:
            kind = "boolean"
        found.append((kind, value))
        position = match.end()
    return found


class _Reader:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self, offset: int = 0) -> str:
        at = self.index + offset
        return self.tokens[at][0] if at < len(self.tokens) else ""

    def take(self, *kinds: str) -> str:
        kind = self.peek()
        if kind not in kinds:
            raise _Refused
        self.index += 1
        return kind

    def maybe(self, kind: str) -> bool:
        if self.peek() == kind:
            self.index += 1
            return True
        return False

    def expr(self) -> None:
        self.term()
        while self.maybe("or"):
            self.term()

    def term(self) -> None:
        self.factor()
        while self.maybe("and"):
            self.factor()

    def factor(self) -> None:
        if self.maybe("not"):
            self.factor()
        elif self.maybe("("):
            self.expr()
            self.take(")")
        else:
            self.predicate()

    def predicate(self) -> None:
        if self.peek() in ("string", "number") or (
            self.peek() == "boolean" and self.peek(1) == "op"
        ):
            self.take("string", "number", "boolean")  # literal op column
            self.take("op")
            self.column()
            return
        if self.peek() == "boolean" and self.peek(1) not in ("is", "in", "like", "between", "."):
            raise _Refused  # a bare true/false is a whole filter, never a part of one
        self.column()
        kind = self.peek()
        if kind == "op":
            self.take("op")
            self.take("string", "number", "boolean")
        elif kind == "between":
            self.take("between")
            self.take("string", "number", "boolean")
            self.take("and")
            self.take("string", "number", "boolean")
        elif kind == "is":
            self.take("is")
            self.maybe("not")
            self.take("null", "nan")
        else:
            self.maybe("not")
            if self.maybe("like"):
                self.take("string")
                pattern = self.tokens[self.index - 1][1][1:-1].replace("''", "'")
                if _INNER_WILDCARD.search(pattern.removesuffix("%")):
                    raise _Refused  # pyiceberg: a wildcard '%' only at the end
            else:
                self.take("in")
                self.literal_set()

    def column(self) -> None:
        self.take("word", "quoted", "boolean")
        while self.maybe("."):
            self.take("word", "quoted", "boolean")

    def literal_set(self) -> None:
        self.take("(")
        first = self.take("string", "number", "boolean")
        kinds = {self._number_kind(first)}
        while self.maybe(","):
            kinds.add(self._number_kind(self.take("string", "number", "boolean")))
        if len(kinds) > 1:
            raise _Refused  # pyiceberg reads a list of one kind of literal only
        self.take(")")

    def _number_kind(self, kind: str) -> str:
        if kind != "number":
            return kind
        value = self.tokens[self.index - 1][1]
        return "decimal" if "." in value else "integer"


def looks_valid(row_filter: str) -> bool:
    """True when ``row_filter`` reads as a pyiceberg expression (see the module docstring).

    ``False`` is not the last word: pyiceberg's own parser decides then.
    """
    try:
        tokens = _tokens(row_filter)
        if [kind for kind, _ in tokens if kind not in "()"] == ["boolean"]:
            return [kind for kind, _ in tokens].count("(") == [k for k, _ in tokens].count(")")
        reader = _Reader(tokens)
        reader.expr()
    except (_Refused, RecursionError):
        return False
    return reader.index == len(reader.tokens)
