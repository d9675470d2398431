"""The exception hierarchy: categories, context suffixes, retryability, messages."""

from __future__ import annotations

import pytest

from floe_sink import (
    ErrorCategory,
    FloeSinkError,
    PluginConflictError,
    PluginContractError,
    PluginError,
    PluginLoadError,
    ProblemsError,
    SinkConfigurationError,
    SinkConnectionError,
    SinkError,
    SinkNotFoundError,
    SinkWriteError,
)
from floe_sink.errors import problems_of


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
        PluginError,
        PluginContractError,
        ProblemsError,
    ):
        assert cls.__doc__, cls


def test_many_problems_have_one_shape() -> None:
    from floe_sink.config import ConfigError, GovernanceError, SinkWhitelistError
    from floe_sink.job import JobConfigurationError

    one = ProblemsError(["floe.yaml: batch_size: must be >= 1"])
    assert str(one) == one.render() == "floe.yaml: batch_size: must be >= 1"
    many = ProblemsError(["a", "b"], header="Invalid configuration in floe.yaml")
    assert str(many) == "Invalid configuration in floe.yaml (2 problems):\n  - a\n  - b"
    assert JobConfigurationError(["a", "b"]).render() == "2 problems:\n  - a\n  - b"
    violation = SinkWhitelistError("webhook", ["rest_api"], "crm")
    errors = [
        ConfigError("floe.yaml", ["x"]),
        GovernanceError([violation]),
        JobConfigurationError(["y"]),
    ]
    for error in errors:
        assert isinstance(error, ProblemsError)
        assert isinstance(error, SinkConfigurationError)
        assert problems_of(error) == error.problems
    assert errors[1].problems == [str(violation)]
    assert problems_of(SinkConfigurationError("alone")) == ["alone"]


def test_plugin_errors_share_a_base_and_a_conflict_is_also_configuration() -> None:
    conflict = PluginConflictError("webhook", ["a", "b"])
    assert isinstance(conflict, PluginError)
    assert isinstance(conflict, SinkConfigurationError)  # the command exits 2
    assert conflict.sink_type == "webhook"
    assert "[sink_type" not in str(conflict)
    bug = PluginContractError("p", "write", "it returned None, not an EgressResult")
    assert isinstance(bug, PluginError)
    assert not isinstance(bug, SinkError)  # the command exits 1
    assert isinstance(PluginLoadError("p", None, ImportError("x")), PluginError)


def test_retry_after_is_a_field_of_sink_write_error() -> None:
    error = SinkWriteError("HTTP 429", retry_after=2.5, sink_type="rest_api")
    assert error.retry_after == 2.5
    assert error.retryable
    assert "retry_after" not in str(error)  # not context: a field
    assert SinkWriteError("HTTP 503").retry_after is None
