"""What verification reads from the store, on SQLite and PostgreSQL: the live release's evidence in
one read (with or without moments), and the ledger entries behind soak, cooldown and quarantine."""

from __future__ import annotations

import datetime as dt

from flightdeck_operator.engine.ledger import (
    LedgerKind,
    release_soaked_key,
    retirement_key,
    verification_failed_key,
)
from flightdeck_operator.store import Store
from tests.factories import NOW, aggregate_events, make_event, moments_of_events
from tests.store.test_statistics_store import assert_moments_close
from tests.unit.test_ledger import record

HOUR = dt.timedelta(hours=1)


def test_live_evidence_is_the_windows_sums_with_or_without_moments(store: Store) -> None:
    since, until = NOW - 2 * HOUR - dt.timedelta(minutes=17), NOW - dt.timedelta(minutes=3)
    events = [
        make_event(
            release_id="rel_live",
            timestamp=NOW - dt.timedelta(minutes=7 * i),
            latency_ms=100 + i,
            success=i % 5 != 0,
        )
        for i in range(40)
    ]
    other = [make_event(release_id="rel_other", timestamp=NOW - dt.timedelta(minutes=30))]
    store.insert_events([*events, *other])
    plain, recent = store.live_evidence("rel_live", "local", since, until, moments=False)
    assert plain.aggregates == aggregate_events(
        [e for e in events if e.release_id == "rel_live"], since=since, until=until
    )
    assert (plain.moments, recent) == (None, 0)
    rich, recent = store.live_evidence(
        "rel_live", "local", since, until, moments=True, rate_since=until - dt.timedelta(minutes=30)
    )
    assert rich.aggregates == plain.aggregates
    assert_moments_close(rich.moments, moments_of_events(events, since=since, until=until))
    in_rate_window = [e for e in events if until - dt.timedelta(minutes=30) <= e.timestamp < until]
    assert recent == len(in_rate_window)
    assert (rich.since, rich.until, rich.release_id, rich.environment) == (since, until, "rel_live", "local")


def _failed(n: int, release: str, *, pointer: str = "support-prod", action: str = "Rollback") -> object:
    return record(
        n,
        kind=LedgerKind.VERIFICATION_FAILED,
        idempotency_key=verification_failed_key("team-a", pointer, n),
        request_uid=None,
        actor="operator",
        pointer=pointer,
        release_id=release,
        pointer_changed=False,
        details={"action": action},
    )


def test_automation_entries_are_failures_and_later_promotions_since_the_retirement(store: Store) -> None:
    store.append(_failed(1, "rel_old"))  # before a retirement: another pointer's history
    store.append(
        record(
            2,
            kind=LedgerKind.POINTER_RETIRED,
            idempotency_key=retirement_key("team-a", "support-prod", 1),
            request_uid=None,
            pointer_changed=False,
        )
    )
    store.append(record(3, release_id="rel_a"))  # a promotion before any failure: not needed
    failure = store.append(_failed(4, "rel_b"))
    store.append(record(5, release_id="rel_b", pointer_changed=False))  # blocked: moved nothing
    promoted = store.append(record(6, release_id="rel_b"))
    store.append(_failed(7, "rel_x", pointer="other"))
    assert [e.seq for e in store.automation_entries("team-a", "support-prod")] == [failure.seq, promoted.seq]
    assert store.automation_entries("team-a", "nowhere") == []


def test_soak_entry_is_the_newest_for_the_follower_and_release(store: Store) -> None:
    def soaked(n: int, release: str, follower: str = "production") -> object:
        return record(
            n,
            kind=LedgerKind.RELEASE_SOAKED,
            idempotency_key=release_soaked_key("team-a", follower, "canary", n),
            request_uid=None,
            pointer=follower,
            release_id=release,
            pointer_changed=False,
        )

    first = store.append(soaked(1, "rel_a"))
    store.append(soaked(2, "rel_b"))
    store.append(soaked(3, "rel_a", follower="staging"))
    assert store.soak_entry("team-a", "production", "rel_a") == first
    again = store.append(soaked(4, "rel_a"))
    assert store.soak_entry("team-a", "production", "rel_a") == again
    assert store.soak_entry("team-a", "production", "rel_c") is None
    store.append(
        record(
            5,
            kind=LedgerKind.POINTER_RETIRED,
            idempotency_key=retirement_key("team-a", "production", 4),
            request_uid=None,
            pointer="production",
            pointer_changed=False,
        )
    )
    assert store.soak_entry("team-a", "production", "rel_a") is None  # a new pointer soaks afresh


def test_pointer_decisions_after_a_seq(store: Store) -> None:
    store.append(record(1))
    store.append(_failed(2, "rel_1"))
    blocked = store.append(record(3, pointer_changed=False))
    rollback = store.append(record(4, kind=LedgerKind.ROLLBACK))
    store.append(record(5, pointer="other"))
    assert store.pointer_decisions_after("team-a", "support-prod", 1) == [blocked, rollback]
    assert store.pointer_decisions_after("team-a", "support-prod", 4) == []
