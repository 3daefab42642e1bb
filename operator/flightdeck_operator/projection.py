"""Pure builders: a decision into a ledger record, and ledger entries into object statuses.

The ledger is the commit point; everything the API server shows about a decision (the request's
status, the pointer's status) is a projection of ledger entries built here, so a projection
interrupted by a crash is finished later from the ledger alone, with the same result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from flightdeck_operator.api.v1alpha1 import (
    Action,
    Evidence,
    Outcome,
    PointerHistoryEntry,
    RequestRef,
    RunSummary,
    to_wire,
)
from flightdeck_operator.api.v1alpha1 import (
    Decision as DecisionStatus,
)
from flightdeck_operator.api.v1alpha1 import (
    PolicyResult as PolicyResultStatus,
)
from flightdeck_operator.conditions import (
    ConditionUpdate,
    Phase,
    Reason,
    decided,
    pending,
    ready,
)
from flightdeck_operator.decide import Decision, blocked_message
from flightdeck_operator.ledger import LedgerEntry, LedgerKind, LedgerRecord, policy_digest, request_key
from flightdeck_operator.models import EvidenceSummary, PromotionAction, Rollup

Status = dict[str, Any]


def action_id_for(request_uid: str) -> str:
    """The reference-shaped ``act_<12 hex>`` id, derived from the request UID so that a replayed
    decision (after a crash) carries the same id."""
    return "act_" + request_uid.replace("-", "")[:12]


def ledger_record(
    decision: Decision,
    *,
    request_uid: str,
    request_name: str,
    namespace: str,
    pointer: str,
    actor: str,
    reason: str,
) -> LedgerRecord:
    """The ledger record of an evaluated promote or rollback (passed or blocked)."""
    if decision.policy_result is None:
        raise ValueError(f"a {decision.outcome.value} decision is not ledgered")
    return LedgerRecord(
        kind=LedgerKind.PROMOTE if decision.action is PromotionAction.PROMOTE else LedgerKind.ROLLBACK,
        idempotency_key=request_key(request_uid),
        request_uid=request_uid,
        actor=actor,
        namespace=namespace,
        pointer=pointer,
        agent_id=decision.agent_id,
        environment=decision.environment,
        release_id=decision.target_release_id,
        baseline_release_id=decision.baseline_release_id,
        pointer_changed=decision.passed,
        reason=reason,
        policy_result=decision.policy_result,
        evidence=decision.evidence,
        policy_digest=policy_digest(decision.policy),
        details={
            "action_id": action_id_for(request_uid),
            "request": request_name,
            "policy_id": decision.policy.policy_id,
        },
        created_at=decision.decided_at,
    )


# -- PromotionRequest status ---------------------------------------------------------------------


def outcome_reason(entry: LedgerEntry) -> Reason:
    if not entry.pointer_changed:
        return Reason.POLICY_BLOCKED
    return Reason.PROMOTED if entry.kind is LedgerKind.PROMOTE else Reason.ROLLED_BACK


def decided_message(entry: LedgerEntry) -> str:
    """Condition/Event text, worded like the reference CLI."""
    target = f"{entry.agent_id}/{entry.environment}"
    if entry.pointer_changed and entry.kind is LedgerKind.PROMOTE:
        return f"Promoted {entry.release_id} for {target} (ledger seq {entry.seq})"
    if entry.pointer_changed:
        return f"Rolled back to {entry.release_id} for {target} (ledger seq {entry.seq})"
    action = PromotionAction.PROMOTE if entry.kind is LedgerKind.PROMOTE else PromotionAction.ROLLBACK
    reasons = "; ".join(entry.policy_result.reasons) if entry.policy_result else ""
    return f"{blocked_message(action)} {reasons} (ledger seq {entry.seq})".replace("  ", " ")


def _summary(rollup: Rollup) -> RunSummary:
    return RunSummary(
        runs=rollup.runs,
        cost_per_run_usd=rollup.cost_per_run_usd,
        latency_ms_avg=rollup.latency_ms_avg,
        error_rate=rollup.error_rate,
    )


def _evidence(summary: EvidenceSummary | None) -> Evidence | None:
    if summary is None:
        return None
    return Evidence(
        window=summary.window,
        since=summary.since,
        until=summary.until,
        baseline=_summary(summary.baseline),
        candidate=_summary(summary.candidate),
        confidence=summary.confidence.value,
        confidence_reason=summary.confidence_reason,
    )


def request_status_from_entry(
    entry: LedgerEntry,
    *,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    """The request's terminal status, from its ledger entry alone."""
    reason = outcome_reason(entry)
    message = decided_message(entry)
    phase, update = decided(reason, message)
    policy = entry.policy_result
    decision = DecisionStatus(
        action_id=str((entry.details or {}).get("action_id") or action_id_for(entry.request_uid or "")),
        outcome=Outcome(phase.value),
        decided_at=entry.created_at,
        ledger_seq=entry.seq,
        ledger_hash=entry.hash,
        release_id=entry.release_id,
        agent_id=entry.agent_id,
        environment=entry.environment,
        pointer_before=entry.baseline_release_id,
        pointer_after=entry.release_id if entry.pointer_changed else entry.baseline_release_id,
        pointer_changed=entry.pointer_changed,
        policy=None
        if policy is None
        else PolicyResultStatus(
            passed=policy.passed, reasons=list(policy.reasons), evaluated_at=policy.evaluated_at
        ),
        evidence=_evidence(entry.evidence),
    )
    return _request_status(phase, update, message, generation, conditions, now, decision=to_wire(decision))


def dry_run_status(
    decision: Decision,
    *,
    action_id: str,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    """A dry run's status: evaluated like a real request, never ledgered, pointer untouched."""
    policy = decision.policy_result
    if policy is None:
        raise ValueError("a dry run without a policy result is a failure, not an evaluation")
    reason = Reason.PROMOTED if decision.passed else Reason.POLICY_BLOCKED
    verb = "would pass" if decision.passed else "would be blocked"
    message = f"Dry run: {decision.action.value} of {decision.target_release_id} {verb}"
    if not decision.passed:
        message += ": " + "; ".join(policy.reasons)
    phase, update = decided(reason, message, dry_run=True)
    status = DecisionStatus(
        action_id=action_id,
        outcome=Outcome.EVALUATED,
        decided_at=decision.decided_at,
        release_id=decision.target_release_id,
        agent_id=decision.agent_id,
        environment=decision.environment,
        pointer_before=decision.baseline_release_id,
        pointer_after=decision.baseline_release_id,
        pointer_changed=False,
        policy=PolicyResultStatus(
            passed=policy.passed, reasons=list(policy.reasons), evaluated_at=policy.evaluated_at
        ),
        evidence=_evidence(decision.evidence),
    )
    return _request_status(phase, update, message, generation, conditions, now, decision=to_wire(status))


def failed_status(
    reason: Reason,
    message: str,
    *,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    """Terminal failure before evaluation: nothing ledgered, nothing moved (as the reference)."""
    phase, update = decided(reason, message)
    return _request_status(phase, update, message, generation, conditions, now)


def pending_status(
    message: str,
    *,
    reason: Reason = Reason.AWAITING_DECISION,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    return _request_status(Phase.PENDING, pending(message, reason), message, generation, conditions, now)


def _request_status(
    phase: Phase,
    update: ConditionUpdate,
    message: str,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    *,
    decision: Status | None = None,
) -> Status:
    status: Status = {
        "phase": phase.value,
        "message": message,
        "observedGeneration": generation,
        "conditions": update.apply(conditions, now, generation),
    }
    if decision is not None:
        status["decision"] = decision
    return status


# -- ReleasePointer status -----------------------------------------------------------------------


def pointer_status(
    moves: Sequence[LedgerEntry],
    *,
    history_limit: int,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    """The pointer's status from its ledger moves (newest first). Nothing moved yet: no release."""
    if not moves:
        update = ready(Reason.IN_SYNC, "No release promoted yet")
        return {
            "releaseId": None,
            "previousReleaseId": None,
            "updatedAt": None,
            "lastRequest": None,
            "ledgerSeq": None,
            "history": [],
            "observedGeneration": generation,
            "conditions": update.apply(conditions, now, generation),
        }
    head = moves[0]
    update = ready(Reason.IN_SYNC, f"Release {head.release_id} is live (ledger seq {head.seq})")
    history = [
        to_wire(
            PointerHistoryEntry(
                release_id=move.release_id or "",
                previous_release_id=move.baseline_release_id,
                action=Action.PROMOTE if move.kind is LedgerKind.PROMOTE else Action.ROLLBACK,
                ledger_seq=move.seq,
                updated_at=move.created_at,
                request=_request_ref(move),
            )
        )
        for move in moves[:history_limit]
    ]
    last_request = _request_ref(head)
    return {
        "releaseId": head.release_id,
        "previousReleaseId": head.baseline_release_id,
        "updatedAt": to_wire_time(head.created_at),
        "lastRequest": None if last_request is None else to_wire(last_request),
        "ledgerSeq": head.seq,
        "history": history,
        "observedGeneration": generation,
        "conditions": update.apply(conditions, now, generation),
    }


def pointer_in_sync(status: Mapping[str, Any] | None, head: LedgerEntry | None) -> bool:
    """Whether the pointer's status already shows the ledger's last move (nothing to write)."""
    status = status or {}
    if head is None:
        return status.get("releaseId") is None and status.get("ledgerSeq") is None
    return status.get("releaseId") == head.release_id and status.get("ledgerSeq") == head.seq


def _request_ref(entry: LedgerEntry) -> RequestRef | None:
    name = (entry.details or {}).get("request")
    if not name or not entry.request_uid:
        return None
    return RequestRef(name=str(name), uid=entry.request_uid)


def to_wire_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
