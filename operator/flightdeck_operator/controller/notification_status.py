"""Pure: a NotificationSubscription's status from its outbox state (the store) and what keeps it
from delivering. Every field is written (``None`` deletes it in a merge patch), so a status never
keeps a stale ``nextAttemptTime`` or ``lastFailure``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from flightdeck_operator.api.conditions import ConditionUpdate, Reason, dependency_missing, ready, stalled
from flightdeck_operator.api.v1alpha1 import NotificationSubscriptionSpec
from flightdeck_operator.engine.models import format_time
from flightdeck_operator.store.notifications import SubscriptionState


@dataclass(frozen=True, slots=True)
class IndexedSubscription:
    """A NotificationSubscription as the index holds it; ``spec`` is None when it does not validate
    (a URL the CRD's rules let through but the operator refuses), ``problem`` then says why."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    created: dt.datetime
    spec: NotificationSubscriptionSpec | None
    problem: str | None
    status: Mapping[str, Any]


def indexed_subscription(
    namespace: str,
    name: str,
    uid: str,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
) -> IndexedSubscription:
    created = dt.datetime.fromisoformat(str(meta.get("creationTimestamp")).replace("Z", "+00:00"))
    try:
        parsed, problem = NotificationSubscriptionSpec.model_validate(spec), None
    except ValidationError as error:
        parsed = None
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
    return IndexedSubscription(
        namespace=namespace,
        name=name,
        uid=uid,
        generation=meta.get("generation"),
        created=created,
        spec=parsed,
        problem=problem,
        status=dict(status),
    )


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why a subscription cannot deliver now (missing Secret)."""

    reason: Reason
    message: str


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else format_time(value)


def conditions_for(
    subscription: IndexedSubscription, state: SubscriptionState | None, blocker: Blocker | None
) -> ConditionUpdate:
    if subscription.spec is None:
        return stalled(Reason.INVALID_SPEC, subscription.problem or "the spec does not validate")
    if blocker is not None:
        return dependency_missing(blocker.reason, blocker.message)
    if subscription.spec.suspend:
        return ready(
            Reason.SUSPENDED, "Suspended: deliveries are planned but not sent until spec.suspend is false"
        )
    if state is not None and state.consecutive_failures:
        next_attempt = _time(state.next_attempt_at) or "now"
        return dependency_missing(
            Reason.DELIVERY_FAILING,
            f"{state.consecutive_failures} attempt(s) in a row failed (last: {state.last_error}); next attempt "
            f"at {next_attempt}, retried until retryFor ({subscription.spec.retry_for}) has passed",
        )
    if state is not None and state.last_success_at is not None:
        return ready(Reason.DELIVERING, "The receiver took the last delivery")
    return ready(Reason.DELIVERING, "No delivery made yet")


def subscription_status(
    subscription: IndexedSubscription,
    state: SubscriptionState | None,
    blocker: Blocker | None,
    *,
    now: dt.datetime,
) -> dict[str, Any]:
    """The whole status (merge-patch ready) for ``state``; counters are zero before the first round."""
    conditions: Sequence[Mapping[str, Any]] = subscription.status.get("conditions") or ()
    update = conditions_for(subscription, state, blocker)
    return {
        "observedGeneration": subscription.generation,
        "conditions": update.apply(conditions, now, subscription.generation),
        "delivered": state.delivered_total if state else 0,
        "failedAttempts": state.failed_attempts_total if state else 0,
        "expired": state.expired_total if state else 0,
        "backlog": state.backlog if state else 0,
        "consecutiveFailures": state.consecutive_failures if state else 0,
        "lastSuccessTime": _time(state.last_success_at) if state else None,
        "lastFailureTime": _time(state.last_failure_at) if state else None,
        "lastFailure": state.last_error if state else None,
        "nextAttemptTime": _time(state.next_attempt_at) if state and state.consecutive_failures else None,
        "ledgerSeq": state.cursor_seq if state else None,
    }


def shows(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the object's status already says ``wanted`` (a missing field equals ``None``)."""
    return all(current.get(key) == value for key, value in wanted.items())


def ready_reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            return str(condition.get("reason"))
    return None
