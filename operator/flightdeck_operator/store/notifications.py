"""The notification outbox: one delivery per (subscription, ledger entry, event), planned from the
ledger and kept until delivered or expired, with each subscription's cursor, backoff and counters.

A subscription reads the ledger of its namespace from its cursor (the last ``seq`` it planned);
planning inserts the deliveries and moves the cursor in one transaction, guarded by the cursor's old
value, so a crash or a second planner never skips or doubles an entry. A delivery stays ``pending``
until a 2xx answer (``delivered``) or until its subscription's ``retryFor`` has passed since the
entry was written (``expired``). Nothing here holds a secret: signing happens at send time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flightdeck_operator.engine.ledger import LedgerEntry
from flightdeck_operator.engine.models import from_utc_micros, utc_micros
from flightdeck_operator.store.base import StoreBase
from flightdeck_operator.store.rows import entry_from_row
from flightdeck_operator.store.schema import LEDGER_COLUMNS

PENDING = "pending"
DELIVERED = "delivered"
EXPIRED = "expired"

_SUBSCRIPTION_COLUMNS = (
    "uid",
    "namespace",
    "name",
    "cursor_seq",
    "next_attempt_at_us",
    "consecutive_failures",
    "delivered_total",
    "failed_attempts_total",
    "expired_total",
    "last_success_at_us",
    "last_failure_at_us",
    "last_error",
)


def _time(value: Any) -> dt.datetime | None:
    return None if value is None else from_utc_micros(int(value))


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """How far a subscription has got: its cursor, backoff, counters and backlog (pending deliveries)."""

    uid: str
    namespace: str
    name: str
    cursor_seq: int
    next_attempt_at: dt.datetime | None
    consecutive_failures: int
    delivered_total: int
    failed_attempts_total: int
    expired_total: int
    last_success_at: dt.datetime | None
    last_failure_at: dt.datetime | None
    last_error: str | None
    backlog: int
    # When the ledger entry of the oldest pending delivery was written (retryFor counts from it).
    oldest_pending_due_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> SubscriptionState:
        values = dict(zip((*_SUBSCRIPTION_COLUMNS, "backlog", "oldest_due_at_us"), row, strict=True))
        next_attempt = int(values["next_attempt_at_us"])
        return cls(
            uid=str(values["uid"]),
            namespace=str(values["namespace"]),
            name=str(values["name"]),
            cursor_seq=int(values["cursor_seq"]),
            next_attempt_at=from_utc_micros(next_attempt) if next_attempt else None,
            consecutive_failures=int(values["consecutive_failures"]),
            delivered_total=int(values["delivered_total"]),
            failed_attempts_total=int(values["failed_attempts_total"]),
            expired_total=int(values["expired_total"]),
            last_success_at=_time(values["last_success_at_us"]),
            last_failure_at=_time(values["last_failure_at_us"]),
            last_error=None if values["last_error"] is None else str(values["last_error"]),
            backlog=int(values["backlog"]),
            oldest_pending_due_at=_time(values["oldest_due_at_us"]),
        )


@dataclass(frozen=True, slots=True)
class NewDelivery:
    ledger_seq: int
    event: str
    delivery_id: str
    due_at: dt.datetime  # when the ledger entry was written: retryFor counts from here


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A delivery still to be made, with the ledger entry its body is built from."""

    subscription_uid: str
    event: str
    delivery_id: str
    attempts: int
    due_at: dt.datetime
    entry: LedgerEntry

    @property
    def ledger_seq(self) -> int:
        return self.entry.seq


_PENDING_OF_S = "FROM notification_deliveries d WHERE d.subscription_uid = s.uid AND d.state = 'pending'"
_STATE_SELECT = (
    f"SELECT {', '.join('s.' + c for c in _SUBSCRIPTION_COLUMNS)}, (SELECT COUNT(*) {_PENDING_OF_S}), "
    f"(SELECT d.due_at_us {_PENDING_OF_S} ORDER BY d.ledger_seq LIMIT 1) "
    "FROM notification_subscriptions s"
)


class NotificationQueries(StoreBase):
    """The outbox's reads and writes."""

    def ensure_subscription(
        self, uid: str, namespace: str, name: str, *, created_at: dt.datetime
    ) -> SubscriptionState:
        """The subscription's state, created on first sight: it receives the entries written at or
        after ``created_at`` (its cursor starts at the last entry written before)."""
        created_us = utc_micros(created_at)
        with self._transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO notification_subscriptions (uid, namespace, name, cursor_seq, next_attempt_at_us, "
                "consecutive_failures, delivered_total, failed_attempts_total, expired_total, created_at_us) "
                "SELECT ?, ?, ?, COALESCE((SELECT seq FROM ledger_entries WHERE created_at_us < ? "
                "ORDER BY seq DESC LIMIT 1), 0), 0, 0, 0, 0, 0, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM notification_subscriptions WHERE uid = ?)",
                [uid, namespace, name, created_us, created_us, uid],
            )
            row = tx.execute(f"{_STATE_SELECT} WHERE s.uid = ?", [uid]).fetchone()
        return SubscriptionState.from_row(row)

    def subscription_states(self, namespace: str | None = None) -> dict[str, SubscriptionState]:
        """Every known subscription's state by UID (one namespace, or all)."""
        sql, params = _STATE_SELECT, []
        if namespace is not None:
            sql, params = f"{sql} WHERE s.namespace = ?", [namespace]
        with self._transaction(write=False) as tx:
            rows = tx.execute(sql, params).fetchall()
        return {str(row[0]): SubscriptionState.from_row(row) for row in rows}

    def ledger_head_seq(self) -> int:
        with self._transaction(write=False) as tx:
            return int(tx.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries").fetchone()[0])

    def ledger_after(self, namespace: str, after_seq: int, *, limit: int) -> tuple[list[LedgerEntry], int]:
        """Up to ``limit`` entries of ``namespace`` after ``after_seq``, oldest first, and the seq up to
        which the ledger was read (the next cursor): the last entry of a full page, else the head."""
        with self._transaction(write=False, snapshot=True) as tx:
            head = int(tx.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries").fetchone()[0])
            rows = tx.execute(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger_entries "
                "WHERE seq > ? AND seq <= ? AND namespace = ? ORDER BY seq LIMIT ?",
                [after_seq, head, namespace, limit],
            ).fetchall()
        entries = [entry_from_row(row) for row in rows]
        return entries, (entries[-1].seq if len(entries) == limit else max(head, after_seq))

    def enqueue_deliveries(
        self, uid: str, deliveries: Sequence[NewDelivery], *, from_seq: int, to_seq: int
    ) -> bool:
        """Add the deliveries planned from the entries in ``(from_seq, to_seq]`` and move the cursor,
        atomically; False (nothing written) when the cursor is no longer ``from_seq``."""
        with self._transaction(write=True) as tx:
            moved = tx.execute(
                "UPDATE notification_subscriptions SET cursor_seq = ? WHERE uid = ? AND cursor_seq = ?",
                [to_seq, uid, from_seq],
            )
            if moved.rowcount != 1:
                return False
            tx.executemany(
                "INSERT INTO notification_deliveries (subscription_uid, ledger_seq, event, delivery_id, state, "
                "attempts, due_at_us) VALUES (?, ?, ?, ?, ?, 0, ?) "
                "ON CONFLICT (subscription_uid, ledger_seq, event) DO NOTHING",
                [
                    (uid, d.ledger_seq, d.event, d.delivery_id, PENDING, utc_micros(d.due_at))
                    for d in deliveries
                ],
            )
        return True

    def pending_deliveries(self, uid: str, *, limit: int) -> list[PendingDelivery]:
        """The oldest pending deliveries of a subscription, in ledger order."""
        columns = ", ".join(f"l.{c}" for c in LEDGER_COLUMNS)
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                f"SELECT d.event, d.delivery_id, d.attempts, d.due_at_us, {columns} "
                "FROM notification_deliveries d JOIN ledger_entries l ON l.seq = d.ledger_seq "
                "WHERE d.subscription_uid = ? AND d.state = 'pending' ORDER BY d.ledger_seq, d.event LIMIT ?",
                [uid, limit],
            ).fetchall()
        return [
            PendingDelivery(
                subscription_uid=uid,
                event=str(row[0]),
                delivery_id=str(row[1]),
                attempts=int(row[2]),
                due_at=from_utc_micros(int(row[3])),
                entry=entry_from_row(row[4:]),
            )
            for row in rows
        ]

    def delivery_succeeded(self, delivery: PendingDelivery, *, now: dt.datetime) -> None:
        now_us = utc_micros(now)
        with self._transaction(write=True) as tx:
            done = tx.execute(
                "UPDATE notification_deliveries SET state = ?, attempts = attempts + 1, "
                "last_attempt_at_us = ?, finished_at_us = ?, last_error = NULL "
                "WHERE subscription_uid = ? AND ledger_seq = ? AND event = ? AND state = 'pending'",
                [DELIVERED, now_us, now_us, delivery.subscription_uid, delivery.ledger_seq, delivery.event],
            )
            if done.rowcount:  # not already delivered (or forgotten) meanwhile
                tx.execute(
                    "UPDATE notification_subscriptions SET delivered_total = delivered_total + 1, "
                    "consecutive_failures = 0, next_attempt_at_us = 0, last_success_at_us = ? WHERE uid = ?",
                    [now_us, delivery.subscription_uid],
                )

    def delivery_failed(
        self, delivery: PendingDelivery, *, now: dt.datetime, error: str, retry_at: dt.datetime
    ) -> None:
        """An attempt failed: the delivery stays pending; the subscription backs off until ``retry_at``."""
        now_us = utc_micros(now)
        with self._transaction(write=True) as tx:
            tx.execute(
                "UPDATE notification_deliveries SET attempts = attempts + 1, last_attempt_at_us = ?, "
                "last_error = ? WHERE subscription_uid = ? AND ledger_seq = ? AND event = ?",
                [now_us, error, delivery.subscription_uid, delivery.ledger_seq, delivery.event],
            )
            tx.execute(
                "UPDATE notification_subscriptions SET consecutive_failures = consecutive_failures + 1, "
                "failed_attempts_total = failed_attempts_total + 1, last_failure_at_us = ?, last_error = ?, "
                "next_attempt_at_us = ? WHERE uid = ?",
                [now_us, error, utc_micros(retry_at), delivery.subscription_uid],
            )

    def expire_deliveries(self, uid: str, *, due_before: dt.datetime, now: dt.datetime) -> int:
        """Give up on pending deliveries of entries written before ``due_before``; returns how many."""
        with self._transaction(write=True) as tx:
            expired = tx.execute(
                "UPDATE notification_deliveries SET state = ?, finished_at_us = ? "
                "WHERE subscription_uid = ? AND state = 'pending' AND due_at_us < ?",
                [EXPIRED, utc_micros(now), uid, utc_micros(due_before)],
            ).rowcount
            if expired:
                tx.execute(
                    "UPDATE notification_subscriptions SET expired_total = expired_total + ? WHERE uid = ?",
                    [expired, uid],
                )
        return int(expired)

    def forget_subscription(self, uid: str) -> None:
        """The subscription is gone: its pending deliveries and its state go too."""
        with self._transaction(write=True) as tx:
            tx.execute("DELETE FROM notification_deliveries WHERE subscription_uid = ?", [uid])
            tx.execute("DELETE FROM notification_subscriptions WHERE uid = ?", [uid])

    def prune_finished_deliveries(self, *, finished_before: dt.datetime) -> int:
        """Delete delivered and expired deliveries finished before the cutoff (the counters stay)."""
        with self._transaction(write=True) as tx:
            return int(
                tx.execute(
                    "DELETE FROM notification_deliveries WHERE state <> 'pending' AND finished_at_us < ?",
                    [utc_micros(finished_before)],
                ).rowcount
            )

    def delivery_states(self, uid: str) -> list[tuple[int, str, str, str, int]]:
        """(ledger_seq, event, delivery_id, state, attempts) of every delivery kept, in ledger order."""
        with self._transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT ledger_seq, event, delivery_id, state, attempts FROM notification_deliveries "
                "WHERE subscription_uid = ? ORDER BY ledger_seq, event",
                [uid],
            ).fetchall()
        return [(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]
