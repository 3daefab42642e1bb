"""The PromotionRequests the operator creates itself (pure): automatic rollbacks of a release that
failed verification, and promotions of a release that soaked on the pointer another one follows.

Each has a **deterministic name** derived from the ledger entry that caused it, so a restart (or a
crash between the ledger entry and the create) creates the same object again, which the API server
refuses as a duplicate: never two. The operator's identity is recorded by the admission webhook in
``spec.requestedBy`` (from the API server's authentication, like anyone's), so a person cannot make
a request pass for the operator's: a request counts as automatic only when it carries the label
below **and** was created by the operator's own identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from flightdeck_operator.api.v1alpha1 import API_VERSION, PROMOTION_REQUEST, Action

AUTOMATION_LABEL: Final = "flightdeck.dev/automation"
POINTER_LABEL: Final = "flightdeck.dev/pointer"
# The ledger entry (verification-failed or release-soaked) the request answers.
TRIGGER_ANNOTATION: Final = "flightdeck.dev/trigger-ledger-seq"
ACTOR: Final = "flightdeck-operator"
MAX_NAME: Final = 253
MAX_REASON: Final = 1024


class Automation(StrEnum):
    ROLLBACK = "verification-rollback"
    PROMOTION = "pipeline-promotion"


def automation_name(pointer: str, automation: Automation, seq: int, attempt: int = 1) -> str:
    """``<pointer>-auto-rollback-<seq>`` or ``<pointer>-auto-promote-<seq>[-<attempt>]``: a valid
    object name for any pointer name (a long one is cut and made unique by a hash of it)."""
    word = "auto-rollback" if automation is Automation.ROLLBACK else "auto-promote"
    suffix = f"-{word}-{seq}" + (f"-{attempt}" if attempt > 1 else "")
    if len(pointer) + len(suffix) <= MAX_NAME:
        return pointer + suffix
    digest = hashlib.sha256(pointer.encode()).hexdigest()[:8]
    head = pointer[: MAX_NAME - len(suffix) - len(digest) - 1].rstrip("-.")
    return f"{head}-{digest}{suffix}"


def _body(
    namespace: str,
    name: str,
    automation: Automation,
    pointer: str,
    trigger_seq: int,
    spec: dict[str, Any],
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": PROMOTION_REQUEST.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {AUTOMATION_LABEL: automation.value, POINTER_LABEL: pointer[:63].rstrip("-.")},
            "annotations": {TRIGGER_ANNOTATION: str(trigger_seq)},
        },
        "spec": spec,
    }


def rollback_request(
    namespace: str,
    pointer: str,
    *,
    failing: str,
    target: str,
    move_seq: int,
    trigger_seq: int,
    reason: str,
    identity: str,
) -> dict[str, Any]:
    """Roll ``pointer`` back from ``failing`` to ``target``; decided only while ``failing`` is still
    live (``expectedCurrentRelease``), never a break-glass."""
    return _body(
        namespace,
        automation_name(pointer, Automation.ROLLBACK, move_seq),
        Automation.ROLLBACK,
        pointer,
        trigger_seq,
        {
            "pointer": pointer,
            "action": Action.ROLLBACK.value,
            "release": target,
            "expectedCurrentRelease": failing,
            "reason": reason[:MAX_REASON],
            "actor": ACTOR,
            "requestedBy": {"username": identity},
        },
    )


def promotion_request(
    namespace: str,
    follower: str,
    *,
    release: str,
    current: str | None,
    trigger_seq: int,
    attempt: int,
    reason: str,
    identity: str,
) -> dict[str, Any]:
    """Promote ``release`` on ``follower``, decided only while ``current`` is still live there."""
    spec: dict[str, Any] = {
        "pointer": follower,
        "action": Action.PROMOTE.value,
        "release": release,
        "reason": reason[:MAX_REASON],
        "actor": ACTOR,
        "requestedBy": {"username": identity},
    }
    if current is not None:
        spec["expectedCurrentRelease"] = current
    return _body(
        namespace,
        automation_name(follower, Automation.PROMOTION, trigger_seq, attempt),
        Automation.PROMOTION,
        follower,
        trigger_seq,
        spec,
    )


def created_by(body: Mapping[str, Any]) -> str | None:
    """``spec.requestedBy.username`` of a PromotionRequest body."""
    requested = (body.get("spec") or {}).get("requestedBy")
    username = requested.get("username") if isinstance(requested, Mapping) else None
    return None if username is None else str(username)


def is_ours(found: Mapping[str, Any], wanted: Mapping[str, Any], identity: str) -> bool:
    """Whether ``found`` (an object of the wanted name) is the request the operator creates: its
    spec asks the same, and the operator's identity created it (not someone squatting the name)."""
    spec, expected = found.get("spec") or {}, wanted["spec"]
    same = all(spec.get(key) == value for key, value in expected.items() if key != "requestedBy")
    return same and created_by(found) == identity


def automation_details(
    labels: Mapping[str, str], annotations: Mapping[str, str], requested_by: str | None, identity: str | None
) -> dict[str, Any] | None:
    """What the ledger records about a request the operator created (None for anyone else's)."""
    kind = labels.get(AUTOMATION_LABEL)
    if kind not in {a.value for a in Automation} or identity is None or requested_by != identity:
        return None
    trigger = annotations.get(TRIGGER_ANNOTATION, "")
    return {"kind": kind, "trigger_seq": int(trigger) if trigger.isdigit() else None}
