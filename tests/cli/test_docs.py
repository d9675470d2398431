"""The docs cannot drift: their commands run, their options exist, their names are real."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
import click
import pytest
import yaml

from fixtures.command import FloeProject, floe_command
from floe_sink import EgressResult
from floe_sink.cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, cli
from floe_sink.config import PlatformManifest

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
    """examples/quickstart/run.py, as the README runs it: the six steps, nothing else."""
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
    steps = (
        "[1/6] gold.customers: 5,000 customers seeded",
        "[2/6] floe-sink run",
        "[3/6] gold.customers rebuilt: customers 1, 2, 3 changed, customer 4 left",
        "[4/6] floe-sink plan",
        "[5/6] floe-sink run",
        "[6/6] floe-sink status",
    )
    for step in steps:
        assert step in out
    # the numbers docs/quickstart.md promises: every row first, then only what changed
    page = (DOCS / "quickstart.md").read_text()
    assert "4,393 rows inserted" in page
    assert "3 updates, 1 delete, 4,389" in page
    assert "4,393 inserted, 0 updated, 0 deleted" in out
    assert "0 inserts, 3 updates, 1 deletes, 4,389 unchanged" in out
    assert "0 inserted, 3 updated, 1 deleted, 4,389 unchanged" in out
    assert "4,392 rows in customers" in out
    assert "the idempotency key" in page
    assert re.search(r"checksum sha256:[0-9a-f]{64}", out)
    assert re.search(r"idempotency key floe-[0-9a-f]{64}", out)
    # no structlog event lines anywhere: not on stdout, and none by default on stderr
    for stream in (out, completed.stderr):
        assert "run_started" not in stream, stream
        assert "[info" not in stream, stream
        assert '"event"' not in stream, stream


# -- every example of every page: run it, or check it against the code's own lists ------------
#
# Each fenced block of docs/ and README.md is one of: a shell block (its floe-sink command
# lines are checked against the click commands: command names, options, choices), a YAML block
# (loaded as floe.yaml or manifest.yaml, and each destination's config handed to its sink), or
# another kind checked elsewhere (JSON above, the plugin guide's verbatim files). A block that
# cannot be checked says why on the line before it: <!-- docs-test: skip: REASON -->.
# Inline `floe-sink ...` code spans in the prose are checked like shell lines.

PAGES = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
SKIP_MARKER = re.compile(r"<!-- docs-test: skip: [^>]+ -->\s*$")
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
SHELL = {"bash", "sh", "shell", "console"}


@attrs.frozen
class Block:
    page: Path
    line: int
    lang: str
    body: str
    skipped: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                lang=match.group("lang"),
                body=match.group("body"),
                skipped=bool(SKIP_MARKER.search(before)),
            )
        )
    return found


ALL_BLOCKS = [block for page in PAGES for block in page_blocks(page)]


def prose(page: Path) -> str:
    return FENCE.sub("", page.read_text())


def _placeholder(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z_]*", word))


def _options(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {}
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            for name in parameter.opts + parameter.secondary_opts:
                names[name] = parameter
    if command.get_help_option(click.Context(command)) is not None:
        names.update({"-h": command.params[0], "--help": command.params[0]})
    return names


def _check_choice(parameter: click.Parameter, value: str, where: str) -> None:
    if not isinstance(parameter.type, click.Choice) or _placeholder(value):
        return
    choices = {str(choice) for choice in parameter.type.choices}
    if "|" in value:  # a synopsis: text|json lists every choice
        assert set(value.split("|")) == choices, f"{where}: {value} is not {sorted(choices)}"
    else:
        assert value in choices, f"{where}: {value!r} is not one of {sorted(choices)}"


def check_invocation(words: list[str], where: str) -> None:
    """``floe-sink WORDS`` (a command line or a synopsis) matches the click commands."""
    # a synopsis: [--manifest MANIFEST_YAML], NAME]..., [-v | -vv | -q]
    words = [word.strip("[]").removesuffix("...").strip("[]") for word in words]
    words = [word for word in words if word and word not in {"|", "..."}]
    group_options = _options(cli)
    command: click.Command | None = None
    positional = 0
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "COMMAND" and command is None:
            break  # the group's synopsis: what follows is any command
        if word.startswith("-"):
            name, _, inline = word.partition("=")
            if re.fullmatch(r"-([a-z])\1+", name):
                name = name[:2]  # -vv: a counted flag, twice
            known = dict(group_options) if command is None else _options(command)
            known.update(group_options)
            parameter = None
            for alternative in name.split("/"):  # --progress/--no-progress
                assert alternative in known, (
                    f"{where}: {alternative} is not an option of "
                    f"floe-sink {command.name if command else ''}".rstrip()
                )
                parameter = known[alternative]
            assert parameter is not None
            takes_value = isinstance(parameter, click.Option) and not (
                parameter.is_flag or parameter.count
            )
            if takes_value:
                value = inline
                if not value:
                    assert index < len(words), f"{where}: {name} needs a value"
                    value = words[index]
                    index += 1
                _check_choice(parameter, value, where)
            continue
        if command is None:
            assert isinstance(cli, click.Group)
            assert word in cli.commands, f"{where}: floe-sink has no command {word!r}"
            command = cli.commands[word]
            continue
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        assert positional < len(arguments) or any(a.nargs == -1 for a in arguments), (
            f"{where}: floe-sink {command.name} takes no argument {word!r}"
        )
        if positional < len(arguments):
            _check_choice(arguments[positional], word, where)
        positional += 1


def shell_lines(block: Block) -> list[str]:
    lines = []
    for raw in block.body.splitlines():
        line = raw.strip().removeprefix("$ ")
        if line and not line.startswith("#"):
            lines.append(line.split(" #")[0].strip())
    return lines


def floe_sink_invocations(line: str) -> list[list[str]]:
    """The argument lists of every floe-sink command in one shell line."""
    found = []
    for segment in re.split(r"&&|\|\||;|\s\|\s", line):
        try:
            words = shlex.split(segment)
        except ValueError:
            words = segment.split()
        words = [w for w in words if "=" not in w or w.startswith("-")] if words else []
        if words and (words[0] == "floe-sink" or words[0].endswith("/floe-sink")):
            found.append(words[1:])
    return found


def test_the_pages_have_examples_of_each_kind() -> None:
    langs = {block.lang for block in ALL_BLOCKS}
    assert {"bash", "yaml", "json"} <= langs
    skipped = [block.where for block in ALL_BLOCKS if block.skipped]
    assert len(skipped) <= 3, f"be sparing with docs-test skips: {skipped}"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if not b.skipped], ids=lambda b: b.where)
def test_every_floe_sink_command_line_matches_the_command(block: Block) -> None:
    lines = shell_lines(block)
    if block.lang not in SHELL and not any(line.startswith("floe-sink ") for line in lines):
        return  # not a shell block, and no synopsis in it
    for line in lines:
        for words in floe_sink_invocations(line):
            check_invocation(words, f"{block.where}: {line}")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_inline_floe_sink_command_matches_the_command(page: Path) -> None:
    for span in re.findall(r"`(floe-sink(?: [^`]*)?)`", prose(page)):
        words = span.replace("\\|", "|").split()[1:]
        if words:
            check_invocation(words, f"{page.relative_to(ROOT)}: `{span}`")


def test_every_other_shell_command_names_real_files_and_environments() -> None:
    tox = (ROOT / "tox.ini").read_text()
    environments = set(re.findall(r"^\[testenv:(\w+)\]", tox, flags=re.MULTILINE)) | {"py"}
    for block in ALL_BLOCKS:
        if block.lang not in SHELL or block.skipped:
            continue
        for line in shell_lines(block):
            for match in re.finditer(r"tox -e ([\w,]+)", line):
                for environment in match.group(1).split(","):
                    assert environment in environments, f"{block.where}: tox env {environment}"
            for script in re.findall(r"(?:^|\s)((?:examples|\.ci|benchmarks)/\S+)", line):
                assert (ROOT / script).exists(), f"{block.where}: {script} does not exist"


def _yaml_documents() -> list[tuple[Block, Any]]:
    found = []
    for block in ALL_BLOCKS:
        if block.lang != "yaml" or block.skipped:
            continue
        found.append((block, yaml.safe_load(block.body)))
    return found


FLOE_KEYS = {"destinations"}
MANIFEST_KEYS = {field.name for field in attrs.fields(PlatformManifest)}


@pytest.mark.parametrize("example", _yaml_documents(), ids=lambda e: e[0].where)
def test_every_yaml_example_is_a_valid_floe_or_manifest_file(
    example: tuple[Block, Any], tmp_path: Path
) -> None:
    from floe_sink.config import load_floe_spec, load_manifest

    block, document = example
    assert isinstance(document, dict), f"{block.where}: not a YAML mapping"
    path = tmp_path / "example.yaml"
    path.write_text(block.body)
    if "destinations" in document:
        spec = load_floe_spec(path)
        for destination in spec.destinations:
            _sink_accepts(destination, block.where, tmp_path)
    else:
        assert set(document) <= MANIFEST_KEYS, (
            f"{block.where}: neither floe.yaml nor manifest.yaml (keys {sorted(document)}); "
            "mark it <!-- docs-test: skip: REASON --> if it is another file"
        )
        load_manifest(path)


SECRET_KEYS = {
    "rest_api": {"token": "docs-example-token"},
    "sql_database": {"url": "postgresql://app@db.example.com/ops"},
}


def _sink_accepts(destination: Any, where: str, state_dir: Path) -> None:
    """The sink accepts the destination's config, as run --dry-run would create it."""
    from floe_sink import get_plugin_manager
    from floe_sink.job import _sink_config
    from floe_sink.secrets import Secret

    keys = SECRET_KEYS.get(destination.sink_type)
    assert keys is not None, f"{where}: no secret to try sink type {destination.sink_type!r}"
    secret = {key: Secret(value) for key, value in keys.items()}
    config = _sink_config(destination, secret, state_dir=state_dir)
    sink = get_plugin_manager().create_sink(config)
    assert sink is not None, where


def test_configuration_tables_list_exactly_the_model_fields() -> None:
    from floe_sink.config import CatalogConfig, DestinationConfig, PlatformManifest

    text = (DOCS / "configuration.md").read_text()

    def table_after(heading: str) -> list[str]:
        section = re.split(r"\n#{2,3} ", text[text.index(heading) :])[0]
        rows: list[str] = re.findall(r"^\| `([\w.-]+)` \|", section, flags=re.MULTILINE)
        return rows

    destination = table_after("### Destination fields")
    assert set(destination) == {field.name for field in attrs.fields(DestinationConfig)}
    manifest = table_after("## manifest.yaml")
    assert set(manifest) == {field.name for field in attrs.fields(PlatformManifest)}
    catalog = table_after("### catalog")
    fields = {field.name for field in attrs.fields(CatalogConfig)} - {"properties"}
    assert set(catalog) == fields


def test_cli_sections_document_only_their_own_options() -> None:
    text = (DOCS / "cli.md").read_text()
    assert isinstance(cli, click.Group)
    sections = re.split(r"^## `floe-sink (\w+)`$", text, flags=re.MULTILINE)
    documented = dict(zip(sections[1::2], sections[2::2], strict=True))
    assert set(documented) == set(cli.commands), "every command has a section"
    common = set(_options(cli))
    for name, section in documented.items():
        own = set(_options(cli.commands[name])) | common
        cells = re.findall(r"^\| `(-[^`]*)`", section, flags=re.MULTILINE)
        for cell in cells:
            for option in re.findall(r"--?[a-z][a-z-]*", cell):
                assert option in own, f"docs/cli.md, floe-sink {name}: {option} is not its own"


def test_the_init_example_of_cli_md_runs(floe_project: FloeProject) -> None:
    """cli.md's block after `floe-sink init`, run in a project that init wrote."""
    from fixtures.iceberg import customers, seed_embedded_catalog

    section = (DOCS / "cli.md").read_text().split("## `floe-sink init`")[1].split("\n## ")[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    floe_project.manifest_yaml.unlink()
    assert floe_project.run("init").code == 0
    seed_embedded_catalog(floe_project.root / ".floe", "gold.customers", customers(20))
    lines = [line for line in block.strip().splitlines() if line.startswith("floe-sink ")]
    assert lines
    for line in lines:
        result = floe_project.run(*shlex.split(line)[1:])
        assert result.code == 0, (line, result.stdout, result.stderr)
