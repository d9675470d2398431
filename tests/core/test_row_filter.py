"""The quick row_filter check agrees with pyiceberg's parser, without importing pyiceberg."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given

from floe_sink.row_filter import looks_valid
from floe_sink.source import parse_row_filter
from strategies import mangled_row_filters, row_filters


def pyiceberg_parses(text: str) -> bool:
    try:
        parse_row_filter(text)
    except Exception:  # pyparsing's ParseException family, pyiceberg's ValueError
        return False
    return True


@given(row_filters)
def test_every_filter_of_the_grammar_is_accepted_as_pyiceberg_accepts_it(text: str) -> None:
    assert pyiceberg_parses(text), text  # the strategy writes pyiceberg's grammar
    assert looks_valid(text), text


@given(mangled_row_filters())
def test_a_filter_the_quick_check_accepts_pyiceberg_accepts(text: str) -> None:
    # the other way round is allowed: a refusal is handed to pyiceberg for the last word
    if looks_valid(text):
        assert pyiceberg_parses(text), text


@pytest.mark.parametrize(
    "text",
    ["x ===", "x = ", "(x = 1", "x = 1)", "and", "x in (1, 2.5)", "x = 1e5", '"a.b" = 1', "1 = 1"],
)
def test_what_pyiceberg_refuses_is_not_accepted(text: str) -> None:
    assert not pyiceberg_parses(text)
    assert not looks_valid(text)


def test_the_check_imports_no_pyiceberg() -> None:
    code = "import sys, floe_sink.row_filter as r; r.looks_valid('a = 1'); print(*sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pyiceberg" not in completed.stdout
