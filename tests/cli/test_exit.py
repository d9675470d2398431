"""The console script exits without the interpreter's teardown, and loses nothing by it.

``floe_sink.cli.main()`` (the console script) ends the process with ``os._exit`` from its
first atexit callback: the atexit callbacks registered during the command still run, stdout
and stderr are flushed, the exit code is the command's; module teardown is skipped. Called
with arguments (in-process), or under a wrapper with atexit callbacks of its own, it exits
the usual way.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from fixtures.command import FloeProject
from floe_sink import cli

# The command in a child process; during the command (when it sets up logging) it registers
# an atexit callback that writes a marker file and then output without flushing it. A
# module-level object notes in a file when module teardown destroys it.
WRAPPER = textwrap.dedent(
    """
    import atexit, sys
    from pathlib import Path

    folder = Path(sys.argv.pop(1))
    in_process = sys.argv.pop(1) == "in-process"

    class TornDown:
        def __del__(self, path=folder / "torn-down"):
            path.write_text("module teardown ran")

    kept = TornDown()

    import floe_sink.cli as cli

    def at_exit():
        (folder / "at-exit").write_text("ran")
        sys.stdout.write("UNFLUSHED-OUT")
        sys.stderr.write("UNFLUSHED-ERR")

    setup_logging = cli._setup_logging

    def setup_logging_and_register(**kwargs):
        atexit.register(at_exit)
        setup_logging(**kwargs)

    cli._setup_logging = setup_logging_and_register
    sys.argv[0] = "floe-sink"
    cli.main(sys.argv[1:] if in_process else None)
    """
)


def _wrapped(
    project: FloeProject, *args: str, in_process: bool = False
) -> subprocess.CompletedProcess[str]:
    env = project.env()
    env.pop("PYTHONUNBUFFERED", None)  # block-buffered stdout: a missing flush loses output
    return subprocess.run(
        [
            sys.executable,
            "-c",
            WRAPPER,
            str(project.root),
            "in-process" if in_process else "console-script",
            *args,
        ],
        cwd=project.root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _in_process(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code: Any = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(list(args))
        except SystemExit as exc:
            code = exc.code
    return int(code or 0), out.getvalue()


@pytest.fixture
def bad_project(floe_project: FloeProject) -> FloeProject:
    floe_project.floe_yaml.write_text("destinations:\n  - name: crm\n    sink_type: 3\n")
    return floe_project


def test_the_console_script_prints_all_of_its_output(floe_project: FloeProject) -> None:
    code, expected = _in_process("schema")
    assert code == 0
    assert len(expected) > 20_000  # several buffers' worth

    result = floe_project.run("schema")

    assert result.code == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.parametrize(
    ("args", "code"),
    [(("schema",), 0), (("validate", "floe.yaml"), 2)],
    ids=["schema", "failing-validate"],
)
def test_callbacks_registered_during_the_command_run_and_output_is_flushed(
    bad_project: FloeProject, args: tuple[str, ...], code: int
) -> None:
    completed = _wrapped(bad_project, *args)

    assert completed.returncode == code, completed.stderr
    assert (bad_project.root / "at-exit").read_text() == "ran"
    assert completed.stdout.endswith("UNFLUSHED-OUT"), completed.stdout[-200:]
    assert completed.stderr.endswith("UNFLUSHED-ERR"), completed.stderr[-200:]
    assert "Traceback" not in completed.stderr, completed.stderr
    assert not (bad_project.root / "torn-down").exists()  # the teardown was skipped


def test_in_process_the_command_exits_the_usual_way(bad_project: FloeProject) -> None:
    completed = _wrapped(bad_project, "validate", "floe.yaml", in_process=True)

    assert completed.returncode == 2, completed.stderr
    assert (bad_project.root / "at-exit").read_text() == "ran"
    assert completed.stdout.endswith("UNFLUSHED-OUT"), completed.stdout[-200:]
    assert (bad_project.root / "torn-down").read_text() == "module teardown ran"


def test_in_process_main_registers_no_exit_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[Any] = []
    monkeypatch.setattr(atexit, "register", lambda func, *a, **k: registered.append(func))
    before = atexit._ncallbacks()

    code, output = _in_process("--version")

    assert code == 0
    assert output.strip()
    assert not [func for func in registered if isinstance(func, cli._ExitWithoutTeardown)]
    assert atexit._ncallbacks() == before


def test_a_wrappers_own_atexit_callbacks_keep_the_usual_exit(bad_project: FloeProject) -> None:
    # registered before main(): the exit hook would skip it, so main() leaves the exit alone
    wrapper = (
        "import atexit, sys\n"
        "from pathlib import Path\n"
        "atexit.register(Path('wrapper-at-exit').write_text, 'ran')\n"
        "from floe_sink.cli import main\n"
        "sys.argv[0] = 'floe-sink'\n"
        "main()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", wrapper, "validate", "floe.yaml"],
        cwd=bad_project.root,
        env=bad_project.env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert completed.returncode == 2, completed.stderr
    assert (bad_project.root / "wrapper-at-exit").read_text() == "ran"


def test_without_an_exit_code_the_teardown_is_the_usual_one(floe_project: FloeProject) -> None:
    # an uncaught exception (FLOE_SINK_DEBUG=1 re-raises): the traceback and exit 1 as usual
    wrapper = (
        "import sys\n"
        "import floe_sink.cli as cli\n"
        "def boom(**_kwargs):\n"
        "    raise RuntimeError('boom')\n"
        "cli._setup_logging = boom\n"
        "sys.argv[0] = 'floe-sink'\n"
        "cli.main()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", wrapper, "schema"],
        cwd=floe_project.root,
        env=floe_project.env(FLOE_SINK_DEBUG="1"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert completed.returncode == 1, completed.stderr
    assert "RuntimeError: boom" in completed.stderr
