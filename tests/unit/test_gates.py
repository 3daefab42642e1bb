"""The pure parts of the gates: approval judgement and digest, the promotion-window gate on a
decision, and the waiting statuses."""

from __future__ import annotations

import datetime as dt

import pytest

from flightdeck_operator.api.approvals import accepted_entries, decision_digest, judge, may_approve
from flightdeck_operator.api.conditions import ApprovalPhase, Reason
from flightdeck_operator.api.v1alpha1 import ApprovalPolicy, Approvers, PromotionApprovalSpec
from flightdeck_operator.controller.projection import awaiting_approval_status, awaiting_evidence_status
from flightdeck_operator.engine.decide import (
    Decision,
    DecisionRequest,
    Outcome,
    ReasonKind,
    apply_promotion_window,
    decide,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import Policy, PromotionAction, ReleaseRef
from flightdeck_operator.engine.windows import WindowState

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
UID = "6f1c2a1e-0000-4000-8000-000000000001"
TARGET = ReleaseRef(
    release_id="bot-2", agent_id="bot", provider="openai", pricing_version="v1", model="gpt-4o-mini"
)


def first_promotion(
    action: PromotionAction = PromotionAction.PROMOTE, policy: Policy | None = None
) -> Decision:
    return decide(
        DecisionRequest(action=action, agent_id="bot", environment="prod", target=TARGET),
        current_release_id=None,
        comparison=None,
        policy=policy,
        now=T0,
    )


def spec(
    digest: str, *, approver: str | None = "bob", groups: tuple[str, ...] = (), uid: str = UID
) -> PromotionApprovalSpec:
    return PromotionApprovalSpec.model_validate(
        {
            "request": {"name": "ship", "uid": uid},
            "decisionDigest": digest,
            "reason": "ok",
            **({"approver": {"username": approver, "groups": list(groups)}} if approver else {}),
        }
    )


GATE = ApprovalPolicy(min_approvals=1)


def test_digest_covers_the_policy_and_verdict_but_not_the_time() -> None:
    decision = first_promotion()
    assert decision_digest(decision) == decision_digest(
        decision.model_copy(update={"decided_at": T0 + dt.timedelta(hours=1)})
    )
    assert decision_digest(decision) != decision_digest(
        first_promotion(policy=Policy(max_cost_per_run_usd=1.0))
    )
    blocked = decision.model_copy(update={"outcome": Outcome.BLOCKED})
    assert decision_digest(decision) != decision_digest(blocked)
    # The approval rules are part of what is approved: revoking an approver revokes the approval.
    two = ApprovalPolicy(min_approvals=2, approvers=Approvers(users=["bob", "carol"]))
    assert decision_digest(decision, two) != decision_digest(
        decision, ApprovalPolicy(min_approvals=2, approvers=Approvers(users=["carol"]))
    )
    assert decision_digest(decision, two) == decision_digest(decision, two.model_copy())


@pytest.mark.parametrize(
    ("approval", "requester", "policy", "passed", "phase", "reason"),
    [
        ("ok", "alice", GATE, True, ApprovalPhase.ACCEPTED, Reason.APPROVAL_ACCEPTED),
        ("self", "bob", GATE, True, ApprovalPhase.REJECTED, Reason.SELF_APPROVAL),
        ("anonymous", "alice", GATE, True, ApprovalPhase.REJECTED, Reason.IDENTITY_UNVERIFIED),
        ("other-uid", "alice", GATE, True, ApprovalPhase.REJECTED, Reason.REQUEST_MISMATCH),
        ("ok", "alice", None, True, ApprovalPhase.REJECTED, Reason.APPROVAL_NOT_REQUIRED),
        ("stale", "alice", GATE, True, ApprovalPhase.STALE, Reason.APPROVAL_STALE),
        ("ok", "alice", GATE, False, ApprovalPhase.BLOCKED, Reason.POLICY_BLOCKED),
        (
            "ok",
            "alice",
            ApprovalPolicy(approvers=Approvers(users=["carol"])),
            True,
            ApprovalPhase.REJECTED,
            Reason.NOT_AN_APPROVER,
        ),
    ],
)
def test_judge(
    approval: str,
    requester: str,
    policy: ApprovalPolicy | None,
    passed: bool,
    phase: ApprovalPhase,
    reason: Reason,
) -> None:
    current = "a" * 64
    given = {
        "ok": spec(current),
        "self": spec(current),
        "anonymous": spec(current, approver=None),
        "other-uid": spec(current, uid="another"),
        "stale": spec("b" * 64),
    }[approval]
    verdict = judge(
        given,
        request_uid=UID,
        requester=requester,
        policy=policy,
        current_digest=current if policy is not None else None,
        passed=passed,
    )
    assert (verdict.phase, verdict.reason) == (phase, reason)
    assert verdict.message


def test_approvers_by_user_or_group_and_empty_means_rbac() -> None:
    policy = ApprovalPolicy(approvers=Approvers(users=["carol"], groups=["sre"]))
    assert may_approve("carol", (), policy)
    assert may_approve("dave", ("dev", "sre"), policy)
    assert not may_approve("dave", ("dev",), policy)
    assert may_approve("anyone", (), ApprovalPolicy())
    assert may_approve("anyone", (), ApprovalPolicy(approvers=Approvers()))


def approval_entry(seq: int, approver: str, digest: str, outcome: ApprovalPhase) -> LedgerEntry:
    return LedgerEntry(
        kind=LedgerKind.APPROVAL,
        idempotency_key=f"approval:{seq}",
        actor=approver,
        namespace="ns",
        pointer="p",
        reason="ok",
        details={
            "approver": approver,
            "decision_digest": digest,
            "outcome": outcome.value,
            "approval": f"a{seq}",
        },
        created_at=T0,
        seq=seq,
        prev_hash="0" * 64,
        hash="0" * 64,
    )


def test_quorum_counts_distinct_approvers_of_the_current_digest() -> None:
    current, old = "a" * 64, "b" * 64
    entries = [
        approval_entry(1, "bob", old, ApprovalPhase.ACCEPTED),
        approval_entry(2, "bob", current, ApprovalPhase.ACCEPTED),
        approval_entry(3, "bob", current, ApprovalPhase.ACCEPTED),  # the same person twice counts once
        approval_entry(4, "carol", current, ApprovalPhase.BLOCKED),
        approval_entry(5, "dave", current, ApprovalPhase.ACCEPTED),
    ]
    assert [e.seq for e in accepted_entries(entries, current)] == [2, 5]
    assert [e.seq for e in accepted_entries(entries, old)] == [1]
    # Once recorded stale, bob's first approval never counts again, even if its digest comes back.
    marked = approval_entry(6, "bob", old, ApprovalPhase.STALE).model_copy(
        update={"idempotency_key": "approval-stale:uid-a1", "details": {"approval_uid": "uid-a1"}}
    )
    first = entries[0].model_copy(
        update={"details": {**(entries[0].details or {}), "approval_uid": "uid-a1"}}
    )
    assert accepted_entries([first, *entries[1:], marked], old) == []


CLOSED = WindowState(
    open=False,
    message="Promotion closed by deny window 'freeze' until 2026-11-25T13:00:00Z",
    active=("freeze",),
    next_change=T0 + dt.timedelta(hours=1),
    next_open=T0 + dt.timedelta(hours=1),
)


def test_closed_window_blocks_a_promotion_and_explains_first() -> None:
    gated = apply_promotion_window(first_promotion(), CLOSED, override_reason=None)
    assert gated.outcome is Outcome.BLOCKED
    assert gated.blocked_by_window
    assert gated.policy_result is not None
    assert gated.policy_result.passed is False
    assert gated.policy_result.reasons[0] == CLOSED.message
    assert gated.reasons[0].kind is ReasonKind.WINDOW_CLOSED
    assert not gated.awaiting_evidence_only  # a freeze is not waited out as missing evidence
    assert gated.window_closed == CLOSED


def test_override_passes_a_closed_window_and_is_recorded() -> None:
    gated = apply_promotion_window(first_promotion(), CLOSED, override_reason="CVE")
    assert gated.passed
    assert gated.override_reason == "CVE"
    assert gated.window_closed == CLOSED


def test_windows_never_freeze_rollbacks_or_open_windows() -> None:
    decision = first_promotion()
    open_state = WindowState(open=True, message="open", active=(), next_change=None, next_open=None)
    assert apply_promotion_window(decision, open_state, override_reason=None) == decision
    assert apply_promotion_window(decision, None, override_reason=None) == decision
    rollback = first_promotion(PromotionAction.ROLLBACK)  # nothing to roll back: no policy result
    assert apply_promotion_window(rollback, CLOSED, override_reason=None) == rollback


def test_waiting_statuses_stay_undecided() -> None:
    decision = first_promotion()
    evidence = awaiting_evidence_status(
        decision,
        deadline=T0 + dt.timedelta(hours=2),
        missing_baseline_runs=0,
        missing_candidate_runs=7,
        generation=1,
        conditions=None,
        now=T0,
    )
    assert evidence["phase"] == "AwaitingEvidence"
    assert evidence["evidenceWait"]["missingCandidateRuns"] == 7
    assert "7 more candidate runs" in evidence["message"]
    reasons = {c["type"]: (c["status"], c["reason"]) for c in evidence["conditions"]}
    assert reasons["Reconciling"] == ("True", "AwaitingEvidence")
    assert reasons["Decided"] == ("False", "AwaitingEvidence")

    approval = awaiting_approval_status(
        decision,
        digest="c" * 64,
        required=2,
        approved_by=["bob"],
        stale=["old"],
        generation=1,
        conditions=evidence["conditions"],
        now=T0,
    )
    assert approval["phase"] == "AwaitingApproval"
    assert approval["approval"] == {
        "decisionDigest": "c" * 64,
        "required": 2,
        "approvedBy": ["bob"],
        "stale": ["old"],
        "passed": True,
    }
    assert approval["evidenceWait"] is None  # cleared by the merge patch
    assert "1/2 approvals" in approval["message"]
