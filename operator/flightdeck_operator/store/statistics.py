"""Evidence for statistical gates: per (agent, model) sums *and* second moments, and the latency
histogram, over ``[since, until)``; whole hours from the buckets, the ragged edges from
``run_events`` (their latencies binned here, exactly as at ingestion). No event is read one by one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from flightdeck_operator.engine.evidence import ModelAggregate, SideEvidence, merge_aggregates
from flightdeck_operator.engine.models import as_utc, utc_micros
from flightdeck_operator.engine.statistical_policy import StatisticsEvidence
from flightdeck_operator.engine.statistics import TokenMoments
from flightdeck_operator.engine.statistics.latency_bins import Histogram, bin_of_integer
from flightdeck_operator.engine.statistics.moments import ModelMoments, SideMoments
from flightdeck_operator.store.base import Transaction
from flightdeck_operator.store.events import EventQueries
from flightdeck_operator.store.rows import aggregate_from_row
from flightdeck_operator.store.schema import BUCKET_MOMENTS, BUCKET_SUMS, BUCKET_US

_EDGE_SUMS = (
    "COUNT(*)",
    "CAST(SUM(input_tokens) AS BIGINT)",
    "CAST(SUM(output_tokens) AS BIGINT)",
    "CAST(SUM(cached_input_tokens) AS BIGINT)",
    "CAST(COALESCE(SUM(latency_ms), 0) AS BIGINT)",
    "COUNT(latency_ms)",
    "CAST(COUNT(*) - SUM(success) AS BIGINT)",
    "COALESCE(SUM(CAST(latency_ms AS DOUBLE PRECISION) * latency_ms), 0)",
    "SUM(CAST(input_tokens AS DOUBLE PRECISION) * input_tokens)",
    "SUM(CAST(output_tokens AS DOUBLE PRECISION) * output_tokens)",
    "SUM(CAST(cached_input_tokens AS DOUBLE PRECISION) * cached_input_tokens)",
    "SUM(CAST(input_tokens AS DOUBLE PRECISION) * output_tokens)",
    "SUM(CAST(input_tokens AS DOUBLE PRECISION) * cached_input_tokens)",
    "SUM(CAST(output_tokens AS DOUBLE PRECISION) * cached_input_tokens)",
)
_BUCKET_COLUMNS = ", ".join(
    [f"CAST(SUM({c}) AS BIGINT)" for c in BUCKET_SUMS] + [f"SUM({c})" for c in BUCKET_MOMENTS]
)


def _filters(tenant_id: str | None, task_id: str | None) -> tuple[str, list[Any]]:
    extra, params = "", []
    for column, value in (("tenant_id", tenant_id), ("task_id", task_id)):
        if value is not None:
            extra += f" AND {column} = ?"
            params.append(value)
    return extra, params


def _whole_hours(since_us: int, until_us: int) -> tuple[int, int]:
    """The first and the end of the last whole bucket inside ``[since_us, until_us)``."""
    return -(-since_us // BUCKET_US) * BUCKET_US, until_us // BUCKET_US * BUCKET_US


def _parts(row: Sequence[Any]) -> tuple[ModelAggregate, ModelMoments]:
    """``agent, model``, the seven sums, then the seven moments (BUCKET_MOMENTS order)."""
    aggregate = aggregate_from_row(row)
    latency_sq, in_sq, out_sq, cached_sq, in_out, in_cached, out_cached = (float(v or 0) for v in row[9:16])
    tokens = TokenMoments(
        runs=aggregate.runs,
        input_tokens=float(aggregate.input_tokens),
        output_tokens=float(aggregate.output_tokens),
        cached_input_tokens=float(aggregate.cached_input_tokens),
        input_sq=in_sq,
        output_sq=out_sq,
        cached_input_sq=cached_sq,
        input_output=in_out,
        input_cached=in_cached,
        output_cached=out_cached,
    )
    return aggregate, ModelMoments(aggregate.agent_id, aggregate.model, tokens, latency_sq)


class StatisticsQueries(EventQueries):
    """Evidence with moments and histograms, for policies with ``statisticalGates``."""

    def statistics_evidence(
        self,
        baseline_release_id: str,
        candidate_release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        *,
        statistics_since: dt.datetime,
        rate_since: dt.datetime,
        tenant_id: str | None = None,
        task_id: str | None = None,
    ) -> tuple[SideEvidence, SideEvidence, StatisticsEvidence]:
        """One consistent snapshot of: both sides' reference evidence over ``[since, until)`` (as
        ``diff_evidence``); both sides with moments over ``[statistics_since, until)`` (for a
        waiting request anchored at its creation); and each side's runs in ``[rate_since, until)``.
        When ``statistics_since == since`` one read serves both."""
        releases = (baseline_release_id, candidate_release_id)
        filters = (tenant_id, task_id)
        with self._transaction(write=False, snapshot=True) as tx:
            stats = [self._moments(tx, r, environment, statistics_since, until, *filters) for r in releases]
            if as_utc(statistics_since) == as_utc(since):
                plain = stats
            else:
                plain = [self._evidence(tx, r, environment, since, until, *filters) for r in releases]
            recent = [self._run_count(tx, r, environment, rate_since, until, *filters) for r in releases]
        evidence = StatisticsEvidence(
            baseline=stats[0],
            candidate=stats[1],
            baseline_recent_runs=recent[0],
            candidate_recent_runs=recent[1],
        )
        return plain[0], plain[1], evidence

    def _run_count(
        self,
        tx: Transaction,
        release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        tenant_id: str | None,
        task_id: str | None,
    ) -> int:
        """Runs in ``[since, until)``: the arrival rate behind an ETA (counts only, from the index)."""
        since_us, until_us = utc_micros(since), utc_micros(until)
        extra, extra_params = _filters(tenant_id, task_id)
        full_from, full_to = _whole_hours(since_us, until_us)
        runs = 0
        ranges = [(since_us, until_us)]
        if full_from < full_to:
            row = tx.execute(
                "SELECT CAST(COALESCE(SUM(runs), 0) AS BIGINT) FROM run_event_buckets WHERE release_id = ? "
                f"AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ?{extra}",
                [release_id, environment, full_from, full_to, *extra_params],
            ).fetchone()
            runs += int(row[0])
            ranges = [(since_us, full_from), (full_to, until_us)]
        for start, end in ranges:
            if start < end:
                row = tx.execute(
                    "SELECT COUNT(*) FROM run_events WHERE release_id = ? AND environment = ? "
                    f"AND ts_us >= ? AND ts_us < ?{extra}",
                    [release_id, environment, start, end, *extra_params],
                ).fetchone()
                runs += int(row[0])
        return runs

    def _moments(
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
        extra, extra_params = _filters(tenant_id, task_id)
        key = [release_id, environment]
        aggregates: list[ModelAggregate] = []
        moments: list[ModelMoments] = []
        histograms: list[Histogram] = []
        full_from, full_to = _whole_hours(since_us, until_us)
        raw_ranges = [(since_us, until_us)]
        if full_from < full_to:
            hours = (
                "WHERE release_id = ? AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ?"
            )
            params = [*key, full_from, full_to, *extra_params]
            for row in tx.execute(
                f"SELECT agent_id, model, {_BUCKET_COLUMNS} FROM run_event_buckets {hours}{extra} "
                "GROUP BY agent_id, model",
                params,
            ).fetchall():
                aggregate, moment = _parts(row)
                aggregates.append(aggregate)
                moments.append(moment)
            rows = tx.execute(
                f"SELECT latency_bin, CAST(SUM(runs) AS BIGINT) FROM run_event_latency_bins {hours}{extra} "
                "GROUP BY latency_bin",
                params,
            ).fetchall()
            histograms.append({int(b): int(n) for b, n in rows})
            raw_ranges = [(since_us, full_from), (full_to, until_us)]
        for start, end in raw_ranges:
            if start >= end:
                continue
            where = f"WHERE release_id = ? AND environment = ? AND ts_us >= ? AND ts_us < ?{extra}"
            params = [*key, start, end, *extra_params]
            for row in tx.execute(
                f"SELECT agent_id, model, {', '.join(_EDGE_SUMS)} FROM run_events {where} GROUP BY agent_id, model",
                params,
            ).fetchall():
                aggregate, moment = _parts(row)
                aggregates.append(aggregate)
                moments.append(moment)
            histogram: dict[int, int] = {}
            for latency, count in tx.execute(
                f"SELECT latency_ms, COUNT(*) FROM run_events {where} AND latency_ms IS NOT NULL "
                "GROUP BY latency_ms",
                params,
            ).fetchall():
                index = bin_of_integer(int(latency))
                histogram[index] = histogram.get(index, 0) + int(count)
            histograms.append(histogram)
        return SideEvidence(
            release_id=release_id,
            environment=environment,
            since=as_utc(since),
            until=as_utc(until),
            aggregates=tuple(a for a in merge_aggregates(aggregates) if a.runs),
            tenant_id=tenant_id,
            task_id=task_id,
            moments=SideMoments.merge(moments, histograms),
        )
