"""Evidence per hour: the sums of one release's runs for each hour of a window, for charts.

Whole hours come from ``run_event_buckets`` (one row per hour and model, whatever the number of
runs); the two ragged edges of the window from ``run_events``, grouped by hour in SQL. The sums
per hour add up to the window's evidence exactly.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from flightdeck_operator.engine.evidence import ModelAggregate, merge_aggregates
from flightdeck_operator.engine.models import from_utc_micros, utc_micros
from flightdeck_operator.store.base import StoreBase
from flightdeck_operator.store.rows import aggregate_from_row
from flightdeck_operator.store.schema import BUCKET_SUMS, BUCKET_US, bucket_of


@dataclass(frozen=True, slots=True)
class HourOfEvidence:
    """The per-(agent, model) sums of one release's runs in one hour (UTC, the hour's start)."""

    hour: dt.datetime
    aggregates: tuple[ModelAggregate, ...]


class SeriesQueries(StoreBase):
    def hourly_evidence(
        self,
        release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        *,
        tenant_id: str | None = None,
        task_id: str | None = None,
    ) -> list[HourOfEvidence]:
        """Hours of ``[since, until)`` that had runs, oldest first."""
        since_us, until_us = utc_micros(since), utc_micros(until)
        extra, extra_params = "", []
        for column, value in (("tenant_id", tenant_id), ("task_id", task_id)):
            if value is not None:
                extra += f" AND {column} = ?"
                extra_params.append(value)
        full_from = -(-since_us // BUCKET_US) * BUCKET_US
        full_to = until_us // BUCKET_US * BUCKET_US
        parts: dict[int, list[ModelAggregate]] = defaultdict(list)
        with self._transaction(write=False, snapshot=True) as tx:
            if full_from < full_to:
                sums = ", ".join(f"CAST(SUM({c}) AS BIGINT)" for c in BUCKET_SUMS)
                rows = tx.execute(
                    f"SELECT bucket_start_us, agent_id, model, {sums} FROM run_event_buckets "
                    "WHERE release_id = ? AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ?"
                    f"{extra} GROUP BY bucket_start_us, agent_id, model",
                    [release_id, environment, full_from, full_to, *extra_params],
                ).fetchall()
                _collect(parts, rows)
                edges = [(since_us, full_from), (full_to, until_us)]
            else:
                edges = [(since_us, until_us)]
            for start, end in edges:
                if start >= end:
                    continue
                rows = tx.execute(
                    f"SELECT {bucket_of('ts_us')} AS hour, agent_id, model, COUNT(*), "
                    "CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), "
                    "CAST(SUM(cached_input_tokens) AS BIGINT), CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT), "
                    "COUNT(latency_ms), CAST(COUNT(*) - SUM(success) AS BIGINT) FROM run_events "
                    f"WHERE release_id = ? AND environment = ? AND ts_us >= ? AND ts_us < ?{extra} "
                    "GROUP BY 1, agent_id, model",
                    [release_id, environment, start, end, *extra_params],
                ).fetchall()
                _collect(parts, rows)
        return [
            HourOfEvidence(from_utc_micros(hour), tuple(a for a in merge_aggregates(found) if a.runs))
            for hour, found in sorted(parts.items())
        ]


def _collect(parts: dict[int, list[ModelAggregate]], rows: list[Any]) -> None:
    for row in rows:
        parts[int(row[0])].append(aggregate_from_row(row[1:]))
