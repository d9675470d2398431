"""structlog events and the redaction processor."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from structlog.testing import capture_logs

from floe_sink.logs import REDACTED, configure_logging, get_logger, redact
from floe_sink.secrets import Secret, reveal


@pytest.fixture(autouse=True)
def _reset_structlog():  # type: ignore[no-untyped-def]
    yield
    structlog.reset_defaults()


def test_events_are_key_value() -> None:
    log = get_logger("floe_sink.test")
    with capture_logs() as logs:
        log.info("batch_delivered", rows=500, batch=3)
    assert logs == [{"event": "batch_delivered", "rows": 500, "batch": 3, "log_level": "info"}]


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "token",
        "API_KEY",
        "client_secret",
        "Authorization",
        "connection_string",
        "private_key",
    ],
)
def test_redact_hides_credential_values(key: str) -> None:
    assert redact(None, "info", {"event": "x", key: "hunter2"})[key] == REDACTED


def test_redact_keeps_secret_names_and_other_keys() -> None:
    event = {"event": "x", "connection_secret_ref": "crm-api", "rows": 3, "url": "http://a"}
    assert redact(None, "info", dict(event)) == event


def test_redact_recurses_into_nested_values() -> None:
    event = {
        "event": "x",
        "config": {"url": "http://a", "headers": {"Authorization": "Bearer t"}},
        "items": [{"token": "t"}, "plain"],
    }
    redacted = redact(None, "info", event)
    assert redacted["config"] == {"url": "http://a", "headers": {"Authorization": REDACTED}}
    assert redacted["items"] == [{"token": REDACTED}, "plain"]


def test_configure_logging_json_redacts() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    get_logger("t").info("connected", token="hunter2", secret_ref="crm", rows=1)
    line = json.loads(stream.getvalue())
    assert line["event"] == "connected"
    assert line["token"] == REDACTED
    assert line["secret_ref"] == "crm"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert "hunter2" not in stream.getvalue()


def test_configure_logging_level_and_console() -> None:
    stream = io.StringIO()
    configure_logging(level=logging.WARNING, json=False, stream=stream)
    log = get_logger("t")
    log.info("hidden")
    log.warning("shown", password="hunter2")
    output = stream.getvalue()
    assert "hidden" not in output
    assert "shown" in output
    assert "hunter2" not in output


def test_configure_logging_picks_json_off_a_terminal() -> None:
    stream = io.StringIO()  # not a tty
    configure_logging(stream=stream)
    get_logger("t").info("e")
    assert json.loads(stream.getvalue())["event"] == "e"


def test_secret_never_shows() -> None:
    secret = Secret("hunter2")
    assert str(secret) == "***"
    assert repr(secret) == "Secret('***')"
    assert f"{secret}" == "***"
    assert secret.reveal() == "hunter2"
    assert reveal(secret) == "hunter2"
    assert reveal("plain") == "plain"
    assert secret == Secret("hunter2")
    assert secret != "hunter2"
    assert hash(secret) == hash(Secret("hunter2"))
    with pytest.raises(TypeError, match="not picklable"):
        __import__("pickle").dumps(secret)


def test_redact_hides_the_password_of_a_url_under_any_key() -> None:
    event = {
        "event": "connecting",
        "url": "postgresql://floe:pa55-w0rd@127.0.0.1:5432/ops",
        "targets": ["sqlite:///plain.db", {"dsn": "postgresql://u:other-pw@db/x"}],
    }
    out = redact(None, "info", event)
    assert out["url"] == "postgresql://floe:***@127.0.0.1:5432/ops"
    assert out["targets"][0] == "sqlite:///plain.db"
    assert "other-pw" not in json.dumps(out)


def test_log_redaction_and_config_refusal_agree_on_what_is_a_credential() -> None:
    # one rule (floe_sink.secrets.is_credential_key) for the loader and for the logs
    from floe_sink.config.credential_scan import is_credential_key as refused_in_config
    from floe_sink.secrets import is_credential_key

    assert refused_in_config is is_credential_key
    for key in ("password", "X-Api-Key", "s3.secret-key", "accessKey", "token"):
        assert redact(None, "info", {key: "v"})[key] == REDACTED
    for key in ("connection_secret_ref", "token_url", "auth_type", "rows"):
        assert redact(None, "info", {key: "v"})[key] == "v"
