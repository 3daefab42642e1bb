"""The notification outbox's pump: one asyncio task, apart from the decisions.

Each round (every ``notification_poll_seconds``):

1. every subscription gets its outbox state on first sight (it receives what is ledgered from its
   creation on), then its deliveries are planned from the ledger past its cursor (one transaction
   per page: deliveries and cursor together, so nothing is skipped or planned twice);
2. a subscription with due deliveries and no backoff gets a sender task of its own, which sends
   them in ledger order until one fails; the failure sets the subscription's backoff (doubling, up
   to the cap), stored, so a restarted operator waits the same; deliveries older than
   ``retryFor`` expire instead of being sent;
3. statuses are written when what they say changed; state of deleted subscriptions is dropped.

A slow or dead receiver costs only its own sender task (async HTTP with a timeout): decisions never
wait for it, and other subscriptions keep being served. The store is touched in short transactions.
Delivery is at least once: a crash between the receiver's 2xx and the store's ``delivered`` sends
that delivery again, with the same ``delivery_id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.v1alpha1 import NOTIFICATION_SUBSCRIPTION, NotificationSubscriptionSpec
from flightdeck_operator.config import OperatorSettings
from flightdeck_operator.controller.delivery import new_session, post
from flightdeck_operator.controller.notification_status import (
    Blocker,
    IndexedSubscription,
    ready_reason,
    shows,
    subscription_status,
)
from flightdeck_operator.engine import notifications
from flightdeck_operator.engine.notifications import NotificationEvent
from flightdeck_operator.engine.windows import parse_duration
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store
from flightdeck_operator.store.notifications import NewDelivery, SubscriptionState

log = logging.getLogger(__name__)

PLAN_PAGE = 500  # ledger entries read per planning transaction
SEND_BATCH = 100  # deliveries read per sender step
SECRET_TTL_S = 10.0  # a rotated key is used within this long (at once after a 401/403)
PRUNE_EVERY_S = 3600.0


@dataclass
class Notifier:
    store: Store
    gateway: KubeGateway
    settings: OperatorSettings
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    _session: aiohttp.ClientSession | None = None
    _senders: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _blockers: dict[str, Blocker] = field(default_factory=dict)
    _secrets: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    _last_prune: float = 0.0

    async def run(self, subscriptions: Mapping[Any, Any]) -> None:
        """Forever: one round per poll interval (the index is read on the event loop)."""
        self.open()
        try:
            while True:
                try:
                    await self.round([s for entries in list(subscriptions.values()) for s in list(entries)])
                except Exception:
                    log.exception(
                        "Notification round failed; next round in %.1fs",
                        self.settings.notification_poll_seconds,
                    )
                await asyncio.sleep(self.settings.notification_poll_seconds)
        finally:
            await self.close()

    def open(self) -> None:
        """The HTTP session for deliveries (on the running event loop)."""
        self._session = new_session(
            timeout_seconds=self.settings.notification_timeout_seconds,
            connections=self.settings.notification_concurrency,
        )

    async def close(self) -> None:
        for task in self._senders.values():
            task.cancel()
        if self._session is not None:
            await self._session.close()

    async def wait_senders(self) -> None:
        """Until the senders started so far have finished (each stops at a failure or when done)."""
        await asyncio.gather(*list(self._senders.values()), return_exceptions=True)

    async def round(self, subscriptions: Sequence[IndexedSubscription]) -> None:
        states = await asyncio.to_thread(self.store.subscription_states)
        head = await asyncio.to_thread(self.store.ledger_head_seq)
        for subscription in subscriptions:
            state = states.get(subscription.uid)
            if state is None:
                state = await asyncio.to_thread(
                    self.store.ensure_subscription,
                    subscription.uid,
                    subscription.namespace,
                    subscription.name,
                    created_at=subscription.created,
                )
            if subscription.spec is not None and state.cursor_seq < head:
                await asyncio.to_thread(self._plan, subscription, subscription.spec, state.cursor_seq)
        states = await asyncio.to_thread(self.store.subscription_states)
        now = self.clock()
        for subscription in subscriptions:
            state = states.get(subscription.uid)
            if state is None or subscription.spec is None or subscription.uid in self._senders:
                continue
            secret = await self._secret(subscription, subscription.spec)
            if self._has_expired(subscription.spec, state, now):  # before the oldest would be sent
                await self._expire(subscription, subscription.spec)
            due = state.next_attempt_at is None or state.next_attempt_at <= now
            if state.backlog and due and secret is not None and not subscription.spec.suspend:
                self._senders[subscription.uid] = asyncio.create_task(
                    self._send(subscription, subscription.spec, secret, state.consecutive_failures)
                )
        await asyncio.to_thread(self._write_statuses, subscriptions)
        await self._forget_vanished(subscriptions, states)
        await self._prune()

    # -- planning -------------------------------------------------------------------------------------

    def _plan(
        self, subscription: IndexedSubscription, spec: NotificationSubscriptionSpec, cursor: int
    ) -> None:
        wanted = {event.value for event in spec.events}
        while True:
            entries, next_cursor = self.store.ledger_after(subscription.namespace, cursor, limit=PLAN_PAGE)
            deliveries = [
                NewDelivery(entry.seq, event.value, notifications.delivery_id(entry, event), entry.created_at)
                for entry in entries
                for event in notifications.events_for(entry)
                if event.value in wanted
            ]
            if next_cursor == cursor:
                return
            if not self.store.enqueue_deliveries(
                subscription.uid, deliveries, from_seq=cursor, to_seq=next_cursor
            ):
                return  # planned meanwhile (or forgotten): the next round reads the new cursor
            if deliveries:
                log.info(
                    "Planned %d notification(s) for %s/%s",
                    len(deliveries),
                    subscription.namespace,
                    subscription.name,
                )
            if len(entries) < PLAN_PAGE:
                return
            cursor = next_cursor

    # -- sending --------------------------------------------------------------------------------------

    async def _send(
        self,
        subscription: IndexedSubscription,
        spec: NotificationSubscriptionSpec,
        secret: str,
        failures: int,
    ) -> None:
        """Send due deliveries in ledger order until one fails (then back off) or none is left."""
        try:
            assert self._session is not None
            while pending := await asyncio.to_thread(
                self.store.pending_deliveries, subscription.uid, limit=SEND_BATCH
            ):
                for delivery in pending:
                    event = NotificationEvent(delivery.event)
                    payload = notifications.body(delivery.entry, event, spec.format)
                    headers = notifications.headers(delivery.entry, event, spec.format, payload, secret)
                    attempt = await post(self._session, spec.url, payload, headers)
                    now = self.clock()
                    if attempt.ok:
                        failures = 0
                        await asyncio.to_thread(self.store.delivery_succeeded, delivery, now=now)
                        continue
                    failures += 1
                    delay = notifications.retry_delay(
                        failures,
                        base=self.settings.notification_retry_base_seconds,
                        cap=self.settings.notification_max_backoff_seconds,
                        jitter=random.random(),
                    )
                    error = attempt.error or "failed"
                    await asyncio.to_thread(
                        self.store.delivery_failed,
                        delivery,
                        now=now,
                        error=error,
                        retry_at=now + dt.timedelta(seconds=delay),
                    )
                    log.warning(
                        "Notification %s (%s) to %s/%s failed: %s; retrying in %.1fs",
                        delivery.delivery_id,
                        delivery.event,
                        subscription.namespace,
                        subscription.name,
                        error,
                        delay,
                    )
                    if attempt.rejected_signature:
                        self._secrets.pop(subscription.uid, None)  # the key may have been rotated
                    return
        except Exception:
            log.exception("Sending notifications of %s/%s failed", subscription.namespace, subscription.name)
        finally:
            self._senders.pop(subscription.uid, None)

    @staticmethod
    def _has_expired(spec: NotificationSubscriptionSpec, state: SubscriptionState, now: dt.datetime) -> bool:
        oldest = state.oldest_pending_due_at
        return oldest is not None and oldest < now - parse_duration(spec.retry_for)

    async def _expire(self, subscription: IndexedSubscription, spec: NotificationSubscriptionSpec) -> None:
        now = self.clock()
        expired = await asyncio.to_thread(
            self.store.expire_deliveries,
            subscription.uid,
            due_before=now - parse_duration(spec.retry_for),
            now=now,
        )
        if expired:
            log.warning(
                "Gave up %d notification(s) of %s/%s older than retryFor %s",
                expired,
                subscription.namespace,
                subscription.name,
                spec.retry_for,
            )

    async def _secret(
        self, subscription: IndexedSubscription, spec: NotificationSubscriptionSpec
    ) -> str | None:
        """The signing key (cached briefly); None, with the subscription's blocker set, when missing."""
        loop = asyncio.get_running_loop()
        cached = self._secrets.get(subscription.uid)
        if cached is not None and loop.time() - cached[0] < SECRET_TTL_S:
            return cached[1]
        ref = spec.secret_ref
        try:
            value = await asyncio.to_thread(
                self.gateway.secret_value, subscription.namespace, ref.name, ref.key
            )
        except GatewayError as error:
            log.warning("Cannot read Secret %s/%s: %s", subscription.namespace, ref.name, error)
            value = None
        self._secrets[subscription.uid] = (loop.time(), value)
        if value is None:
            self._blockers[subscription.uid] = Blocker(
                Reason.SECRET_NOT_FOUND,
                f'Secret "{ref.name}" with key "{ref.key}" not found in namespace "{subscription.namespace}"; '
                "deliveries wait for it",
            )
        else:
            self._blockers.pop(subscription.uid, None)
        return value

    # -- statuses and bookkeeping ------------------------------------------------------------------------

    def _write_statuses(self, subscriptions: Sequence[IndexedSubscription]) -> None:
        fresh = self.store.subscription_states() if subscriptions else {}
        for subscription in subscriptions:
            blocker = self._blockers.get(subscription.uid)
            status = subscription_status(subscription, fresh.get(subscription.uid), blocker, now=self.clock())
            if shows(subscription.status, status):
                continue
            try:
                body = self.gateway.patch_status(
                    NOTIFICATION_SUBSCRIPTION.plural, subscription.namespace, subscription.name, status
                )
            except NotFound:
                continue
            reason = ready_reason(status)
            if reason == ready_reason(subscription.status):
                continue
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            try:  # an Event per change of the Ready reason (kubectl describe); never a secret
                self.gateway.post_event(
                    body,
                    kind=NOTIFICATION_SUBSCRIPTION.kind,
                    event_type="Normal" if ready["status"] == "True" else "Warning",
                    reason=str(reason),
                    message=str(ready["message"]),
                )
            except GatewayError as error:
                log.warning(
                    "Could not post an Event on %s/%s: %s", subscription.namespace, subscription.name, error
                )

    async def _forget_vanished(
        self, subscriptions: Sequence[IndexedSubscription], states: Mapping[str, SubscriptionState]
    ) -> None:
        """Outbox state of subscriptions deleted while nobody watched (confirmed with a read)."""
        known = {s.uid for s in subscriptions}
        watched = set(self.settings.namespaces)
        for uid, state in states.items():
            if uid in known or (watched and state.namespace not in watched) or uid in self._senders:
                continue
            body = await asyncio.to_thread(
                self.gateway.find, NOTIFICATION_SUBSCRIPTION.plural, state.namespace, state.name
            )
            if body is None or body["metadata"].get("uid") != uid:
                await self.forget(uid)

    async def forget(self, uid: str) -> None:
        sender = self._senders.pop(uid, None)
        if sender is not None:
            sender.cancel()
        self._blockers.pop(uid, None)
        self._secrets.pop(uid, None)
        await asyncio.to_thread(self.store.forget_subscription, uid)

    async def _prune(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = loop.time()
        cutoff = self.clock() - dt.timedelta(days=self.settings.notification_history_days)
        await asyncio.to_thread(self.store.prune_finished_deliveries, finished_before=cutoff)
