"""Shared pytest set-up: hypothesis profiles and the fixture modules of the suite."""

from __future__ import annotations

import os

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
