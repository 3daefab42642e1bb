"""Leader election on a ``coordination.k8s.io/v1`` Lease: client-go's algorithm, for asyncio.

client-go (``tools/leaderelection``) and why not the Python client's elector: that one runs the
leader in a thread it never stops and never increments ``leaseTransitions``, which the ledger's
fence needs as the leader's epoch (docs/operations.md, "High availability").

The algorithm, as client-go's ``tryAcquireOrRenew``:

- Read the Lease (create it, holding it, when there is none).
- A record held by another identity is valid until ``leaseDuration`` has passed, on this process's
  monotonic clock, since this process last *saw the record change*: no wall clocks are compared.
- Otherwise write ourselves in: keep ``acquireTime`` and ``leaseTransitions`` when renewing,
  add one to ``leaseTransitions`` when taking over. Every write is a PUT of the object as read, so
  two candidates cannot both succeed.
- The leader renews every ``retryPeriod``; if no renewal succeeds within ``renewDeadline`` it has
  lost (``renewDeadline`` < ``leaseDuration``, so it knows before anyone may take over). Seeing
  another holder in the Lease is a loss at once (client-go would keep trying until the deadline).
- Release (graceful shutdown) empties ``holderIdentity`` and sets ``leaseDurationSeconds: 1``.

The leader renews from a thread with an event loop of its own (:class:`BackgroundRenewal`), as
client-go renews from a goroutine of its own: on the operator's loop, a burst of handlers (5,000
pointers resumed at start) kept it busy past the renew deadline and the leader deposed itself.

One refinement of the waiting: a candidate polls every ``retryPeriod`` x U(1, 1.2) and, when the
holder's lease would run out before its next poll, tries exactly then rather than a poll later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flightdeck_operator.kube.errors import Conflict, NotFound
from flightdeck_operator.kube.leases import LeaseClient, LeaseRecord, ObservedLease

log = logging.getLogger(__name__)

T = TypeVar("T")
# client-go requires leaseDuration > renewDeadline > JitterFactor x retryPeriod.
JITTER_FACTOR = 1.2


class ElectionTimings(BaseModel):
    """client-go's defaults for core clients: 15 s lease, 10 s renew deadline, 2 s retry period."""

    model_config = ConfigDict(frozen=True)

    lease_duration: float = Field(default=15.0, gt=0)
    renew_deadline: float = Field(default=10.0, gt=0)
    retry_period: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.lease_duration > self.renew_deadline > JITTER_FACTOR * self.retry_period:
            raise ValueError(
                "leader election needs leaseDuration > renewDeadline > 1.2 x retryPeriod "
                f"(got {self.lease_duration:g} s, {self.renew_deadline:g} s, {self.retry_period:g} s)"
            )
        return self


def desired_record(
    current: LeaseRecord | None, *, identity: str, timings: ElectionTimings, now: dt.datetime
) -> LeaseRecord:
    """The record to write to hold the Lease: a renewal keeps acquireTime and the transitions, a
    take-over (or a new Lease) counts one more transition."""
    duration = max(1, round(timings.lease_duration))
    if current is None:
        return LeaseRecord(
            holder_identity=identity,
            lease_duration_seconds=duration,
            acquire_time=now,
            renew_time=now,
            lease_transitions=0,
        )
    if current.holder_identity == identity:
        return current.model_copy(update={"renew_time": now, "lease_duration_seconds": duration})
    return LeaseRecord(
        holder_identity=identity,
        lease_duration_seconds=duration,
        acquire_time=now,
        renew_time=now,
        lease_transitions=current.lease_transitions + 1,
    )


def held_by_another(record: LeaseRecord, *, identity: str, observed_at: float, now: float) -> float | None:
    """Seconds until another holder's lease runs out, as this process has observed it (None: it
    is ours, released, or already run out)."""
    if not record.holder_identity or record.holder_identity == identity:
        return None
    remaining = observed_at + record.lease_duration_seconds - now
    return remaining if remaining > 0 else None


@dataclass(frozen=True, slots=True)
class _Attempt:
    held: bool  # we hold the Lease now
    observed: ObservedLease | None  # what the API server said (None: no answer)
    wait: float | None = None  # another holder's lease runs out in this many seconds


class LeadershipLost(RuntimeError):
    """Renewing failed for longer than the renew deadline, or another identity holds the Lease."""


class LeaderElector:
    """Acquire, renew and release one Lease for ``identity``.

    ``on_observed(record)`` is called with every record read or written (metrics, logs). Blocking
    API calls run in worker threads, each with a timeout, and their results are applied on the
    event loop only, so a late answer can never change what this elector believes.
    """

    def __init__(
        self,
        leases: LeaseClient,
        identity: str,
        timings: ElectionTimings,
        *,
        on_observed: Callable[[LeaseRecord], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.leases = leases
        self.identity = identity
        self.timings = timings
        self.on_observed = on_observed
        self.monotonic = monotonic
        self.wall = wall
        self.observed: LeaseRecord | None = None
        self.observed_at = 0.0
        self.is_leader = False
        # Threads of its own: behind the event loop's default executor, busy with decisions, a
        # renewal could wait past its deadline.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="flightdeck-lease")
        # When this elector last completed a round (the liveness check reads it).
        self.heartbeat = monotonic()
        # A round runs in a worker thread and may outlive the coroutine that awaited it: the lock
        # lets release() wait for it, and no round writes once renewing has stopped.
        self._round = threading.Lock()
        self._renewing_stopped = threading.Event()

    def stop_renewing(self) -> None:
        """No round writes the Lease from now on (one in flight finishes first; release waits)."""
        self._renewing_stopped.set()

    async def acquire(self) -> LeaseRecord:
        """Wait until this identity holds the Lease; returns the record as written."""
        while True:
            attempt = await self._attempt(self.timings.retry_period)
            if attempt.held and attempt.observed is not None:
                self.is_leader = True
                log.info(
                    "Acquired Lease %s/%s as %s (transitions %d)",
                    self.leases.namespace,
                    self.leases.name,
                    self.identity,
                    attempt.observed.record.lease_transitions,
                )
                return attempt.observed.record
            pause = self.timings.retry_period * random.uniform(1.0, JITTER_FACTOR)
            if attempt.wait is not None:
                pause = min(pause, attempt.wait)
            await asyncio.sleep(pause)

    async def renew_until_lost(self) -> LeadershipLost:
        """Renew every retryPeriod while we lead; returns (does not raise) why leadership ended."""
        last_renewal = self.monotonic()
        while True:
            await asyncio.sleep(self.timings.retry_period)
            # Counted from the last renewal, not from waking up: a process that was stopped (or
            # starved) past the deadline has lost, even if nobody took over yet.
            deadline = last_renewal + self.timings.retry_period + self.timings.renew_deadline
            while True:
                remaining = deadline - self.monotonic()
                if remaining <= 0:
                    self.is_leader = False
                    return LeadershipLost(
                        f"no renewal of Lease {self.leases.namespace}/{self.leases.name} succeeded within "
                        f"the renew deadline ({self.timings.renew_deadline:g} s)"
                    )
                attempt = await self._attempt(min(remaining, self.timings.retry_period))
                if attempt.held:
                    last_renewal = self.monotonic()
                    break
                holder = attempt.observed.record.holder_identity if attempt.observed else ""
                if holder and holder != self.identity:
                    self.is_leader = False
                    return LeadershipLost(
                        f"Lease {self.leases.namespace}/{self.leases.name} is held by {holder} now"
                    )
                await asyncio.sleep(min(self.timings.retry_period, max(0.0, deadline - self.monotonic())))

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def raise_transitions(self, at_least: int) -> LeaseRecord:
        """While holding the Lease, set its transitions to ``at_least`` (a compare-and-swap on the
        record we hold): a Lease deleted and re-created starts counting at 0 again, below the
        fence's last epoch. Raises :class:`LeadershipLost` when the Lease is no longer ours."""
        current = await self._call(self.leases.get, timeout=self.timings.renew_deadline)
        if current.record.holder_identity != self.identity:
            raise LeadershipLost(f"Lease is held by {current.record.holder_identity or 'nobody'} now")
        wanted = current.record.model_copy(update={"lease_transitions": at_least, "renew_time": self.wall()})
        written = await self._call(
            self.leases.replace,
            wanted,
            resource_version=current.resource_version,
            timeout=self.timings.renew_deadline,
        )
        self._observe(written.record)
        return written.record

    async def release(self) -> None:
        """Hand the Lease over at once (graceful shutdown, after the leader's work has stopped)."""
        if not self.is_leader:
            return
        self.is_leader = False
        self.stop_renewing()
        try:
            released = await self._call(self._release_sync)
            if released:
                log.info("Released Lease %s/%s", self.leases.namespace, self.leases.name)
        except Exception as error:
            log.warning("Could not release the Lease (%s); the standby takes over when it expires", error)

    def _release_sync(self) -> bool:
        with self._round:  # after a renewal still in flight, never beside it
            current = self.leases.get(timeout=self.timings.retry_period)
            if current.record.holder_identity != self.identity:
                return False
            released = LeaseRecord(
                holder_identity="",
                lease_duration_seconds=1,
                acquire_time=self.wall(),
                renew_time=self.wall(),
                lease_transitions=current.record.lease_transitions,
            )
            self.leases.replace(
                released, resource_version=current.resource_version, timeout=self.timings.retry_period
            )
            return True

    # -- one round of tryAcquireOrRenew ------------------------------------------------------------

    async def _attempt(self, budget: float) -> _Attempt:
        started = self.monotonic()
        try:
            attempt = await asyncio.wait_for(self._call(self._try_sync, budget), budget + 1.0)
        except TimeoutError:
            attempt = _Attempt(held=False, observed=None)
        self.heartbeat = self.monotonic()
        if self.heartbeat - started > self.timings.retry_period:
            log.warning(
                "A round on Lease %s/%s took %.1fs (more than the retry period)",
                self.leases.namespace,
                self.leases.name,
                self.heartbeat - started,
            )
        if attempt.observed is not None:
            self._observe(attempt.observed.record)
        return attempt

    def _observe(self, record: LeaseRecord) -> None:
        if record != self.observed:
            self.observed, self.observed_at = record, self.monotonic()
            if self.on_observed is not None:
                self.on_observed(record)

    def _try_sync(self, timeout: float) -> _Attempt:
        """Blocking: read, decide, write. Reads this elector's state but changes none of it."""
        with self._round:
            if self._renewing_stopped.is_set():
                return _Attempt(held=False, observed=None)
            return self._try_locked(timeout)

    def _try_locked(self, timeout: float) -> _Attempt:
        try:
            try:
                current = self.leases.get(timeout=timeout)
            except NotFound:
                record = desired_record(None, identity=self.identity, timings=self.timings, now=self.wall())
                return _Attempt(held=True, observed=self.leases.create(record, timeout=timeout))
            observed_at = self.observed_at if current.record == self.observed else self.monotonic()
            wait = held_by_another(
                current.record, identity=self.identity, observed_at=observed_at, now=self.monotonic()
            )
            if wait is not None:
                return _Attempt(held=False, observed=current, wait=wait)
            record = desired_record(
                current.record, identity=self.identity, timings=self.timings, now=self.wall()
            )
            written = self.leases.replace(record, resource_version=current.resource_version, timeout=timeout)
            return _Attempt(held=True, observed=written)
        except Conflict:
            return _Attempt(held=False, observed=None)  # another candidate wrote first
        except Exception as error:  # API errors, timeouts, connection resets: a failed round
            log.warning("Lease %s/%s: %s", self.leases.namespace, self.leases.name, error)
            return _Attempt(held=False, observed=None)


class BackgroundRenewal:
    """Run :meth:`LeaderElector.renew_until_lost` on a thread with its own event loop.

    ``on_lost`` is called *in that thread* when leadership ends, so a deposed leader can stop at
    once even while the operator's event loop is busy. :meth:`stop` (graceful shutdown) cancels the
    renewal without calling ``on_lost``; release the Lease after it.
    """

    def __init__(self, elector: LeaderElector, on_lost: Callable[[LeadershipLost], None]) -> None:
        self.elector = elector
        self.on_lost = on_lost
        self._loop = asyncio.new_event_loop()
        self._renewal: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._serve, name="flightdeck-lease-renewal", daemon=True)

    def start(self) -> None:
        self._renewal = self._loop.create_task(self._renew())  # runs once the thread runs the loop
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop renewing and wait for the thread (blocking); a round still in flight cannot write
        after :meth:`LeaderElector.release` (it holds the round's lock)."""
        self.elector.stop_renewing()
        if self._renewal is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended (the renewal returned)
            self._loop.call_soon_threadsafe(self._renewal.cancel)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("The Lease renewal thread did not stop within %.0fs", timeout)

    def _serve(self) -> None:
        assert self._renewal is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._renewal)
        except asyncio.CancelledError:
            pass  # stopped
        finally:
            self._loop.close()

    async def _renew(self) -> None:
        try:
            lost = await self.elector.renew_until_lost()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a renewal that cannot go on is a lost Lease, never a silent one
            log.exception("The Lease renewal failed")
            lost = LeadershipLost(f"the renewal failed: {error!r}")
        self.on_lost(lost)
