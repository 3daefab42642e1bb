"""Run forensics and the metrics counters on both backends: pages newest first, counts that agree
with a plain COUNT(*) for every filter and window edge, exports in one snapshot, counters kept on
insert, delete and append, and the indexes the page queries use."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.store import RunFilters, Store, open_store
from flightdeck_operator.store.schema import MIGRATIONS
from tests.factories import NOW, event_dict
from tests.store.conftest import Backend
from tests.unit.test_ledger import record

HOUR = dt.timedelta(hours=1)
# By name: the numbers may change when branches that add migrations are merged.
FORENSICS_MIGRATION, COUNTERS_MIGRATION, OUTBOX_MIGRATION = (
    next(m.version for m in MIGRATIONS if m.name.startswith(prefix))
    for prefix in ("run forensics", "counters", "notification outbox")
)
MINUTE = dt.timedelta(minutes=1)


def seed(store: Store) -> list[dict[str, object]]:
    """60 events, one every 7 minutes before NOW, over two tenants, two tasks and three traces."""
    events = [
        event_dict(
            run_id=f"run-{i:03d}",
            timestamp=NOW - i * 7 * MINUTE - dt.timedelta(seconds=30),
            tenant_id=f"tenant-{i % 2}",
            task_id=f"task-{i % 3 % 2}",
            request={"trace_id": f"trace-{i % 3}", "session_id": f"session-{i % 4}", "span_id": f"span-{i}"},
        )
        for i in range(60)
    ]
    events.append(event_dict(run_id="other-release", release_id="rel_cand", timestamp=NOW - MINUTE))
    events.append(event_dict(run_id="other-env", environment="prod", timestamp=NOW - MINUTE))
    events.append(event_dict(run_id="no-request", timestamp=NOW - 2 * MINUTE))
    assert store.ingest(events) == len(events)
    return events


def window(hours: float = 24, **filters: str) -> RunFilters:
    return RunFilters("rel_base", "local", NOW - dt.timedelta(hours=hours), NOW, **filters)


def brute_count(backend: Backend, filters: RunFilters) -> int:
    where, params = filters.where()
    return int(backend.raw(f"SELECT COUNT(*) FROM run_events{where}", params)[0][0])


def run_ids(events_json: tuple[str, ...] | list[str]) -> list[str]:
    return [json.loads(text)["run_id"] for text in events_json]


def test_pages_are_newest_first_and_counted(store: Store) -> None:
    seed(store)
    page = store.run_page(window(), limit=5)
    assert page.matched_total == 61  # 60 + the event without a request
    assert run_ids(page.events_json) == ["run-000", "no-request", "run-001", "run-002", "run-003"]
    assert page.truncated
    last = store.run_page(window(), offset=58, limit=5)
    assert run_ids(last.events_json) == ["run-057", "run-058", "run-059"]
    assert not last.truncated
    beyond = store.run_page(window(), offset=500, limit=5)
    assert (beyond.events_json, beyond.matched_total, beyond.truncated) == ((), 61, False)


def test_ties_on_the_timestamp_are_broken_by_run_id(store: Store) -> None:
    store.ingest([event_dict(run_id=name, timestamp=NOW - MINUTE) for name in ("b", "c", "a")])
    assert run_ids(store.run_page(window(1)).events_json) == ["c", "b", "a"]


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"tenant_id": "tenant-1"},
        {"task_id": "task-0"},
        {"tenant_id": "tenant-0", "task_id": "task-1"},
        {"trace_id": "trace-2"},
        {"session_id": "session-1", "tenant_id": "tenant-1"},
        {"span_id": "span-7"},
        {"trace_id": "nope"},
    ],
    ids=lambda f: ",".join(f) or "release-only",
)
@pytest.mark.parametrize("hours", [0.5, 1, 3, 6.9, 24])
def test_counts_agree_with_a_plain_count(backend: Backend, filters: dict[str, str], hours: float) -> None:
    # Whole hours come from the evidence buckets, the two partial hours from the index: every
    # combination of filters and window edges must still count exactly what a COUNT(*) counts.
    seed(backend.store)
    for shift in (dt.timedelta(0), 17 * MINUTE, 59 * MINUTE):
        filters_at = dataclasses.replace(window(hours, **filters), until=NOW - shift)
        filters_at = dataclasses.replace(filters_at, since=filters_at.until - dt.timedelta(hours=hours))
        page = backend.store.run_page(filters_at, limit=500)
        assert page.matched_total == brute_count(backend, filters_at) == len(page.events_json)
        for text in page.events_json:
            event = json.loads(text)
            for key, value in filters.items():
                assert (event["request"] or {}).get(key, event.get(key)) == value


def test_request_ids_are_exact_and_only_for_events_that_carry_them(store: Store) -> None:
    seed(store)
    page = store.run_page(window(trace_id="trace-1"), limit=500)
    assert page.matched_total == 20
    assert {json.loads(t)["request"]["trace_id"] for t in page.events_json} == {"trace-1"}
    assert store.run_page(window(trace_id="trace-1 "), limit=5).matched_total == 0  # stripped by callers


def test_the_export_streams_one_snapshot_in_batches(backend: Backend) -> None:
    seed(backend.store)
    export = backend.store.open_run_export(window(), offset=3, limit=50)
    assert (export.matched_total, export.returned, export.offset, export.truncated) == (61, 50, 3, True)
    # Written while the export is open: not in it (one snapshot), nor in its counts.
    with backend.open_another() as other:
        other.ingest([event_dict(run_id="late", timestamp=NOW - 30 * MINUTE)])
    batches = list(export.batches(size=7))
    assert [len(b) for b in batches] == [7] * 7 + [1]
    expected = run_ids(backend.store.run_page(window(), offset=3, limit=51).events_json)
    assert "late" in expected
    expected.remove("late")
    assert run_ids([line for batch in batches for line in batch]) == expected[:50]


def test_an_export_past_the_end_returns_nothing_and_releases_its_snapshot(store: Store) -> None:
    seed(store)
    export = store.open_run_export(window(), offset=100, limit=10)
    assert (export.returned, export.truncated) == (0, False)
    assert list(export.batches()) == []
    export.close()  # idempotent


def test_the_run_events_counter_follows_inserts_duplicates_and_deletes(backend: Backend) -> None:
    store = backend.store
    assert store.run_events_total() == 0
    events = seed(store)
    assert store.run_events_total() == len(events)
    store.ingest(events[:10])  # duplicates: not counted
    assert store.run_events_total() == len(events)
    backend.raw("DELETE FROM run_events WHERE run_id IN (?, ?)", ["run-001", "run-002"])
    assert store.run_events_total() == len(events) - 2 == backend.raw("SELECT COUNT(*) FROM run_events")[0][0]


def test_ledger_counts_by_namespace_and_kind(store: Store) -> None:
    for n in range(1, 4):
        store.append(record(n))
    store.append(record(4, pointer_changed=False, kind=LedgerKind.ROLLBACK))
    store.append(record(5, namespace="team-b"))
    store.append(record(3))  # idempotent: the same entry again is not counted twice
    assert store.ledger_counts("team-a") == {"promote": 3, "rollback": 1}
    assert store.ledger_counts() == {"promote": 4, "rollback": 1}


def test_counters_are_backfilled_by_the_migration(backend: Backend) -> None:
    seed(backend.store)
    backend.store.append(record(1))
    backend.raw(
        "DELETE FROM schema_migrations WHERE version IN (?, ?)", [COUNTERS_MIGRATION, OUTBOX_MIGRATION]
    )
    for table in ("notification_deliveries", "notification_subscriptions", "ledger_counts", "store_counters"):
        backend.raw(f"DROP TABLE {table}")
    if backend.name == "postgresql":
        backend.raw("DROP TRIGGER run_events_count_insert ON run_events")
        backend.raw("DROP TRIGGER run_events_count_delete ON run_events")
        backend.raw("DROP FUNCTION run_events_count_insert()")
        backend.raw("DROP FUNCTION run_events_count_delete()")
    else:
        backend.raw("DROP TRIGGER run_events_count_delete")
    with backend.open_another() as reopened:
        assert reopened.run_events_total() == 63
        assert reopened.ledger_counts() == {"promote": 1}


def test_request_ids_are_backfilled_for_events_stored_before_the_migration(backend: Backend) -> None:
    backend.store.ingest([event_dict(run_id="old", request={"trace_id": "t-old"})])
    # Back to the schema before run forensics: what a store written by an older operator holds.
    for table in ("notification_deliveries", "notification_subscriptions", "ledger_counts", "store_counters"):
        backend.raw(f"DROP TABLE {table}")
    if backend.name == "postgresql":
        backend.raw("DROP TRIGGER run_events_count_insert ON run_events")
        backend.raw("DROP TRIGGER run_events_count_delete ON run_events")
        backend.raw("DROP FUNCTION run_events_count_insert()")
        backend.raw("DROP FUNCTION run_events_count_delete()")
    else:
        backend.raw("DROP TRIGGER run_events_count_delete")
    for index in ("run_events_trace_id", "run_events_session_id", "run_events_span_id"):
        backend.raw(f"DROP INDEX {index}")
    backend.raw("DROP INDEX run_events_release_env_tenant_task_ts")
    backend.raw("DROP INDEX run_event_buckets_tenant_task")
    for column in ("trace_id", "session_id", "span_id"):
        backend.raw(f"ALTER TABLE run_events DROP COLUMN {column}")
    backend.raw(
        "DELETE FROM schema_migrations WHERE version IN (?, ?, ?)",
        [FORENSICS_MIGRATION, COUNTERS_MIGRATION, OUTBOX_MIGRATION],
    )
    with backend.open_another() as upgraded:
        assert upgraded.run_page(window(trace_id="t-old")).matched_total == 1
        assert upgraded.run_events_total() == 1


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "run_events_release_env_ts"),
        ({"tenant_id": "t", "task_id": "k"}, "run_events_release_env_tenant_task_ts"),
        ({"trace_id": "x"}, "run_events_trace_id"),
        ({"session_id": "x"}, "run_events_session_id"),
        ({"span_id": "x"}, "run_events_span_id"),
    ],
)
def test_sqlite_reads_pages_through_an_index(tmp_path: Path, filters: dict[str, str], index: str) -> None:
    # SQLite plans without statistics, so the plan is a property of the schema; PostgreSQL's depend
    # on its statistics (benchmarks/runs.py measures both).
    with open_store(tmp_path / "plans.db") as store:
        where, params = window(**filters).where()
        with store._transaction(write=False) as tx:
            plan = tx.execute(
                f"EXPLAIN QUERY PLAN SELECT event_json FROM run_events{where} ORDER BY ts_us DESC, run_id DESC "
                "LIMIT 100",
                params,
            ).fetchall()
    details = " | ".join(str(row[-1]) for row in plan)
    assert f"USING INDEX {index}" in details, details
    assert "SCAN run_events" not in details


def test_sqlite_counts_a_tenant_and_task_from_their_own_buckets(tmp_path: Path) -> None:
    with open_store(tmp_path / "plans.db") as store, store._transaction(write=False) as tx:
        plan = tx.execute(
            "EXPLAIN QUERY PLAN SELECT CAST(COALESCE(SUM(runs), 0) AS BIGINT) FROM run_event_buckets "
            "WHERE release_id = ? AND environment = ? AND bucket_start_us >= ? AND bucket_start_us < ? "
            "AND tenant_id = ? AND task_id = ?",
            ["r", "local", 0, 1, "t", "k"],
        ).fetchall()
    assert "USING COVERING INDEX run_event_buckets_tenant_task" in str(plan[0][-1])
