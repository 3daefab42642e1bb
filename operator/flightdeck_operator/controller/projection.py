"""Pure builders: a decision into a ledger record, and ledger entries into object statuses.

The ledger is the commit point; everything the API server shows about a decision (the request's
status, the pointer's status) is a projection of ledger entries built here, so a projection
interrupted by a crash is finished later from the ledger alone, with the same result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import JsonValue

from flightdeck_operator.api.approvals import Verdict
from flightdeck_operator.api.conditions import (
    ApprovalPhase,
    ConditionType,
    ConditionUpdate,
    Phase,
    Reason,
    decided,
    dependency_missing,
    find_condition,
    pending,
    ready,
    replayed,
    stalled,
)
from flightdeck_operator.api.replay import replay_message
from flightdeck_operator.api.v1alpha1 import (
    Action,
    AppliedOverride,
    ApprovalRef,
    ApprovalStatus,
    DecisionWindow,
    Evidence,
    EvidenceWait,
    Outcome,
    PointerHistoryEntry,
    Predecessor,
    PromotionWindowStatus,
    RequestRef,
    RunSummary,
    UserIdentity,
    to_wire,
)
from flightdeck_operator.api.v1alpha1 import (
    Decision as DecisionStatus,
)
from flightdeck_operator.api.v1alpha1 import (
    PolicyResult as PolicyResultStatus,
)
from flightdeck_operator.controller.pointer_health import PointerProblem
from flightdeck_operator.controller.statistics_status import (
    statistics_outcome,
    statistics_wait,
    verdict_phrase,
)
from flightdeck_operator.engine.decide import Decision, blocked_message
from flightdeck_operator.engine.ledger import (
    LedgerEntry,
    LedgerKind,
    LedgerRecord,
    action_id_for,
    policy_digest,
    request_key,
)
from flightdeck_operator.engine.models import EvidenceSummary, PromotionAction, Rollup
from flightdeck_operator.engine.windows import WindowState

Status = dict[str, Any]
MAX_STATUS_MESSAGE = 4096


def ledger_record(
    decision: Decision,
    *,
    request_uid: str,
    request_name: str,
    namespace: str,
    pointer: str,
    actor: str,
    reason: str,
    requested_by: UserIdentity | None = None,
    approvals: Sequence[LedgerEntry] = (),
    spec_digest: str | None = None,
    window: str | None = None,
    automation: Mapping[str, JsonValue] | None = None,
) -> LedgerRecord:
    """The ledger record of an evaluated promote or rollback (passed or blocked).

    ``details`` also carries what let it through or stopped it: a closed promotion window, an
    unfinished soak, a break-glass override (always recorded with its reason) and the approvals
    that met the quorum; and, for a request the operator created itself, ``automation``.
    """
    if decision.policy_result is None:
        raise ValueError(f"a {decision.outcome.value} decision is not ledgered")
    details: dict[str, JsonValue] = {
        "action_id": action_id_for(request_uid),
        "request": request_name,
        "policy_id": decision.policy.policy_id,
    }
    if requested_by is not None:
        details["requested_by"] = requested_by.username
    if window is not None:  # as requested (notifications carry it, as the reference's do)
        details["window"] = window
    if decision.window_closed is not None:
        details["promotion_window"] = _window_details(decision.window_closed)
    if decision.blocked_by_window:
        details["blocked_by"] = Reason.PROMOTION_WINDOW_CLOSED.value
    elif decision.blocked_by_soak:
        details["blocked_by"] = Reason.NOT_SOAKED.value
    if decision.soak is not None:
        details["soak"] = {"upstream": decision.soak.upstream, "message": decision.soak.message}
    if automation is not None:
        details["automation"] = dict(automation)
    if decision.override_reason is not None:
        details["override"] = {
            "reason": decision.override_reason,
            "by": requested_by.username if requested_by is not None else None,
        }
    if approvals:
        details["approvals"] = [
            {
                "name": str((a.details or {}).get("approval")),
                "approver": str((a.details or {}).get("approver")),
                "seq": a.seq,
            }
            for a in approvals
        ]
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
        details=details,
        created_at=decision.decided_at,
        request_name=request_name,
        spec_digest=spec_digest,
    )


def _window_details(state: WindowState) -> dict[str, JsonValue]:
    return {
        "open": state.open,
        "message": state.message,
        "next_open": None if state.next_open is None else to_wire_time(state.next_open),
    }


def approval_record(
    decision: Decision,
    verdict: Verdict,
    *,
    approval_name: str,
    approval_uid: str,
    approver: UserIdentity | None,
    approval_reason: str,
    request_name: str,
    request_uid: str,
    namespace: str,
    pointer: str,
    digest: str | None,
    approved_digest: str,
) -> LedgerRecord:
    """The ledger record of one judged PromotionApproval (whatever the verdict)."""
    return LedgerRecord(
        kind=LedgerKind.APPROVAL,
        idempotency_key=f"approval:{approval_uid}",
        actor=approver.username if approver is not None else "unknown",
        namespace=namespace,
        pointer=pointer,
        agent_id=decision.agent_id,
        environment=decision.environment,
        release_id=decision.target_release_id,
        baseline_release_id=decision.baseline_release_id,
        pointer_changed=False,
        reason=approval_reason,
        policy_result=decision.policy_result,
        evidence=decision.evidence,
        policy_digest=policy_digest(decision.policy),
        details={
            "approval": approval_name,
            "approval_uid": approval_uid,
            "request": request_name,
            "request_uid": request_uid,
            "approver": approver.username if approver is not None else None,
            "approver_groups": list(approver.groups) if approver is not None else [],
            "via": approver.via if approver is not None else None,
            "outcome": verdict.phase.value,
            "condition_reason": verdict.reason.value,
            "message": verdict.message,
            "decision_digest": approved_digest,
            "current_digest": digest,
            **(
                {"promotion_window": _window_details(decision.window_closed)}
                if decision.window_closed is not None
                else {}
            ),
        },
        created_at=decision.decided_at,
    )


def approval_status(
    verdict_phase: ApprovalPhase,
    reason: Reason,
    message: str,
    *,
    ledger_seq: int | None,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    update = ready(reason, message) if verdict_phase is ApprovalPhase.ACCEPTED else stalled(reason, message)
    status: Status = {
        "phase": verdict_phase.value,
        "message": message,
        "observedGeneration": generation,
        "conditions": update.apply(conditions, now, generation),
    }
    if ledger_seq is not None:
        status["ledgerSeq"] = ledger_seq
    return status


# -- PromotionRequest status ---------------------------------------------------------------------


def outcome_reason(entry: LedgerEntry) -> Reason:
    if not entry.pointer_changed:
        blocked_by = (entry.details or {}).get("blocked_by")
        if blocked_by in (Reason.PROMOTION_WINDOW_CLOSED.value, Reason.NOT_SOAKED.value):
            return Reason(blocked_by)
        return Reason.POLICY_BLOCKED
    return Reason.PROMOTED if entry.kind is LedgerKind.PROMOTE else Reason.ROLLED_BACK


def decided_message(entry: LedgerEntry) -> str:
    """Condition/Event text, worded like the reference CLI."""
    target = f"{entry.agent_id}/{entry.environment}"
    # Under statistical gates the message names their verdict (so do the Events that carry it).
    seq = f"ledger seq {entry.seq}{verdict_phrase(entry.evidence.statistics if entry.evidence else None)}"
    if entry.pointer_changed and entry.kind is LedgerKind.PROMOTE:
        return f"Promoted {entry.release_id} for {target} ({seq})"
    if entry.pointer_changed:
        return f"Rolled back to {entry.release_id} for {target} ({seq})"
    action = PromotionAction.PROMOTE if entry.kind is LedgerKind.PROMOTE else PromotionAction.ROLLBACK
    reasons = "; ".join(entry.policy_result.reasons) if entry.policy_result else ""
    return f"{blocked_message(action)} {reasons} ({seq})".replace("  ", " ")


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
        statistics=None if summary.statistics is None else statistics_outcome(summary.statistics),
    )


def request_status_from_entry(
    entry: LedgerEntry,
    *,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    replay: bool = False,
) -> Status:
    """The request's terminal status, from its ledger entry alone. ``replay``: the entry is an
    earlier request's of the same name and spec (condition reason ``Replayed``)."""
    reason = outcome_reason(entry)
    message = decided_message(entry)
    if replay:
        message = replay_message(entry, message)
        phase, update = replayed(reason, message)
    else:
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
        **_gate_fields(entry.details or {}),
    )
    return _request_status(phase, update, message, generation, conditions, now, decision=to_wire(decision))


def _gate_fields(details: Mapping[str, Any]) -> dict[str, Any]:
    """status.decision's promotionWindow / override / approvals, from a ledger entry's details."""
    fields: dict[str, Any] = {}
    window = details.get("promotion_window")
    if isinstance(window, Mapping):
        fields["promotion_window"] = DecisionWindow(
            open=bool(window.get("open")),
            message=str(window.get("message") or ""),
            next_open=window.get("next_open"),
        )
    override = details.get("override")
    if isinstance(override, Mapping):
        fields["override"] = AppliedOverride(reason=str(override.get("reason") or ""), by=override.get("by"))
    approvals = details.get("approvals")
    if isinstance(approvals, list):
        fields["approvals"] = [
            ApprovalRef(name=str(a.get("name")), approver=str(a.get("approver")))
            for a in approvals
            if isinstance(a, Mapping)
        ]
    return fields


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
        **_gate_fields(_decision_gates(decision)),
    )
    return _request_status(phase, update, message, generation, conditions, now, decision=to_wire(status))


def _decision_gates(decision: Decision) -> dict[str, JsonValue]:
    """The window and override details of a decision, shaped as in a ledger entry."""
    details: dict[str, JsonValue] = {}
    if decision.window_closed is not None:
        details["promotion_window"] = _window_details(decision.window_closed)
    if decision.override_reason is not None:
        details["override"] = {"reason": decision.override_reason, "by": None}
    return details


def awaiting_evidence_status(
    decision: Decision,
    *,
    deadline: dt.datetime,
    missing_baseline_runs: int,
    missing_candidate_runs: int,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    """Undecided: only sample-size confidence (or Inconclusive statistical gates) fails and
    spec.waitForEvidence has time left. Statistical gates add per gate the runs still needed and an
    ETA; the runs missing are then the most any reason needs."""
    report = decision.evidence.statistics if decision.evidence is not None else None
    wait_for = statistics_wait(report) if report is not None else None
    if wait_for is not None:
        missing_candidate_runs = max(missing_candidate_runs, wait_for.missing_candidate_runs)
        missing_baseline_runs = max(missing_baseline_runs, wait_for.missing_baseline_runs)
    missing = []
    if missing_candidate_runs:
        missing.append(f"{missing_candidate_runs} more candidate runs")
    if missing_baseline_runs:
        missing.append(f"{missing_baseline_runs} more baseline runs")
    needs = " and ".join(missing) if missing else "a higher confidence"
    if wait_for is not None and missing:
        needs += " needed" + wait_for.arrival_text(deadline)
    else:
        needs += " needed"
    message = (
        f"Awaiting evidence until {to_wire_time(deadline)}: {needs} "
        f"({'; '.join(decision.policy_result.reasons) if decision.policy_result else ''})"
    )
    wait = EvidenceWait(
        deadline=deadline,
        missing_baseline_runs=missing_baseline_runs,
        missing_candidate_runs=missing_candidate_runs,
        last_evaluated_at=now,
        eta=None if wait_for is None else wait_for.eta,
        gates=None if wait_for is None else list(wait_for.gates),
    )
    wire = to_wire(wait)
    if wait_for is not None:
        # A merge patch keeps keys it leaves out: an ETA that is gone must be sent as null.
        wire.setdefault("eta", None)
    return _waiting_status(
        Phase.AWAITING_EVIDENCE,
        Reason.AWAITING_EVIDENCE,
        message,
        generation,
        conditions,
        now,
        evidence_wait=wire,
    )


def awaiting_approval_status(
    decision: Decision,
    *,
    digest: str,
    required: int,
    approved_by: Sequence[str],
    stale: Sequence[str],
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
) -> Status:
    """Undecided: the promotion needs approvals (or passed before and the policy blocks it now)."""
    have = f"{len(approved_by)}/{required} approvals"
    if decision.passed:
        message = (
            f"Awaiting approval ({have}) of decision {digest[:12]}: create a PromotionApproval naming "
            "this request's uid and status.approval.decisionDigest"
        )
    else:
        reasons = "; ".join(decision.policy_result.reasons) if decision.policy_result else ""
        message = f"Awaiting approval ({have}); the policy blocks this promotion now: {reasons}"
    approval = ApprovalStatus(
        decision_digest=digest,
        required=required,
        approved_by=list(approved_by),
        stale=list(stale),
        passed=decision.passed,
    )
    return _waiting_status(
        Phase.AWAITING_APPROVAL,
        Reason.AWAITING_APPROVAL,
        message,
        generation,
        conditions,
        now,
        approval=to_wire(approval),
    )


def _waiting_status(
    phase: Phase,
    reason: Reason,
    message: str,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    *,
    approval: Status | None = None,
    evidence_wait: Status | None = None,
) -> Status:
    """Undecided, with what it waits for; the other wait is cleared (null in the merge patch)."""
    status = _request_status(phase, pending(message, reason), message, generation, conditions, now)
    status["approval"] = approval
    status["evidenceWait"] = evidence_wait
    return status


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
        # The CRD's maxLength; the reasons (up to twelve statistical gates) stay well below it.
        "message": message[:MAX_STATUS_MESSAGE],
        "observedGeneration": generation,
        "conditions": update.apply(conditions, now, generation),
    }
    if decision is not None:
        status["decision"] = decision
    return status


# -- ReleasePointer status -----------------------------------------------------------------------


def pointer_ready(
    head: LedgerEntry | None,
    problem: PointerProblem | None,
    *,
    repaired: str | None,
    current: Sequence[Mapping[str, Any]] | None,
    retired: LedgerEntry | None,
) -> ConditionUpdate:
    """The pointer's Ready condition: a problem (duplicate, missing policy) first; then a repair,
    which stays shown until the next change; else in sync with the ledger."""
    if problem is not None:
        return (stalled if problem.stalled else dependency_missing)(problem.reason, problem.message)
    if repaired is not None:
        return ready(Reason.POINTER_REPAIRED, repaired)
    shown = find_condition(current or (), ConditionType.READY.value)
    if (
        shown is not None
        and shown.get("reason") == Reason.POINTER_REPAIRED.value
        and shown.get("status") == "True"
    ):
        return ready(Reason.POINTER_REPAIRED, str(shown.get("message") or ""))
    if head is not None:
        return ready(Reason.IN_SYNC, f"Release {head.release_id} is live (ledger seq {head.seq})")
    fresh = (
        f"; its history starts after the retirement of the previous pointer of this name (ledger seq {retired.seq})"
        if retired is not None
        else ""
    )
    return ready(Reason.IN_SYNC, f"No release promoted yet{fresh}")


def pointer_status(
    moves: Sequence[LedgerEntry],
    *,
    history_limit: int,
    generation: int | None,
    conditions: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    ready_update: ConditionUpdate,
    retired: LedgerEntry | None = None,
) -> Status:
    """The pointer's status from its ledger moves since its last retirement (newest first).
    Nothing moved yet: no release. ``retired``: the retirement of a pointer of the same name
    (shown as ``predecessor``: this pointer's history starts after it)."""
    predecessor = (
        None
        if retired is None
        else to_wire(
            Predecessor(
                retired_ledger_seq=retired.seq,
                retired_at=retired.created_at,
                retired_by=retired.actor,
                release_id=retired.release_id,
            )
        )
    )
    if not moves:
        return {
            "releaseId": None,
            "previousReleaseId": None,
            "updatedAt": None,
            "lastRequest": None,
            "ledgerSeq": None,
            "history": [],
            "predecessor": predecessor,
            "observedGeneration": generation,
            "conditions": ready_update.apply(conditions, now, generation),
        }
    head = moves[0]
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
        "predecessor": predecessor,
        "observedGeneration": generation,
        "conditions": ready_update.apply(conditions, now, generation),
    }


def shows_health(conditions: Sequence[Mapping[str, Any]] | None, problem: PointerProblem | None) -> bool:
    """Whether the pointer's Ready condition already says what ``problem`` (or its absence) means."""
    shown = find_condition(conditions or (), ConditionType.READY.value)
    return ready_reason_shows(None if shown is None else str(shown.get("reason")), problem)


def ready_reason_shows(reason: str | None, problem: PointerProblem | None) -> bool:
    if problem is not None:
        return reason == problem.reason.value
    return reason in (Reason.IN_SYNC.value, Reason.POINTER_REPAIRED.value)


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


def promotion_window_status(state: WindowState | None) -> Status | None:
    """The pointer's ``status.promotionWindow`` (None: the policy has no windows)."""
    if state is None:
        return None
    return to_wire(
        PromotionWindowStatus(
            open=state.open,
            message=state.message,
            active_windows=list(state.active),
            next_change=state.next_change,
        )
    )
