"""The exception hierarchy: categories, context suffixes, retryability, messages."""

from __future__ import annotations

import pytest

from floe_sink import (
    ErrorCategory,
    FloeSinkError,
    PluginConflictError,
    PluginLoadError,
    SinkConfigurationError,
    SinkConnectionError,
    SinkError,
    SinkNotFoundError,
    SinkWriteError,
)


@pytest.mark.requirement("4G-FR-013")
@pytest.mark.parametrize(
    ("cls", "category", "retryable"),
    [
        (SinkConnectionError, ErrorCategory.TRANSIENT, True),
        (SinkWriteError, ErrorCategory.TRANSIENT, True),
        (SinkConfigurationError, ErrorCategory.CONFIGURATION, False),
        (SinkNotFoundError, ErrorCategory.CONFIGURATION, False),
    ],
)
def test_default_categories(cls: type[SinkError], category: ErrorCategory, retryable: bool) -> None:
    error = cls("boom")
    assert error.category is category
    assert error.retryable is retryable
    assert isinstance(error, SinkError)
    assert isinstance(error, FloeSinkError)


@pytest.mark.requirement("4G-FR-013")
def test_context_suffix() -> None:
    error = SinkWriteError(
        "HTTP 400 from the API", sink_type="rest_api", destination="crm", batch=3, status=None
    )
    assert str(error) == "HTTP 400 from the API [sink_type=rest_api, destination=crm, batch=3]"
    assert error.message == "HTTP 400 from the API"
    assert error.sink_type == "rest_api"
    assert error.destination == "crm"
    assert error.context["batch"] == 3


@pytest.mark.requirement("4G-FR-013")
def test_no_suffix_without_context() -> None:
    assert str(SinkConnectionError("refused")) == "refused"


@pytest.mark.requirement("4G-FR-013")
def test_category_override() -> None:
    permanent = SinkWriteError("HTTP 400", category=ErrorCategory.PERMANENT)
    partial = SinkWriteError("2 of 5 batches delivered", category=ErrorCategory.PARTIAL)
    assert not permanent.retryable
    assert not partial.retryable
    assert partial.category == "partial"


def test_categories_are_strings() -> None:
    assert [str(c) for c in ErrorCategory] == [
        "transient",
        "permanent",
        "partial",
        "configuration",
    ]


def test_plugin_load_error_says_how_to_fix() -> None:
    cause = ImportError("No module named 'httpx'")
    error = PluginLoadError("webhook", "floe-sink-webhook", cause)
    message = str(error)
    assert "'webhook'" in message
    assert "'floe-sink-webhook'" in message
    assert "ImportError: No module named 'httpx'" in message
    assert "FLOE_SINK_BLOCK_PLUGINS=webhook" in message
    assert error.cause is cause
    assert "from distribution" not in str(PluginLoadError("x", None, cause))


def test_plugin_conflict_error_names_every_provider_sorted() -> None:
    error = PluginConflictError("webhook", iter(["b (dist-b 1.0)", "a (dist-a 2.0)"]))
    assert error.providers == ["a (dist-a 2.0)", "b (dist-b 1.0)"]
    assert "'webhook'" in str(error)
    assert "a (dist-a 2.0), b (dist-b 1.0)" in str(error)


def test_every_exception_has_a_docstring() -> None:
    for cls in (
        FloeSinkError,
        SinkError,
        SinkConnectionError,
        SinkWriteError,
        SinkConfigurationError,
        SinkNotFoundError,
        PluginLoadError,
        PluginConflictError,
    ):
        assert cls.__doc__, cls
