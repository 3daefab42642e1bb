"""The store: run events, evidence aggregates and the ledger. The only module that does store I/O.

``open_store(target)`` picks the backend: ``postgresql://`` / ``postgres://`` URLs select PostgreSQL
(psycopg 3 with a small connection pool); anything else is a SQLite file (a path, or
``sqlite:///relative.db`` / ``sqlite:////absolute.db`` as SQLAlchemy spells it).

Design notes (details in docs/engine.md):

- Timestamps are UTC integer microseconds (``ts_us``), never text. A naive timestamp is taken as UTC.
- Run events are idempotent on ``run_id`` via ``INSERT ... ON CONFLICT DO NOTHING``.
- Evidence: triggers keep hourly per-(release, environment, agent, model, tenant, task) sums in
  ``run_event_buckets`` for every event actually inserted. A window sums the whole hours it covers
  from the buckets and the ragged edges from ``run_events``; the result is exactly the per-event sums.
- Ledger appends are serialized (SQLite: one writer + ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE
  ... IN EXCLUSIVE MODE``), so ``seq`` is contiguous and the hash chain linear.
- Schema changes are versioned, forward-only migrations recorded in ``schema_migrations``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import psycopg
import psycopg_pool
from pydantic import ValidationError

from flightdeck_operator.engine import ledger
from flightdeck_operator.engine.evidence import ModelAggregate, SideEvidence, merge_aggregates
from flightdeck_operator.engine.ledger import ChainVerification, LedgerEntry, LedgerRecord
from flightdeck_operator.engine.models import (
    RUN_EVENT_DATA,
    InvalidEventsError,
    RunEvent,
    RunEventData,
    as_utc,
    from_utc_micros,
    utc_micros,
    validate_events,
)

__all__ = [
    "BUCKET_US",
    "EventPage",
    "InvalidEventsError",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_store",
    "validate_events",
]

BUCKET_US = 3_600_000_000
"""Width of a pre-aggregated evidence bucket: one hour, in microseconds."""

_PG_MIGRATION_LOCK = 0x466C_6967_6874  # pg_advisory_xact_lock key for migrations ("Flight")
_SQLITE_IN_CHUNK = 500
_CHECKPOINT_INTERVAL_S = 1.0  # background WAL checkpoint at least this often ...
_CHECKPOINT_EVERY_WRITES = (
    20  # ... or after this many write transactions  # bound parameters per "run_id IN (...)" lookup
)


class StoreError(RuntimeError):
    """The store cannot be used as asked (bad URL, schema newer than this code, ...)."""


# --- schema -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


def _bucket_of(column: str) -> str:
    # Floor to the hour, also correct for timestamps before 1970 (SQL % truncates toward zero).
    return f"{column} - ((({column} % {BUCKET_US}) + {BUCKET_US}) % {BUCKET_US})"


_RUN_EVENTS_SQLITE = """
CREATE TABLE run_events (
    run_id TEXT PRIMARY KEY,
    release_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    latency_ms INTEGER,
    success INTEGER NOT NULL,
    received_at_us INTEGER NOT NULL,
    event_json TEXT NOT NULL
)"""

_LEDGER_COLUMNS = (
    "seq",
    "idempotency_key",
    "request_uid",
    "kind",
    "actor",
    "namespace",
    "pointer",
    "agent_id",
    "environment",
    "release_id",
    "baseline_release_id",
    "pointer_changed",
    "reason",
    "policy_result_json",
    "evidence_json",
    "policy_digest",
    "details_json",
    "created_at_us",
    "prev_hash",
    "hash",
)

_LEDGER_SQL = """
CREATE TABLE ledger_entries (
    seq BIGINT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_uid TEXT UNIQUE,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    namespace TEXT NOT NULL,
    pointer TEXT,
    agent_id TEXT,
    environment TEXT,
    release_id TEXT,
    baseline_release_id TEXT,
    pointer_changed INTEGER NOT NULL,
    reason TEXT NOT NULL,
    policy_result_json TEXT,
    evidence_json TEXT,
    policy_digest TEXT,
    details_json TEXT,
    created_at_us BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    CHECK (seq >= 1)
)"""

_BUCKETS_SQL = """
CREATE TABLE run_event_buckets (
    release_id TEXT NOT NULL,
    environment TEXT NOT NULL,
    bucket_start_us BIGINT NOT NULL,
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    runs BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    latency_ms_sum BIGINT NOT NULL,
    latency_count BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (release_id, environment, bucket_start_us, agent_id, model, tenant_id, task_id)
)"""
_BUCKET_KEY = "release_id, environment, bucket_start_us, agent_id, model, tenant_id, task_id"
_BUCKET_SUMS = (
    "runs",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "latency_ms_sum",
    "latency_count",
    "failures",
)
_EVENT_SUMS = (  # per-event contributions, in _BUCKET_SUMS order
    "1",
    "{e}.input_tokens",
    "{e}.output_tokens",
    "{e}.cached_input_tokens",
    "COALESCE({e}.latency_ms, 0)",
    "CASE WHEN {e}.latency_ms IS NULL THEN 0 ELSE 1 END",
    "1 - {e}.success",
)


def _sqlite_bucket_delete_trigger() -> str:
    # Inserts maintain buckets in Python (see SqliteStore); a delete (retention, forensics clean-up)
    # is rare, so a row trigger keeps the buckets right without code on every path.
    subtract = ", ".join(
        f"{c} = {c} - ({s.format(e='OLD')})" for c, s in zip(_BUCKET_SUMS, _EVENT_SUMS, strict=True)
    )
    return f"""CREATE TRIGGER run_events_bucket_delete AFTER DELETE ON run_events BEGIN
            UPDATE run_event_buckets SET {subtract}
            WHERE release_id = OLD.release_id AND environment = OLD.environment
              AND bucket_start_us = {_bucket_of("OLD.ts_us")} AND agent_id = OLD.agent_id
              AND model = OLD.model AND tenant_id = OLD.tenant_id AND task_id = OLD.task_id;
        END"""


_SQLITE_BUCKET_UPSERT = (
    f"INSERT INTO run_event_buckets ({_BUCKET_KEY}, {', '.join(_BUCKET_SUMS)}) "
    f"VALUES ({', '.join('?' for _ in range(14))}) ON CONFLICT ({_BUCKET_KEY}) DO UPDATE SET "
    + ", ".join(f"{c} = {c} + excluded.{c}" for c in _BUCKET_SUMS)
)


def _pg_bucket_functions() -> tuple[str, ...]:
    def statement(transition: str, sign: str) -> str:
        sums = ", ".join(
            [
                "COUNT(*)",
                "SUM(input_tokens)",
                "SUM(output_tokens)",
                "SUM(cached_input_tokens)",
                "COALESCE(SUM(latency_ms), 0)",
                "COUNT(latency_ms)",
                "COUNT(*) - SUM(success)",
            ]
        )
        update = ", ".join(f"{c} = b.{c} {sign} EXCLUDED.{c}" for c in _BUCKET_SUMS)
        # One set-based upsert per statement; ORDER BY keeps lock order stable across writers.
        return f"""
            INSERT INTO run_event_buckets AS b ({_BUCKET_KEY}, {", ".join(_BUCKET_SUMS)})
            SELECT release_id, environment, {_bucket_of("ts_us")}, agent_id, model, tenant_id, task_id, {sums}
            FROM {transition} GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
            ON CONFLICT ({_BUCKET_KEY}) DO UPDATE SET {update}"""

    return (
        f"""CREATE FUNCTION run_events_bucket_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {statement("inserted_events", "+")}; RETURN NULL; END $$""",
        f"""CREATE FUNCTION run_events_bucket_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN {statement("deleted_events", "-")}; RETURN NULL; END $$""",
        """CREATE TRIGGER run_events_bucket_insert AFTER INSERT ON run_events
            REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT
            EXECUTE FUNCTION run_events_bucket_insert()""",
        """CREATE TRIGGER run_events_bucket_delete AFTER DELETE ON run_events
            REFERENCING OLD TABLE AS deleted_events FOR EACH STATEMENT
            EXECUTE FUNCTION run_events_bucket_delete()""",
    )


_BUCKET_BACKFILL = f"""
INSERT INTO run_event_buckets ({_BUCKET_KEY}, {", ".join(_BUCKET_SUMS)})
SELECT release_id, environment, {_bucket_of("ts_us")}, agent_id, model, tenant_id, task_id,
       COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens),
       COALESCE(SUM(latency_ms), 0), COUNT(latency_ms), COUNT(*) - SUM(success)
FROM run_events GROUP BY 1, 2, 3, 4, 5, 6, 7"""

_APPEND_ONLY_MESSAGE = "ledger_entries is append-only"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "run events",
        sqlite=(
            _RUN_EVENTS_SQLITE,
            "CREATE INDEX run_events_release_env_ts ON run_events (release_id, environment, ts_us)",
        ),
        postgresql=(
            _RUN_EVENTS_SQLITE.replace("INTEGER", "BIGINT"),
            "CREATE INDEX run_events_release_env_ts ON run_events (release_id, environment, ts_us)",
        ),
    ),
    Migration(
        2,
        "hash-chained ledger",
        sqlite=(
            _LEDGER_SQL.replace("BIGINT", "INTEGER"),
            "CREATE INDEX ledger_pointer_seq ON ledger_entries (namespace, pointer, seq)",
            "CREATE INDEX ledger_agent_env_seq ON ledger_entries (agent_id, environment, seq)",
            f"""CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger_entries
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END""",
            f"""CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger_entries
                BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END""",
        ),
        postgresql=(
            _LEDGER_SQL,
            "CREATE INDEX ledger_pointer_seq ON ledger_entries (namespace, pointer, seq)",
            "CREATE INDEX ledger_agent_env_seq ON ledger_entries (agent_id, environment, seq)",
            f"""CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$""",
            """CREATE TRIGGER ledger_no_update_delete BEFORE UPDATE OR DELETE ON ledger_entries
                FOR EACH ROW EXECUTE FUNCTION ledger_append_only()""",
            """CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger_entries
                FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()""",
        ),
    ),
    Migration(
        3,
        "hourly evidence buckets",
        sqlite=(_BUCKETS_SQL + " WITHOUT ROWID", _sqlite_bucket_delete_trigger(), _BUCKET_BACKFILL),
        postgresql=(_BUCKETS_SQL, *_pg_bucket_functions(), _BUCKET_BACKFILL),
    ),
)
LATEST_SCHEMA_VERSION = MIGRATIONS[-1].version


# --- connections ------------------------------------------------------------------------------------


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Tx:
    """One transaction on one connection, with ``?`` placeholders on both backends."""

    def __init__(self, connection: Any, *, postgres: bool) -> None:
        self._connection = connection
        self._postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> _Cursor:
        if self._postgres and params is not None:
            sql = sql.replace("?", "%s")
        cursor: _Cursor = (
            self._connection.execute(sql, params) if params is not None else self._connection.execute(sql)
        )
        return cursor

    def copy_rows(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """PostgreSQL ``COPY ... FROM STDIN`` of ``rows``."""
        with self._connection.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        if self._postgres:
            with self._connection.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)
                return int(cursor.rowcount)
        return int(self._connection.executemany(sql, rows).rowcount)


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of run events, newest first (the reference's ``GET /v1/runs``)."""

    matched_total: int
    offset: int
    events: tuple[RunEvent, ...]

    @property
    def truncated(self) -> bool:
        return self.offset + len(self.events) < self.matched_total


# --- the store --------------------------------------------------------------------------------------


class Store(ABC):
    """Backend-neutral store API. Use ``open_store``; close it (or use ``with``) when done."""

    backend: ClassVar[str]

    @abstractmethod
    def _transaction(self, *, write: bool, snapshot: bool = False) -> contextlib.AbstractContextManager[_Tx]:
        """A transaction; ``write`` ones are serialized; ``snapshot`` reads see one consistent state."""

    @abstractmethod
    def _lock_for_migration(self, tx: _Tx) -> None: ...

    @abstractmethod
    def _lock_ledger(self, tx: _Tx) -> None: ...

    @abstractmethod
    def _insert_rows(self, tx: _Tx, rows: list[tuple[Any, ...]]) -> int:
        """Insert ``_event_row`` rows, skipping known and repeated run_ids; returns how many were new."""

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

    # run events

    def insert_events(self, events: Sequence[RunEvent], *, received_at: dt.datetime | None = None) -> int:
        """Store validated events in one transaction; duplicates of a stored ``run_id`` (or of an
        earlier event in the batch) are skipped. Returns how many were new."""
        if not events:
            return 0
        received_us = utc_micros(received_at or dt.datetime.now(dt.UTC))
        rows = [_event_row(event, received_us) for event in events]
        with self._transaction(write=True) as tx:
            return self._insert_rows(tx, rows)

    def insert_event_data(
        self, events: Sequence[RunEventData], *, received_at: dt.datetime | None = None
    ) -> int:
        """``insert_events`` for events validated to plain data (``RunEventData``, the ingestion
        path): the same rows, built with less work per event."""
        if not events:
            return 0
        received_us = utc_micros(received_at or dt.datetime.now(dt.UTC))
        rows = [_data_row(event, received_us) for event in events]
        with self._transaction(write=True) as tx:
            return self._insert_rows(tx, rows)

    def ingest(self, raw_items: Sequence[Any], *, received_at: dt.datetime | None = None) -> int:
        """Validate the whole batch (reference messages, ``InvalidEventsError``), then insert it."""
        return self.insert_events(validate_events(raw_items), received_at=received_at)

    def count_events(self, *, release_id: str | None = None, environment: str | None = None) -> int:
        where, params = _where({"release_id": release_id, "environment": environment})
        with self._transaction(write=False) as tx:
            return int(tx.execute(f"SELECT COUNT(*) FROM run_events{where}", params).fetchone()[0])

    def query_events(
        self,
        release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        *,
        tenant_id: str | None = None,
        task_id: str | None = None,
        trace_id: str | None = None,
        session_id: str | None = None,
        span_id: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> EventPage:
        """Events of one release in ``[since, until)``, newest first, paged in SQL."""
        clauses = ["release_id = ?", "environment = ?", "ts_us >= ?", "ts_us < ?"]
        params: list[Any] = [release_id, environment, utc_micros(since), utc_micros(until)]
        for column, value in (("tenant_id", tenant_id), ("task_id", task_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for name, value in (("trace_id", trace_id), ("session_id", session_id), ("span_id", span_id)):
            if value is not None and value.strip():
                clauses.append(f"{self._json_text(('request', name))} = ?")
                params.append(value.strip())
        where = " WHERE " + " AND ".join(clauses)
        with self._transaction(write=False, snapshot=True) as tx:
            total = int(tx.execute(f"SELECT COUNT(*) FROM run_events{where}", params).fetchone()[0])
            rows = tx.execute(
                f"SELECT event_json FROM run_events{where} ORDER BY ts_us DESC, run_id DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        events = tuple(RunEvent.model_validate_json(row[0]) for row in rows)
        return EventPage(matched_total=total, offset=offset, events=events)

    # evidence

    def evidence(
        self,
        release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        *,
        tenant_id: str | None = None,
        task_id: str | None = None,
    ) -> SideEvidence:
        """Per-(agent, model) sums for one release over the half-open window ``[since, until)``."""
        with self._transaction(write=False, snapshot=True) as tx:
            return self._evidence(tx, release_id, environment, since, until, tenant_id, task_id)

    def diff_evidence(
        self,
        baseline_release_id: str,
        candidate_release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        *,
        tenant_id: str | None = None,
        task_id: str | None = None,
    ) -> tuple[SideEvidence, SideEvidence]:
        """Both sides of a diff, read from one consistent snapshot."""
        with self._transaction(write=False, snapshot=True) as tx:
            return (
                self._evidence(tx, baseline_release_id, environment, since, until, tenant_id, task_id),
                self._evidence(tx, candidate_release_id, environment, since, until, tenant_id, task_id),
            )

    def _evidence(
        self,
        tx: _Tx,
        release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        tenant_id: str | None,
        task_id: str | None,
    ) -> SideEvidence:
        since_us, until_us = utc_micros(since), utc_micros(until)
        extra, extra_params = "", []
        for column, value in (("tenant_id", tenant_id), ("task_id", task_id)):
            if value is not None:
                extra += f" AND {column} = ?"
                extra_params.append(value)
        parts: list[ModelAggregate] = []
        full_from = -(-since_us // BUCKET_US) * BUCKET_US  # first whole hour inside the window
        full_to = until_us // BUCKET_US * BUCKET_US  # end of the last whole hour inside it
        raw_ranges: list[tuple[int, int]] = []
        if full_from < full_to:
            sums = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in _BUCKET_SUMS)
            rows = tx.execute(
                f"SELECT agent_id, model, {sums} FROM run_event_buckets "
                "WHERE release_id = ? AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ?"
                f"{extra} GROUP BY agent_id, model",
                [release_id, environment, full_from, full_to, *extra_params],
            ).fetchall()
            parts.extend(_aggregate(row) for row in rows)
            raw_ranges = [(since_us, full_from), (full_to, until_us)]
        else:
            raw_ranges = [(since_us, until_us)]
        for start, end in raw_ranges:
            if start >= end:
                continue
            rows = tx.execute(
                "SELECT agent_id, model, COUNT(*), CAST(SUM(input_tokens) AS BIGINT), "
                "CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT), "
                "CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT), COUNT(latency_ms), "
                "CAST(COUNT(*) - SUM(success) AS BIGINT) FROM run_events "
                f"WHERE release_id = ? AND environment = ? AND ts_us >= ? AND ts_us < ?{extra} "
                "GROUP BY agent_id, model",
                [release_id, environment, start, end, *extra_params],
            ).fetchall()
            parts.extend(_aggregate(row) for row in rows)
        return SideEvidence(
            release_id=release_id,
            environment=environment,
            since=as_utc(since),
            until=as_utc(until),
            aggregates=tuple(a for a in merge_aggregates(parts) if a.runs),
            tenant_id=tenant_id,
            task_id=task_id,
        )

    # ledger

    def append(self, record: LedgerRecord) -> LedgerEntry:
        """Append ``record`` with the next ``seq`` and its chain hash, atomically.

        Idempotent: if an entry with the same idempotency key (or request UID) exists, it is returned
        and nothing is written.
        """
        with self._transaction(write=True) as tx:
            self._lock_ledger(tx)
            existing = tx.execute(
                f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM ledger_entries "
                "WHERE idempotency_key = ? OR request_uid = ? ORDER BY seq LIMIT 1",
                [record.idempotency_key, record.request_uid],
            ).fetchone()
            if existing is not None:
                return _ledger_entry(existing)
            head = tx.execute("SELECT seq, hash FROM ledger_entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (1, ledger.GENESIS_HASH) if head is None else (int(head[0]) + 1, str(head[1]))
            entry = ledger.seal(record, seq=seq, prev_hash=prev_hash)
            tx.execute(
                f"INSERT INTO ledger_entries ({', '.join(_LEDGER_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _LEDGER_COLUMNS)})",
                _ledger_row(entry),
            )
            return entry

    def ledger_entry_for_request(self, request_uid: str) -> LedgerEntry | None:
        return self._one_ledger_entry("request_uid = ?", [request_uid])

    def ledger_entry_for_key(self, idempotency_key: str) -> LedgerEntry | None:
        return self._one_ledger_entry("idempotency_key = ?", [idempotency_key])

    def ledger_entry(self, seq: int) -> LedgerEntry | None:
        return self._one_ledger_entry("seq = ?", [seq])

    def ledger_head(self) -> LedgerEntry | None:
        return self._one_ledger_entry("seq = (SELECT MAX(seq) FROM ledger_entries)", [])

    def last_pointer_entry(self, namespace: str, pointer: str) -> LedgerEntry | None:
        """The last entry that moved this pointer: the pointer's release must equal its ``release_id``."""
        return self._one_ledger_entry(
            "seq = (SELECT MAX(seq) FROM ledger_entries WHERE namespace = ? AND pointer = ? "
            "AND pointer_changed = 1 AND kind IN ('promote', 'rollback'))",
            [namespace, pointer],
        )

    def pointer_moves(self, namespace: str, pointer: str, *, limit: int = 10) -> list[LedgerEntry]:
        """The entries that moved this pointer, newest first (its history)."""
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM ledger_entries WHERE namespace = ? AND pointer = ? "
                "AND pointer_changed = 1 AND kind IN ('promote', 'rollback') ORDER BY seq DESC LIMIT ?",
                [namespace, pointer, limit],
            ).fetchall()
        return [_ledger_entry(row) for row in rows]

    def pointer_heads(self) -> dict[tuple[str, str], LedgerEntry]:
        """``last_pointer_entry`` for every pointer in the ledger, keyed by (namespace, pointer)."""
        rows = self._ledger_rows(
            "seq IN (SELECT MAX(seq) FROM ledger_entries WHERE pointer_changed = 1 "
            "AND kind IN ('promote', 'rollback') GROUP BY namespace, pointer)",
            [],
        )
        entries = (_ledger_entry(row) for row in rows)
        return {(e.namespace, e.pointer or ""): e for e in entries}

    def approvals_for_request(self, namespace: str, pointer: str, request_uid: str) -> list[LedgerEntry]:
        """The ledgered approvals of one request, oldest first (approvals per pointer are few, so the
        request filter runs here rather than on the JSON column)."""
        rows = self._ledger_rows(
            "namespace = ? AND pointer = ? AND kind = ?",
            [namespace, pointer, ledger.LedgerKind.APPROVAL.value],
        )
        entries = (_ledger_entry(row) for row in rows)
        return [e for e in entries if (e.details or {}).get("request_uid") == request_uid]

    def list_ledger(
        self,
        *,
        agent_id: str | None = None,
        environment: str | None = None,
        namespace: str | None = None,
        pointer: str | None = None,
        kind: ledger.LedgerKind | None = None,
        kinds: Sequence[ledger.LedgerKind] | None = None,
        limit: int = 50,
    ) -> list[LedgerEntry]:
        """Entries matching every given filter (``kinds``: any of them), newest first."""
        where, params = _where(
            {
                "agent_id": agent_id,
                "environment": environment,
                "namespace": namespace,
                "pointer": pointer,
                "kind": kind.value if kind else None,
            }
        )
        if kinds:
            where += (" AND " if where else " WHERE ") + f"kind IN ({', '.join('?' for _ in kinds)})"
            params.extend(k.value for k in kinds)
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM ledger_entries{where} ORDER BY seq DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [_ledger_entry(row) for row in rows]

    def count_ledger(self) -> int:
        with self._transaction(write=False) as tx:
            return int(tx.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0])

    def verify_ledger(self, *, page_size: int = 1000) -> ChainVerification:
        """Load the ledger in ``seq`` order and check contiguity and the hash chain."""
        entries: list[LedgerEntry] = []
        last_seq = 0
        with self._transaction(write=False, snapshot=True) as tx:
            while True:
                rows = tx.execute(
                    f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM ledger_entries "
                    "WHERE seq > ? ORDER BY seq LIMIT ?",
                    [last_seq, page_size],
                ).fetchall()
                for row in rows:
                    try:
                        entries.append(_ledger_entry(row))
                    except (ValidationError, ValueError, TypeError) as exc:
                        verdict = ledger.verify(entries)
                        if not verdict.ok:
                            return verdict
                        bad_seq = int(row[0])
                        if bad_seq != len(entries) + 1:  # a gap before the unreadable row comes first
                            return ledger.verify([*entries, _placeholder(bad_seq)])
                        return ChainVerification(
                            False, len(entries) + 1, bad_seq, f"seq {bad_seq}: row cannot be read ({exc})"
                        )
                if len(rows) < page_size:
                    break
                last_seq = int(rows[-1][0])
        return ledger.verify(entries)

    def _one_ledger_entry(self, condition: str, params: list[Any]) -> LedgerEntry | None:
        rows = self._ledger_rows(condition, params)
        return _ledger_entry(rows[0]) if rows else None

    def _ledger_rows(self, condition: str, params: list[Any]) -> list[Any]:
        with self._transaction(write=False) as tx:
            return tx.execute(
                f"SELECT {', '.join(_LEDGER_COLUMNS)} FROM ledger_entries WHERE {condition} ORDER BY seq",
                params,
            ).fetchall()


# --- SQLite -----------------------------------------------------------------------------------------


class SqliteStore(Store):
    """SQLite in WAL mode: one serialized writer connection and one reader connection per thread."""

    backend = "sqlite"

    def __init__(self, path: Path, *, busy_timeout_ms: int = 30_000, cache_size_kib: int = 65_536) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._cache_size_kib = cache_size_kib
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect()
        # Checkpoints (copying the WAL back into the database, with fsyncs) run on a background
        # thread instead of inside whichever commit crosses the threshold; PASSIVE ones never block
        # the writer or readers. Measured: about 8 % more inserts per second.
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._writes_since_checkpoint = 0
        self._wake_checkpointer = threading.Event()
        self._stopping = threading.Event()
        self._checkpointer = threading.Thread(
            target=_checkpoint_loop,
            args=(self._connect(), self._wake_checkpointer, self._stopping),
            name="flightdeck-sqlite-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()
        # Stop the thread even if the store is dropped without close().
        weakref.finalize(self, _stop_checkpointer, self._wake_checkpointer, self._stopping)

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("store is closed")
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for writes).
        connection = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        connection.execute(f"PRAGMA cache_size=-{int(self._cache_size_kib)}")
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextlib.contextmanager
    def _transaction(self, *, write: bool, snapshot: bool = False) -> Iterator[_Tx]:
        if write:
            with self._write_lock:
                yield from self._run(self._writer, "BEGIN IMMEDIATE")
                self._writes_since_checkpoint += 1
                if self._writes_since_checkpoint >= _CHECKPOINT_EVERY_WRITES:
                    self._writes_since_checkpoint = 0
                    self._wake_checkpointer.set()
        else:
            # A deferred transaction pins one WAL snapshot for all reads inside it.
            yield from self._run(self._reader(), "BEGIN")

    @staticmethod
    def _run(connection: sqlite3.Connection, begin: str) -> Iterator[_Tx]:
        connection.execute(begin)
        try:
            yield _Tx(connection, postgres=False)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _lock_for_migration(self, tx: _Tx) -> None:
        pass  # BEGIN IMMEDIATE already holds the database write lock

    def _lock_ledger(self, tx: _Tx) -> None:
        pass  # BEGIN IMMEDIATE already holds the database write lock

    def _insert_rows(self, tx: _Tx, rows: list[tuple[Any, ...]]) -> int:
        # Buckets must count exactly the events that were new. Optimistically insert everything
        # (ON CONFLICT DO NOTHING); if no row was skipped, all were new. Otherwise undo and first
        # look up which run_ids are known: race-free, as we hold the only write lock (BEGIN IMMEDIATE).
        # Cheaper than a per-row trigger, which would double the cost of an insert.
        tx.execute("SAVEPOINT insert_events")
        inserted = tx.executemany(_INSERT_EVENT_SQL, rows)
        if inserted != len(rows):
            tx.execute("ROLLBACK TO insert_events")
            rows = self._new_rows(tx, rows)
            inserted = tx.executemany(_INSERT_EVENT_SQL, rows)
            if inserted != len(rows):  # cannot happen under the write lock; never let buckets drift
                raise StoreError(f"expected to insert {len(rows)} run events, inserted {inserted}")
        tx.execute("RELEASE insert_events")
        tx.executemany(_SQLITE_BUCKET_UPSERT, _bucket_deltas(rows))
        return inserted

    @staticmethod
    def _new_rows(tx: _Tx, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Rows whose run_id is neither stored nor repeated earlier in the batch (first one wins)."""
        known: set[str] = set()
        for start in range(0, len(rows), _SQLITE_IN_CHUNK):
            ids = [row[0] for row in rows[start : start + _SQLITE_IN_CHUNK]]
            found = tx.execute(
                f"SELECT run_id FROM run_events WHERE run_id IN ({','.join('?' * len(ids))})", ids
            )
            known.update(row[0] for row in found.fetchall())
        fresh = []
        for row in rows:
            if row[0] not in known:
                known.add(row[0])
                fresh.append(row)
        return fresh

    def _json_text(self, path: tuple[str, ...]) -> str:
        return f"json_extract(event_json, '$.{'.'.join(path)}')"

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def close(self) -> None:
        _stop_checkpointer(self._wake_checkpointer, self._stopping)
        if self._checkpointer is not threading.current_thread():
            self._checkpointer.join()
        with self._connections_lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


def _checkpoint_loop(
    connection: sqlite3.Connection, wake: threading.Event, stopping: threading.Event
) -> None:
    while not stopping.is_set():
        wake.wait(_CHECKPOINT_INTERVAL_S)
        wake.clear()
        if stopping.is_set():
            break
        with contextlib.suppress(sqlite3.Error):  # busy or closing: the next round retries
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _stop_checkpointer(wake: threading.Event, stopping: threading.Event) -> None:
    stopping.set()
    wake.set()


# --- PostgreSQL -------------------------------------------------------------------------------------


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
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}") from exc

    @contextlib.contextmanager
    def _transaction(self, *, write: bool, snapshot: bool = False) -> Iterator[_Tx]:
        with self._pool.connection() as connection, connection.transaction():
            if snapshot:
                connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield _Tx(connection, postgres=True)

    def _lock_for_migration(self, tx: _Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", [_PG_MIGRATION_LOCK])

    def _lock_ledger(self, tx: _Tx) -> None:
        # EXCLUSIVE blocks other appends but not readers; released at commit.
        tx.execute("LOCK TABLE ledger_entries IN EXCLUSIVE MODE")

    def _insert_rows(self, tx: _Tx, rows: list[tuple[Any, ...]]) -> int:
        # COPY into a session-private staging table, then one INSERT ... SELECT: several times
        # faster than row inserts, and the bucket trigger runs once per batch. ORDER BY keeps
        # "first one wins" for repeated run_ids within a batch.
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS run_events_staging "
            "(LIKE run_events INCLUDING DEFAULTS, ordinal BIGINT NOT NULL) ON COMMIT DELETE ROWS"
        )
        tx.copy_rows(
            f"COPY run_events_staging ({', '.join(_EVENT_COLUMNS)}, ordinal) FROM STDIN",
            ((*row, ordinal) for ordinal, row in enumerate(rows)),
        )
        columns = ", ".join(_EVENT_COLUMNS)
        cursor = tx.execute(
            f"INSERT INTO run_events ({columns}) SELECT {columns} FROM run_events_staging "
            "ORDER BY ordinal ON CONFLICT (run_id) DO NOTHING"
        )
        return int(cursor.rowcount)

    def _json_text(self, path: tuple[str, ...]) -> str:
        return f"(event_json::jsonb #>> '{{{','.join(path)}}}')"

    def describe(self) -> str:
        return f"postgresql {_redact(self.url)}"

    def close(self) -> None:
        self._pool.close()


# --- rows -------------------------------------------------------------------------------------------

_EVENT_COLUMNS = (
    "run_id",
    "release_id",
    "agent_id",
    "environment",
    "tenant_id",
    "task_id",
    "ts_us",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "latency_ms",
    "success",
    "received_at_us",
    "event_json",
)
_INSERT_EVENT_SQL = (
    f"INSERT INTO run_events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' for _ in _EVENT_COLUMNS)}) "
    "ON CONFLICT (run_id) DO NOTHING"
)

_dump_event = RunEvent.__pydantic_serializer__.to_json  # model_dump_json without the wrapper's overhead


def _event_row(event: RunEvent, received_us: int) -> tuple[Any, ...]:
    usage = event.usage.model
    metrics = event.metrics
    return (
        event.run_id,
        event.release_id,
        event.agent_id,
        event.environment,
        event.tenant_id,
        event.task_id,
        utc_micros(event.timestamp),
        usage.provider,
        usage.model,
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        metrics.latency_ms,
        1 if metrics.success else 0,
        received_us,
        _dump_event(event).decode(),
    )


_dump_event_data = RUN_EVENT_DATA.serializer.to_json  # the same bytes as _dump_event


def _data_row(event: RunEventData, received_us: int) -> tuple[Any, ...]:
    """``_event_row`` of plain data (``RunEventData`` has every default filled in)."""
    usage = event["usage"]["model"]
    metrics = event["metrics"]
    return (
        event["run_id"],
        event["release_id"],
        event["agent_id"],
        event["environment"],
        event["tenant_id"],
        event["task_id"],
        utc_micros(event["timestamp"]),
        usage["provider"],
        usage["model"],
        usage["input_tokens"],
        usage["output_tokens"],
        usage["cached_input_tokens"],
        metrics["latency_ms"],
        1 if metrics["success"] else 0,
        received_us,
        _dump_event_data(event).decode(),
    )


def _bucket_deltas(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Sum ``_event_row`` rows into bucket upserts (same arithmetic as the PostgreSQL trigger)."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    for (
        _run,
        release,
        agent,
        env,
        tenant,
        task,
        ts_us,
        _prov,
        model,
        tin,
        tout,
        tcached,
        latency,
        ok,
        *_,
    ) in rows:
        key = (release, env, ts_us - ts_us % BUCKET_US, agent, model, tenant, task)  # floor, as in SQL
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0, 0, 0, 0, 0, 0, 0]
        acc[0] += 1
        acc[1] += tin
        acc[2] += tout
        acc[3] += tcached
        if latency is not None:
            acc[4] += latency
            acc[5] += 1
        acc[6] += 1 - ok
    return [(*key, *acc) for key, acc in sums.items()]


def _aggregate(row: Sequence[Any]) -> ModelAggregate:
    return ModelAggregate(
        agent_id=str(row[0]),
        model=str(row[1]),
        runs=int(row[2]),
        input_tokens=int(row[3]),
        output_tokens=int(row[4]),
        cached_input_tokens=int(row[5]),
        latency_ms_sum=int(row[6]),
        latency_count=int(row[7]),
        failures=int(row[8]),
    )


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    present = {column: value for column, value in filters.items() if value is not None}
    if not present:
        return "", []
    return " WHERE " + " AND ".join(f"{column} = ?" for column in present), list(present.values())


def _json_or_none(value: Any) -> str | None:
    return None if value is None else ledger.canonical_json(value)


def _ledger_row(entry: LedgerEntry) -> tuple[Any, ...]:
    data = entry.model_dump(mode="json")
    return (
        entry.seq,
        entry.idempotency_key,
        entry.request_uid,
        entry.kind.value,
        entry.actor,
        entry.namespace,
        entry.pointer,
        entry.agent_id,
        entry.environment,
        entry.release_id,
        entry.baseline_release_id,
        1 if entry.pointer_changed else 0,
        entry.reason,
        _json_or_none(data["policy_result"]),
        _json_or_none(data["evidence"]),
        entry.policy_digest,
        _json_or_none(data["details"]),
        utc_micros(entry.created_at),
        entry.prev_hash,
        entry.hash,
    )


def _ledger_entry(row: Sequence[Any]) -> LedgerEntry:
    values = dict(zip(_LEDGER_COLUMNS, row, strict=True))
    pointer_changed = values.pop("pointer_changed")
    if pointer_changed not in (0, 1):
        raise ValueError(f"pointer_changed must be 0 or 1, not {pointer_changed!r}")
    values["pointer_changed"] = bool(pointer_changed)
    for column in ("policy_result", "evidence", "details"):
        text = values.pop(f"{column}_json")
        values[column] = None if text is None else json.loads(text)
    values["created_at"] = from_utc_micros(int(values.pop("created_at_us")))
    return LedgerEntry.model_validate(values)


def _placeholder(seq: int) -> LedgerEntry:
    """A stand-in so ``ledger.verify`` reports a seq gap in front of an unreadable row."""
    return LedgerEntry(
        kind=ledger.LedgerKind.PROMOTE,
        idempotency_key="unreadable",
        actor="",
        namespace="",
        created_at=dt.datetime.now(dt.UTC),
        seq=seq,
        prev_hash="",
        hash="",
    )


def _redact(url: str) -> str:
    """The connection target without its password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable PostgreSQL URL>"
    params.pop("password", None)
    return " ".join(f"{key}={value}" for key, value in sorted(params.items()) if key != "options")


# --- opening ----------------------------------------------------------------------------------------


def open_store(
    target: str | Path,
    *,
    migrate: bool = True,
    busy_timeout_ms: int = 30_000,
    max_connections: int = 8,
) -> Store:
    """Open (and by default migrate) the store named by a path or URL."""
    text = str(target)
    store: Store
    if text.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(text, max_connections=max_connections)
    else:
        if text.startswith("sqlite:///"):
            text = text.removeprefix("sqlite:///")
        elif text.startswith("sqlite:"):
            raise StoreError(
                f"unsupported SQLite URL {text!r}: use sqlite:///relative.db or sqlite:////abs.db"
            )
        if not text or text == ":memory:":
            raise StoreError(
                "the store needs a file path (in-memory SQLite cannot be shared between connections)"
            )
        store = SqliteStore(Path(text), busy_timeout_ms=busy_timeout_ms)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
