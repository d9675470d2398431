"""The conformance kit as a test class: :class:`SinkConformance`, one test per property."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from floe_sink.testing import _checks as checks
from floe_sink.testing._subject import BadConfig, Capabilities, SinkTarget, SinkUnderTest

__all__ = ["SinkConformance"]


def _sample_id(sample: Any) -> str:
    return str(getattr(sample, "type", sample))


class SinkConformance:
    """The delivery contract as a test class: subclass it as ``Test<Something>``.

    Set :attr:`plugin` and :attr:`capabilities`, define a ``sink_target`` fixture that
    returns a :class:`SinkTarget` for a fresh destination, and optionally override
    :meth:`bad_configs`. Every ``test_*`` method checks one property; a failure's message
    starts with the property's name. Checks of capabilities not declared (or not observable
    with what the target gives) are skipped with the reason.

    Example::

        class TestWebhook(floe_sink.testing.SinkConformance):
            plugin = floe_sink_webhook
            capabilities = floe_sink.testing.Capabilities(
                arrow_types=[pa.int64(), pa.string()], exact_resume=True
            )

            @pytest.fixture
            def sink_target(self, receiver) -> floe_sink.testing.SinkTarget:
                return floe_sink.testing.SinkTarget(
                    config=floe_sink.SinkConfig(
                        sink_type="webhook", connection_config={"url": receiver.url}
                    ),
                    read_back=lambda schema: pa.Table.from_pylist(receiver.rows),
                )
    """

    plugin: ClassVar[object] = None
    """The plugin under test: a module, a :class:`floe_sink.SinkConnector`, an object."""
    capabilities: ClassVar[Capabilities] = Capabilities()
    """What the sink declares; see :class:`Capabilities`."""

    def bad_configs(self, target: SinkTarget) -> Iterable[BadConfig]:
        """Configurations ``create_sink`` must refuse, each with the key it must name."""
        return ()

    @pytest.fixture
    def sink_under_test(self, sink_target: SinkTarget, tmp_path: Path) -> Iterator[SinkUnderTest]:
        """The plugin, the test's fresh target and a journal in ``tmp_path``."""
        if self.plugin is None:
            pytest.fail(f"{type(self).__name__} must set `plugin = <your plugin>`", pytrace=False)
        if not isinstance(sink_target, SinkTarget):
            pytest.fail(
                "the sink_target fixture must return a floe_sink.testing.SinkTarget, got "
                f"{type(sink_target).__name__}",
                pytrace=False,
            )
        sut = SinkUnderTest(
            plugin=self.plugin,
            target=sink_target,
            capabilities=self.capabilities,
            workdir=tmp_path,
        )
        try:
            yield sut
        finally:
            sut.close()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One round-trip test per declared Arrow type."""
        if "arrow_type" in metafunc.fixturenames:
            samples: list[Any] = list(self.capabilities.arrow_types)
            if samples:
                metafunc.parametrize("arrow_type", samples, ids=_sample_id)
            else:
                skip = pytest.mark.skip(reason="no Capabilities(arrow_types=...) declared")
                metafunc.parametrize("arrow_type", [pytest.param(None, marks=skip)])

    def test_empty_table(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_empty_table(sink_under_test)

    def test_empty_stream(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_empty_stream(sink_under_test)

    def test_arrow_type_round_trips(self, sink_under_test: SinkUnderTest, arrow_type: Any) -> None:
        checks.check_arrow_type(sink_under_test, arrow_type)

    def test_batch_size_is_respected(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_batch_size(sink_under_test)

    def test_egress_result_is_complete_and_consistent(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_egress_result(sink_under_test)

    def test_same_batch_same_idempotency_key(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_idempotency_keys(sink_under_test)

    def test_resume_skips_acknowledged_batches(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_exact_resume(sink_under_test)

    def test_transient_failure_is_retried(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_transient_failure(sink_under_test)

    def test_permanent_failure_is_reported(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_permanent_failure(sink_under_test)

    def test_bad_config_names_the_key(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_bad_configs(sink_under_test, self.bad_configs(sink_under_test.target))

    def test_secrets_not_in_repr(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_secrets_not_in_repr(sink_under_test)

    def test_secrets_not_in_logs(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_secrets_not_in_logs(sink_under_test)

    def test_secrets_not_in_spans(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_secrets_not_in_spans(sink_under_test)

    def test_record_ids(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_record_ids(sink_under_test)

    def test_deletes(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_deletes(sink_under_test)

    def test_per_record_results(self, sink_under_test: SinkUnderTest) -> None:
        checks.check_record_results(sink_under_test)
