"""Run events and evidence: ingestion (idempotent on ``run_id``) and the evidence
sums of a window (whole hours from ``run_event_buckets``, the ragged edges from ``run_events``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from flightdeck_operator.engine.event_codec import FastEvent
from flightdeck_operator.engine.evidence import ModelAggregate, SideEvidence, merge_aggregates
from flightdeck_operator.engine.models import RunEvent, RunEventData, as_utc, utc_micros, validate_events
from flightdeck_operator.store.base import StoreBase, Transaction
from flightdeck_operator.store.rows import aggregate_from_row, data_row, event_row, fast_row, where_clause
from flightdeck_operator.store.schema import BUCKET_SUMS, BUCKET_US


class EventQueries(StoreBase):
    """Run events and their evidence aggregates."""

    def insert_events(self, events: Sequence[RunEvent], *, received_at: dt.datetime | None = None) -> int:
        """Store validated events in one transaction; duplicates of a stored ``run_id`` (or of an
        earlier event in the batch) are skipped. Returns how many were new."""
        if not events:
            return 0
        received_us = utc_micros(received_at or dt.datetime.now(dt.UTC))
        rows = [event_row(event, received_us) for event in events]
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
        rows = [data_row(event, received_us) for event in events]
        with self._transaction(write=True) as tx:
            return self._insert_rows(tx, rows)

    def insert_fast_events(
        self, events: Sequence[FastEvent], *, received_at: dt.datetime | None = None
    ) -> int:
        """``insert_event_data`` for events read by the fast reader (``engine.event_codec``)."""
        if not events:
            return 0
        received_us = utc_micros(received_at or dt.datetime.now(dt.UTC))
        rows = [fast_row(event, received_us) for event in events]
        with self._transaction(write=True) as tx:
            return self._insert_rows(tx, rows)

    def ingest(self, raw_items: Sequence[Any], *, received_at: dt.datetime | None = None) -> int:
        """Validate the whole batch (reference messages, ``InvalidEventsError``), then insert it."""
        return self.insert_events(validate_events(raw_items), received_at=received_at)

    def count_events(self, *, release_id: str | None = None, environment: str | None = None) -> int:
        where, params = where_clause({"release_id": release_id, "environment": environment})
        with self._transaction(write=False) as tx:
            return int(tx.execute(f"SELECT COUNT(*) FROM run_events{where}", params).fetchone()[0])

    def run_event(self, run_id: str) -> RunEvent | None:
        """One stored run event by its ``run_id``, as it was sent."""
        with self._transaction(write=False) as tx:
            row = tx.execute("SELECT event_json FROM run_events WHERE run_id = ?", [run_id]).fetchone()
        return None if row is None else RunEvent.model_validate_json(row[0])

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
        tx: Transaction,
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
            sums = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in BUCKET_SUMS)
            rows = tx.execute(
                f"SELECT agent_id, model, {sums} FROM run_event_buckets "
                "WHERE release_id = ? AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ?"
                f"{extra} GROUP BY agent_id, model",
                [release_id, environment, full_from, full_to, *extra_params],
            ).fetchall()
            parts.extend(aggregate_from_row(row) for row in rows)
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
            parts.extend(aggregate_from_row(row) for row in rows)
        return SideEvidence(
            release_id=release_id,
            environment=environment,
            since=as_utc(since),
            until=as_utc(until),
            aggregates=tuple(a for a in merge_aggregates(parts) if a.runs),
            tenant_id=tenant_id,
            task_id=task_id,
        )
