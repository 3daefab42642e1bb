"""The store: run events, evidence aggregates and the audit ledger; all SQL lives in this package."""

from flightdeck_operator.store.base import (
    BUCKET_US,
    EventPage,
    InvalidEventsError,
    PostgresStore,
    SqliteStore,
    Store,
    StoreError,
    open_store,
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
