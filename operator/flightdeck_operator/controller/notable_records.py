"""Pure: ledger records of what is not a decision but must be notified (``request.failed``,
``approval.requested``). The ledger is the outbox's only source, so these are ledgered too: once
each (idempotency keys), never as a promote or rollback (``/v1/actions`` and the pointers ignore
them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from flightdeck_operator.api.v1alpha1 import ApprovalPolicy, ReleasePointerSpec
from flightdeck_operator.controller.pending import PendingRequest
from flightdeck_operator.controller.resolve import Failure
from flightdeck_operator.engine.decide import Decision
from flightdeck_operator.engine.ledger import (
    LedgerKind,
    LedgerRecord,
    approval_requested_key,
    policy_digest,
    request_failed_key,
)


def _text(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    return None if value is None else str(value)


def failure_record(
    namespace: str,
    pointer: str,
    request: PendingRequest,
    failure: Failure,
    pointer_spec: ReleasePointerSpec | None,
    now: dt.datetime,
) -> LedgerRecord:
    """A request that ended Failed without being evaluated (the spec may not even validate, so it is
    read as it is)."""
    spec = request.spec
    requested_by = spec.get("requestedBy") or {}
    return LedgerRecord(
        kind=LedgerKind.REQUEST_FAILED,
        idempotency_key=request_failed_key(request.uid),
        actor=_text(spec, "actor") or _text(requested_by, "username") or "unknown",
        namespace=namespace,
        pointer=pointer or None,
        agent_id=pointer_spec.agent_id if pointer_spec is not None else None,
        environment=pointer_spec.environment if pointer_spec is not None else None,
        release_id=_text(spec, "release"),
        reason=_text(spec, "reason") or "",
        details={
            "request": request.name,
            "request_uid": request.uid,
            "action": _text(spec, "action") or "promote",
            "window": _text(spec, "window"),
            "failure_reason": failure.reason.value,
            "message": failure.message,
        },
        created_at=now,
    )


def approval_requested_record(
    namespace: str,
    pointer: str,
    request: PendingRequest,
    decision: Decision,
    gate: ApprovalPolicy,
    digest: str,
    *,
    actor: str,
    reason: str,
    window: str,
) -> LedgerRecord:
    """A request now waits for ``gate.min_approvals`` approvals of the decision ``digest``."""
    return LedgerRecord(
        kind=LedgerKind.APPROVAL_REQUESTED,
        idempotency_key=approval_requested_key(request.uid, digest),
        actor=actor,
        namespace=namespace,
        pointer=pointer,
        agent_id=decision.agent_id,
        environment=decision.environment,
        release_id=decision.target_release_id,
        baseline_release_id=decision.baseline_release_id,
        reason=reason,
        policy_result=decision.policy_result,
        evidence=decision.evidence,
        policy_digest=policy_digest(decision.policy),
        details={
            "request": request.name,
            "request_uid": request.uid,
            "window": window,
            "required_approvals": gate.min_approvals,
            "decision_digest": digest,
        },
        created_at=decision.decided_at,
    )
