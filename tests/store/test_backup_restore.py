"""The backup and restore procedures of docs/operations.md, run for real: a live SQLite store copied
with the online backup API, and a PostgreSQL database through pg_dump / pg_restore. The restored
ledger must verify and hold exactly the entries and run events that were backed up."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from flightdeck_operator.localdev.postgres import find_server_bindir
from flightdeck_operator.store import Store, open_store
from tests.factories import event_dict
from tests.unit.test_ledger import record

# docs/operations.md, "Backup and restore", SQLite: the command run inside the operator container.
SQLITE_BACKUP = (
    "import sqlite3, sys; source = sqlite3.connect(sys.argv[1]); target = sqlite3.connect(sys.argv[2]); "
    "source.backup(target); target.close()"
)
ENTRIES = 5
EVENTS = 3


def fill(store: Store) -> None:
    for n in range(1, ENTRIES + 1):
        store.append(record(n))
    store.ingest([event_dict() for _ in range(EVENTS)])


def assert_same_content(original: Store, restored: Store) -> None:
    verdict = restored.verify_ledger()
    assert (verdict.ok, verdict.entries) == (True, ENTRIES)
    assert restored.ledger_head() == original.ledger_head()
    assert restored.count_ledger() == ENTRIES
    assert [restored.ledger_entry(n) for n in range(1, ENTRIES + 1)] == [
        original.ledger_entry(n) for n in range(1, ENTRIES + 1)
    ]


def test_sqlite_online_backup_restores_a_verifiable_ledger(tmp_path: Path) -> None:
    live = tmp_path / "flightdeck.db"
    backup = tmp_path / "backup.db"
    with open_store(live) as store:
        fill(store)
        # The store stays open (WAL mode, as in the running operator) while the backup runs.
        subprocess.run([sys.executable, "-c", SQLITE_BACKUP, str(live), str(backup)], check=True, timeout=60)
        restored_path = tmp_path / "restored" / "flightdeck.db"
        restored_path.parent.mkdir()
        restored_path.write_bytes(backup.read_bytes())
        with open_store(restored_path) as restored:
            assert_same_content(store, restored)
            assert restored.count_events() == EVENTS


@pytest.fixture
def database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """Two fresh databases on the session's server: (backed-up URL, restore-target URL)."""
    names = [f"fd_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f"CREATE DATABASE {name}")
    base = postgres_url.rsplit("/", 1)[0]
    yield f"{base}/{names[0]}", f"{base}/{names[1]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_postgresql_dump_and_restore(database: tuple[str, str], tmp_path: Path) -> None:
    bindir = find_server_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL binaries not found (the store tier installs them)")
    source_url, target_url = database
    dump = tmp_path / "flightdeck.dump"
    with open_store(source_url) as store:
        fill(store)
        # docs/operations.md: the same two commands.
        subprocess.run(
            [str(bindir / "pg_dump"), "--format=custom", f"--file={dump}", source_url],
            check=True,
            timeout=120,
        )
        subprocess.run(
            [
                str(bindir / "pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                f"--dbname={target_url}",
                str(dump),
            ],
            check=True,
            timeout=120,
        )
        with open_store(target_url) as restored:
            assert_same_content(store, restored)
            assert restored.count_events() == EVENTS
