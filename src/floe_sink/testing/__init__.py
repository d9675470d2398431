"""Testing a sink plugin: a fresh plugin manager, a contract check, and the conformance kit.

The package is a pytest plugin, registered through the ``pytest11`` entry point of the
``floe-sink`` distribution, so installing floe-sink makes its fixtures available to every
test suite. Loading it costs what ``import floe_sink`` costs and never pyarrow, structlog or
dlt: the kit imports them inside its tests.

* ``sink_plugin_manager`` (fixture): a new plugin manager with nothing loaded.
* :func:`assert_sink_connector`: the static contract (hook names, arguments, sink types).
* :class:`SinkConformance`: the behavioural contract. Subclass it, say how to reach a fresh
  destination (:class:`SinkTarget`) and what the sink supports (:class:`Capabilities`), and
  every property of a delivery is checked against the real destination: empty input, Arrow
  types, ``batch_size``, the :class:`~floe_sink.EgressResult`, idempotency keys, exact
  resumes, retries of transient failures and reports of permanent ones, configuration
  errors, and secrets kept out of ``repr``, logs and spans. Each failure names the property
  broken (:class:`Property`); the ``check_*`` functions run one check outside the class.
* :class:`HttpFaultProxy` (fixture ``http_fault_proxy``) and :class:`CallFaults`: make a
  destination fail on demand, for the retry checks.

Example::

    import floe_sink.testing
    import my_sink_plugin


    def test_contract() -> None:
        floe_sink.testing.assert_sink_connector(my_sink_plugin, sink_types={"webhook"})


    class TestWebhook(floe_sink.testing.SinkConformance):
        plugin = my_sink_plugin
        capabilities = floe_sink.testing.Capabilities(arrow_types=[...], exact_resume=True)

        @pytest.fixture
        def sink_target(self, receiver) -> floe_sink.testing.SinkTarget:
            ...

See "Writing a sink plugin" in the documentation for a complete example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from floe_sink.testing._checks import (
    check_arrow_type,
    check_bad_configs,
    check_batch_size,
    check_deletes,
    check_egress_result,
    check_empty_stream,
    check_empty_table,
    check_exact_resume,
    check_idempotency_keys,
    check_permanent_failure,
    check_record_ids,
    check_record_results,
    check_secrets_not_in_logs,
    check_secrets_not_in_repr,
    check_secrets_not_in_spans,
    check_sink,
    check_transient_failure,
)
from floe_sink.testing._contract import assert_sink_connector, sink_plugin_manager
from floe_sink.testing._faults import CallFaults, Fault, FaultInjector, HttpFaultProxy
from floe_sink.testing._subject import (
    BadConfig,
    Capabilities,
    ConformanceError,
    JournalDelivery,
    Property,
    SinkTarget,
    SinkUnderTest,
)
from floe_sink.testing._suite import SinkConformance

__all__ = [
    "BadConfig",
    "CallFaults",
    "Capabilities",
    "ConformanceError",
    "Fault",
    "FaultInjector",
    "HttpFaultProxy",
    "JournalDelivery",
    "Property",
    "SinkConformance",
    "SinkTarget",
    "SinkUnderTest",
    "assert_sink_connector",
    "check_arrow_type",
    "check_bad_configs",
    "check_batch_size",
    "check_deletes",
    "check_egress_result",
    "check_empty_stream",
    "check_empty_table",
    "check_exact_resume",
    "check_idempotency_keys",
    "check_permanent_failure",
    "check_record_ids",
    "check_record_results",
    "check_secrets_not_in_logs",
    "check_secrets_not_in_repr",
    "check_secrets_not_in_spans",
    "check_sink",
    "check_transient_failure",
    "http_fault_proxy",
    "sink_plugin_manager",
]


# Tracebacks and the documentation name the public classes where they are imported from.
for _public in (
    BadConfig,
    CallFaults,
    Capabilities,
    ConformanceError,
    Fault,
    HttpFaultProxy,
    JournalDelivery,
    Property,
    SinkConformance,
    SinkTarget,
    SinkUnderTest,
):
    _public.__module__ = __name__
del _public


@pytest.fixture
def http_fault_proxy() -> Iterator[Callable[..., HttpFaultProxy]]:
    """Start an :class:`HttpFaultProxy` in front of an endpoint: ``http_fault_proxy(url)``.

    Every proxy started is stopped after the test. Keyword arguments go to
    :class:`HttpFaultProxy`.
    """
    started: list[HttpFaultProxy] = []

    def start(upstream: str, **options: object) -> HttpFaultProxy:
        proxy = HttpFaultProxy(upstream, **options)  # type: ignore[arg-type]
        started.append(proxy.start())
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()
