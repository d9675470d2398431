"""Hypothesis strategies shared by the test suite.

Each feature keeps its strategies in its own headed section below.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from floe_sink.config import (
    CatalogConfig,
    CatalogType,
    DestinationConfig,
    FloeSpec,
    ManifestScope,
    PlatformManifest,
    WriteDisposition,
)

# =============================================================================================
# Configuration: floe.yaml destinations and manifest.yaml governance (floe_sink.config)
# =============================================================================================

_NAME_CHARS = string.ascii_letters + string.digits + "-_"
_DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
_IDENT = st.from_regex(r"\A[a-z_][a-z0-9_]{0,15}\Z")

destination_names = st.text(_NAME_CHARS, min_size=1, max_size=100)
"""Valid destination names: 1-100 letters, digits, '-' and '_'."""

secret_refs = st.lists(_DNS_LABEL, min_size=1, max_size=3).map(".".join)
"""Valid Kubernetes Secret names (lowercase RFC 1123 subdomains)."""

source_tables = st.lists(_IDENT, min_size=2, max_size=3).map(".".join)
"""Valid Iceberg identifiers ``namespace.table``."""

sink_types = st.sampled_from(["rest_api", "sql_database", "hubspot", "salesforce-v2"])

column_names = st.sampled_from(["id", "email", "name", "amount", "status", "created_at"])

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(string.ascii_letters + " /:.", max_size=20),
)
# Keys that are obviously not credentials (the loader refuses credential-looking ones).
_config_keys = st.sampled_from(["url", "table", "method", "records_key", "region", "schema"])
sink_settings = st.dictionaries(
    _config_keys,
    st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=5),
    max_size=4,
)
"""Sink-specific ``config`` mappings with no credential-looking keys."""

retry_settings = st.fixed_dictionaries(
    {},
    optional={
        "max_attempts": st.integers(1, 10),
        "initial_wait": st.floats(0, 5),
        "max_wait": st.floats(0, 60),
        "multiplier": st.floats(0.1, 4),
        "jitter": st.floats(0, 2),
        "timeout": st.floats(0.1, 60),
    },
)


@st.composite
def destination_configs(draw: st.DrawFn, name: str | None = None) -> DestinationConfig:
    """Valid destinations, with every optional field sometimes set."""
    columns = draw(st.none() | st.lists(column_names, min_size=1, max_size=6, unique=True))
    available = columns or ["id", "email", "name", "amount", "status", "created_at"]
    mapping = draw(
        st.none()
        | st.lists(st.sampled_from(available), min_size=1, unique=True).map(
            lambda cols: {col: f"dst_{col}" for col in cols}
        )
    )
    key_pool = sorted(mapping) if mapping is not None else available
    disposition = draw(st.sampled_from(list(WriteDisposition)))
    primary_key = draw(
        st.lists(
            st.sampled_from(key_pool),
            min_size=1 if disposition is WriteDisposition.MERGE else 0,
            max_size=2,
            unique=True,
        )
    )
    return DestinationConfig(
        name=name if name is not None else draw(destination_names),
        sink_type=draw(sink_types),
        connection_secret_ref=draw(secret_refs),
        source_table=draw(st.none() | source_tables),
        config=draw(sink_settings),
        field_mapping=mapping,
        batch_size=draw(st.none() | st.integers(1, 100_000)),
        write_disposition=disposition,
        primary_key=primary_key,
        enabled=draw(st.booleans()),
        description=draw(st.none() | st.text(max_size=30)),
        row_filter=draw(st.none() | st.sampled_from(["status == 'active'", "amount > 10"])),
        columns=columns,
        retry=draw(st.none() | retry_settings),
    )


@st.composite
def floe_specs(draw: st.DrawFn) -> FloeSpec:
    """Valid floe.yaml specs (unique destination names)."""
    names = draw(st.lists(destination_names, max_size=4, unique=True))
    return FloeSpec(destinations=[draw(destination_configs(name=name)) for name in names])


catalog_configs = st.builds(
    CatalogConfig,
    name=st.text(string.ascii_letters, min_size=1, max_size=10),
    type=st.just(CatalogType.REST),
    uri=st.just("https://polaris.example.com/api/catalog"),
    warehouse=st.none() | st.just("analytics"),
    credential_secret_ref=st.none() | secret_refs,
    properties=st.dictionaries(
        st.sampled_from(["s3.endpoint", "py-io-impl", "s3.path-style-access", "scope"]),
        st.one_of(st.text(string.ascii_letters, max_size=10), st.booleans(), st.integers()),
        max_size=3,
    ),
) | st.builds(CatalogConfig, type=st.just(CatalogType.SQL), uri=st.none() | st.just("sqlite:///x"))
"""Valid catalog sections."""


@st.composite
def platform_manifests(draw: st.DrawFn) -> PlatformManifest:
    """Valid manifests: approved_sinks only with scope enterprise."""
    scope = draw(st.sampled_from(list(ManifestScope)))
    approved = (
        draw(st.none() | st.lists(sink_types, unique=True))
        if scope is ManifestScope.ENTERPRISE
        else None
    )
    return PlatformManifest(
        scope=scope, approved_sinks=approved, catalog=draw(st.none() | catalog_configs)
    )


yaml_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=10)
    | st.sampled_from(["destinations", "name", "sink_type", "merge", "rest_api", "gold.t"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "destinations",
                    "name",
                    "sink_type",
                    "connection_secret_ref",
                    "batch_size",
                    "write_disposition",
                    "primary_key",
                    "field_mapping",
                    "config",
                    "retry",
                    "columns",
                    "password",
                    "scope",
                    "approved_sinks",
                    "catalog",
                    "type",
                    "uri",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)
"""Arbitrary YAML-able data, biased towards floe.yaml's and manifest.yaml's own keys."""

yaml_junk = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",))
    | st.sampled_from(list(":-[]{}&*!|>'\"%@`#,?\n\t ")),
    max_size=200,
)
"""Arbitrary text, heavy on YAML's syntax characters."""
