"""A corpus of malformed floe.yaml and manifest.yaml files, each with its expected problems.

``corpus/<case>.yaml`` is loaded with ``load_floe_spec`` (``floe-*``) or ``load_manifest``
(``manifest-*``); ``corpus/<case>.expect`` holds one line per expected problem, in order: a
substring of the problem that names its location and reason. Adding a case is adding two files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from floe_sink.config import ConfigError, load_floe_spec, load_manifest

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert all(case.with_suffix(".expect").is_file() for case in CASES)


@pytest.mark.requirement("4G-FR-011")
@pytest.mark.requirement("4G-FR-017")
@pytest.mark.requirement("4G-FR-018")
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_malformed_file_yields_one_error_listing_every_problem(case: Path) -> None:
    loader = load_manifest if case.name.startswith("manifest-") else load_floe_spec
    expected = case.with_suffix(".expect").read_text(encoding="utf-8").splitlines()
    with pytest.raises(ConfigError) as info:
        loader(case)
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for problem, substring in zip(problems, expected, strict=True):
        assert problem.startswith(f"{case}: "), problem
        assert substring in problem, (substring, problem)
    assert "hunter2" not in str(info.value)
    assert "id:secret" not in str(info.value)
