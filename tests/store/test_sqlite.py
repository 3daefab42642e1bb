"""SQLite-only behaviour: how targets are named, WAL settings, the background checkpointer."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from flightdeck_operator.store import SqliteStore, StoreError, open_store
from flightdeck_operator.store.schema import MIGRATIONS
from flightdeck_operator.store.sqlite import WAL_LIMIT_BYTES
from tests.factories import NOW, event_dict

ALL_MIGRATIONS = [migration.version for migration in MIGRATIONS]


def test_sqlite_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///relative/fd.db") as relative:
        assert isinstance(relative, SqliteStore)
        assert relative.path == Path("relative/fd.db")
    assert (tmp_path / "relative" / "fd.db").exists()
    with open_store(f"sqlite:///{tmp_path}/abs.db") as absolute:
        assert absolute.describe() == f"sqlite {tmp_path}/abs.db"
    with open_store(tmp_path / "plain.db") as plain:
        assert plain.applied_migrations() == ALL_MIGRATIONS
    for bad in ("sqlite::memory:", ":memory:", "sqlite:///"):
        with pytest.raises(StoreError):
            open_store(bad)


def test_wal_and_pragmas(tmp_path: Path) -> None:
    with open_store(tmp_path / "fd.db", busy_timeout_ms=1234) as store:
        assert isinstance(store, SqliteStore)
        connection = store._reader()
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert connection.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_LIMIT_BYTES


def test_background_checkpointer_copies_the_wal_and_stops_on_close(tmp_path: Path) -> None:
    path = tmp_path / "fd.db"
    store = open_store(path)
    assert isinstance(store, SqliteStore)
    size_before = path.stat().st_size
    for batch in range(25):  # more write transactions than the wake-up threshold
        store.ingest([event_dict(run_id=f"r{batch}-{i}", timestamp=NOW) for i in range(100)])
    deadline = time.monotonic() + 10
    while path.stat().st_size <= size_before + 100_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The writer never checkpoints itself (wal_autocheckpoint=0), so a larger main file is the thread's work.
    assert path.stat().st_size > size_before + 100_000
    assert store._checkpointer.is_alive()
    store.close()
    assert not store._checkpointer.is_alive()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT COUNT(*) FROM run_events").fetchone()[0] == 2500


def test_checkpointer_stops_when_an_unclosed_store_is_collected(tmp_path: Path) -> None:
    store = open_store(tmp_path / "fd.db")
    assert isinstance(store, SqliteStore)
    thread = store._checkpointer
    connections = list(store._connections)
    del store
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()
    for connection in connections:
        connection.close()


def test_readers_on_many_threads_see_committed_data(tmp_path: Path) -> None:
    with open_store(tmp_path / "fd.db") as store:
        store.ingest([event_dict(timestamp=NOW) for _ in range(10)])
        counts: list[int] = []
        threads = [threading.Thread(target=lambda: counts.append(store.count_events())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert counts == [10] * 8
