"""Notifications, pure: which events a ledger entry raises, the reference's body, headers and
signature, CloudEvents, the retry delays and the reference's URL and event refusals."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest

from flightdeck_operator.engine import notifications as n
from flightdeck_operator.engine.ledger import GENESIS_HASH, LedgerKind, seal
from flightdeck_operator.engine.models import PolicyResult
from flightdeck_operator.engine.notifications import NotificationEvent as E
from flightdeck_operator.engine.notifications import NotificationFormat
from tests.factories import NOW
from tests.unit.test_ledger import record

BLOCKED = PolicyResult(
    passed=False, reasons=("candidate cost_per_run_usd 5.000000 exceeds max 4.000000",), evaluated_at=NOW
)


def entry(**overrides: object) -> n.LedgerEntry:
    fields: dict[str, object] = {
        "details": {"action_id": "act_0123456789ab", "request": "promote-1", "window": "7d"},
        **overrides,
    }
    return seal(record(1, **fields), seq=7, prev_hash=GENESIS_HASH)


@pytest.mark.parametrize(
    ("overrides", "events"),
    [
        ({}, (E.PROMOTE_SUCCEEDED,)),
        ({"kind": LedgerKind.ROLLBACK}, (E.ROLLBACK_SUCCEEDED,)),
        ({"pointer_changed": False, "policy_result": BLOCKED}, (E.PROMOTE_BLOCKED,)),
        ({"pointer_changed": False, "kind": LedgerKind.ROLLBACK}, (E.ROLLBACK_BLOCKED,)),
        (
            {"pointer_changed": False, "details": {"blocked_by": "PromotionWindowClosed"}},
            (E.PROMOTE_BLOCKED, E.PROMOTE_WINDOW_CLOSED),
        ),
        (
            {"kind": LedgerKind.APPROVAL, "pointer_changed": False, "details": {"outcome": "Accepted"}},
            (E.APPROVAL_ACCEPTED,),
        ),
        (
            {"kind": LedgerKind.APPROVAL, "pointer_changed": False, "details": {"outcome": "Stale"}},
            (E.APPROVAL_REJECTED,),
        ),
        ({"kind": LedgerKind.APPROVAL_REQUESTED, "pointer_changed": False}, (E.APPROVAL_REQUESTED,)),
        ({"kind": LedgerKind.REQUEST_FAILED, "pointer_changed": False}, (E.REQUEST_FAILED,)),
        ({"kind": LedgerKind.POLICY_CHANGE, "pointer_changed": False}, ()),
        ({"kind": LedgerKind.POINTER_RETIRED, "pointer_changed": False}, ()),
        ({"kind": LedgerKind.VERIFICATION_FAILED, "pointer_changed": False}, (E.VERIFICATION_FAILED,)),
        ({"kind": LedgerKind.RELEASE_SOAKED, "pointer_changed": False}, ()),
    ],
)
def test_events_of_a_ledger_entry(overrides: dict[str, object], events: tuple[E, ...]) -> None:
    assert n.events_for(seal(record(1, **overrides), seq=1, prev_hash=GENESIS_HASH)) == events


def test_the_reference_body_headers_and_signature() -> None:
    blocked = entry(pointer_changed=False, policy_result=BLOCKED, baseline_release_id="rel_0")
    payload = n.body(blocked, E.PROMOTE_BLOCKED, NotificationFormat.FLIGHTDECK)
    # Compact JSON, sorted keys, the reference's data keys only for its own events.
    assert payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    document = json.loads(payload)
    assert list(document) == ["created_at", "data", "delivery_id", "event"]
    assert document["event"] == "promote.blocked"
    assert document["created_at"] == "2026-05-05T12:00:01+00:00"
    assert document["data"] == {
        "action_id": "act_0123456789ab",
        "actor": "alice",
        "agent_id": "agent_support",
        "baseline_release_id": "rel_0",
        "environment": "prod",
        "policy_reasons": ["candidate cost_per_run_usd 5.000000 exceeds max 4.000000"],
        "reason": "promotion 1",
        "release_id": "rel_1",
        "window": "7d",
    }
    headers = n.headers(blocked, E.PROMOTE_BLOCKED, NotificationFormat.FLIGHTDECK, payload, "s3cret")
    expected = "sha256=" + hmac.new(b"s3cret", payload, hashlib.sha256).hexdigest()
    assert headers == {
        "Content-Type": "application/json",
        "X-FlightDeck-Signature": expected,
        "X-FlightDeck-Event": "promote.blocked",
        "X-FlightDeck-Delivery": document["delivery_id"],
        "User-Agent": "FlightDeck-Webhook/1",
    }
    assert n.verify_signature("s3cret", payload, expected)
    assert not n.verify_signature("wrong", payload, expected)
    assert not n.verify_signature("s3cret", payload + b" ", expected)
    assert not n.verify_signature("s3cret", payload, None)


def test_a_retry_sends_the_same_bytes_and_delivery_id() -> None:
    first, again = entry(), entry()
    assert n.body(first, E.PROMOTE_SUCCEEDED, NotificationFormat.FLIGHTDECK) == n.body(
        again, E.PROMOTE_SUCCEEDED, NotificationFormat.FLIGHTDECK
    )
    delivery_id = n.delivery_id(first, E.PROMOTE_SUCCEEDED)
    assert len(delivery_id) == 32
    assert int(delivery_id, 16) >= 0
    # Another event of the same entry (window closed) or another entry: another id.
    assert delivery_id != n.delivery_id(first, E.PROMOTE_WINDOW_CLOSED)
    other = seal(record(2), seq=8, prev_hash=first.hash)
    assert delivery_id != n.delivery_id(other, E.PROMOTE_SUCCEEDED)


def test_cloudevents_structured_json() -> None:
    succeeded = entry()
    payload = n.body(succeeded, E.PROMOTE_SUCCEEDED, NotificationFormat.CLOUDEVENTS)
    document = json.loads(payload)
    assert document == {
        "specversion": "1.0",
        "id": n.delivery_id(succeeded, E.PROMOTE_SUCCEEDED),
        "source": "/apis/flightdeck.dev/v1alpha1/namespaces/team-a",
        "type": "dev.flightdeck.promote.succeeded",
        "subject": "support-prod",
        "time": "2026-05-05T12:00:01Z",
        "datacontenttype": "application/json",
        "data": json.loads(n.body(succeeded, E.PROMOTE_SUCCEEDED, NotificationFormat.FLIGHTDECK))["data"],
    }
    headers = n.headers(succeeded, E.PROMOTE_SUCCEEDED, NotificationFormat.CLOUDEVENTS, payload, "k")
    assert headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
    assert n.verify_signature("k", payload, headers["X-FlightDeck-Signature"])


def test_our_events_say_where_they_happened() -> None:
    window = entry(
        pointer_changed=False,
        details={
            "blocked_by": "PromotionWindowClosed",
            "promotion_window": {"next_open": "2026-05-05T13:00:00Z"},
        },
    )
    data = n.event_data(window, E.PROMOTE_WINDOW_CLOSED)
    assert (data["next_open"], data["namespace"], data["pointer"], data["ledger_seq"]) == (
        "2026-05-05T13:00:00Z",
        "team-a",
        "support-prod",
        7,
    )
    assert "namespace" not in n.event_data(window, E.PROMOTE_BLOCKED)  # the reference's keys only
    failed = entry(
        kind=LedgerKind.REQUEST_FAILED,
        pointer_changed=False,
        details={
            "request": "r1",
            "action": "promote",
            "failure_reason": "ReleaseNotFound",
            "message": "Unknown release: x",
        },
    )
    assert n.event_data(failed, E.REQUEST_FAILED) | {"ledger_seq": 0} == {
        "request": "r1",
        "action": "promote",
        "release_id": "rel_1",
        "environment": "prod",
        "window": None,
        "actor": "alice",
        "reason": "promotion 1",
        "failure_reason": "ReleaseNotFound",
        "message": "Unknown release: x",
        "namespace": "team-a",
        "pointer": "support-prod",
        "ledger_seq": 0,
    }


def test_retry_delays_double_up_to_the_cap_with_jitter() -> None:
    delays = [n.retry_delay(failures, base=1.0, cap=60.0, jitter=0.0) for failures in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert n.retry_delay(3, base=1.0, cap=60.0, jitter=0.999) == pytest.approx(4 * 0.8, rel=1e-3)
    assert n.retry_delay(10_000, base=1.0, cap=300.0, jitter=0.0) == 300


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/x", "Webhook URL scheme must be http or https (got 'ftp')."),
        ("file:///etc/passwd", "Webhook URL scheme must be http or https (got 'file')."),
        ("hooks.example.com/x", "Webhook URL scheme must be http or https (got '')."),
        ("http:///x", "Webhook URL must include a host."),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "Webhook URL targets a cloud-metadata hostname; refusing to register.",
        ),
        ("http://Metadata/", "Webhook URL targets a cloud-metadata hostname; refusing to register."),
        (
            "http://instance-data.ec2.internal./",
            "Webhook URL targets a cloud-metadata hostname; refusing to register.",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
        ),
        (
            "http://[fe80::1]:8080/",
            "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
        ),
        # Spellings resolvers accept that the reference let through.
        ("http://2852039166/", "Webhook URL targets a link-local address (cloud-metadata range); refusing."),
        (
            "http://0xa9.0xfe.0xa9.0xfe/",
            "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
        ),
        (
            "http://0251.0376.0251.0376/",
            "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
        ),
        (
            "http://169.254.43518/",
            "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
        ),
        (
            "http://[::ffff:169.254.169.254]/",
            "Webhook URL targets a link-local address (cloud-metadata range); refusing.",
        ),
        ("http://[::1", "Invalid webhook URL: Invalid IPv6 URL"),
    ],
)
def test_refused_urls_with_the_reference_messages(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        n.check_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/flightdeck",
        "http://127.0.0.1:9000/hook",
        "http://10.1.2.3/x",
        "http://[::1]:80/",
        "http://receiver.svc:8080",
    ],
)
def test_private_and_loopback_receivers_are_allowed_as_in_the_reference(url: str) -> None:
    n.check_webhook_url(url)


def test_unknown_events_are_refused_with_the_allowed_list() -> None:
    n.check_events(["promote.succeeded", "rollback.blocked"])
    message = (
        "Unsupported event(s): ['nope', 'promote.started']. Allowed: ['approval.accepted', "
        "'approval.rejected', 'approval.requested', 'promote.blocked', 'promote.succeeded', "
        "'promote.window_closed', 'request.failed', 'rollback.blocked', 'rollback.succeeded', "
        "'verification.failed']"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        n.check_events(["promote.succeeded", "promote.started", "promote.started", "nope"])
    assert set(E) >= n.REFERENCE_EVENTS


def test_verification_failed_says_what_was_done() -> None:
    failed = entry(
        kind=LedgerKind.VERIFICATION_FAILED,
        pointer_changed=False,
        actor="system:serviceaccount:flightdeck:flightdeck-operator",
        details={
            "action": "Rollback",
            "target": "rel_0",
            "request": "support-prod-auto-rollback-7",
            "held": None,
            "consecutive_failures": 3,
            "reasons": ["live error_rate 0.2100 exceeds max 0.0500"],
        },
    )
    data = n.event_data(failed, E.VERIFICATION_FAILED)
    assert (data["action"], data["rollback_to"], data["request"], data["policy_reasons"]) == (
        "Rollback",
        "rel_0",
        "support-prod-auto-rollback-7",
        ["live error_rate 0.2100 exceeds max 0.0500"],
    )
    assert (data["release_id"], data["pointer"], data["ledger_seq"]) == ("rel_1", "support-prod", 7)
