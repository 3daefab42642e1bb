"""Notifications (pure): which events a ledger entry raises, their bodies, signatures and retry delays.

Formats (docs/notifications.md):

- ``flightdeck`` (default), FlightDeck 1.3.0's webhook body: ``{"event", "delivery_id",
  "created_at", "data"}`` as compact JSON with sorted keys, UTF-8, and the headers ``Content-Type:
  application/json``, ``X-FlightDeck-Signature: sha256=<HMAC-SHA256 of the raw body>``,
  ``X-FlightDeck-Event``, ``X-FlightDeck-Delivery``, ``User-Agent: FlightDeck-Webhook/1``;
- ``cloudevents``: a CloudEvents 1.0 structured-mode JSON event (``application/cloudevents+json``)
  carrying the same ``data``, signed the same way.

Every body is a function of the ledger entry and the event only, so a retry sends the same bytes
and the same ``delivery_id`` (derived from the entry's hash), and every subscriber gets the same
body, as in the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import JsonValue

from .ledger import LedgerEntry, LedgerKind

USER_AGENT: Final = "FlightDeck-Webhook/1"
SIGNATURE_HEADER: Final = "X-FlightDeck-Signature"
EVENT_HEADER: Final = "X-FlightDeck-Event"
DELIVERY_HEADER: Final = "X-FlightDeck-Delivery"
CLOUDEVENTS_CONTENT_TYPE: Final = "application/cloudevents+json; charset=utf-8"
CLOUDEVENTS_TYPE_PREFIX: Final = "dev.flightdeck."


class NotificationEvent(StrEnum):
    """What a subscription can ask for. The first three are the reference's."""

    PROMOTE_SUCCEEDED = "promote.succeeded"
    ROLLBACK_SUCCEEDED = "rollback.succeeded"
    PROMOTE_BLOCKED = "promote.blocked"
    # Ours: a rollback the policy blocked (the reference notifies none).
    ROLLBACK_BLOCKED = "rollback.blocked"
    # Ours: a promote refused because the policy's promotion windows were closed (a freeze); it is
    # also a promote.blocked, so subscribers of the reference's events hear of it too.
    PROMOTE_WINDOW_CLOSED = "promote.window_closed"
    # Ours: a request waits for approvals of a decision; an approval was accepted; an approval does
    # not count (rejected, blocked, or stale: it approved a decision that has since changed).
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_ACCEPTED = "approval.accepted"
    APPROVAL_REJECTED = "approval.rejected"
    # Ours: a request that could not be evaluated (unknown release, nothing to roll back, ...).
    REQUEST_FAILED = "request.failed"
    # Ours: a live release failed verification (confirmed), whether the operator rolls it back or
    # only reports it; the rollback itself is a rollback.succeeded / rollback.blocked.
    VERIFICATION_FAILED = "verification.failed"


class NotificationFormat(StrEnum):
    FLIGHTDECK = "flightdeck"
    CLOUDEVENTS = "cloudevents"


REFERENCE_EVENTS: Final = frozenset(
    {
        NotificationEvent.PROMOTE_SUCCEEDED,
        NotificationEvent.ROLLBACK_SUCCEEDED,
        NotificationEvent.PROMOTE_BLOCKED,
    }
)
ALL_EVENTS: Final = tuple(sorted(e.value for e in NotificationEvent))

# What the reference refuses as a webhook host (cloud metadata services).
METADATA_HOSTNAMES: Final = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
)
_BLOCKED_BY_WINDOW: Final = "PromotionWindowClosed"
_HEX_PART: Final = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL_PART: Final = re.compile(r"0[0-7]*")
_DECIMAL_PART: Final = re.compile(r"[1-9][0-9]*")


# --- which events an entry raises -------------------------------------------------------------------


def events_for(entry: LedgerEntry) -> tuple[NotificationEvent, ...]:
    """The events one ledger entry raises (none for policy, pricing and pointer bookkeeping)."""
    details = entry.details or {}
    if entry.kind in (LedgerKind.PROMOTE, LedgerKind.ROLLBACK):
        promote = entry.kind is LedgerKind.PROMOTE
        if entry.pointer_changed:
            return (NotificationEvent.PROMOTE_SUCCEEDED if promote else NotificationEvent.ROLLBACK_SUCCEEDED,)
        if not promote:
            return (NotificationEvent.ROLLBACK_BLOCKED,)
        if details.get("blocked_by") == _BLOCKED_BY_WINDOW:
            return (NotificationEvent.PROMOTE_BLOCKED, NotificationEvent.PROMOTE_WINDOW_CLOSED)
        return (NotificationEvent.PROMOTE_BLOCKED,)
    if entry.kind is LedgerKind.APPROVAL:
        accepted = details.get("outcome") == "Accepted"
        return (NotificationEvent.APPROVAL_ACCEPTED if accepted else NotificationEvent.APPROVAL_REJECTED,)
    if entry.kind is LedgerKind.APPROVAL_REQUESTED:
        return (NotificationEvent.APPROVAL_REQUESTED,)
    if entry.kind is LedgerKind.REQUEST_FAILED:
        return (NotificationEvent.REQUEST_FAILED,)
    if entry.kind is LedgerKind.VERIFICATION_FAILED:
        return (NotificationEvent.VERIFICATION_FAILED,)
    return ()


def event_data(entry: LedgerEntry, event: NotificationEvent) -> dict[str, JsonValue]:
    """The ``data`` object: the reference's keys for its three events; ours add what they are about."""
    details = entry.details or {}
    window = details.get("window") or (entry.evidence.window if entry.evidence is not None else None)
    reasons: list[JsonValue] = list(entry.policy_result.reasons) if entry.policy_result is not None else []
    if entry.kind in (LedgerKind.PROMOTE, LedgerKind.ROLLBACK):
        data: dict[str, JsonValue] = {
            "action_id": details.get("action_id"),
            "release_id": entry.release_id,
            "agent_id": entry.agent_id,
            "environment": entry.environment,
            "window": window,
            "actor": entry.actor,
            "reason": entry.reason,
            "baseline_release_id": entry.baseline_release_id,
        }
        if not entry.pointer_changed:
            data["policy_reasons"] = reasons
        if event is NotificationEvent.PROMOTE_WINDOW_CLOSED:
            promotion_window = details.get("promotion_window")
            data["next_open"] = (
                promotion_window.get("next_open") if isinstance(promotion_window, dict) else None
            )
        if event not in REFERENCE_EVENTS:
            data |= _where(entry)
        return data
    if entry.kind is LedgerKind.APPROVAL:
        return {
            "approval": details.get("approval"),
            "approver": details.get("approver"),
            "outcome": details.get("outcome"),
            "message": details.get("message"),
            "reason": entry.reason,
            "request": details.get("request"),
            "release_id": entry.release_id,
            "agent_id": entry.agent_id,
            "environment": entry.environment,
            **_where(entry),
        }
    if entry.kind is LedgerKind.APPROVAL_REQUESTED:
        return {
            "request": details.get("request"),
            "release_id": entry.release_id,
            "agent_id": entry.agent_id,
            "environment": entry.environment,
            "window": window,
            "actor": entry.actor,
            "reason": entry.reason,
            "baseline_release_id": entry.baseline_release_id,
            "required_approvals": details.get("required_approvals"),
            "decision_digest": details.get("decision_digest"),
            "policy_reasons": reasons,
            **_where(entry),
        }
    if entry.kind is LedgerKind.VERIFICATION_FAILED:
        return {
            "release_id": entry.release_id,
            "agent_id": entry.agent_id,
            "environment": entry.environment,
            "actor": entry.actor,
            "reason": entry.reason,
            "action": details.get("action"),
            "rollback_to": details.get("target"),
            "request": details.get("request"),
            "held": details.get("held"),
            "consecutive_failures": details.get("consecutive_failures"),
            "policy_reasons": details.get("reasons"),
            **_where(entry),
        }
    return {  # request.failed
        "request": details.get("request"),
        "action": details.get("action"),
        "release_id": entry.release_id,
        "environment": entry.environment,
        "window": window,
        "actor": entry.actor,
        "reason": entry.reason,
        "failure_reason": details.get("failure_reason"),
        "message": details.get("message"),
        **_where(entry),
    }


def _where(entry: LedgerEntry) -> dict[str, JsonValue]:
    return {"namespace": entry.namespace, "pointer": entry.pointer, "ledger_seq": entry.seq}


# --- bodies and signatures ----------------------------------------------------------------------------


def delivery_id(entry: LedgerEntry, event: NotificationEvent) -> str:
    """32 hex characters (the reference's uuid4().hex shape), the same on every retry."""
    return hashlib.sha256(f"{entry.hash}/{event.value}".encode()).hexdigest()[:32]


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def body(entry: LedgerEntry, event: NotificationEvent, fmt: NotificationFormat) -> bytes:
    data = event_data(entry, event)
    if fmt is NotificationFormat.CLOUDEVENTS:
        return _compact(
            {
                "specversion": "1.0",
                "id": delivery_id(entry, event),
                "source": f"/apis/flightdeck.dev/v1alpha1/namespaces/{entry.namespace}",
                "type": CLOUDEVENTS_TYPE_PREFIX + event.value,
                "subject": entry.pointer or str((entry.details or {}).get("request") or ""),
                "time": entry.created_at.isoformat().replace("+00:00", "Z"),
                "datacontenttype": "application/json",
                "data": data,
            }
        )
    return _compact(
        {
            "event": event.value,
            "delivery_id": delivery_id(entry, event),
            "created_at": entry.created_at.isoformat(),
            "data": data,
        }
    )


def signature(secret: str, payload: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw body with the subscription's secret (UTF-8)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def headers(
    entry: LedgerEntry, event: NotificationEvent, fmt: NotificationFormat, payload: bytes, secret: str
) -> dict[str, str]:
    return {
        "Content-Type": CLOUDEVENTS_CONTENT_TYPE
        if fmt is NotificationFormat.CLOUDEVENTS
        else "application/json",
        SIGNATURE_HEADER: signature(secret, payload),
        EVENT_HEADER: event.value,
        DELIVERY_HEADER: delivery_id(entry, event),
        "User-Agent": USER_AGENT,
    }


def verify_signature(secret: str, payload: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw body, compare in constant time."""
    return header is not None and hmac.compare_digest(signature(secret, payload), header)


def retry_delay(consecutive_failures: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds before the next attempt after ``consecutive_failures`` failures in a row: doubling
    from ``base`` up to ``cap``; ``jitter`` in [0, 1) takes up to a fifth off, so receivers that
    come back are not hit by every subscription at once."""
    exponent = max(0, min(consecutive_failures - 1, 32))
    return min(cap, base * 2.0**exponent) * (1.0 - 0.2 * jitter)


# --- what may be subscribed ---------------------------------------------------------------------------


def check_events(events: Iterable[str]) -> None:
    """The reference's message for unknown events, with ours in the allowed list."""
    bad = [e for e in events if e not in ALL_EVENTS]
    if bad:
        raise ValueError(f"Unsupported event(s): {sorted(set(bad))}. Allowed: {list(ALL_EVENTS)}")


def check_webhook_url(url: str) -> None:
    """The reference's SSRF refusals, with its messages: schemes other than http(s), no host, cloud
    metadata hostnames, link-local addresses. Also refused (the reference lets them through): a
    metadata hostname with a trailing dot, and link-local addresses spelled as an IPv4-mapped IPv6
    address or in inet_aton's legacy forms (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``), which resolvers
    accept. Names that resolve to link-local addresses are refused at delivery time."""
    try:
        parsed = urlsplit(url)
        host = (parsed.hostname or "").strip().lower()
    except ValueError as exc:
        raise ValueError(f"Invalid webhook URL: {exc}") from exc
    scheme = (parsed.scheme or "").lower()
    if scheme not in {"http", "https"}:
        raise ValueError(f"Webhook URL scheme must be http or https (got {scheme!r}).")
    if not host:
        raise ValueError("Webhook URL must include a host.")
    if host.rstrip(".") in METADATA_HOSTNAMES:
        raise ValueError("Webhook URL targets a cloud-metadata hostname; refusing to register.")
    if is_link_local(host):
        raise ValueError("Webhook URL targets a link-local address (cloud-metadata range); refusing.")


def is_link_local(host: str) -> bool:
    """Whether ``host`` (an IP literal, in any spelling a resolver accepts) is link-local."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = _legacy_ipv4(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton's forms: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x)."""
    parts = host.rstrip(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        if _HEX_PART.fullmatch(part):
            numbers.append(int(part[2:] or "0", 16))
        elif _OCTAL_PART.fullmatch(part):
            numbers.append(int(part, 8))
        elif _DECIMAL_PART.fullmatch(part):
            numbers.append(int(part, 10))
        else:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for position, number in enumerate(head):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)
