"""The docs cannot drift: their commands run, their options exist, their names are real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import attrs
import click
import pytest
import yaml

from fixtures.command import FloeProject, floe_command
from floe_sink import EgressResult
from floe_sink.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
QUICKSTART = ROOT / "examples" / "quickstart"


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def commands() -> dict[str, click.Command]:
    assert isinstance(cli, click.Group)
    return dict(cli.commands)


def test_every_command_and_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    for name, command in commands().items():
        assert f"floe-sink {name}" in text, name
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                for option in parameter.opts + parameter.secondary_opts:
                    if option.startswith("--"):
                        assert option in text, f"{name} {option} is not in docs/cli.md"


def test_every_documented_option_exists() -> None:
    known = {"--help", "--version"}
    for command in [cli, *commands().values()]:
        for parameter in command.params:
            if isinstance(parameter, click.Option):
                known.update(parameter.opts + parameter.secondary_opts)
    text = (DOCS / "cli.md").read_text()
    for option in set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text)):
        assert option in known, f"docs/cli.md documents {option}, which no command has"


def test_exit_codes_table_matches_the_code() -> None:
    text = (DOCS / "cli.md").read_text()
    rows = dict(re.findall(r"^\| `(\d)` \| (.+?) \|$", text, flags=re.MULTILINE))
    assert rows.keys() == {str(EXIT_OK), str(EXIT_FAILED), str(EXIT_CONFIG)}
    assert "success" in rows[str(EXIT_OK)]
    assert "delivery failed" in rows[str(EXIT_FAILED)]
    assert "configuration" in rows[str(EXIT_CONFIG)]


def test_json_result_example_has_exactly_the_result_fields() -> None:
    (example,) = [json.loads(text) for text in blocks("cli.md", "json") if text.startswith("[")]
    (record,) = example
    fields = {field.name for field in attrs.fields(EgressResult)}
    assert set(record) == fields | {"destination"}


def test_json_error_example_has_the_error_fields_and_every_kind_is_documented() -> None:
    (example,) = [json.loads(text) for text in blocks("cli.md", "json") if text.startswith("{")]
    assert set(example) == {"error"}
    assert set(example["error"]) == {"kind", "message", "problems"}
    source = (ROOT / "src" / "floe_sink" / "cli.py").read_text()
    kinds = set(re.findall(r'kind="(\w+)"', source)) | set(
        re.findall(r'_print_error_document\("(\w+)"', source)
    )
    assert kinds == {"configuration", "usage", "error", "unexpected", "interrupted"}
    text = (DOCS / "cli.md").read_text()
    for kind in kinds:
        assert f"`{kind}`" in text, kind


def test_every_environment_variable_is_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    source = "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))
    # variables are named by string constants: "FLOE_..." alone in quotes
    variables = sorted(set(re.findall(r"\"(FLOE_[A-Z_]+)\"", source)))
    assert "FLOE_SECRETS_DIR" in variables
    for variable in variables:
        assert f"`{variable}`" in text, f"{variable} is not in docs/operations.md"


def test_documented_span_names_exist() -> None:
    text = (DOCS / "operations.md").read_text()
    source = "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))
    for span in re.findall(r"`(floe_sink\.[a-z_.]+)`", text):
        assert f'"{span}"' in source, span


def test_readme_first_command_is_the_quickstart_command() -> None:
    readme = (ROOT / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.startswith("python3 -m venv"))
    assert "examples/quickstart/run.py" in first
    assert first in (DOCS / "quickstart.md").read_text()


def test_documented_floe_yaml_examples_are_valid(tmp_path: Path) -> None:
    from floe_sink.config import load_floe_spec

    documents = [
        text
        for page in ("quickstart.md", "concepts.md", "operations.md", "cli.md")
        if (DOCS / page).exists()
        for text in blocks(page, "yaml")
        if text.lstrip().startswith("destinations:")
    ]
    assert documents
    for index, text in enumerate(documents):
        path = tmp_path / f"floe-{index}.yaml"
        path.write_text(text)
        spec = load_floe_spec(path)
        assert spec.destinations


def test_quickstart_doc_matches_the_example_files() -> None:
    (documented,) = [
        yaml.safe_load(text)
        for text in blocks("quickstart.md", "yaml")
        if text.startswith("destinations:")
    ]
    actual = yaml.safe_load((QUICKSTART / "floe.yaml").read_text())
    shown = documented["destinations"][0]
    real = actual["destinations"][0]
    for key, value in shown.items():
        if key == "field_mapping":
            assert value.items() <= real[key].items()
        else:
            assert real[key] == value, key
    secret = (QUICKSTART / "secrets" / shown["connection_secret_ref"] / "url").read_text()
    assert secret.strip() in (DOCS / "quickstart.md").read_text()


@pytest.mark.slow
def test_quickstart_commands_run(tmp_path: Path, floe_project: FloeProject) -> None:
    """Run the quickstart page's shell block, line by line, in a copy of the example."""
    work = tmp_path / "quickstart"
    shutil.copytree(
        QUICKSTART, work, ignore=shutil.ignore_patterns(".floe", "*.sqlite", "*.duckdb")
    )
    (block,) = [
        text for text in blocks("quickstart.md", "bash") if "cd examples/quickstart" in text
    ]
    delivering = True
    try:
        import floe_sink_dlt.sql  # noqa: F401
    except ImportError:
        delivering = False  # the sql_database sink has not landed: run what can run
    project = FloeProject(root=work, warehouse=floe_project.warehouse)
    ran = 0
    for line in block.strip().splitlines():
        words = shlex.split(line)
        if words[0] == "cd":
            continue
        if words[0].endswith("python"):
            import subprocess

            subprocess.run([sys.executable, *words[1:]], cwd=work, check=True)
            continue
        assert words[0] == "floe-sink", line
        if words[1] == "run" and "--dry-run" not in words and not delivering:
            continue
        result = project.run(*words[1:])
        assert result.code == 0, (line, result.stdout, result.stderr)
        if "--output" in words and "json" in words:
            assert result.json()[0]["success"] is True
        ran += 1
    assert ran >= 2
    assert floe_command()


@pytest.mark.slow
def test_quickstart_script_prints_the_documented_report_and_no_log_lines(tmp_path: Path) -> None:
    """examples/quickstart/run.py, as the README runs it: the three steps, nothing else."""
    import subprocess

    work = tmp_path / "quickstart"
    shutil.copytree(
        QUICKSTART, work, ignore=shutil.ignore_patterns(".floe", "*.sqlite", "*.duckdb")
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLOE_")}
    completed = subprocess.run(
        [sys.executable, str(work / "run.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, (completed.stdout, completed.stderr)
    out = completed.stdout
    for step in ("[1/3] gold.customers: seeded", "[2/3] floe-sink run", "[3/3] where the data"):
        assert step in out
    # step 2 of docs/quickstart.md: rows delivered, the checksum and the idempotency key
    page = (DOCS / "quickstart.md").read_text()
    assert "the idempotency key" in page
    assert re.search(r"rows delivered in", out)
    assert re.search(r"checksum sha256:[0-9a-f]{64}", out)
    assert re.search(r"idempotency key floe-[0-9a-f]{64}", out)
    # no structlog event lines anywhere: not on stdout, and none by default on stderr
    for stream in (out, completed.stderr):
        assert "run_started" not in stream, stream
        assert "[info" not in stream, stream
        assert '"event"' not in stream, stream
