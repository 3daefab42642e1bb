"""The store's public interface: ``Store``, every query on any backend."""

from __future__ import annotations

from flightdeck_operator.store.ledger import LedgerQueries
from flightdeck_operator.store.statistics import StatisticsQueries


class Store(StatisticsQueries, LedgerQueries):
    """Backend-neutral store API. Use ``open_store``; close it (or use ``with``) when done."""
