"""`import floe_sink` is fast, needs no dlt, and loads none of the heavy dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = (
    "pyarrow",
    "structlog",
    "yaml",
    "dlt",
    "tenacity",
    "pyiceberg",
    "sqlalchemy",
    "httpx",
    "ray",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_import_works_without_dlt() -> None:
    completed = _python(
        """
        import importlib.abc, sys

        class NoDlt(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "dlt" or name.startswith("dlt."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, NoDlt())
        try:
            import dlt
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("the blocker did not block dlt")
        import floe_sink
        manager = floe_sink.get_plugin_manager(load_entrypoints=False)
        print(manager.list_available_sinks())
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_import_loads_no_heavy_dependency() -> None:
    completed = _python(
        f"""
        import sys
        import floe_sink
        import floe_sink.testing
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_lazy_names_load_on_first_use() -> None:
    completed = _python(
        """
        import sys
        import floe_sink
        assert "pyarrow" not in sys.modules
        floe_sink.checksum_of
        assert "pyarrow" in sys.modules
        floe_sink.retrying
        assert "tenacity" in sys.modules
        print("ok")
        """
    )
    assert completed.returncode == 0, completed.stderr


def test_the_command_and_the_local_engine_never_import_ray() -> None:
    completed = _python(
        """
        import sys
        from types import SimpleNamespace
        import floe_sink.cli, floe_sink.job, floe_sink.units, floe_sink.engines
        from floe_sink.engines import engine_settings, open_engine
        settings = engine_settings(SimpleNamespace(engine=None))
        with open_engine(settings, catalog=None, secrets_dir=None, state_dir=".") as engine:
            assert engine is None
        print("ray" in sys.modules)
        """
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
