"""Run forensics (``GET /v1/runs``, ``/v1/runs/export``) and the counters of ``GET /v1/metrics``.

Pages are read through indexes, never by scanning the release's events:

- the page itself: ``(release_id, environment, ts_us)`` read backwards (newest first), or
  ``(release_id, environment, tenant_id, task_id, ts_us)`` for tenant + task, or the partial index of
  a request id (``trace_id``, ``session_id``, ``span_id``), which holds a handful of events;
- ``matched_total``: with a request id, a count over that id's few index entries; otherwise the
  hourly evidence buckets for the whole hours of the window plus index counts for the two partial
  hours at its edges, so the count costs the window's length in hours, not its number of events.

An export reads one snapshot on a connection of its own, in batches, so memory stays flat whatever
the size and the rows agree with the counts sent in the headers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flightdeck_operator.engine.models import utc_micros
from flightdeck_operator.store.base import StoreBase, Transaction
from flightdeck_operator.store.schema import BUCKET_US, RUN_EVENTS_COUNTER

EXPORT_BATCH_ROWS = 1000


@dataclass(frozen=True, slots=True)
class RunFilters:
    """What one forensics read matches: a release's events in ``[since, until)`` of an environment."""

    release_id: str
    environment: str
    since: dt.datetime
    until: dt.datetime
    tenant_id: str | None = None
    task_id: str | None = None
    trace_id: str | None = None
    session_id: str | None = None
    span_id: str | None = None

    @property
    def request_ids(self) -> dict[str, str]:
        ids = {"trace_id": self.trace_id, "session_id": self.session_id, "span_id": self.span_id}
        return {column: value for column, value in ids.items() if value is not None}

    def where(self, since_us: int | None = None, until_us: int | None = None) -> tuple[str, list[Any]]:
        """The WHERE clause over ``run_events`` (optionally over a narrower time range)."""
        clauses = ["release_id = ?", "environment = ?", "ts_us >= ?", "ts_us < ?"]
        params: list[Any] = [
            self.release_id,
            self.environment,
            utc_micros(self.since) if since_us is None else since_us,
            utc_micros(self.until) if until_us is None else until_us,
        ]
        for column, value in (
            ("tenant_id", self.tenant_id),
            ("task_id", self.task_id),
            *self.request_ids.items(),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return " WHERE " + " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of stored events (``event_json`` as stored), newest first."""

    matched_total: int
    offset: int
    events_json: tuple[str, ...]

    @property
    def truncated(self) -> bool:
        return self.offset + len(self.events_json) < self.matched_total


_ORDER = " ORDER BY ts_us DESC, run_id DESC"


class RunExport:
    """An export in one snapshot: the counts first, then the rows in batches. Iterate ``batches()``
    once; the snapshot's connection is released when it ends (or on ``close()``)."""

    def __init__(
        self,
        opened: contextlib.AbstractContextManager[Transaction],
        tx: Transaction,
        filters: RunFilters,
        *,
        matched_total: int,
        offset: int,
        limit: int,
    ) -> None:
        self._opened = opened
        self._tx = tx
        self._filters = filters
        self._closed = False
        self._lock = threading.Lock()
        self.matched_total = matched_total
        self.offset = offset
        self.returned = max(0, min(limit, matched_total - offset))

    @property
    def truncated(self) -> bool:
        return self.offset + self.returned < self.matched_total

    def batches(self, size: int = EXPORT_BATCH_ROWS) -> Iterator[list[str]]:
        try:
            if self.returned:
                where, params = self._filters.where()
                sql = f"SELECT event_json FROM run_events{where}{_ORDER} LIMIT ? OFFSET ?"
                for rows in self._tx.iterate(sql, [*params, self.returned, self.offset], size):
                    yield [str(row[0]) for row in rows]
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._opened.__exit__(None, None, None)


class ForensicsQueries(StoreBase):
    """Paged and streamed reads of run events, and the metrics counters."""

    def run_page(self, filters: RunFilters, *, offset: int = 0, limit: int = 100) -> RunPage:
        """Newest first, paged in SQL; ``matched_total`` from the same snapshot."""
        where, params = filters.where()
        with self._transaction(write=False, snapshot=True) as tx:
            total = self._matched_total(tx, filters)
            rows = tx.execute(
                f"SELECT event_json FROM run_events{where}{_ORDER} LIMIT ? OFFSET ?", [*params, limit, offset]
            ).fetchall()
        return RunPage(matched_total=total, offset=offset, events_json=tuple(str(row[0]) for row in rows))

    def open_run_export(self, filters: RunFilters, *, offset: int = 0, limit: int) -> RunExport:
        """Count the matches and hold the snapshot for the rows (see :class:`RunExport`)."""
        opened = self._stream_transaction()
        tx = opened.__enter__()
        try:
            total = self._matched_total(tx, filters)
        except BaseException:
            opened.__exit__(None, None, None)
            raise
        return RunExport(opened, tx, filters, matched_total=total, offset=offset, limit=limit)

    def _matched_total(self, tx: Transaction, filters: RunFilters) -> int:
        if filters.request_ids:  # a trace, session or span: a few index entries, counted directly
            where, params = filters.where()
            return int(tx.execute(f"SELECT COUNT(*) FROM run_events{where}", params).fetchone()[0])
        since_us, until_us = utc_micros(filters.since), utc_micros(filters.until)
        full_from = -(-since_us // BUCKET_US) * BUCKET_US  # first whole hour inside the window
        full_to = until_us // BUCKET_US * BUCKET_US  # end of the last whole hour inside it
        if full_from >= full_to:
            edges = [(since_us, until_us)]
            total = 0
        else:
            edges = [(since_us, full_from), (full_to, until_us)]
            sql = (
                "SELECT CAST(COALESCE(SUM(runs), 0) AS BIGINT) FROM run_event_buckets "
                "WHERE release_id = ? AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ?"
            )
            bucket_params: list[Any] = [filters.release_id, filters.environment, full_from, full_to]
            for column, value in (("tenant_id", filters.tenant_id), ("task_id", filters.task_id)):
                if value is not None:
                    sql += f" AND {column} = ?"
                    bucket_params.append(value)
            total = int(tx.execute(sql, bucket_params).fetchone()[0])
        for start, end in edges:
            if start < end:
                where, params = filters.where(start, end)
                total += int(tx.execute(f"SELECT COUNT(*) FROM run_events{where}", params).fetchone()[0])
        return total

    # -- counters (GET /v1/metrics) ------------------------------------------------------------------

    def run_events_total(self) -> int:
        """Every stored run event, from the counter kept on insert and delete (no COUNT(*))."""
        with self._transaction(write=False) as tx:
            row = tx.execute(
                "SELECT CAST(COALESCE(SUM(value), 0) AS BIGINT) FROM store_counters WHERE name = ?",
                [RUN_EVENTS_COUNTER],
            ).fetchone()
        return int(row[0])

    def ledger_counts(self, namespace: str | None = None) -> dict[str, int]:
        """Ledger entries by kind (in ``namespace``, or everywhere), from counters kept on append."""
        sql = "SELECT kind, CAST(SUM(entries) AS BIGINT) FROM ledger_counts"
        params: list[Any] = []
        if namespace is not None:
            sql += " WHERE namespace = ?"
            params.append(namespace)
        with self._transaction(write=False) as tx:
            rows = tx.execute(sql + " GROUP BY kind", params).fetchall()
        return {str(kind): int(entries) for kind, entries in rows}
