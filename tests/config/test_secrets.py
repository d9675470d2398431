"""Secrets: connection_secret_ref resolved from a mounted Kubernetes Secret, values hidden."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from floe_sink.config import SecretResolutionError, resolve_secret
from floe_sink.config.secret_mounts import DEFAULT_SECRETS_DIR, find_secrets_dir
from floe_sink.errors import SinkConfigurationError
from floe_sink.secrets import Secret

FR018 = pytest.mark.requirement("4G-FR-018")


def mount(root: Path, ref: str, **keys: str) -> Path:
    """Lay out a Secret the way the kubelet does: keys are symlinks into ..data."""
    folder = root / ref
    stamp = folder / "..2024_05_01_10_00_00.123"
    stamp.mkdir(parents=True)
    for key, value in keys.items():
        (stamp / key).write_text(value, encoding="utf-8")
    (folder / "..data").symlink_to(stamp.name)
    for key in keys:
        (folder / key).symlink_to(Path("..data") / key)
    return folder


@FR018
def test_resolves_every_key_of_a_kubernetes_secret_volume(tmp_path: Path) -> None:
    mount(tmp_path, "crm-api", token="t0p-s3cret\n", url="https://crm")
    assert resolve_secret("crm-api", tmp_path) == {
        "token": Secret("t0p-s3cret"),
        "url": Secret("https://crm"),
    }


@FR018
def test_plain_files_and_dot_keys_work(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "url").write_text("sqlite:///x.db")
    (tmp_path / "db" / ".dockerconfigjson").write_text("{}")
    assert set(resolve_secret("db", str(tmp_path))) == {"url", ".dockerconfigjson"}


@FR018
def test_dir_from_environment_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mount(tmp_path, "crm-api", token="t")
    monkeypatch.setenv("FLOE_SECRETS_DIR", str(tmp_path))
    assert resolve_secret("crm-api")["token"].reveal() == "t"
    assert find_secrets_dir("/elsewhere") == Path("/elsewhere")
    monkeypatch.delenv("FLOE_SECRETS_DIR")
    assert find_secrets_dir() == Path(DEFAULT_SECRETS_DIR) == Path("/var/run/secrets/floe")
    monkeypatch.setenv("FLOE_SECRETS_DIR", "")
    assert find_secrets_dir() == Path(DEFAULT_SECRETS_DIR)


@FR018
def test_missing_secret_names_ref_and_dir(tmp_path: Path) -> None:
    mount(tmp_path, "other", token="leak")
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret("crm-api", tmp_path)
    message = str(info.value)
    assert f"Secret 'crm-api' not found in the secrets dir '{tmp_path}'" in message
    assert (info.value.ref, info.value.secrets_dir) == ("crm-api", str(tmp_path))
    assert isinstance(info.value, SinkConfigurationError)


@FR018
def test_missing_secrets_dir_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SecretResolutionError, match=r"does not exist.*--secrets-dir"):
        resolve_secret("crm-api", tmp_path / "nope")


@FR018
def test_missing_key_names_ref_key_dir_and_available_keys_never_values(tmp_path: Path) -> None:
    mount(tmp_path, "crm-api", url="https://user:leak@crm")
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret("crm-api", tmp_path, required_keys=("token",))
    message = str(info.value)
    assert "Secret 'crm-api'" in message
    assert str(tmp_path) in message
    assert "has no key 'token' (it has: url)" in message
    assert "leak" not in message
    assert info.value.key == "token"


@FR018
def test_empty_secret_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "crm-api" / "..data").mkdir(parents=True)
    with pytest.raises(SecretResolutionError, match="has no keys"):
        resolve_secret("crm-api", tmp_path)


@FR018
@pytest.mark.parametrize("ref", ["../etc", "crm/../../x", "CRM", "", "postgres://u:leak@h"])
def test_ref_must_be_a_secret_name_and_cannot_escape_the_dir(tmp_path: Path, ref: str) -> None:
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret(ref, tmp_path)
    assert "not a Kubernetes Secret name" in str(info.value)
    assert "leak" not in str(info.value)


@FR018
def test_binary_value_is_an_error_without_the_value(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "blob").write_bytes(b"\xff\xfe")
    with pytest.raises(SecretResolutionError, match=r"Key 'blob' of secret 'k'.*not UTF-8"):
        resolve_secret("k", tmp_path)


@FR018
def test_values_never_show_in_repr_str_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mount(tmp_path, "crm-api", token="t0p-s3cret")
    with capture_logs() as logs, caplog.at_level(logging.DEBUG):
        values = resolve_secret("crm-api", tmp_path)
        logging.getLogger("test").warning("resolved %s %r", values, values)
    rendered = repr(values) + str(values) + f"{values['token']}" + repr(logs) + caplog.text
    assert "t0p-s3cret" not in rendered
    assert logs == [
        {
            "event": "secret_resolved",
            "secret_ref": "crm-api",
            "keys": ["token"],
            "log_level": "debug",
        }
    ]
    assert values["token"].reveal() == "t0p-s3cret"


@FR018
def test_unreadable_key_is_an_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 0 does not stop root (CI runs as root): make the read itself fail instead.
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "token").write_text("x")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret("k", tmp_path)
    message = str(info.value)
    assert f"Cannot read '{tmp_path / 'k' / 'token'}' (key 'token' of secret 'k'" in message
    assert "Permission denied" in message
    assert info.value.key == "token"


@FR018
def test_unreadable_secret_folder_is_an_error_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount(tmp_path, "crm-api", token="t0p-s3cret")
    real_iterdir = Path.iterdir

    def refuse(self: Path) -> Any:
        if self.name == "crm-api":
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret("crm-api", tmp_path)
    assert f"Cannot read '{tmp_path / 'crm-api'}' (secret 'crm-api'" in str(info.value)
    assert isinstance(info.value, SinkConfigurationError)


@FR018
def test_unsearchable_secrets_dir_is_an_error_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path.is_dir() is False for a missing path but raises on EACCES: it must not escape.
    mount(tmp_path, "crm-api", token="t")

    def refuse(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_dir", refuse)
    with pytest.raises(SecretResolutionError, match=r"Cannot read '.*crm-api'.*Permission denied"):
        resolve_secret("crm-api", tmp_path)


@FR018
def test_a_file_given_as_secrets_dir_is_explained(tmp_path: Path) -> None:
    (tmp_path / "secrets").write_text("not a folder")
    with pytest.raises(SecretResolutionError, match=r"secrets dir '.*secrets' is not a directory"):
        resolve_secret("crm-api", tmp_path / "secrets")


@FR018
@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("t0p-s3cret", "t0p-s3cret"),
        ("t0p-s3cret\n", "t0p-s3cret"),
        ("t0p-s3cret\r\n", "t0p-s3cret"),
        ("  t0p-s3cret  \n", "  t0p-s3cret  "),  # only the newline goes: spaces may be meant
    ],
)
def test_one_trailing_newline_is_dropped(tmp_path: Path, written: str, value: str) -> None:
    (tmp_path / "crm-api").mkdir()
    (tmp_path / "crm-api" / "token").write_bytes(written.encode())
    assert resolve_secret("crm-api", tmp_path)["token"].reveal() == value


@FR018
@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("", "is empty"),
        ("\n", "is empty"),
        ("\r\n", "is empty"),
        ("t0p-s3cret\n\n", "has a line break inside"),
        ("t0p-s3cret\r\n\r\n", "has a line break inside"),
        ("t0p\ns3cret", "has a line break inside"),
        ("t0p-s3cret\r", "has a line break inside"),
    ],
)
def test_empty_or_multi_line_value_is_an_error_naming_ref_and_key_never_the_value(
    tmp_path: Path, written: str, problem: str
) -> None:
    (tmp_path / "crm-api").mkdir()
    (tmp_path / "crm-api" / "url").write_text("https://crm")
    (tmp_path / "crm-api" / "token").write_bytes(written.encode())
    with pytest.raises(SecretResolutionError) as info:
        resolve_secret("crm-api", tmp_path)
    message = str(info.value)
    assert f"Key 'token' of secret 'crm-api' in the secrets dir '{tmp_path}' {problem}" in message
    assert "printf %s" in message
    assert "t0p" not in message
    assert "s3cret" not in message
    assert (info.value.ref, info.value.key) == ("crm-api", "token")
