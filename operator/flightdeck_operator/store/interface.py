"""The store's public interface: ``Store``, every query on any backend."""

from __future__ import annotations

from flightdeck_operator.store.forensics import ForensicsQueries
from flightdeck_operator.store.ledger import LedgerQueries
from flightdeck_operator.store.notes import NoteQueries
from flightdeck_operator.store.notifications import NotificationQueries
from flightdeck_operator.store.otlp import OtlpQueries
from flightdeck_operator.store.series import SeriesQueries
from flightdeck_operator.store.statistics import StatisticsQueries


class Store(
    StatisticsQueries,
    ForensicsQueries,
    LedgerQueries,
    NoteQueries,
    NotificationQueries,
    OtlpQueries,
    SeriesQueries,
):
    """Backend-neutral store API. Use ``open_store``; close it (or use ``with``) when done."""
