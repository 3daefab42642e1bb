"""Evidence for statistical gates from real SQLite and PostgreSQL: second moments and the latency
histogram kept per hourly bucket (by ingestion, by the PostgreSQL trigger and by the migration's
backfill) equal a per-event computation; the SQL bin lookup equals the engine's bins at every edge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flightdeck_operator.engine.models import RunEvent
from flightdeck_operator.engine.statistics import TokenMoments
from flightdeck_operator.engine.statistics.latency_bins import INTEGER_BIN_LARGEST, histogram_of
from flightdeck_operator.engine.statistics.moments import SideMoments
from flightdeck_operator.store import Store, open_store
from flightdeck_operator.store import base as store_base
from flightdeck_operator.store.rows import event_row
from flightdeck_operator.store.schema import EVENT_COLUMNS, MIGRATIONS
from tests.factories import NOW, aggregate_events, make_event, moments_of_events
from tests.store.conftest import Backend
from tests.store.test_events import ORIGIN, _build, event_strategy, instant_us

HOUR = dt.timedelta(hours=1)
STATISTICS_MIGRATION = next(m for m in MIGRATIONS if m.name.startswith("latency histogram"))


def assert_moments_close(got: SideMoments | None, expected: SideMoments) -> None:
    assert got is not None
    assert dict(got.latency_bins) == dict(expected.latency_bins)
    assert [(m.agent_id, m.model) for m in got.models] == [(m.agent_id, m.model) for m in expected.models]
    for mine, theirs in zip(got.models, expected.models, strict=True):
        assert math.isclose(mine.latency_ms_sq, theirs.latency_ms_sq, rel_tol=1e-12)
        for field in dataclasses.fields(TokenMoments):
            a, b = getattr(mine.tokens, field.name), getattr(theirs.tokens, field.name)
            assert math.isclose(a, b, rel_tol=1e-12), (field.name, a, b)


def statistics_of(
    store: Store, release_id: str, since: dt.datetime, until: dt.datetime, tenant: str | None = None
):  # type: ignore[no-untyped-def]
    _, candidate, stats = store.statistics_evidence(
        "rel_none",
        release_id,
        "local",
        since,
        until,
        statistics_since=since,
        rate_since=since,
        tenant_id=tenant,
    )
    return candidate, stats


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(event_strategy, min_size=1, max_size=60),
    window=st.tuples(instant_us, instant_us),
    tenant=st.sampled_from([None, "t1"]),
    duplicates=st.integers(0, 3),
)
def test_moments_and_histogram_equal_per_event_computation(
    store: Store, specs: list[dict[str, object]], window: tuple[int, int], tenant: str | None, duplicates: int
) -> None:
    release_id = f"rel_{uuid.uuid4().hex[:10]}"
    events = [_build(dict(spec), release_id, i) for i, spec in enumerate(specs)]
    assert store.insert_events(events + events[:duplicates]) == len(events)
    since = ORIGIN + dt.timedelta(microseconds=min(window))
    until = ORIGIN + dt.timedelta(microseconds=max(window))

    candidate, stats = statistics_of(store, release_id, since, until, tenant)
    expected = aggregate_events(events, since=since, until=until, tenant_id=tenant)
    assert candidate.aggregates == tuple(a for a in expected if a.runs)
    assert stats.candidate == candidate
    assert stats.candidate_recent_runs == candidate.runs
    assert_moments_close(
        candidate.moments, moments_of_events(events, since=since, until=until, tenant_id=tenant)
    )
    # The reference evidence of the same range is the plain query's, to the integer.
    assert (
        candidate.aggregates == store.evidence(release_id, "local", since, until, tenant_id=tenant).aggregates
    )


def test_statistics_range_and_rate_window_are_read_apart(store: Store) -> None:
    old = [make_event(release_id="rel_c", timestamp=NOW - 30 * HOUR, latency_ms=500) for _ in range(4)]
    recent = [
        make_event(release_id="rel_c", timestamp=NOW - dt.timedelta(minutes=m), latency_ms=900)
        for m in (5, 50, 70)
    ]
    base = [make_event(release_id="rel_b", timestamp=NOW - 2 * HOUR) for _ in range(2)]
    store.insert_events(old + recent + base)
    plain = store.diff_evidence("rel_b", "rel_c", "local", NOW - 24 * HOUR, NOW)
    plain_base, plain_cand, stats = store.statistics_evidence(
        "rel_b",
        "rel_c",
        "local",
        NOW - 24 * HOUR,
        NOW,
        statistics_since=NOW - 48 * HOUR,
        rate_since=NOW - HOUR,
    )
    assert (plain_base.aggregates, plain_cand.aggregates) == (plain[0].aggregates, plain[1].aggregates)
    assert plain_cand.runs == 3
    assert stats.candidate.runs == 7
    assert stats.candidate.since == NOW - 48 * HOUR
    assert (stats.candidate_recent_runs, stats.baseline_recent_runs) == (2, 0)
    assert stats.candidate.moments is not None
    assert sum(stats.candidate.moments.latency_bins.values()) == 7


def boundary_latencies() -> list[int]:
    """Every integer on either side of every bin edge (the largest integer of each bin, and the
    next one), powers of two among them."""
    values = {0, 1, 2, 10**10}
    for top in INTEGER_BIN_LARGEST:
        values.update({top, top + 1})
    return sorted(v for v in values if v <= 10**10)


def boundary_events(release_id: str) -> list[RunEvent]:
    start = NOW - 3 * HOUR
    return [
        make_event(
            release_id=release_id,
            run_id=f"{release_id}-{i}",
            timestamp=start + dt.timedelta(seconds=i % 3000),
            latency_ms=ms,
        )
        for i, ms in enumerate(boundary_latencies())
    ]


def test_ingested_bins_equal_the_engines_at_every_edge(store: Store) -> None:
    # SQLite bins in Python at ingestion, PostgreSQL in its statement trigger (SQL lookup).
    events = boundary_events("rel_edges")
    store.insert_events(events)
    candidate, _ = statistics_of(
        store, "rel_edges", NOW - 3 * HOUR, NOW - 2 * HOUR
    )  # whole hour: buckets only
    assert candidate.moments is not None
    assert dict(candidate.moments.latency_bins) == histogram_of(e.metrics.latency_ms or 0 for e in events)


def _migrate_until(target: str, migration_name: str) -> None:
    """Apply the migrations before ``migration_name`` only (as an older operator left the store)."""
    position = next(i for i, m in enumerate(MIGRATIONS) if m.name == migration_name)
    older = MIGRATIONS[:position]
    patch = pytest.MonkeyPatch()
    patch.setattr(store_base, "MIGRATIONS", older)
    patch.setattr(store_base, "LATEST_SCHEMA_VERSION", older[-1].version)
    try:
        with open_store(target, migrate=False) as old:
            old.migrate()
    finally:
        patch.undo()


@pytest.fixture
def old_store(backend: Backend) -> Backend:
    """A fresh schema migrated only up to before the statistics migration."""
    backend.store.close()
    if backend.sqlite_path is not None:
        backend.sqlite_path.unlink()
        for suffix in ("-wal", "-shm"):
            backend.sqlite_path.with_name(backend.sqlite_path.name + suffix).unlink(missing_ok=True)
    else:
        schema = backend.raw("SELECT current_schema()")[0][0]
        backend.raw(f"DROP SCHEMA {schema} CASCADE")
        backend.raw(f"CREATE SCHEMA {schema}")
    _migrate_until(backend.target, STATISTICS_MIGRATION.name)
    return backend


def test_migration_backfills_moments_and_bins_of_existing_events(old_store: Backend) -> None:
    events = boundary_events("rel_old") + [
        make_event(
            release_id="rel_old",
            timestamp=NOW - dt.timedelta(hours=h, minutes=7),
            input_tokens=100 * h,
            cached_input_tokens=h,
            latency_ms=None if h % 3 else 40 * h,
        )
        for h in range(1, 30)
    ]
    rows = [event_row(e, 0) for e in events]
    placeholders = ", ".join("?" for _ in EVENT_COLUMNS)
    for row in rows:  # as the older operator stored them (its buckets: the older migrations' backfill)
        old_store.raw(f"INSERT INTO run_events ({', '.join(EVENT_COLUMNS)}) VALUES ({placeholders})", row)
    if old_store.sqlite_path is not None:  # the older SQLite operator summed buckets in Python
        old_store.raw("DELETE FROM run_event_buckets")
        old_store.raw(
            "INSERT INTO run_event_buckets SELECT release_id, environment, ts_us - (((ts_us % 3600000000) + "
            "3600000000) % 3600000000), agent_id, model, tenant_id, task_id, COUNT(*), SUM(input_tokens), "
            "SUM(output_tokens), SUM(cached_input_tokens), COALESCE(SUM(latency_ms), 0), COUNT(latency_ms), "
            "COUNT(*) - SUM(success) FROM run_events GROUP BY 1, 2, 3, 4, 5, 6, 7"
        )
    with open_store(old_store.target) as upgraded:
        assert upgraded.applied_migrations()[-1] == MIGRATIONS[-1].version
        since, until = NOW - 40 * HOUR, NOW - dt.timedelta(minutes=1)
        candidate, _ = statistics_of(upgraded, "rel_old", since, until)
        assert candidate.aggregates == aggregate_events(events, since=since, until=until)
        assert_moments_close(candidate.moments, moments_of_events(events, since=since, until=until))
        # and ingestion keeps going on top of the backfill
        more = [make_event(release_id="rel_old", timestamp=NOW - 5 * HOUR, latency_ms=77) for _ in range(3)]
        upgraded.insert_events(more)
        candidate, _ = statistics_of(upgraded, "rel_old", since, until)
        assert_moments_close(candidate.moments, moments_of_events(events + more, since=since, until=until))


def test_deleting_events_keeps_moments_and_bins_right(backend: Backend) -> None:
    events = [
        make_event(
            release_id="rel_del",
            run_id=f"d{i}",
            timestamp=NOW - 5 * HOUR,
            latency_ms=100 * i,
            input_tokens=10 + i,
        )
        for i in range(5)
    ]
    backend.store.insert_events(events)
    backend.raw("DELETE FROM run_events WHERE run_id IN (?, ?)", ["d1", "d3"])
    kept = [e for e in events if e.run_id not in ("d1", "d3")]
    candidate, _ = statistics_of(backend.store, "rel_del", NOW - 6 * HOUR, NOW - 4 * HOUR)
    assert candidate.runs == 3
    assert_moments_close(candidate.moments, moments_of_events(kept))


def test_a_decision_with_statistics_is_ledgered_and_verifies(store: Store) -> None:
    from flightdeck_operator.controller.projection import ledger_record
    from tests.unit.test_statistics_status import decision_for, spread

    decision = decision_for(spread(1000, 20))
    assert decision.evidence is not None
    assert decision.evidence.statistics is not None
    record = ledger_record(
        decision, request_uid="uid-s", request_name="r", namespace="ns", pointer="p", actor="a", reason="go"
    )
    entry = store.append(record)
    [again] = [e for e in store.list_ledger(limit=10) if e.seq == entry.seq]
    assert again.evidence == entry.evidence
    assert again.computed_hash() == entry.hash
    assert store.verify_ledger().ok
