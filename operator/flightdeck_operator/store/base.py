"""The transaction and the abstract store every backend implements: connections, migrations."""

from __future__ import annotations

import contextlib
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, Self

from flightdeck_operator.engine.models import utc_micros
from flightdeck_operator.store.schema import LATEST_SCHEMA_VERSION, MIGRATIONS


class StoreError(RuntimeError):
    """The store cannot be used as asked (bad URL, schema newer than this code, ...)."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction:
    """One transaction on one connection, with ``?`` placeholders on both backends."""

    def __init__(self, connection: Any, *, postgres: bool) -> None:
        self._connection = connection
        self._postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Cursor:
        if self._postgres and params is not None:
            sql = _pg_placeholders(sql)
        cursor: Cursor = (
            self._connection.execute(sql, params) if params is not None else self._connection.execute(sql)
        )
        return cursor

    def copy_rows(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """PostgreSQL ``COPY ... FROM STDIN`` of ``rows``."""
        with self._connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def iterate(self, sql: str, params: Sequence[Any], batch_size: int) -> Iterator[list[Any]]:
        """The rows of one query in batches, without holding them all: SQLite steps its cursor,
        PostgreSQL reads through a server-side (named) cursor."""
        if self._postgres:
            with self._connection.cursor(name="flightdeck_stream") as cursor:
                cursor.execute(sql.replace("?", "%s"), params)
                while rows := cursor.fetchmany(batch_size):
                    yield rows
            return
        cursor = self._connection.execute(sql, params)
        while rows := cursor.fetchmany(batch_size):
            yield rows

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        if self._postgres:
            with self._connection.cursor() as cursor:
                cursor.executemany(_pg_placeholders(sql), rows)
                return int(cursor.rowcount)
        return int(self._connection.executemany(sql, rows).rowcount)


class StoreBase(ABC):
    """What the queries need of a backend: transactions, locks, the event insert and JSON access."""

    backend: ClassVar[str]

    @abstractmethod
    def _transaction(
        self, *, write: bool, snapshot: bool = False
    ) -> contextlib.AbstractContextManager[Transaction]:
        """A transaction; ``write`` ones are serialized; ``snapshot`` reads see one consistent state."""

    @abstractmethod
    def _stream_transaction(self) -> contextlib.AbstractContextManager[Transaction]:
        """A read-only snapshot on a connection of its own, for a long read consumed step by step
        (maybe from several threads, one at a time): no other caller shares its connection."""

    @abstractmethod
    def _lock_for_migration(self, tx: Transaction) -> None: ...

    @abstractmethod
    def _lock_ledger(self, tx: Transaction) -> None: ...

    @abstractmethod
    def _insert_rows(self, tx: Transaction, rows: list[tuple[Any, ...]]) -> int:
        """Insert ``_event_row`` rows, skipping known and repeated run_ids; returns how many were new."""

    def _serial_plans(self, tx: Transaction) -> None:
        """For the rest of ``tx``: no parallel plans. Small aggregates over index ranges pay more
        for starting workers than they save (PostgreSQL; a no-op elsewhere)."""
        del tx

    @abstractmethod
    def _json_text(self, path: tuple[str, ...]) -> str:
        """SQL expression reading a text field of ``event_json``."""

    @abstractmethod
    def describe(self) -> str:
        """Backend and location for logs, without credentials."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # migrations

    def migrate(self) -> list[int]:
        """Apply missing migrations in order; returns the versions applied now (empty: up to date)."""
        applied_now: list[int] = []
        for migration in MIGRATIONS:
            with self._transaction(write=True) as tx:
                self._lock_for_migration(tx)
                tx.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_us BIGINT NOT NULL)"
                )
                applied = {
                    int(row[0]) for row in tx.execute("SELECT version FROM schema_migrations").fetchall()
                }
                newer = sorted(v for v in applied if v > LATEST_SCHEMA_VERSION)
                if newer:
                    raise StoreError(
                        f"store schema has migrations {newer} newer than this code "
                        f"(latest {LATEST_SCHEMA_VERSION}); upgrade the operator"
                    )
                if migration.version in applied:
                    continue
                for statement in migration.postgresql if self.backend == "postgresql" else migration.sqlite:
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (?, ?, ?)",
                    (migration.version, migration.name, utc_micros(dt.datetime.now(dt.UTC))),
                )
                applied_now.append(migration.version)
        return applied_now

    def applied_migrations(self) -> list[int]:
        with self._transaction(write=False) as tx:
            return [
                int(r[0])
                for r in tx.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
            ]


def _pg_placeholders(sql: str) -> str:
    """psycopg's placeholders for our ``?`` ones; a literal ``%`` (SQL's modulo) is doubled."""
    return sql.replace("%", "%%").replace("?", "%s")
