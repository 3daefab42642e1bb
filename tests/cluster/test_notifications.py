"""Notifications end to end, on the real API server with a real HTTP receiver on loopback that
verifies every signature: the reference's body and headers, our events, CloudEvents, a receiver
down then up (nothing lost), the operator SIGKILLed mid-delivery, a wrong secret, a missing Secret,
a slow receiver that never delays decisions, and no secret anywhere but its Secret."""

from __future__ import annotations

import json
import re
from typing import Any

from flightdeck_operator.engine import notifications
from flightdeck_operator.engine.ledger import LedgerEntry
from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess
from flightdeck_operator.store import open_store

from .kube import (
    AGENT,
    ENV,
    apply,
    condition,
    get,
    ingest,
    policy,
    quickstart,
    request,
    run_events,
    wait_decided,
    wait_for,
)
from .receiver import Receiver
from .sidecar_client import action_body, as_user, quickstart_events
from .test_gates import (
    GATE,
    alice_requests_ship,
    apply_as,
    approval,
    freeze_started_a_minute_ago,
    grant_promoters,
)

REFERENCE_DATA_KEYS = [
    "action_id",
    "actor",
    "agent_id",
    "baseline_release_id",
    "environment",
    "reason",
    "release_id",
    "window",
]
REFERENCE_EVENTS = ["promote.succeeded", "promote.blocked", "rollback.succeeded"]


def secret(name: str, value: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"secret": value}}


def subscription(name: str, url: str, events: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "NotificationSubscription",
        "metadata": {"name": name},
        "spec": {"url": url, "events": events, "secretRef": {"name": f"{name}-key"}, **spec},
    }


def status_of(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cp, namespace, "notificationsubscription", name).get("status") or {})


def wait_status(cp: ControlPlane, namespace: str, name: str, what: str, **wanted: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = status_of(cp, namespace, name)
        return status if all(status.get(k) == v for k, v in wanted.items()) else None

    return wait_for(probe, timeout=90, what=what)


def ledger(operator: OperatorProcess) -> list[LedgerEntry]:
    with open_store(operator.store) as store:
        return list(reversed(store.list_ledger(limit=1000)))


def expected_deliveries(operator: OperatorProcess, events: set[str]) -> dict[str, str]:
    """delivery_id -> event for every ledger entry raising one of ``events``, in ledger order."""
    return {
        notifications.delivery_id(entry, event): event.value
        for entry in ledger(operator)
        for event in notifications.events_for(entry)
        if event.value in events
    }


def promote(
    cp: ControlPlane, namespace: str, name: str, release: str, action: str = "promote"
) -> dict[str, Any]:
    apply(cp, namespace, request(name, "support-local", release, action=action))
    return wait_decided(cp, namespace, name)


def test_decisions_are_notified_with_the_reference_body_headers_and_signature(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    quickstart(control_plane, namespace)
    ingest(operator.store, quickstart_events())
    receiver = Receiver(secret="unknown until created")
    with as_user(control_plane, sidecar, "admin") as api:
        created = api.post(
            "/v1/webhooks",
            json={
                "url": receiver.url,
                "events": [*REFERENCE_EVENTS, "rollback.blocked"],
                "description": "chat ops",
            },
        )
        assert created.status_code == 200, created.text
        webhook = created.json()
        receiver.secret = webhook["secret"]
        receiver.start()
        assert re.fullmatch(r"wh-[0-9a-f]{32}", webhook["webhook_id"])
        assert (webhook["api_version"], webhook["kind"], webhook["enabled"], webhook["secret_preview"]) == (
            "v1",
            "Webhook",
            True,
            None,
        )
        assert len(webhook["secret"]) == 43  # secrets.token_urlsafe(32)

        answers = [
            api.post("/v1/promote", json=action_body("support-base")),
            api.post("/v1/promote", json=action_body("support-cand")),
            api.post("/v1/rollback", json=action_body("support-cand")),
            api.post("/v1/rollback", json=action_body("support-base")),
        ]
        assert [a.status_code for a in answers] == [200, 409, 409, 200]
        outcomes = [a.json() if a.status_code == 200 else a.json()["detail"]["outcome"] for a in answers]

        wait_for(lambda: len(receiver.unique()) == 4, timeout=60, what="four notifications")
        received = list(receiver.unique().values())
        by_action = {r.body["data"]["action_id"]: r for r in receiver.unique().values()}
        assert [by_action[o["action_id"]].event for o in outcomes] == [
            "promote.succeeded",
            "promote.blocked",
            "rollback.blocked",
            "rollback.succeeded",
        ]
        for entry in received:
            assert entry.raw == json.dumps(entry.body, sort_keys=True, separators=(",", ":")).encode()
            assert list(entry.body) == ["created_at", "data", "delivery_id", "event"]
            assert entry.body["delivery_id"] == entry.delivery_id
            assert entry.body["event"] == entry.event
            assert entry.body["created_at"].endswith("+00:00")
            assert entry.headers["Content-Type"] == "application/json"
            assert entry.headers["User-Agent"] == "FlightDeck-Webhook/1"
            assert entry.headers["X-FlightDeck-Signature"].startswith("sha256=")
        first = by_action[outcomes[0]["action_id"]].body["data"]
        assert first == {
            "action_id": outcomes[0]["action_id"],
            "actor": "http",
            "agent_id": AGENT,
            "baseline_release_id": None,
            "environment": ENV,
            "reason": "ship it",
            "release_id": "support-base",
            "window": "7d",
        }
        blocked = by_action[outcomes[1]["action_id"]].body["data"]
        assert sorted(blocked) == sorted([*REFERENCE_DATA_KEYS, "policy_reasons"])
        assert blocked["policy_reasons"] == ["candidate cost_per_run_usd 5.000000 exceeds max 4.000000"]
        rollback_blocked = by_action[outcomes[2]["action_id"]].body["data"]
        assert (rollback_blocked["namespace"], rollback_blocked["pointer"]) == (namespace, "support-local")
        assert receiver.snapshot() == receiver.accepted()  # every one signed right, taken at once

        status = wait_status(
            control_plane, namespace, webhook["webhook_id"], "4 delivered", delivered=4, backlog=0
        )
        assert (status["failedAttempts"], status["expired"], status["consecutiveFailures"]) == (0, 0, 0)
        ready = condition({"status": status}, "Ready")
        assert (ready["status"], ready["reason"]) == ("True", "Delivering")
        assert status["lastSuccessTime"].endswith("Z")

        listed = api.get("/v1/webhooks").json()
        assert (listed["api_version"], listed["kind"], listed["total"]) == ("v1", "WebhookList", 1)
        [item] = listed["webhooks"]
        assert item["secret"] is None
        assert item["secret_preview"] == f"{webhook['secret'][:6]}…{webhook['secret'][-4:]}"
        assert {k: item[k] for k in ("webhook_id", "url", "events", "description")} == {
            k: webhook[k] for k in ("webhook_id", "url", "events", "description")
        }
        metrics = api.get("/metrics").text
        labels = f'namespace="{namespace}",subscription="{webhook["webhook_id"]}"'
        assert f"flightdeck_notifications_delivered_total{{{labels}}} 4.0" in metrics
        assert f"flightdeck_notifications_backlog{{{labels}}} 0.0" in metrics

        # The secret is in its Secret and nowhere else: logs, status, Events, the ledger.
        value = webhook["secret"]
        assert value not in operator.log_tail(100_000)
        assert value not in sidecar.log_tail(100_000)
        assert value not in control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert (
            value
            not in control_plane.kubectl(
                "get", "notificationsubscriptions", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert value not in json.dumps([e.model_dump(mode="json") for e in ledger(operator)])

        deleted = api.delete(f"/v1/webhooks/{webhook['webhook_id']}")
        assert deleted.json() == {"webhook_id": webhook["webhook_id"], "deleted": True}
        assert api.get("/v1/webhooks").json()["total"] == 0


def test_a_receiver_down_then_up_receives_everything_once(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, quickstart_events())
    receiver = Receiver(secret="s3cret-key")  # not started: connections are refused
    apply(
        control_plane,
        namespace,
        secret("hooks-key", receiver.secret),
        subscription("hooks", receiver.url, REFERENCE_EVENTS),
    )
    for n, release in enumerate(["support-base", "support-cand"] * 3):
        assert promote(control_plane, namespace, f"p{n}", release)["status"]["phase"] == "Promoted"
    down = wait_for(
        lambda: (
            (s := status_of(control_plane, namespace, "hooks")).get("failedAttempts", 0) >= 3
            and s.get("backlog") == 6
            and s
        ),
        timeout=60,
        what="failed attempts while the receiver is down",
    )
    assert (down["delivered"], condition({"status": down}, "Ready")["reason"]) == (0, "DeliveryFailing")
    assert down["lastFailure"].startswith("cannot connect")

    receiver.start()
    wait_status(control_plane, namespace, "hooks", "the backlog delivered", delivered=6, backlog=0)
    expected = expected_deliveries(operator, set(REFERENCE_EVENTS))
    assert len(expected) == 6
    unique = receiver.unique()
    assert list(unique) == list(expected)  # each once after dedup, in ledger order
    assert {d: r.event for d, r in unique.items()} == expected
    ready = condition({"status": status_of(control_plane, namespace, "hooks")}, "Ready")
    assert ready["reason"] == "Delivering"


def test_an_operator_killed_mid_delivery_delivers_after_restart(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, quickstart_events())
    receiver = Receiver(secret="kill-test").start()
    receiver.hold()
    apply(
        control_plane,
        namespace,
        secret("hooks-key", receiver.secret),
        subscription("hooks", receiver.url, REFERENCE_EVENTS),
    )
    promote(control_plane, namespace, "p0", "support-base")
    wait_for(receiver.holding.is_set, timeout=60, what="the first delivery to reach the receiver")
    [held] = receiver.snapshot()

    operator.kill()  # SIGKILL while the receiver holds the delivery: no answer reached the operator
    receiver.release()
    operator.start()
    promote(control_plane, namespace, "p1", "support-cand")
    wait_status(control_plane, namespace, "hooks", "both delivered", delivered=2, backlog=0)

    expected = expected_deliveries(operator, set(REFERENCE_EVENTS))
    assert list(receiver.unique()) == list(expected)
    assert held.delivery_id == next(iter(expected))
    # At least once: the held delivery came again after the restart, with the same delivery_id.
    assert [r.delivery_id for r in receiver.verified()].count(held.delivery_id) >= 2


def test_a_wrong_secret_is_detected_by_the_receiver_until_the_key_is_fixed(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, quickstart_events())
    receiver = Receiver(secret="the receiver's key").start()
    apply(
        control_plane,
        namespace,
        secret("hooks-key", "a different key"),
        subscription("hooks", receiver.url, REFERENCE_EVENTS),
    )
    promote(control_plane, namespace, "p0", "support-base")
    failing = wait_for(
        lambda: (s := status_of(control_plane, namespace, "hooks")).get("lastFailure") == "HTTP 401" and s,
        timeout=60,
        what="the receiver to refuse the signature",
    )
    assert condition({"status": failing}, "Ready")["reason"] == "DeliveryFailing"
    assert receiver.snapshot()
    assert not receiver.verified()  # detected: not one signature verified

    apply(control_plane, namespace, secret("hooks-key", receiver.secret))  # the key is fixed
    wait_status(control_plane, namespace, "hooks", "delivered with the fixed key", delivered=1, backlog=0)
    assert list(receiver.unique()) == list(expected_deliveries(operator, set(REFERENCE_EVENTS)))


def test_our_events_in_cloudevents_format(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, run_events("support-base", AGENT, ENV, 1, latency_ms=1000))
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 1, latency_ms=1200))
    receiver = Receiver(secret="ce-key").start()
    events = [
        "request.failed",
        "approval.requested",
        "approval.accepted",
        "promote.blocked",
        "promote.window_closed",
    ]
    apply(
        control_plane,
        namespace,
        secret("hooks-key", receiver.secret),
        subscription("hooks", receiver.url, events, format="cloudevents"),
    )
    assert promote(control_plane, namespace, "base", "support-base")["status"]["phase"] == "Promoted"
    assert promote(control_plane, namespace, "nope", "no-such-release")["status"]["phase"] == "Failed"

    apply(control_plane, namespace, policy("gate", **GATE, approval={"minApprovals": 1}))
    grant_promoters(control_plane, namespace)
    waiting = alice_requests_ship(control_plane, namespace)
    apply_as(control_plane, namespace, "bob", approval("by-bob", waiting))
    assert wait_decided(control_plane, namespace, "ship")["status"]["phase"] == "Promoted"

    apply(control_plane, namespace, policy("gate", **GATE, promotionWindows=[freeze_started_a_minute_ago()]))
    frozen = promote(control_plane, namespace, "frozen", "support-base")
    assert frozen["status"]["phase"] == "Blocked"

    wait_for(lambda: len(receiver.unique()) == 5, timeout=60, what="five notifications")
    expected = expected_deliveries(operator, set(events))
    assert list(receiver.unique()) == list(expected)
    assert list(expected.values()) == [
        "request.failed",
        "approval.requested",
        "approval.accepted",
        "promote.blocked",
        "promote.window_closed",
    ]
    documents = {r.event: r for r in receiver.unique().values()}
    for event, entry in documents.items():
        assert entry.headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
        assert entry.body["specversion"] == "1.0"
        assert entry.body["id"] == entry.delivery_id
        assert entry.body["type"] == f"dev.flightdeck.{event}"
        assert entry.body["source"] == f"/apis/flightdeck.dev/v1alpha1/namespaces/{namespace}"
        assert entry.body["time"].endswith("Z")
    failed = documents["request.failed"].body["data"]
    assert (failed["request"], failed["failure_reason"], failed["release_id"]) == (
        "nope",
        "ReleaseNotFound",
        "no-such-release",
    )
    requested = documents["approval.requested"].body["data"]
    assert (requested["request"], requested["required_approvals"], requested["actor"]) == ("ship", 1, "alice")
    accepted = documents["approval.accepted"].body["data"]
    assert (accepted["approver"], accepted["outcome"], accepted["request"]) == ("bob", "Accepted", "ship")
    closed = documents["promote.window_closed"].body["data"]
    assert closed["next_open"] is not None
    assert documents["promote.blocked"].body["data"]["action_id"] == closed["action_id"]


def test_a_slow_receiver_never_delays_decisions(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, quickstart_events())
    receiver = Receiver(secret="slow").start()
    receiver.hold()
    apply(
        control_plane,
        namespace,
        secret("hooks-key", receiver.secret),
        subscription("hooks", receiver.url, REFERENCE_EVENTS),
    )
    promote(control_plane, namespace, "p0", "support-base")
    wait_for(receiver.holding.is_set, timeout=60, what="the receiver to hold a delivery")
    # The receiver has not answered; every decision is still made.
    for n, release in enumerate(["support-cand", "support-base", "support-cand"], start=1):
        assert promote(control_plane, namespace, f"p{n}", release)["status"]["phase"] == "Promoted"
    assert len(receiver.snapshot()) == 1  # still holding the first one
    receiver.release()
    wait_status(control_plane, namespace, "hooks", "all delivered", delivered=4, backlog=0)
    assert list(receiver.unique()) == list(expected_deliveries(operator, set(REFERENCE_EVENTS)))


def test_a_subscription_waits_for_its_secret_and_refuses_hidden_link_local_urls(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    quickstart(control_plane, namespace, max_cost=10.0)
    ingest(operator.store, quickstart_events())
    receiver = Receiver(secret="late-key").start()
    apply(
        control_plane,
        namespace,
        subscription("hooks", receiver.url, REFERENCE_EVENTS),
        # 2852039166 is 169.254.169.254 to a resolver; the CRD's rules see only the text.
        subscription("sneaky", "http://2852039166/latest/meta-data/", REFERENCE_EVENTS),
    )
    promote(control_plane, namespace, "p0", "support-base")
    waiting = wait_status(control_plane, namespace, "hooks", "a backlog waiting for the Secret", backlog=1)
    ready = condition({"status": waiting}, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotFound")
    assert condition({"status": waiting}, "Reconciling")["status"] == "True"
    sneaky = wait_for(
        lambda: status_of(control_plane, namespace, "sneaky").get("conditions"), what="sneaky's status"
    )
    invalid = condition({"status": {"conditions": sneaky}}, "Ready")
    assert (invalid["reason"], condition({"status": {"conditions": sneaky}}, "Stalled")["status"]) == (
        "InvalidSpec",
        "True",
    )
    assert "link-local" in invalid["message"]

    apply(control_plane, namespace, secret("hooks-key", receiver.secret))
    wait_status(control_plane, namespace, "hooks", "delivered once the Secret exists", delivered=1, backlog=0)
    assert list(receiver.unique()) == list(expected_deliveries(operator, set(REFERENCE_EVENTS)))
    assert status_of(control_plane, namespace, "sneaky").get("backlog", 0) == 0
