"""The store's public interface: ``Store``, every query on any backend."""

from __future__ import annotations

from flightdeck_operator.store.events import EventQueries
from flightdeck_operator.store.ledger import LedgerQueries
from flightdeck_operator.store.series import SeriesQueries


class Store(EventQueries, LedgerQueries, SeriesQueries):
    """Backend-neutral store API. Use ``open_store``; close it (or use ``with``) when done."""
