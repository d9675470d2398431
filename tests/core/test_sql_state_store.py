"""The ``sql`` state store beyond the common contract: URLs, the sync state in the database,
PostgreSQL sessions, DuckDB's one-process rule, and opening a store through the hook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import floe_sink
from floe_sink import PluginContractError, SinkConfigurationError, hookimpl
from floe_sink.config import PlatformManifest, StateConfig
from floe_sink.secrets import Secret
from floe_sink.sqlstate import TEMP_PREFIX, SqlStateStore, StateUrl, lock_key
from floe_sink.state import (
    DestinationLockedError,
    LocalStateStore,
    StateSettings,
    StateStoreError,
    open_state_store,
    state_settings,
)

PASSWORD = "st4te-Pa55word"

# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "dialect", "where"),
    [
        (
            f"postgresql://floe:{PASSWORD}@db.internal:6432/state",
            "postgresql",
            "db.internal:6432/state",
        ),
        (f"postgres://floe:{PASSWORD}@db/state", "postgresql", "db:5432/state"),
        (f"postgresql+psycopg://floe:{PASSWORD}@db/state", "postgresql", "db:5432/state"),
        ("sqlite:///state/floe.db", "sqlite", "state/floe.db"),
        ("sqlite:////var/lib/floe/state.db", "sqlite", "/var/lib/floe/state.db"),
        ("duckdb:///floe.duckdb", "duckdb", "floe.duckdb"),
    ],
)
def test_state_urls(url: str, dialect: str, where: str) -> None:
    parsed = StateUrl.parse(Secret(url))
    assert (parsed.dialect, parsed.where) == (dialect, where)
    for shown in (str(parsed), repr(parsed)):
        assert PASSWORD not in shown
    if dialect == "postgresql":
        assert parsed.reveal().startswith("postgresql://")  # libpq's plain scheme


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        (f"mysql://floe:{PASSWORD}@db/state", "unsupported scheme 'mysql://'"),
        (f"postgresql://floe:{PASSWORD}@/state", "no host"),
        (f"postgresql://floe:{PASSWORD}@db", "no database name"),
        (f"postgresql://floe:{PASSWORD}@db:notaport/state", "not a valid URL"),
        ("sqlite:///:memory:", "in-memory state does not last"),
        ("sqlite://host/file.db", "name a file"),
        ("duckdb://", "names no database file"),
    ],
)
def test_bad_state_urls_are_named_without_the_password(url: str, message: str) -> None:
    with pytest.raises(SinkConfigurationError) as caught:
        StateUrl.parse(Secret(url), where="secret 'floe-state', key 'url'")
    text = str(caught.value)
    assert text.startswith("secret 'floe-state', key 'url': ")
    assert message in text
    assert PASSWORD not in text


# -- the three databases ----------------------------------------------------------------------

Factory = Callable[[], SqlStateStore]


@pytest.fixture(params=["sqlite", "duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Opens ``sql`` stores on one database (each call another store, as another run would)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        suffix = "db" if request.param == "sqlite" else "duckdb"
        url = f"{request.param}:///{tmp_path}/state/floe.{suffix}"
    opened: list[SqlStateStore] = []

    def factory() -> SqlStateStore:
        store = SqlStateStore(StateUrl.parse(Secret(url)), state_dir=tmp_path / "work")
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def state_file(path: Path, rows: int, seed: int = 0) -> bytes:
    keys = pa.array(range(rows), pa.int64())
    fingerprints = pa.array([(i * 2654435761 + seed) % (1 << 63) for i in range(rows)], pa.uint64())
    pq.write_table(pa.table({"k0": keys, "fp": fingerprints}), path)
    return path.read_bytes()


def test_no_sync_state_is_a_path_that_does_not_exist(sql_store: Factory) -> None:
    store = sql_store()
    path = store.load_sync_state("crm")
    assert not path.exists()
    assert path.parent.name.startswith(TEMP_PREFIX)


def test_the_sync_state_outlives_the_runner(
    sql_store: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploaded in chunks, read back whole by another store whose work folder is gone."""
    monkeypatch.setattr("floe_sink.sqlstate.SYNC_CHUNK_BYTES", 4096)
    first = sql_store()
    path = first.load_sync_state("crm")
    data = state_file(path, 5_000)
    assert len(data) > 3 * 4096  # several chunks
    first.save_sync_state("crm", path)
    first.close()
    assert not path.exists()  # closing removes the downloaded copies
    second = sql_store()
    again = second.load_sync_state("crm")
    assert again != path
    assert again.read_bytes() == data
    assert pq.read_table(again).num_rows == 5_000


def test_a_new_sync_state_replaces_the_old_one_whole(
    sql_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("floe_sink.sqlstate.SYNC_CHUNK_BYTES", 4096)
    store = sql_store()
    path = store.load_sync_state("crm")
    state_file(path, 5_000)
    store.save_sync_state("crm", path)
    smaller = state_file(path, 10, seed=7)  # fewer chunks than before: none may linger
    store.save_sync_state("crm", path)
    assert store.load_sync_state("crm").read_bytes() == smaller
    versions = store._query(
        "SELECT count(DISTINCT version), count(*) FROM floe_sync_state WHERE destination = ?",
        ("crm",),
    )
    assert versions == [(1, 1)]


def test_sync_states_are_kept_per_destination_and_forgotten_one_at_a_time(
    sql_store: Factory,
) -> None:
    store = sql_store()
    names = ["crm-contacts", "crm_contacts", "CRM-contacts", "c/r m", "é"]
    contents = {}
    for index, name in enumerate(names):
        path = store.load_sync_state(name)
        contents[name] = state_file(path, 10 + index)
        store.save_sync_state(name, path)
    other = sql_store()
    assert {name: other.load_sync_state(name).read_bytes() for name in names} == contents
    other.forget("crm-contacts")
    assert not store.load_sync_state("crm-contacts").exists()
    assert store.load_sync_state("crm_contacts").read_bytes() == contents["crm_contacts"]


def test_a_copy_is_downloaded_once_while_nothing_changes(
    sql_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run reads the state twice (is its delivery folded? then the diff): one download."""
    store = sql_store()
    path = store.load_sync_state("crm")
    state_file(path, 100)
    store.save_sync_state("crm", path)
    assert store.load_sync_state("crm") == path  # what it uploaded is what the database has
    downloads: list[str] = []
    real = SqlStateStore._download

    def counted(self: SqlStateStore, destination: str, *args: Any) -> bool:
        downloads.append(destination)
        return real(self, destination, *args)

    monkeypatch.setattr(SqlStateStore, "_download", counted)
    other = sql_store()
    first = other.load_sync_state("crm")
    assert other.load_sync_state("crm") == first
    assert downloads == ["crm"]
    newer = state_file(path, 200, seed=1)  # another runner saves a new state
    store.save_sync_state("crm", path)
    again = other.load_sync_state("crm")
    assert again != first
    assert again.read_bytes() == newer
    state_file(again, 5, seed=2)  # written by the diff, not saved (the upload failed)
    assert other.load_sync_state("crm").read_bytes() == newer
    assert downloads == ["crm", "crm", "crm"]
    other.forget("crm")
    assert not other.load_sync_state("crm").exists()


def test_a_failed_upload_keeps_the_old_state(
    sql_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("floe_sink.sqlstate.SYNC_CHUNK_BYTES", 1024)
    store = sql_store()
    path = store.load_sync_state("crm")
    old = state_file(path, 1_000)
    store.save_sync_state("crm", path)
    new_path = store.load_sync_state("crm")
    state_file(new_path, 2_000, seed=3)
    real_read = Path.open

    class Broken:
        """A file that fails after its second chunk, as a full disk or a kill would."""

        def __init__(self, handle: Any) -> None:
            self.handle, self.reads = handle, 0

        def __enter__(self) -> Broken:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def read(self, size: int) -> bytes:
            self.reads += 1
            if self.reads > 2:
                raise OSError("disk gone")
            data: bytes = self.handle.read(size)
            return data

    def broken_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_read(self, mode, *args, **kwargs)
        return Broken(handle) if mode == "rb" and self == new_path else handle

    monkeypatch.setattr(Path, "open", broken_open)
    with pytest.raises(StateStoreError, match="disk gone"):
        store.save_sync_state("crm", new_path)
    monkeypatch.undo()
    assert sql_store().load_sync_state("crm").read_bytes() == old


def test_stale_downloads_of_killed_runs_are_removed(sql_store: Factory, tmp_path: Path) -> None:
    stale = tmp_path / "work" / "tmp" / f"{TEMP_PREFIX}killed"
    stale.mkdir(parents=True)
    (stale / "crm.parquet").write_bytes(b"old")
    old = time.time() - 3 * 24 * 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / "work" / "tmp" / f"{TEMP_PREFIX}running"
    fresh.mkdir()
    sql_store().load_sync_state("crm")
    assert not stale.exists()
    assert fresh.exists()  # another run may be using it


def test_records_created_within_one_millisecond_keep_their_order(sql_store: Factory) -> None:
    store = sql_store()
    ids = [store.create_delivery("crm", f"plan-{n}", n) for n in range(20)]
    latest = store.latest_unfinished("crm")
    assert latest is not None
    assert latest.delivery_id == ids[-1]


def test_repr_names_the_database_never_the_password(sql_store: Factory) -> None:
    text = repr(sql_store())
    assert text.startswith("SqlStateStore(")
    assert PASSWORD not in text
    assert "fixtures" not in text


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_lock_is_a_session_advisory_lock_with_its_holder(
    postgres_url: str, tmp_path: Path
) -> None:
    import adbc_driver_postgresql.dbapi as adbc

    store = SqlStateStore(StateUrl.parse(postgres_url), state_dir=tmp_path)
    other = SqlStateStore(StateUrl.parse(postgres_url), state_dir=tmp_path)
    try:
        with store.lock("crm"):
            with adbc.connect(postgres_url) as conn, conn.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                )
                assert cursor.fetchall() == [(1,)]
                cursor.execute("SELECT pid, host FROM floe_locks WHERE destination = 'crm'")
                assert cursor.fetchall() == [(os.getpid(), os.uname().nodename)]
            with (
                pytest.raises(DestinationLockedError, match=f"process {os.getpid()}"),
                other.lock("crm"),
            ):
                pytest.fail("locked twice")
            with other.lock("crm-2"):  # another destination, another key
                pass
        with other.lock("crm"):
            pass
    finally:
        store.close()
        other.close()
    assert lock_key("crm") != lock_key("crm-2")
    assert -(1 << 63) <= lock_key("crm") < (1 << 63)


@pytest.mark.postgres
def test_postgres_store_reconnects_when_its_session_is_killed(
    postgres_url: str, postgres_cluster: Any, tmp_path: Path
) -> None:
    store = SqlStateStore(StateUrl.parse(postgres_url), state_dir=tmp_path)
    try:
        delivery_id = store.create_delivery("crm", "plan", 1)
        database = postgres_url.rsplit("/", 1)[1]
        postgres_cluster.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND application_name = 'floe-sink-state'"
        )
        found = store.latest_unfinished("crm")  # a new session, the same journal
        assert found is not None
        assert found.delivery_id == delivery_id
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_errors_never_show_the_password(postgres_url: str, tmp_path: Path) -> None:
    from fixtures.postgres import PASSWORD as PG_PASSWORD

    wrong = postgres_url.replace(PG_PASSWORD, PASSWORD)
    with pytest.raises(StateStoreError) as caught:
        SqlStateStore(StateUrl.parse(wrong), state_dir=tmp_path)
    text = str(caught.value)
    assert "cannot open the database" in text
    assert "password authentication failed" in text
    assert PASSWORD not in text
    assert PG_PASSWORD not in text


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    url = StateUrl.parse(f"postgresql://floe:{PASSWORD}@127.0.0.1:9/state")
    with pytest.raises(StateStoreError) as caught:
        SqlStateStore(url, state_dir=tmp_path)
    assert "state store postgresql '127.0.0.1:9/state': cannot open the database" in str(
        caught.value
    )
    assert PASSWORD not in str(caught.value)


# -- DuckDB -----------------------------------------------------------------------------------

_HOLD_DUCKDB = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("open", flush=True)
time.sleep(60)
"""


def test_a_duckdb_file_another_process_holds_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    SqlStateStore(StateUrl.parse(f"duckdb:///{path}"), state_dir=tmp_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_DUCKDB, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        store = SqlStateStore(StateUrl.parse(f"duckdb:///{path}"), state_dir=tmp_path)
        # the lock is a file beside the database: it still works
        with store.lock("crm"), pytest.raises(StateStoreError, match="one process at a time"):
            store.latest_unfinished("crm")
        store.close()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with SqlStateStore(StateUrl.parse(f"duckdb:///{path}"), state_dir=tmp_path).lock("crm"):
        pass
    assert (tmp_path / "state.duckdb.locks").is_dir()


# -- the local store's sync state -------------------------------------------------------------


def test_the_local_store_uses_its_file_in_place(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state")
    path = store.load_sync_state("crm")
    assert path == store.sync_state_path("crm")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = state_file(path, 10)
    store.save_sync_state("crm", path)  # nothing to do: replaced in place
    assert store.load_sync_state("crm").read_bytes() == data
    elsewhere = tmp_path / "new.parquet"
    newer = state_file(elsewhere, 20)
    store.save_sync_state("crm", elsewhere)
    assert store.load_sync_state("crm").read_bytes() == newer
    store.close()


# -- opening a store: the manifest, the hook, the built-in plugin ----------------------------


def test_without_a_state_section_the_store_is_local(tmp_path: Path) -> None:
    settings = state_settings(PlatformManifest(), Path("manifest.yaml"))
    assert settings.config == {"backend": "local"}
    store = open_state_store(tmp_path, settings, manager=floe_sink.get_plugin_manager())
    assert isinstance(store, LocalStateStore)
    store.close()


def _sql_manifest(ref: str = "floe-state") -> PlatformManifest:
    return PlatformManifest(state=StateConfig(backend="sql", connection_secret_ref=ref))


def test_a_sql_state_section_opens_the_database_of_its_secret(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "floe-state").mkdir(parents=True)
    (secrets / "floe-state" / "url").write_text(f"sqlite:///{tmp_path}/state.db\n")
    settings = state_settings(_sql_manifest(), Path("manifest.yaml"), secrets_dir=secrets)
    assert repr(settings).count("sqlite") == 0  # secrets are not in its repr
    store = open_state_store(tmp_path / "work", settings, manager=floe_sink.get_plugin_manager())
    assert isinstance(store, SqlStateStore)
    assert store.url.dialect == "sqlite"
    store.close()


def test_the_state_secret_problems_name_the_file_and_the_field(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    with pytest.raises(SinkConfigurationError) as caught:
        state_settings(_sql_manifest(), Path("manifest.yaml"), secrets_dir=secrets)
    assert str(caught.value).startswith("manifest.yaml: state.connection_secret_ref: ")
    assert "'floe-state' not found" in str(caught.value)

    (secrets / "floe-state").mkdir()
    (secrets / "floe-state" / "uri").write_text(f"postgresql://u:{PASSWORD}@h/d")
    settings = state_settings(_sql_manifest(), Path("manifest.yaml"), secrets_dir=secrets)
    with pytest.raises(SinkConfigurationError) as caught:
        open_state_store(tmp_path, settings)
    assert str(caught.value) == (
        "manifest.yaml: state: secret 'floe-state' has no key 'url' (it has: uri); add the "
        "state database's URL under the key url"
    )

    (secrets / "floe-state" / "url").write_text(f"mysql://u:{PASSWORD}@h/d")
    settings = state_settings(_sql_manifest(), Path("manifest.yaml"), secrets_dir=secrets)
    assert PASSWORD in settings.secret_values()
    with pytest.raises(SinkConfigurationError) as caught:
        open_state_store(tmp_path, settings)
    assert str(caught.value).startswith(
        "manifest.yaml: state: secret 'floe-state', key 'url': unsupported scheme 'mysql://'"
    )
    assert PASSWORD not in str(caught.value)


def test_an_unknown_backend_names_the_built_in_ones(tmp_path: Path) -> None:
    settings = StateSettings(config={"backend": "dynamo"}, where="manifest.yaml: state")
    with pytest.raises(SinkConfigurationError) as caught:
        open_state_store(tmp_path, settings, manager=floe_sink.get_plugin_manager())
    assert str(caught.value).startswith(
        "manifest.yaml: state.backend: no installed plugin provides state backend 'dynamo' "
        "(built in: local, sql)"
    )


class MemoryStore(LocalStateStore):
    """A platform's own store (a local one in disguise, enough to see who answered)."""


class PlatformPlugin:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any], Path]] = []

    @hookimpl
    def get_state_store(
        self, state_config: dict[str, Any], secrets: dict[str, Any], state_dir: Path
    ) -> Any:
        self.calls.append((state_config, dict(secrets), state_dir))
        if state_config["backend"] != "memory":
            return None
        return MemoryStore(state_dir / state_config["options"]["folder"])


def test_a_platform_plugin_brings_its_own_backend(tmp_path: Path) -> None:
    manager = floe_sink.get_plugin_manager()
    plugin = PlatformPlugin()
    manager.register(plugin, name="platform-state")
    settings = StateSettings(config={"backend": "memory", "options": {"folder": "mem"}})
    store = open_state_store(tmp_path, settings, manager=manager)
    assert isinstance(store, MemoryStore)
    assert store.state_dir == tmp_path / "mem"
    store.close()
    # local stays floe-sink's when the platform's plugin says it is not its backend
    local = open_state_store(tmp_path, StateSettings(), manager=manager)
    assert type(local) is LocalStateStore
    local.close()
    assert [call[0]["backend"] for call in plugin.calls] == ["memory", "local"]


def test_the_built_in_backends_answer_when_an_allow_list_leaves_them_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOE_SINK_LOAD_PLUGINS", "dlt")
    manager = floe_sink.get_plugin_manager()
    assert "state" not in dict(manager.list_name_plugin())
    store = open_state_store(tmp_path, StateSettings(), manager=manager)
    assert isinstance(store, LocalStateStore)
    store.close()


def test_the_built_in_backends_are_a_plugin_of_the_entry_point_group() -> None:
    import importlib.metadata

    from floe_sink import state_backends

    (entry_point,) = importlib.metadata.entry_points(group="floe_sink", name="state")
    assert entry_point.load() is state_backends
    manager = floe_sink.get_plugin_manager()
    assert manager.is_registered(state_backends)
    (impl,) = [
        impl
        for impl in manager.hook.get_state_store.get_hookimpls()
        if impl.plugin is state_backends
    ]
    assert impl.trylast  # a platform's plugin is asked first


def test_something_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    class Wrong:
        @hookimpl
        def get_state_store(self, state_config: dict[str, Any]) -> Any:
            return object()

    manager = floe_sink.get_plugin_manager()
    manager.register(Wrong(), name="wrong")
    with pytest.raises(PluginContractError, match="lacks lock, latest_unfinished"):
        open_state_store(tmp_path, StateSettings(), manager=manager)
