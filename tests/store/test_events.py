"""Run events and evidence against real SQLite and PostgreSQL (behaviours 7 and 22, timezone fix)."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flightdeck_operator.engine.evidence import ModelAggregate, cost_usd, rollup
from flightdeck_operator.engine.models import (
    RUN_EVENT_DATA,
    InvalidEventsError,
    PricingEntry,
    PricingTable,
    RunEvent,
)
from flightdeck_operator.store import BUCKET_US, RunFilters, Store, StoreError, open_store, validate_events
from flightdeck_operator.store.schema import MIGRATIONS
from tests.factories import NOW, aggregate_events, event_dict, make_event
from tests.store.conftest import Backend

ALL_MIGRATIONS = [migration.version for migration in MIGRATIONS]

HOUR = dt.timedelta(hours=1)


def test_same_run_id_twice_is_stored_once(store: Store) -> None:
    raw = event_dict(run_id="run-dup")
    assert store.ingest([raw]) == 1
    assert store.ingest([raw]) == 0
    assert store.count_events() == 1


def test_duplicates_inside_one_batch_count_once_and_first_wins(store: Store) -> None:
    first = event_dict(run_id="run-a", input_tokens=1)
    second = event_dict(run_id="run-a", input_tokens=2)
    assert store.ingest([first, event_dict(run_id="run-b"), second]) == 2
    assert store.ingest([event_dict(run_id="run-b"), event_dict(run_id="run-c")]) == 1
    assert store.count_events() == 3
    evidence = store.evidence("rel_base", "local", NOW - 2 * HOUR, NOW)
    assert evidence.runs == 3
    assert sum(a.input_tokens for a in evidence.aggregates) == 1 + 1000 + 1000


def test_batch_with_one_invalid_event_stores_nothing(store: Store) -> None:
    bad = event_dict()
    bad["usage"]["model"]["input_tokens"] = -1
    with pytest.raises(InvalidEventsError, match=r"^Invalid RunEvent: "):
        store.ingest([event_dict(), bad])
    with pytest.raises(InvalidEventsError, match=r"^Unsupported api_version"):
        store.ingest([event_dict(), event_dict(api_version="V1")])
    assert store.count_events() == 0
    assert store.ingest([]) == 0


def test_offset_timestamps_land_in_the_right_window(store: Store) -> None:
    # Both are written in +02:00; compared as text, the 90-minute-old one would look 30 minutes in the future.
    plus_two = dt.timezone(dt.timedelta(hours=2))
    old = event_dict(timestamp=(NOW - dt.timedelta(minutes=90)).astimezone(plus_two))
    recent = event_dict(timestamp=(NOW - dt.timedelta(minutes=30)).astimezone(plus_two), input_tokens=7)
    naive = event_dict(
        timestamp=(NOW - dt.timedelta(minutes=10)).replace(tzinfo=None).isoformat(), input_tokens=5
    )
    assert store.ingest([old, recent, naive]) == 3
    evidence = store.evidence("rel_base", "local", NOW - HOUR, NOW)
    assert evidence.runs == 2
    assert evidence.aggregates[0].input_tokens == 12


def test_window_is_half_open(store: Store) -> None:
    since = NOW - HOUR
    store.ingest(
        [
            event_dict(timestamp=since, input_tokens=1),
            event_dict(timestamp=NOW, input_tokens=10),
            event_dict(timestamp=since - dt.timedelta(microseconds=1), input_tokens=100),
            event_dict(timestamp=NOW - dt.timedelta(microseconds=1), input_tokens=1000),
        ]
    )
    evidence = store.evidence("rel_base", "local", since, NOW)
    assert evidence.runs == 2
    assert evidence.aggregates[0].input_tokens == 1001


def test_evidence_filters_release_environment_tenant_and_task(store: Store) -> None:
    store.ingest(
        [
            event_dict(),
            event_dict(release_id="rel_other"),
            event_dict(environment="prod"),
            event_dict(tenant_id="tenant_b"),
            event_dict(task_id="task_b", latency_ms=None, success=False),
        ]
    )
    since = NOW - 3 * HOUR
    assert store.evidence("rel_base", "local", since, NOW).runs == 3
    assert store.evidence("rel_base", "prod", since, NOW).runs == 1
    assert store.evidence("rel_base", "local", since, NOW, tenant_id="tenant_b").runs == 1
    [task_b] = store.evidence("rel_base", "local", since, NOW, task_id="task_b").aggregates
    assert (task_b.runs, task_b.latency_count, task_b.latency_ms_sum, task_b.failures) == (1, 0, 0, 1)
    baseline, candidate = store.diff_evidence("rel_base", "rel_other", "local", since, NOW)
    assert (baseline.runs, candidate.runs) == (3, 1)
    assert store.count_events(release_id="rel_base") == 4
    assert store.count_events(environment="prod") == 1


def test_evidence_spanning_many_hours_matches_per_event_sums(store: Store) -> None:
    # Exercises whole-hour buckets plus both ragged edges.
    start = NOW - dt.timedelta(hours=30)
    events = [
        make_event(
            timestamp=start + dt.timedelta(minutes=7 * i),
            latency_ms=None if i % 5 == 0 else i,
            success=i % 3 != 0,
            model="a" if i % 2 else "b",
        )
        for i in range(300)
    ]
    assert store.insert_events(events) == 300
    since, until = start + dt.timedelta(minutes=95, microseconds=3), NOW - dt.timedelta(minutes=13)
    got = store.evidence("rel_base", "local", since, until).aggregates
    assert got == aggregate_events(events, since=since, until=until)
    assert sum(a.runs for a in got) > 200


def test_migrations_are_versioned_and_rerun_is_a_no_op(backend: Backend) -> None:
    store = backend.store
    assert store.applied_migrations() == ALL_MIGRATIONS
    assert store.migrate() == []
    with backend.open_another() as again:
        assert again.applied_migrations() == ALL_MIGRATIONS
    backend.raw("INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (99, 'future', 0)")
    with pytest.raises(StoreError, match=r"newer than this code"):
        open_store(backend.target)


def test_bucket_backfill_migration_counts_existing_events(backend: Backend) -> None:
    backend.store.ingest([event_dict(timestamp=NOW - 5 * HOUR), event_dict(timestamp=NOW - 4 * HOUR)])
    backend.raw("DELETE FROM run_event_buckets")
    backend.raw("DELETE FROM schema_migrations WHERE version = 3")
    backend.raw("DROP TABLE run_event_buckets")
    if backend.name == "postgresql":
        backend.raw("DROP FUNCTION run_events_bucket_insert CASCADE")
        backend.raw("DROP FUNCTION run_events_bucket_delete CASCADE")
    else:
        backend.raw("DROP TRIGGER run_events_bucket_delete")
    assert backend.store.migrate() == [3]
    assert backend.store.evidence("rel_base", "local", NOW - 10 * HOUR, NOW).runs == 2


def test_deleting_events_keeps_buckets_right(backend: Backend) -> None:
    backend.store.ingest(
        [event_dict(timestamp=NOW - 5 * HOUR, run_id="x"), event_dict(timestamp=NOW - 5 * HOUR)]
    )
    backend.raw("DELETE FROM run_events WHERE run_id = ?", ["x"])
    assert backend.store.evidence("rel_base", "local", NOW - 10 * HOUR, NOW).runs == 1


# --- the property: SQL evidence == per-event computation ---------------------------------------------

MODELS = ("m-small", "m-large")
TABLE = PricingTable(
    provider="openai",
    pricing_version="v",
    entries=(
        PricingEntry(model="m-small", input_usd_per_1k_tokens=0.15, output_usd_per_1k_tokens=0.6),
        PricingEntry(
            model="m-large",
            input_usd_per_1k_tokens=2.5,
            output_usd_per_1k_tokens=10.0,
            cached_input_usd_per_1k_tokens=1.25,
        ),
    ),
)
ORIGIN = NOW - dt.timedelta(hours=6)
SPAN_US = 6 * BUCKET_US

# Instants biased toward hour boundaries, where buckets meet the raw edges of a window.
near_boundary = st.builds(lambda hour, delta: hour * BUCKET_US + delta, st.integers(0, 6), st.integers(-2, 2))
instant_us = st.one_of(st.integers(0, SPAN_US), near_boundary)

event_strategy = st.fixed_dictionaries(
    {
        "offset_us": instant_us,
        "tz_minutes": st.sampled_from([0, 120, -330, None]),
        "model": st.sampled_from(MODELS),
        "tenant_id": st.sampled_from(["t1", "t2"]),
        "input_tokens": st.integers(0, 50_000),
        "output_tokens": st.integers(0, 20_000),
        "cached_input_tokens": st.integers(0, 5_000),
        "latency_ms": st.none() | st.integers(0, 120_000),
        "success": st.booleans(),
    }
)


def _build(spec: dict[str, object], release_id: str, index: int) -> RunEvent:
    ts = ORIGIN + dt.timedelta(microseconds=spec.pop("offset_us"))  # type: ignore[arg-type]
    tz_minutes = spec.pop("tz_minutes")
    stamp = (
        ts.replace(tzinfo=None)
        if tz_minutes is None
        else ts.astimezone(dt.timezone(dt.timedelta(minutes=tz_minutes)))
    )  # type: ignore[arg-type]
    return make_event(release_id=release_id, run_id=f"{release_id}-{index}", timestamp=stamp, **spec)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(event_strategy, min_size=1, max_size=60),
    window=st.tuples(instant_us, instant_us),
    tenant=st.sampled_from([None, "t1"]),
    duplicates=st.integers(0, 3),
)
def test_evidence_sql_equals_per_event_computation(
    store: Store, specs: list[dict[str, object]], window: tuple[int, int], tenant: str | None, duplicates: int
) -> None:
    release_id = f"rel_{uuid.uuid4().hex[:10]}"  # examples share one store; each uses its own release
    events = [_build(dict(spec), release_id, i) for i, spec in enumerate(specs)]
    resent = events[:duplicates]
    assert store.insert_events(events + resent) == len(events)
    since = ORIGIN + dt.timedelta(microseconds=min(window))
    until = ORIGIN + dt.timedelta(microseconds=max(window))

    got = store.evidence(release_id, "local", since, until, tenant_id=tenant)
    expected = aggregate_events(events, since=since, until=until, tenant_id=tenant)
    assert got.aggregates == tuple(a for a in expected if a.runs)

    # Costing the sums equals summing per-event costs (cost is linear in tokens).
    inside = [
        e
        for e in events
        if since <= e.timestamp.replace(tzinfo=e.timestamp.tzinfo or dt.UTC) < until
        and (tenant is None or e.tenant_id == tenant)
    ]
    per_event_total = sum(
        cost_usd(
            e.usage.model.input_tokens,
            e.usage.model.output_tokens,
            e.usage.model.cached_input_tokens,
            TABLE.entry_for(e.usage.model.model),
        )  # type: ignore[arg-type]
        for e in inside
    )
    summary = rollup(got.aggregates, TABLE)
    assert summary.runs == len(inside)
    if inside:
        assert math.isclose(
            summary.cost_per_run_usd, per_event_total / len(inside), rel_tol=1e-9, abs_tol=1e-12
        )
        failures = sum(not e.metrics.success for e in inside)
        assert summary.error_rate == failures / len(inside)
        latencies = [e.metrics.latency_ms for e in inside if e.metrics.latency_ms is not None]
        assert summary.latency_ms_avg == (sum(latencies) / len(latencies) if latencies else None)


def test_model_aggregate_rejects_adding_different_models() -> None:
    with pytest.raises(ValueError, match="same"):
        ModelAggregate("a", "m", 1, 0, 0, 0, 0, 0, 0) + ModelAggregate("a", "n", 1, 0, 0, 0, 0, 0, 0)


def test_insert_event_data_stores_what_insert_events_stores(backend: Backend) -> None:
    """The ingestion path (plain data) and the model path write identical rows and buckets."""
    stored = []
    for path in ("model", "data"):
        release = f"rel_{uuid.uuid4().hex[:10]}"
        raws = [
            event_dict(release_id=release, run_id=f"{release}-x", timestamp="2026-03-01T10:00:00.25+05:30"),
            event_dict(release_id=release, run_id=f"{release}-y", latency_ms=None, success=False),
            event_dict(release_id=release, run_id=f"{release}-x", input_tokens=1),  # repeated: first wins
        ]
        raws[0]["labels"] = {"ü": "→"}
        raws[1]["request"] = {"trace_id": "t"}
        raws[1]["usage"]["tools"] = [{"tool_name": "search"}]
        if path == "model":
            assert backend.store.insert_events(validate_events(raws), received_at=NOW) == 2
        else:
            data = [RUN_EVENT_DATA.validate_python(raw) for raw in raws]
            assert backend.store.insert_event_data(data, received_at=NOW) == 2
            assert backend.store.insert_event_data(data[:1], received_at=NOW) == 0
        rows = backend.raw("SELECT * FROM run_events WHERE release_id = ? ORDER BY run_id", [release])
        buckets = backend.raw("SELECT * FROM run_event_buckets WHERE release_id = ?", [release])
        page = backend.store.run_page(RunFilters(release, "local", NOW - 10**5 * HOUR, NOW + HOUR))
        assert {RunEvent.model_validate_json(e).run_id for e in page.events_json} == {
            f"{release}-x",
            f"{release}-y",
        }
        assert [row[-3:] for row in rows] == [(None, None, None), ("t", None, None)]  # request ids
        stored.append(json.loads(json.dumps([rows, buckets]).replace(release, "REL")))
    assert stored[0] == stored[1]
