"""The notification outbox on both backends: a subscription starts at its creation, planning is
atomic with its cursor (never skipped, never doubled), deliveries stay pending until delivered or
expired, and counters and backlog survive a reopened store."""

from __future__ import annotations

import datetime as dt

from flightdeck_operator.engine import notifications
from flightdeck_operator.store import Store
from flightdeck_operator.store.notifications import DELIVERED, EXPIRED, PENDING, NewDelivery
from tests.factories import NOW
from tests.store.conftest import Backend
from tests.unit.test_ledger import record

SECOND = dt.timedelta(seconds=1)


def plan(store: Store, uid: str, namespace: str = "team-a", limit: int = 100) -> int:
    """What the dispatcher does: read the namespace's entries after the cursor, enqueue their events."""
    state = store.subscription_states()[uid]
    entries, cursor = store.ledger_after(namespace, state.cursor_seq, limit=limit)
    deliveries = [
        NewDelivery(entry.seq, event.value, notifications.delivery_id(entry, event), entry.created_at)
        for entry in entries
        for event in notifications.events_for(entry)
    ]
    assert store.enqueue_deliveries(uid, deliveries, from_seq=state.cursor_seq, to_seq=cursor)
    return len(deliveries)


def test_a_subscription_receives_what_was_written_from_its_creation_on(store: Store) -> None:
    for n in range(1, 4):  # created at NOW + n seconds
        store.append(record(n))
    state = store.ensure_subscription("sub-1", "team-a", "hooks", created_at=NOW + 2.5 * SECOND)
    assert (state.cursor_seq, state.backlog, state.delivered_total) == (2, 0, 0)
    # Seen again (a restart): the stored cursor stays.
    store.append(record(4))
    assert store.ensure_subscription("sub-1", "team-a", "hooks", created_at=NOW).cursor_seq == 2
    assert plan(store, "sub-1") == 2
    pending = store.pending_deliveries("sub-1", limit=10)
    assert [(d.ledger_seq, d.event) for d in pending] == [(3, "promote.succeeded"), (4, "promote.succeeded")]
    assert store.subscription_states()["sub-1"].backlog == 2


def test_planning_reads_only_its_namespace_and_pages(store: Store) -> None:
    store.ensure_subscription("sub-a", "team-a", "hooks", created_at=NOW)
    for n in range(1, 8):
        store.append(record(n, namespace="team-a" if n % 2 else "team-b"))
    assert plan(store, "sub-a", limit=2) == 2  # seq 1 and 3
    assert store.subscription_states()["sub-a"].cursor_seq == 3
    assert plan(store, "sub-a", limit=2) == 2  # 5 and 7
    assert plan(store, "sub-a", limit=2) == 0
    assert store.subscription_states()["sub-a"].cursor_seq == 7
    assert [d.ledger_seq for d in store.pending_deliveries("sub-a", limit=10)] == [1, 3, 5, 7]


def test_a_stale_cursor_plans_nothing(store: Store) -> None:
    store.ensure_subscription("sub-1", "team-a", "hooks", created_at=NOW)
    entry = store.append(record(1))
    delivery = NewDelivery(1, "promote.succeeded", "d1", entry.created_at)
    assert store.enqueue_deliveries("sub-1", [delivery], from_seq=0, to_seq=1)
    # A second planner that read the old cursor writes nothing: no entry is planned twice.
    assert not store.enqueue_deliveries("sub-1", [delivery], from_seq=0, to_seq=1)
    assert store.subscription_states()["sub-1"].backlog == 1


def test_success_failure_backoff_and_counters(backend: Backend) -> None:
    store = backend.store
    store.ensure_subscription("sub-1", "team-a", "hooks", created_at=NOW)
    store.append(record(1))
    store.append(record(2))
    plan(store, "sub-1")
    first, second = store.pending_deliveries("sub-1", limit=10)
    store.delivery_failed(first, now=NOW, error="HTTP 503", retry_at=NOW + 4 * SECOND)
    store.delivery_failed(first, now=NOW + 4 * SECOND, error="ConnectionRefused", retry_at=NOW + 12 * SECOND)
    state = store.subscription_states()["sub-1"]
    assert (state.consecutive_failures, state.failed_attempts_total, state.backlog) == (2, 2, 2)
    assert (state.last_error, state.next_attempt_at, state.last_failure_at) == (
        "ConnectionRefused",
        NOW + 12 * SECOND,
        NOW + 4 * SECOND,
    )
    store.delivery_succeeded(first, now=NOW + 12 * SECOND)
    store.delivery_succeeded(first, now=NOW + 13 * SECOND)  # a replay: counted once
    with backend.open_another() as reopened:
        state = reopened.subscription_states("team-a")["sub-1"]
        assert (state.delivered_total, state.consecutive_failures, state.next_attempt_at) == (1, 0, None)
        assert (state.backlog, state.last_success_at) == (1, NOW + 12 * SECOND)
        assert [d.delivery_id for d in reopened.pending_deliveries("sub-1", limit=5)] == [second.delivery_id]
        assert [
            (seq, state, attempts) for seq, _, _, state, attempts in reopened.delivery_states("sub-1")
        ] == [
            (1, DELIVERED, 3),
            (2, PENDING, 0),
        ]


def test_expired_deliveries_are_counted_and_pruned(store: Store) -> None:
    store.ensure_subscription("sub-1", "team-a", "hooks", created_at=NOW)
    for n in range(1, 4):
        store.append(record(n))
    plan(store, "sub-1")
    delivered = store.pending_deliveries("sub-1", limit=1)[0]
    store.delivery_succeeded(delivered, now=NOW + 10 * SECOND)
    assert store.expire_deliveries("sub-1", due_before=NOW + 2.5 * SECOND, now=NOW + 20 * SECOND) == 1
    state = store.subscription_states()["sub-1"]
    assert (state.expired_total, state.backlog, state.delivered_total) == (1, 1, 1)
    assert [s for _, _, _, s, _ in store.delivery_states("sub-1")] == [DELIVERED, EXPIRED, PENDING]
    assert store.prune_finished_deliveries(finished_before=NOW + 15 * SECOND) == 1
    assert store.prune_finished_deliveries(finished_before=NOW + 30 * SECOND) == 1
    assert [s for _, _, _, s, _ in store.delivery_states("sub-1")] == [PENDING]
    assert store.subscription_states()["sub-1"].expired_total == 1


def test_forgetting_a_subscription_drops_its_deliveries(store: Store) -> None:
    store.ensure_subscription("sub-1", "team-a", "hooks", created_at=NOW)
    store.append(record(1))
    plan(store, "sub-1")
    store.forget_subscription("sub-1")
    assert store.subscription_states() == {}
    assert store.delivery_states("sub-1") == []
