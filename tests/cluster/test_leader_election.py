"""The elector against the real API server: one holder at a time, renewal, release and take-over
with one more transition, and raising the transitions only while holding the Lease."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time

import pytest
from kubernetes import client

from flightdeck_operator.kube.leader_election import (
    BackgroundRenewal,
    ElectionTimings,
    LeaderElector,
    LeadershipLost,
    desired_record,
)
from flightdeck_operator.kube.leases import LeaseClient, ObservedLease

TIMINGS = ElectionTimings(lease_duration=15, renew_deadline=10, retry_period=0.5)


def taken_over_behind_its_back(api_client: client.ApiClient, namespace: str, *, by: str) -> None:
    """Another candidate holds the Lease now, as after a stall of the holder past its lease."""
    leases = LeaseClient(api_client, namespace, "election-test")
    current = leases.get(timeout=5)
    record = desired_record(current.record, identity=by, timings=TIMINGS, now=dt.datetime.now(dt.UTC))
    leases.replace(record, resource_version=current.resource_version, timeout=5)


async def renewed_until_lost(holder: LeaderElector) -> tuple[LeadershipLost, str]:
    """Renew in the background until the loss is reported: why, and the thread that reported it."""
    reported = threading.Event()
    lost: list[tuple[LeadershipLost, str]] = []

    def on_lost(why: LeadershipLost) -> None:
        lost.append((why, threading.current_thread().name))
        reported.set()

    renewal = BackgroundRenewal(holder, on_lost)
    renewal.start()
    try:
        assert await asyncio.to_thread(reported.wait, 30)
    finally:
        await asyncio.to_thread(renewal.stop)
    [result] = lost
    return result


def elector(api_client: client.ApiClient, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(LeaseClient(api_client, namespace, "election-test"), identity, TIMINGS)


async def test_one_holder_release_and_take_over(api_client: client.ApiClient, namespace: str) -> None:
    first, second = elector(api_client, namespace, "first"), elector(api_client, namespace, "second")
    acquired = await first.acquire()
    assert (acquired.holder_identity, acquired.lease_transitions) == ("first", 0)

    attempt = await second._attempt(5.0)  # one round: the Lease was renewed a moment ago
    assert not attempt.held
    assert attempt.wait is not None
    assert attempt.wait > 0

    renewed = await first._attempt(5.0)
    assert renewed.held
    assert renewed.observed is not None
    assert renewed.observed.record.acquire_time == acquired.acquire_time

    await first.release()
    taken = await asyncio.wait_for(second.acquire(), 30)  # released: no need to wait it out
    assert (taken.holder_identity, taken.lease_transitions) == ("second", 1)

    with pytest.raises(LeadershipLost, match="held by second"):
        await first.raise_transitions(7)
    raised = await second.raise_transitions(7)
    assert (raised.holder_identity, raised.lease_transitions) == ("second", 7)


async def test_a_holder_that_sees_another_holder_has_lost(
    api_client: client.ApiClient, namespace: str
) -> None:
    first = elector(api_client, namespace, "first")
    await first.acquire()
    taken_over_behind_its_back(api_client, namespace, by="second")  # first believes it leads
    lost = await asyncio.wait_for(first.renew_until_lost(), 30)
    assert "held by second" in str(lost)


async def test_renewal_keeps_the_lease_while_the_operators_loop_is_blocked(
    api_client: client.ApiClient, namespace: str
) -> None:
    """A burst of handlers (5,000 pointers resumed at start) once kept the operator's loop busy
    past the renew deadline and the leader deposed itself: renewal runs on a thread of its own."""
    timings = ElectionTimings(lease_duration=4, renew_deadline=3, retry_period=0.5)
    leases = LeaseClient(api_client, namespace, "election-blocked")
    holder = LeaderElector(leases, "holder", timings)
    acquired = await holder.acquire()
    lost: list[LeadershipLost] = []
    renewal = BackgroundRenewal(holder, lost.append)
    renewal.start()
    try:
        time.sleep(2 * timings.lease_duration)  # noqa: ASYNC251 - blocks this loop, as a handler burst would
        assert not lost
        record = leases.get(timeout=5).record
        assert record.holder_identity == "holder"
        assert record.renew_time is not None
        assert acquired.renew_time is not None
        assert record.renew_time > acquired.renew_time + dt.timedelta(seconds=timings.lease_duration)
        challenger = LeaderElector(leases, "challenger", timings)
        assert not (await challenger._attempt(2.0)).held
    finally:
        await asyncio.to_thread(renewal.stop)
    await holder.release()


async def test_background_renewal_reports_a_lost_lease_in_its_own_thread(
    api_client: client.ApiClient, namespace: str
) -> None:
    first = elector(api_client, namespace, "first")
    await first.acquire()
    taken_over_behind_its_back(api_client, namespace, by="second")  # first believes it leads
    why, thread = await renewed_until_lost(first)
    assert "held by second" in str(why)
    assert thread == "flightdeck-lease-renewal"


async def test_a_renewal_that_crashes_is_reported_as_a_lost_lease(
    api_client: client.ApiClient, namespace: str
) -> None:
    """An error inside the renewal (here: the metrics callback) must end the leadership, never
    leave a leader running with nobody renewing its Lease."""
    calls = [0]

    def observed(_record: object) -> None:
        calls[0] += 1
        if calls[0] > 1:
            raise RuntimeError("metrics exploded")

    leases = LeaseClient(api_client, namespace, "election-crash")
    holder = LeaderElector(leases, "holder", TIMINGS, on_observed=observed)
    await holder.acquire()
    why, _ = await renewed_until_lost(holder)
    assert "the renewal failed" in str(why)
    assert "metrics exploded" in str(why)


class SlowReads(LeaseClient):
    """The real Lease client, whose reads can be made slow: a renewal still in flight when the
    leader stops."""

    delay = 0.0

    def get(self, *, timeout: float) -> ObservedLease:
        time.sleep(self.delay)
        return super().get(timeout=timeout)


async def test_no_renewal_writes_after_the_lease_is_released(
    api_client: client.ApiClient, namespace: str
) -> None:
    leases = SlowReads(api_client, namespace, "election-release")
    holder = LeaderElector(leases, "holder", TIMINGS)
    await holder.acquire()
    renewal = BackgroundRenewal(holder, lambda _why: None)
    renewal.start()
    leases.delay = 1.5  # the next renewal's read answers after stop() and release() began
    await asyncio.sleep(TIMINGS.retry_period + 0.2)
    await asyncio.to_thread(renewal.stop, 0.1)
    leases.delay = 0.0
    await holder.release()
    await asyncio.sleep(3)  # the renewal's read has long been answered
    record = LeaseClient(api_client, namespace, "election-release").get(timeout=5).record
    assert record.holder_identity == ""  # released, and not taken back by a late renewal
