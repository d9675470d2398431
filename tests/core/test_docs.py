"""Docs cannot drift: every hook has a heading and a test, the guide shows the real example,
and CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from floe_sink import HOOK_NAMES

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"


def _headings(markdown: str) -> set[str]:
    return {match.group(1).strip() for match in re.finditer(r"^#{1,6}\s+(.+)$", markdown, re.M)}


@pytest.mark.requirement("4G-SC-006")
@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_heading_in_the_hook_reference(hook: str) -> None:
    assert hook in _headings((DOCS / "hooks.md").read_text())


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_has_a_test(hook: str) -> None:
    sources = "\n".join(path.read_text() for path in (ROOT / "tests" / "core").glob("test_*.py"))
    assert f"def test_hook_{hook}(" in sources


def test_hook_reference_renders_the_specification() -> None:
    assert "::: floe_sink.hookspecs.SinkConnectorSpec" in (DOCS / "hooks.md").read_text()


@pytest.mark.requirement("4G-SC-001")
def test_the_plugin_guide_shows_the_example_files_verbatim() -> None:
    guide = (DOCS / "writing-a-plugin.md").read_text()
    shown = re.findall(r"<!-- example: (\S+) -->\n```\w*\n(.*?)```\n", guide, re.S)
    assert {path for path, _ in shown} == {
        "examples/plugin-webhook/pyproject.toml",
        "examples/plugin-webhook/src/floe_sink_webhook/__init__.py",
        "examples/plugin-webhook/tests/test_webhook.py",
    }
    for path, text in shown:
        assert text == (ROOT / path).read_text(), f"{path} differs from the guide"


@pytest.mark.requirement("4G-SC-001")
def test_the_plugin_guide_documents_every_check_of_the_conformance_kit() -> None:
    from floe_sink.testing import Property, SinkConformance

    guide = (DOCS / "writing-a-plugin.md").read_text()
    tests = sorted(name for name in dir(SinkConformance) if name.startswith("test_"))
    assert [name for name in tests if f"`{name}" not in guide] == []
    properties = [value for name, value in vars(Property).items() if name.isupper()]
    assert [value for value in properties if f"`{value}`" not in guide] == []


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2] == "```bash"
    assert lines[3].endswith("examples/quickstart/run.py")
    assert lines[4].endswith("-m pytest -n 2")


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    # .ci/run runs the first README line with "-m pytest": it must be the README's test command.
    assert "grep -m 1 -e '-m pytest' README.md" in script
    readme = (ROOT / "README.md").read_text().splitlines()
    first = next(line for line in readme if "-m pytest" in line)
    assert first == readme[4]
    assert 'bash -c "set -euo pipefail; $test_command"' in script


ISSUE_REQUIREMENTS = {
    "4G-FR-001",
    "4G-FR-002",
    "4G-FR-003",
    "4G-FR-004",
    "4G-FR-010",
    "4G-FR-013",
    "4G-FR-014",
    "4G-FR-015",
    "4G-SC-006",
}


def test_every_core_requirement_is_carried_by_a_test() -> None:
    sources = "\n".join(path.read_text() for path in (ROOT / "tests" / "core").glob("test_*.py"))
    marked = {
        requirement
        for arguments in re.findall(r"mark\.requirement\(([^)]*)\)", sources)
        for requirement in re.findall(r"4G-(?:FR|SC)-\d{3}", arguments)
    }
    assert marked >= ISSUE_REQUIREMENTS, sorted(ISSUE_REQUIREMENTS - marked)
