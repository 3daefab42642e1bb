"""The election's pure rules (client-go's tryAcquireOrRenew): which record to write, when another
holder's lease has run out, and the timings client-go accepts."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from flightdeck_operator.kube.leader_election import ElectionTimings, desired_record, held_by_another
from flightdeck_operator.kube.leases import LeaseRecord

NOW = dt.datetime(2026, 11, 24, 12, 0, 0, 500, tzinfo=dt.UTC)
TIMINGS = ElectionTimings()


def test_client_go_defaults_and_their_order() -> None:
    assert (TIMINGS.lease_duration, TIMINGS.renew_deadline, TIMINGS.retry_period) == (15.0, 10.0, 2.0)
    ElectionTimings(lease_duration=8, renew_deadline=6, retry_period=1)
    for lease, renew, retry in ((10, 10, 2), (15, 2, 2), (15, 10, 9)):
        with pytest.raises(ValidationError, match=r"leaseDuration > renewDeadline > 1\.2 x retryPeriod"):
            ElectionTimings(lease_duration=lease, renew_deadline=renew, retry_period=retry)


def test_a_new_lease_starts_at_transition_zero() -> None:
    record = desired_record(None, identity="a_1", timings=TIMINGS, now=NOW)
    assert (record.holder_identity, record.lease_transitions, record.lease_duration_seconds) == ("a_1", 0, 15)
    assert record.acquire_time == record.renew_time == NOW


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    held = LeaseRecord(
        holder_identity="a_1",
        lease_duration_seconds=15,
        acquire_time=NOW,
        renew_time=NOW,
        lease_transitions=4,
    )
    later = NOW + dt.timedelta(seconds=2)
    renewed = desired_record(held, identity="a_1", timings=TIMINGS, now=later)
    assert (renewed.acquire_time, renewed.renew_time, renewed.lease_transitions) == (NOW, later, 4)


def test_taking_over_counts_one_more_transition() -> None:
    for previous in (
        LeaseRecord(holder_identity="a_1", lease_duration_seconds=15, lease_transitions=4),
        LeaseRecord(holder_identity="", lease_duration_seconds=1, lease_transitions=4),  # released
    ):
        taken = desired_record(previous, identity="b_2", timings=TIMINGS, now=NOW)
        assert (taken.holder_identity, taken.lease_transitions, taken.acquire_time) == ("b_2", 5, NOW)


def test_another_holders_lease_runs_from_when_it_was_seen_to_change() -> None:
    record = LeaseRecord(holder_identity="a_1", lease_duration_seconds=15)
    assert held_by_another(record, identity="b_2", observed_at=100.0, now=105.0) == 10.0
    assert held_by_another(record, identity="b_2", observed_at=100.0, now=115.0) is None
    assert held_by_another(record, identity="a_1", observed_at=100.0, now=101.0) is None  # ours
    released = LeaseRecord(holder_identity="", lease_duration_seconds=1)
    assert held_by_another(released, identity="b_2", observed_at=100.0, now=100.0) is None
