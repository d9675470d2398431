"""Shared pytest set-up: hypothesis profiles and the fixture modules of the suite."""

from __future__ import annotations

import os
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
