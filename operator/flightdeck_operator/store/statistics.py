"""Evidence for statistical gates: per (agent, model) sums *and* second moments, and the latency
histogram, over ``[since, until)``; whole hours from the buckets, the ragged edges from
``run_events`` (their latencies binned here, exactly as at ingestion). No event is read one by one.

Each query covers both releases and both ragged edges at once (``release_id IN (?, ?)``, the edges
as a ``UNION ALL`` of two index ranges): a diff costs a handful of statements, which matters on
PostgreSQL, where each one is a round trip and a plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
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
)
_EDGE_MOMENTS = (
    "COALESCE(SUM(CAST(latency_ms AS DOUBLE PRECISION) * latency_ms), 0)",
    "SUM(CAST(input_tokens AS DOUBLE PRECISION) * input_tokens)",
    "SUM(CAST(output_tokens AS DOUBLE PRECISION) * output_tokens)",
    "SUM(CAST(cached_input_tokens AS DOUBLE PRECISION) * cached_input_tokens)",
    "SUM(CAST(input_tokens AS DOUBLE PRECISION) * output_tokens)",
    "SUM(CAST(input_tokens AS DOUBLE PRECISION) * cached_input_tokens)",
    "SUM(CAST(output_tokens AS DOUBLE PRECISION) * cached_input_tokens)",
)
_EVENT_COLUMNS = (
    "release_id, agent_id, model, input_tokens, output_tokens, cached_input_tokens, latency_ms, success"
)
_BUCKET_SUM_COLUMNS = [f"CAST(SUM({c}) AS BIGINT)" for c in BUCKET_SUMS]
_BUCKET_MOMENT_COLUMNS = [f"SUM({c})" for c in BUCKET_MOMENTS]
_Found = tuple[tuple[ModelAggregate, ...], SideMoments | None]  # per release: sums, moments


@dataclass(frozen=True, slots=True)
class _Reads:
    """How to read one range for both releases: the common filter and the hours/edges split."""

    releases: tuple[str, ...]
    environment: str
    extra: str  # " AND tenant_id = ?" ...
    extra_params: tuple[Any, ...]
    full_from: int
    full_to: int
    edges: tuple[tuple[int, int], ...]
    union: bool  # both edges in one statement (PostgreSQL) or one statement each (SQLite)

    @classmethod
    def of(
        cls,
        releases: tuple[str, ...],
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        tenant_id: str | None,
        task_id: str | None,
        *,
        union: bool,
    ) -> _Reads:
        extra, params = "", []
        for column, value in (("tenant_id", tenant_id), ("task_id", task_id)):
            if value is not None:
                extra += f" AND {column} = ?"
                params.append(value)
        since_us, until_us = utc_micros(since), utc_micros(until)
        full_from = -(-since_us // BUCKET_US) * BUCKET_US  # first whole hour inside the range
        full_to = until_us // BUCKET_US * BUCKET_US  # end of the last whole hour inside it
        edges: tuple[tuple[int, int], ...]
        if full_from < full_to:
            edges = ((since_us, full_from), (full_to, until_us))
        else:
            full_from = full_to = 0
            edges = ((since_us, until_us),)
        kept = tuple((start, end) for start, end in edges if start < end)
        return cls(releases, environment, extra, tuple(params), full_from, full_to, kept, union)

    @property
    def _release_filter(self) -> str:
        return (
            "release_id = ?"
            if len(self.releases) == 1
            else f"release_id IN ({', '.join('?' * len(self.releases))})"
        )

    @property
    def by_release(self) -> str:
        """The grouping prefix: rows name their release only when a statement reads several."""
        return "release_id, " if len(self.releases) > 1 else ""

    def rows(self, tx: Transaction, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Rows with their release first, whether or not the statement selected it."""
        found = tx.execute(sql, params).fetchall()
        if len(self.releases) > 1:
            return [tuple(row) for row in found]
        return [(self.releases[0], *row) for row in found]

    @property
    def has_hours(self) -> bool:
        return self.full_from < self.full_to

    def hours(self, select: str, table: str, group: str) -> tuple[str, list[Any]]:
        sql = (
            f"SELECT {select} FROM {table} WHERE {self._release_filter} AND environment = ? "
            f"AND bucket_start_us >= ? AND bucket_start_us < ?{self.extra} GROUP BY {group}"
        )
        return sql, [*self.releases, self.environment, self.full_from, self.full_to, *self.extra_params]

    def events(self, columns: str, condition: str = "") -> list[tuple[str, list[Any]]]:
        """Selects of the ragged edges' events (``columns`` of them): one ``UNION ALL`` of both
        ranges, or one per range."""
        branch = (
            f"SELECT {columns} FROM run_events WHERE {self._release_filter} AND environment = ? "
            f"AND ts_us >= ? AND ts_us < ?{self.extra}{condition}"
        )
        selects = [
            (branch, [*self.releases, self.environment, s, e, *self.extra_params]) for s, e in self.edges
        ]
        if not self.union or len(selects) < 2:
            return selects
        return [(" UNION ALL ".join(sql for sql, _ in selects), [p for _, params in selects for p in params])]


def _aggregate(row: Sequence[Any]) -> ModelAggregate:
    return aggregate_from_row(row[1:10])


def _moments(row: Sequence[Any], aggregate: ModelAggregate) -> ModelMoments:
    """``release, agent, model``, the seven sums, then the seven moments (BUCKET_MOMENTS order)."""
    latency_sq, in_sq, out_sq, cached_sq, in_out, in_cached, out_cached = (float(v or 0) for v in row[10:17])
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
    return ModelMoments(aggregate.agent_id, aggregate.model, tokens, latency_sq)


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
        # PostgreSQL: both releases and both edges per statement (each is a round trip and a plan);
        # SQLite: one release and one range per statement (its GROUP BY sorts, and sorts less).
        grouped = self.backend == "postgresql"
        batches = [releases] if grouped else [(release,) for release in releases]

        def reads(start: dt.datetime, group: tuple[str, ...]) -> _Reads:
            return _Reads.of(group, environment, start, until, tenant_id, task_id, union=grouped)

        stats: list[_Found] = []
        plain: list[_Found] = []
        recent: dict[str, int] = {}
        same = as_utc(statistics_since) == as_utc(since)
        with self._transaction(write=False, snapshot=True) as tx:
            self._serial_plans(tx)
            for group in batches:
                found = self._with_moments(tx, reads(statistics_since, group))
                stats += found
                plain += found if same else self._sums(tx, reads(since, group))
                recent.update(self._run_counts(tx, reads(rate_since, group)))

        def side(index: int, start: dt.datetime, found: list[_Found]) -> SideEvidence:
            aggregates, moments = found[index]
            return SideEvidence(
                release_id=releases[index],
                environment=environment,
                since=as_utc(start),
                until=as_utc(until),
                aggregates=aggregates,
                tenant_id=tenant_id,
                task_id=task_id,
                moments=moments,
            )

        base_stats, cand_stats = side(0, statistics_since, stats), side(1, statistics_since, stats)
        base_plain, cand_plain = side(0, since, plain), side(1, since, plain)
        evidence = StatisticsEvidence(
            baseline=base_stats,
            candidate=cand_stats,
            baseline_recent_runs=recent[baseline_release_id],
            candidate_recent_runs=recent[candidate_release_id],
        )
        return base_plain, cand_plain, evidence

    def live_evidence(
        self,
        release_id: str,
        environment: str,
        since: dt.datetime,
        until: dt.datetime,
        *,
        moments: bool,
        rate_since: dt.datetime | None = None,
    ) -> tuple[SideEvidence, int]:
        """One live release over ``[since, until)``, for its verification: the reference sums, or
        (``moments``, statistical gates) sums with moments and the latency histogram plus its runs in
        ``[rate_since, until)``; one snapshot, so one verification check is one read."""
        with self._transaction(write=False, snapshot=True) as tx:
            if not moments:
                return self._evidence(tx, release_id, environment, since, until, None, None), 0
            self._serial_plans(tx)
            union = self.backend == "postgresql"
            ((aggregates, side_moments),) = self._with_moments(
                tx, _Reads.of((release_id,), environment, since, until, None, None, union=union)
            )
            recent = self._run_counts(
                tx, _Reads.of((release_id,), environment, rate_since or since, until, None, None, union=union)
            )[release_id]
        evidence = SideEvidence(
            release_id=release_id,
            environment=environment,
            since=as_utc(since),
            until=as_utc(until),
            aggregates=aggregates,
            moments=side_moments,
        )
        return evidence, recent

    def _with_moments(self, tx: Transaction, reads: _Reads) -> list[_Found]:
        """Per release: the merged aggregates and the moments with the latency histogram."""
        aggregates: dict[str, list[ModelAggregate]] = {r: [] for r in reads.releases}
        moments: dict[str, list[ModelMoments]] = {r: [] for r in reads.releases}
        histograms: dict[str, list[Histogram]] = {r: [] for r in reads.releases}

        def add(row: Sequence[Any]) -> None:
            aggregate = _aggregate(row)
            aggregates[row[0]].append(aggregate)
            moments[row[0]].append(_moments(row, aggregate))

        key = reads.by_release
        if reads.has_hours:
            select = ", ".join([f"{key}agent_id, model", *_BUCKET_SUM_COLUMNS, *_BUCKET_MOMENT_COLUMNS])
            for row in reads.rows(tx, *reads.hours(select, "run_event_buckets", f"{key}agent_id, model")):
                add(row)
            bins = f"{key}latency_bin, CAST(SUM(runs) AS BIGINT)"
            found: dict[str, dict[int, int]] = {r: {} for r in reads.releases}
            for release, index, runs in reads.rows(
                tx, *reads.hours(bins, "run_event_latency_bins", f"{key}latency_bin")
            ):
                found[release][int(index)] = int(runs)
            for release, histogram in found.items():
                histograms[release].append(histogram)
        sums = ", ".join([f"{key}agent_id, model", *_EDGE_SUMS, *_EDGE_MOMENTS])
        for events, params in reads.events(_EVENT_COLUMNS):
            for row in reads.rows(
                tx, f"SELECT {sums} FROM ({events}) e GROUP BY {key}agent_id, model", params
            ):
                add(row)
        edge: dict[str, dict[int, int]] = {r: {} for r in reads.releases}
        for latencies, params in reads.events("release_id, latency_ms", " AND latency_ms IS NOT NULL"):
            grouped = f"SELECT {key}latency_ms, COUNT(*) FROM ({latencies}) e GROUP BY {key}latency_ms"
            for release, latency, count in reads.rows(tx, grouped, params):
                index = bin_of_integer(int(latency))
                edge[release][index] = edge[release].get(index, 0) + int(count)
        for release, histogram in edge.items():
            histograms[release].append(histogram)
        return [
            (
                tuple(a for a in merge_aggregates(aggregates[r]) if a.runs),
                SideMoments.merge(moments[r], histograms[r]),
            )
            for r in reads.releases
        ]

    def _sums(self, tx: Transaction, reads: _Reads) -> list[_Found]:
        """Per release: the reference's sums only (``diff_evidence``'s numbers)."""
        aggregates: dict[str, list[ModelAggregate]] = {r: [] for r in reads.releases}
        key = reads.by_release
        if reads.has_hours:
            select = ", ".join([f"{key}agent_id, model", *_BUCKET_SUM_COLUMNS])
            for row in reads.rows(tx, *reads.hours(select, "run_event_buckets", f"{key}agent_id, model")):
                aggregates[row[0]].append(_aggregate(row))
        sums = ", ".join([f"{key}agent_id, model", *_EDGE_SUMS])
        for events, params in reads.events(_EVENT_COLUMNS):
            for row in reads.rows(
                tx, f"SELECT {sums} FROM ({events}) e GROUP BY {key}agent_id, model", params
            ):
                aggregates[row[0]].append(_aggregate(row))
        return [(tuple(a for a in merge_aggregates(aggregates[r]) if a.runs), None) for r in reads.releases]

    def _run_counts(self, tx: Transaction, reads: _Reads) -> dict[str, int]:
        """Runs per release in the range: the arrival rate behind an ETA (counts from the index)."""
        counts = dict.fromkeys(reads.releases, 0)
        key = reads.by_release
        parts: list[str] = []
        params: list[Any] = []
        if reads.has_hours:
            sql, hour_params = reads.hours(
                f"{key}CAST(SUM(runs) AS BIGINT) AS n", "run_event_buckets", key.rstrip(", ") or "environment"
            )
            parts.append(sql)
            params += hour_params
        for events, edge_params in reads.events("release_id"):
            parts.append(
                f"SELECT {key}COUNT(*) AS n FROM ({events}) e" + (" GROUP BY release_id" if key else "")
            )
            params += edge_params
        if not parts:  # an empty range
            return counts
        for release, runs in reads.rows(tx, " UNION ALL ".join(parts), params):
            counts[release] += int(runs or 0)
        return counts
        for release, runs in tx.execute(" UNION ALL ".join(parts), params).fetchall():
            counts[release] += int(runs or 0)
        return counts
