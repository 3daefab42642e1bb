"""Store-tier fixtures: every store test runs against SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL is a throwaway server started once per session by ``localdev.postgres`` (or the server
named by ``FLIGHTDECK_TEST_POSTGRES_URL``); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flightdeck_operator.localdev.postgres import temporary_postgres
from flightdeck_operator.store import Store, open_store


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    external = os.environ.get("FLIGHTDECK_TEST_POSTGRES_URL", "").strip()
    if external:
        yield external
        return
    with temporary_postgres() as url:
        yield url


@dataclass
class Backend:
    """A store plus raw SQL access to the same database (for tampering and checks)."""

    name: str
    target: str
    store: Store
    sqlite_path: Path | None = None
    pg_url: str | None = None

    def open_another(self) -> Store:
        return open_store(self.target)

    def raw(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside the store, committed at once; ``?`` placeholders."""
        if self.sqlite_path is not None:
            connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
            try:
                return connection.execute(sql, params).fetchall()
            finally:
                connection.close()
        assert self.pg_url is not None
        with psycopg.connect(self.pg_url, autocommit=True) as connection:
            cursor = connection.execute(sql.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    def tamper(self, *statements: tuple[str, Sequence[Any]]) -> None:
        """Edit the ledger as an attacker with raw database access would: append-only guards off."""
        if self.sqlite_path is not None:
            connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("DROP TRIGGER ledger_no_update")
                connection.execute("DROP TRIGGER ledger_no_delete")
                for sql, params in statements:
                    connection.execute(sql, params)
                connection.execute("COMMIT")
            finally:
                connection.close()
            return
        assert self.pg_url is not None
        with psycopg.connect(self.pg_url) as connection:
            connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
            for sql, params in statements:
                connection.execute(sql.replace("?", "%s"), params or None)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "flightdeck.db"
        store = open_store(path)
        try:
            yield Backend("sqlite", str(path), store, sqlite_path=path)
        finally:
            store.close()
        return
    base_url = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    store = open_store(url)
    try:
        yield Backend("postgresql", url, store, pg_url=url)
    finally:
        store.close()
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store
