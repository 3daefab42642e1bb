"""Approvals (pure): what a PromotionApproval approves, whether it counts, and the quorum.

An approval is bound to a request's UID and to the *decision digest* shown in the request's
``status.approval``. The digest covers what an approver signs off on: the action, the target and
baseline releases, the policy (by value) and the evidence's verdict (passed, confidence). It does
not cover raw run counts, which grow with every run: approvals stay valid while runs accumulate and
go stale when the policy changes, the pointer moves or the evidence changes the verdict (under
statistical gates: any gate's verdict).

Each approval is judged once, when the operator first sees it, and the judgement is ledgered; the
quorum is then counted from the ledger (the truth), not from objects that could be edited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flightdeck_operator.api.conditions import ApprovalPhase, Reason
from flightdeck_operator.api.v1alpha1 import ApprovalPolicy, PromotionApprovalSpec
from flightdeck_operator.engine.decide import Decision
from flightdeck_operator.engine.ledger import LedgerEntry, canonical_json, policy_digest, sha256_hex


def approval_key(approval_uid: str) -> str:
    """Ledger idempotency key of an approval: one entry per PromotionApproval UID."""
    return f"approval:{approval_uid}"


def decision_digest(decision: Decision, gate: ApprovalPolicy | None = None) -> str:
    """SHA-256 of what an approver approves (see the module docstring). ``gate``, the policy's
    approval rules, is part of it: removing an approver or raising the quorum makes earlier
    approvals stale instead of letting them count under rules they were not given under."""
    confidence = decision.evidence.confidence.value if decision.evidence is not None else None
    payload = {
        "action": decision.action.value,
        "release": decision.target_release_id,
        "baseline": decision.baseline_release_id,
        "policy_digest": policy_digest(decision.policy),
        "approval": None if gate is None else gate.model_dump(mode="json"),
        "passed": decision.passed,
        "confidence": confidence,
    }
    statistics = decision.evidence.statistics if decision.evidence is not None else None
    if statistics is not None:  # only with statisticalGates, so other digests stay as they were
        payload["statistics"] = {gate.gate: gate.verdict.value for gate in statistics.gates}
    return sha256_hex(canonical_json(payload))


def stale_key(approval_uid: str) -> str:
    """Ledger key of the one entry saying an accepted approval went stale (it never counts again,
    even if the digest it approved comes back)."""
    return f"approval-stale:{approval_uid}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one approval was judged."""

    phase: ApprovalPhase
    reason: Reason
    message: str

    @property
    def accepted(self) -> bool:
        return self.phase is ApprovalPhase.ACCEPTED


def judge(
    approval: PromotionApprovalSpec,
    *,
    request_uid: str,
    requester: str | None,
    policy: ApprovalPolicy | None,
    current_digest: str | None,
    passed: bool,
) -> Verdict:
    """Judge one approval against the request it names. ``policy``: the pointer's approval policy
    (None: this request needs no approval); ``current_digest``: the request's current decision digest."""
    name = approval.request.name
    if approval.approver is None:
        return Verdict(
            ApprovalPhase.REJECTED,
            Reason.IDENTITY_UNVERIFIED,
            "spec.approver is missing: the approval was not created through the operator's admission webhook",
        )
    approver = approval.approver.username
    if approval.request.uid != request_uid:
        return Verdict(
            ApprovalPhase.REJECTED,
            Reason.REQUEST_MISMATCH,
            f"approves request {name} with uid {approval.request.uid}, but that request has uid {request_uid}",
        )
    if policy is None or current_digest is None:
        return Verdict(
            ApprovalPhase.REJECTED,
            Reason.APPROVAL_NOT_REQUIRED,
            f"request {name} does not need approval (its policy requires none, or it is a rollback or dry run)",
        )
    if requester is not None and requester == approver:
        return Verdict(
            ApprovalPhase.REJECTED,
            Reason.SELF_APPROVAL,
            f"{approver} requested this promotion and cannot approve it; another approver must",
        )
    if not may_approve(approval.approver.username, approval.approver.groups, policy):
        return Verdict(
            ApprovalPhase.REJECTED,
            Reason.NOT_AN_APPROVER,
            f"{approver} is not among the policy's approvers (users or groups)",
        )
    if approval.decision_digest != current_digest:
        return Verdict(
            ApprovalPhase.STALE,
            Reason.APPROVAL_STALE,
            f"approves decision {approval.decision_digest[:12]}, but request {name} now awaits "
            f"{current_digest[:12]} (the policy, the pointer or the evidence verdict changed)",
        )
    if not passed:
        return Verdict(
            ApprovalPhase.BLOCKED,
            Reason.POLICY_BLOCKED,
            f"the policy blocks request {name} now; the approval was recorded and the request still awaits approval",
        )
    return Verdict(ApprovalPhase.ACCEPTED, Reason.APPROVAL_ACCEPTED, f"{approver} approved request {name}")


def may_approve(username: str, groups: Iterable[str], policy: ApprovalPolicy) -> bool:
    approvers = policy.approvers
    if approvers is None or (not approvers.users and not approvers.groups):
        return True  # RBAC on promotionapprovals is the approver list
    return username in approvers.users or any(group in approvers.groups for group in groups)


def accepted_entries(entries: Sequence[LedgerEntry], digest: str) -> list[LedgerEntry]:
    """The first accepted entry of each approver for ``digest`` (what the final decision cites).
    An approval once recorded stale never counts again."""
    stale = {
        str((e.details or {}).get("approval_uid"))
        for e in entries
        if e.idempotency_key.startswith("approval-stale:")
    }
    seen: set[str] = set()
    chosen: list[LedgerEntry] = []
    for entry in entries:
        details = entry.details or {}
        approver = str(details.get("approver") or "")
        if (
            details.get("outcome") == ApprovalPhase.ACCEPTED.value
            and details.get("decision_digest") == digest
            and str(details.get("approval_uid")) not in stale
            and approver not in seen
        ):
            seen.add(approver)
            chosen.append(entry)
    return chosen
