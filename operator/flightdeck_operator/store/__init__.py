"""The store: run events, evidence aggregates and the ledger; the one room that speaks SQL.

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
- Every append of an elected operator checks its epoch against ``leader_fence`` in the same
  transaction (``store/fence.py``); moves of one pointer carry a unique per-pointer sequence.
- Schema changes are versioned, forward-only migrations recorded in ``schema_migrations``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdeck_operator.engine.models import InvalidEventsError, validate_events
from flightdeck_operator.store.base import StoreError
from flightdeck_operator.store.fence import Fenced, PointerMoved, WriterFence
from flightdeck_operator.store.forensics import RunExport, RunFilters, RunPage
from flightdeck_operator.store.interface import Store
from flightdeck_operator.store.schema import BUCKET_US, LATEST_SCHEMA_VERSION
from flightdeck_operator.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from flightdeck_operator.store.postgres import PostgresStore

__all__ = [
    "BUCKET_US",
    "LATEST_SCHEMA_VERSION",
    "Fenced",
    "InvalidEventsError",
    "PointerMoved",
    "PostgresStore",
    "RunExport",
    "RunFilters",
    "RunPage",
    "SqliteStore",
    "Store",
    "StoreError",
    "WriterFence",
    "open_store",
    "validate_events",
]


def __getattr__(name: str) -> Any:
    # psycopg is imported when PostgreSQL is used: 9 MB of every SQLite process otherwise.
    if name == "PostgresStore":
        from flightdeck_operator.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(
    target: str | Path,
    *,
    migrate: bool = True,
    busy_timeout_ms: int = 30_000,
    max_connections: int = 8,
    sqlite_cache_kib: int = 65_536,
) -> Store:
    """Open (and by default migrate) the store named by a path or URL. ``sqlite_cache_kib``: the
    page cache of each SQLite connection (one per thread; it fills up as the database grows)."""
    text = str(target)
    store: Store
    if text.startswith(("postgresql://", "postgres://")):
        from flightdeck_operator.store.postgres import PostgresStore

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
        store = SqliteStore(Path(text), busy_timeout_ms=busy_timeout_ms, cache_size_kib=sqlite_cache_kib)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
