"""Shared pytest set-up: hypothesis profiles and the fixture modules of the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Fixture modules live under tests/fixtures/ (tests/ is on sys.path under pytest's default
# import mode): the throwaway PostgreSQL cluster, the local HTTP server, Iceberg tables.
# fixtures.command imports fixtures.iceberg: list the imported one first so pytest can
# rewrite its asserts.
pytest_plugins: list[str] = [
    "fixtures.iceberg",
    "fixtures.command",
    "fixtures.http_server",
    "fixtures.saas_api",
    "fixtures.postgres",
]

settings.register_profile(
    "fast", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """Every test leaves structlog as it found it.

    A command run in-process (``floe_sink.cli.main([...])``: the sync machine, test_exit)
    configures structlog for its level, or leaves that configuration waiting for the first
    event when structlog is not imported yet (:mod:`floe_sink.logs`); either way the next
    test in the worker would not see the log events it captures (which tests a worker runs
    after which depends on the load: xdist hands them out one by one).
    """
    import structlog

    from floe_sink import logs

    config = structlog.get_config()
    waiting = (logs._deferred.level, logs._deferred.apply)
    yield
    logs._deferred.level, logs._deferred.apply = waiting
    structlog.configure(**config)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n 2``: distribute tests one by one, except the Ray engine's, which go to one worker.

    They share a Ray cluster (one per xdist worker, started by the first test that needs it);
    a worker of their own keeps it to one cluster. (xdist's ``loadgroup`` would do this, but
    it renames node ids in a way pytest 9 no longer sees.)
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class _RayTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return RAY_TESTS if nodeid.startswith(RAY_TESTS) else nodeid

    return _RayTogether(config, log)


RAY_TESTS = "tests/scale_out/"
