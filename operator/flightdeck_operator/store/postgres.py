"""PostgreSQL through a psycopg connection pool (COPY ingest; table locks serialize ledger appends)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg_pool

from flightdeck_operator.store.base import StoreError, Transaction
from flightdeck_operator.store.interface import Store
from flightdeck_operator.store.schema import EVENT_COLUMNS

_PG_MIGRATION_LOCK = 0x466C_6967_6874  # pg_advisory_xact_lock key for migrations ("Flight")
_PG_OTLP_LOCK = 0x4F54_4C50  # ... for OTLP staging and finalising ("OTLP")


# How long a ledger-writing transaction may sit idle (its client frozen) before the server ends it.
LEDGER_IDLE_TIMEOUT_MS = 5_000


class PostgresStore(Store):
    """PostgreSQL through a psycopg connection pool; writes take row or table locks, not a Python lock."""

    backend = "postgresql"

    def __init__(self, url: str, *, min_connections: int = 1, max_connections: int = 8) -> None:
        self.url = url
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_connections,
            max_size=max_connections,
            open=True,
            name="flightdeck-store",
            check=psycopg_pool.ConnectionPool.check_connection,
        )
        try:
            self._pool.wait(timeout=30)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {redact(url)}") from exc

    @contextlib.contextmanager
    def _transaction(self, *, write: bool, snapshot: bool = False) -> Iterator[Transaction]:
        with self._pool.connection() as connection, connection.transaction():
            if snapshot:
                connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield Transaction(connection, postgres=True)

    @contextlib.contextmanager
    def _stream_transaction(self) -> Iterator[Transaction]:
        with self._pool.connection() as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield Transaction(connection, postgres=True)

    def _lock_for_migration(self, tx: Transaction) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", [_PG_MIGRATION_LOCK])

    def _lock_otlp_traces(self, tx: Transaction) -> None:
        # Sidecar replicas share the staging tables: one stages or finalises at a time, so a
        # trace is never finalised while another replica adds spans to it.
        tx.execute("SELECT pg_advisory_xact_lock(?)", [_PG_OTLP_LOCK])

    def _lock_ledger(self, tx: Transaction) -> None:
        # A writer frozen while it holds the lock (SIGSTOP, a partition: its connection stays open)
        # would block the next leader's fence claim and every append for as long; the server ends
        # such a transaction after LEDGER_IDLE_TIMEOUT instead (only these short ones: exports hold
        # read transactions open for as long as their client reads).
        tx.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{LEDGER_IDLE_TIMEOUT_MS}ms'")
        # EXCLUSIVE blocks other appends but not readers; released at commit.
        tx.execute("LOCK TABLE ledger_entries IN EXCLUSIVE MODE")

    def _insert_rows(self, tx: Transaction, rows: list[tuple[Any, ...]]) -> int:
        # COPY into a session-private staging table, then one INSERT ... SELECT: several times
        # faster than row inserts, and the bucket trigger runs once per batch. ORDER BY keeps
        # "first one wins" for repeated run_ids within a batch.
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS run_events_staging "
            "(LIKE run_events INCLUDING DEFAULTS, ordinal BIGINT NOT NULL) ON COMMIT DELETE ROWS"
        )
        tx.copy_rows(
            f"COPY run_events_staging ({', '.join(EVENT_COLUMNS)}, ordinal) FROM STDIN",
            ((*row, ordinal) for ordinal, row in enumerate(rows)),
        )
        columns = ", ".join(EVENT_COLUMNS)
        cursor = tx.execute(
            f"INSERT INTO run_events ({columns}) SELECT {columns} FROM run_events_staging "
            "ORDER BY ordinal ON CONFLICT (run_id) DO NOTHING"
        )
        return int(cursor.rowcount)

    def _serial_plans(self, tx: Transaction) -> None:
        tx.execute("SET LOCAL max_parallel_workers_per_gather = 0")

    def _json_text(self, path: tuple[str, ...]) -> str:
        return f"(event_json::jsonb #>> '{{{','.join(path)}}}')"

    def describe(self) -> str:
        return f"postgresql {redact(self.url)}"

    def close(self) -> None:
        self._pool.close()


def redact(url: str) -> str:
    """The connection target without its password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable PostgreSQL URL>"
    params.pop("password", None)
    return " ".join(f"{key}={value}" for key, value in sorted(params.items()) if key != "options")
