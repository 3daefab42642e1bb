"""kopf adapters of the notifications: the index of NotificationSubscriptions the notifier reads,
and forgetting a deleted subscription's outbox at once."""

from __future__ import annotations

from typing import Any

import kopf

from flightdeck_operator.api.v1alpha1 import GROUP, NOTIFICATION_SUBSCRIPTION_PLURAL, VERSION
from flightdeck_operator.controller.notification_status import indexed_subscription

SUBSCRIPTIONS_INDEX = "subscriptions_by_namespace"


@kopf.index(GROUP, VERSION, NOTIFICATION_SUBSCRIPTION_PLURAL)
async def subscriptions_by_namespace(
    namespace: str | None,
    name: str,
    uid: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> dict[Any, Any]:
    return {namespace: indexed_subscription(namespace or "", name, uid, meta, spec, status)}


@kopf.on.event(GROUP, VERSION, NOTIFICATION_SUBSCRIPTION_PLURAL)
async def subscription_event(type: str | None, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """A deleted subscription's pending deliveries and counters go with it."""
    if type == "DELETED" and "notifier" in memo:
        await memo["notifier"].forget(uid)
