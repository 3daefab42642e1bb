"""The demo's notifications: a webhook created over HTTP (``POST /v1/webhooks``, as the reference's),
then what arrived at the local receiver, each signature verified."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from flightdeck_operator.engine.notifications import ALL_EVENTS
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.webhook_receiver import WebhookReceiver

NAMESPACE = "demo"
# kubectl promotes the baseline, HTTP is blocked, alice asks for the canary, bob approves, it promotes.
EXPECTED = (
    "promote.succeeded",
    "promote.blocked",
    "approval.requested",
    "approval.accepted",
    "promote.succeeded",
)


class NotificationsMissing(RuntimeError):
    pass


def subscribe(
    cp: ControlPlane,
    sidecar_url: str,
    receiver: WebhookReceiver,
    say: Callable[[str], None],
    show: Callable[[str], None],
) -> None:
    say("Subscribing a local receiver to every event (POST /v1/webhooks, as the platform team)")
    with httpx.Client(
        base_url=sidecar_url, headers={"Authorization": f"Bearer {cp.identity('admin').token}"}
    ) as api:
        answer = api.post("/v1/webhooks", json={"url": receiver.url, "events": list(ALL_EVENTS)})
    if answer.status_code != 200:
        raise NotificationsMissing(f"POST /v1/webhooks answered {answer.status_code}: {answer.text}")
    webhook = answer.json()
    receiver.secret = webhook["secret"]
    show(f"{webhook['webhook_id']} -> {webhook['url']} (secret shown once: {webhook['secret'][:6]}…)")


def notifications_received(
    cp: ControlPlane, receiver: WebhookReceiver, say: Callable[[str], None], show: Callable[[str], None]
) -> None:
    say("Notifications the local receiver got, in ledger order (every signature verified)")
    deadline = time.monotonic() + 30
    while len(receiver.snapshot()) < len(EXPECTED) and time.monotonic() < deadline:
        time.sleep(0.2)
    got = receiver.snapshot()
    for delivery in got:
        data = delivery.data
        what = data.get("release_id")
        detail = "; ".join(str(r) for r in data.get("policy_reasons") or []) or data.get("approver") or ""
        show(f"{delivery.event:<20} {delivery.delivery_id[:12]}  {what}  {detail}".rstrip())
    if [d.event for d in got] != list(EXPECTED) or receiver.refused:
        raise NotificationsMissing(
            f"expected {list(EXPECTED)}, got {[d.event for d in got]} ({receiver.refused} refused)"
        )
    # The subscription's status follows within a round of the notifier.
    while time.monotonic() < deadline and cp.kubectl(
        "get", "-n", NAMESPACE, "notificationsubscriptions", "-o", "jsonpath={.items[0].status.delivered}"
    ).stdout != str(len(EXPECTED)):
        time.sleep(0.2)
    show(cp.kubectl("get", "-n", NAMESPACE, "notificationsubscriptions").stdout.rstrip())
