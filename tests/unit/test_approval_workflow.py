"""Pure pieces of the approval workflow (promote-request, promote-confirm, the request list) and of
the HTTP mapping they share with promote: statuses to answers, Retry-After, identities claimed on
behalf of the caller."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flightdeck_operator.actions.approval_workflow.common import (
    ACTOR_ANNOTATION,
    EVALUATION_ANNOTATION,
    FORBIDDEN_REASONS,
    approval_outcome,
    approved_by,
    awaits_approval,
    awaits_approval_or_decided,
    dry_run_outcome,
    judgement,
    not_recorded_message,
)
from flightdeck_operator.actions.approval_workflow.confirm import build_approval
from flightdeck_operator.actions.approval_workflow.listing import (
    list_status,
    request_summary,
    summarize_requests,
)
from flightdeck_operator.actions.promotions import (
    ActionInput,
    Requester,
    Verdict,
    build_request,
    closed_window_next_open,
    request_name,
    result_from_request,
    retry_after_seconds,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import ActionOutcome, PolicyResult, PromotionAction
from flightdeck_operator.sidecar.auth import Access

T0 = dt.datetime(2026, 5, 5, 12, 0, tzinfo=dt.UTC)
POLICY = {"passed": True, "reasons": [], "evaluatedAt": "2026-05-05T12:00:00Z"}
ALICE = Requester(identity="alice", username="alice", uid="u-1", groups=("dev",), verified=True)


def condition(
    type_: str, status: str, reason: str, message: str = "m", at: str = "2026-05-05T12:01:00Z"
) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": at}


def request(
    name: str,
    phase: str,
    *,
    created: str = "2026-05-05T12:00:00Z",
    decision: dict[str, Any] | None = None,
    approval: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if decision is not None:
        status["decision"] = decision
    if approval is not None:
        status["approval"] = approval
    spec: dict[str, Any] = {
        "pointer": "support-local",
        "release": "cand",
        "action": "promote",
        "window": "7d",
        "reason": "cand",
        "actor": "ci",
    }
    if dry_run:
        spec["dryRun"] = True
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": status,
    }


def evaluation(passed: bool = True, reasons: tuple[str, ...] = ()) -> ActionOutcome:
    return ActionOutcome(
        action_id="act_000000000001",
        action=PromotionAction.PROMOTE,
        release_id="cand",
        agent_id="agent",
        environment="local",
        baseline_release_id="base",
        promoted_pointer_changed=False,
        policy=PolicyResult(passed=passed, reasons=reasons, evaluated_at=T0),
    )


# --- promote-request ---------------------------------------------------------------------------------


def test_a_dry_run_gives_its_evaluation_or_the_reason_it_failed() -> None:
    decision = {
        "actionId": "act_aaaaaaaaaaaa",
        "releaseId": "cand",
        "agentId": "agent",
        "environment": "local",
        "pointerBefore": "base",
        "policy": {"passed": False, "reasons": ["too expensive"], "evaluatedAt": "2026-05-05T12:00:00Z"},
    }
    evaluated = request(
        "dry",
        "Evaluated",
        decision=decision,
        conditions=[condition("Decided", "True", "PolicyBlocked")],
        dry_run=True,
    )
    outcome = dry_run_outcome(evaluated)
    assert isinstance(outcome, ActionOutcome)
    assert (outcome.release_id, outcome.agent_id, outcome.baseline_release_id) == ("cand", "agent", "base")
    assert outcome.promoted_pointer_changed is False
    assert outcome.policy.reasons == ("too expensive",)
    assert not_recorded_message(outcome.policy.reasons) == (
        "Policy does not allow this promotion; request not recorded. Reasons: too expensive"
    )
    failed = request(
        "dry",
        "Failed",
        conditions=[
            condition("Decided", "True", "PricingTableMissing"),
            condition("Stalled", "True", "PricingTableMissing", "Missing pricing table for candidate x/y."),
        ],
    )
    assert dry_run_outcome(failed) == "Missing pricing table for candidate x/y."


def test_names_carry_their_prefix_and_keys_are_scoped_per_route() -> None:
    assert len(request_name("ns", "alice", None, prefix="prq-", random_hex=12)) == len("prq-") + 12
    keyed = request_name("ns", "alice", "k", prefix="prq-", random_hex=12)
    assert keyed == request_name("ns", "alice", "k", prefix="prq-", random_hex=12)
    assert keyed.startswith("prq-")
    assert len(keyed) == 44
    # The same key on /v1/promote names another object (and /v1/promote's names are unchanged).
    assert request_name("ns", "alice", "k")[len("http-") :] != keyed[len("prq-") :]


def test_the_sidecar_claims_the_verified_caller_and_nothing_otherwise() -> None:
    action = ActionInput(
        action=PromotionAction.PROMOTE,
        release_id="cand",
        environment="local",
        window="7d",
        reason="r",
        actor="ci",
    )
    body = build_request(
        "ns", "prq-x", action, "p", ALICE, dry_run=True, annotations={EVALUATION_ANNOTATION: "{}"}
    )
    assert body["spec"]["requestedBy"] == {"username": "alice", "groups": ["dev"], "uid": "u-1"}
    assert body["spec"]["dryRun"] is True
    assert body["metadata"]["annotations"][EVALUATION_ANNOTATION] == "{}"
    anonymous = Requester(identity="static-token", username="static-token")
    plain = build_request("ns", "http-x", action, "p", anonymous)
    assert "requestedBy" not in plain["spec"]
    assert "dryRun" not in plain["spec"]


# --- promote-confirm ---------------------------------------------------------------------------------


def test_an_approval_names_the_request_uid_and_current_digest() -> None:
    pending = request("prq-1", "AwaitingApproval", approval={"decisionDigest": "d" * 64, "required": 1})
    body = build_approval("ns", "papr-1", pending, "ok", ALICE, actor="cli")
    assert body["kind"] == "PromotionApproval"
    assert body["spec"] == {
        "request": {"name": "prq-1", "uid": "uid-prq-1"},
        "decisionDigest": "d" * 64,
        "reason": "ok",
        "approver": {"username": "alice", "groups": ["dev"], "uid": "u-1"},
    }
    assert body["metadata"]["annotations"][ACTOR_ANNOTATION] == "cli"


def test_waiting_predicates() -> None:
    waiting = request(
        "prq-1", "AwaitingApproval", approval={"decisionDigest": "d" * 64, "approvedBy": ["bob"]}
    )
    assert awaits_approval(waiting)
    assert awaits_approval_or_decided(waiting)
    assert not awaits_approval(request("prq-1", "Pending"))
    decided = request("prq-1", "Promoted", conditions=[condition("Decided", "True", "Promoted")])
    assert awaits_approval_or_decided(decided)
    assert approved_by("bob")(waiting)
    assert not approved_by("carol")(waiting)
    assert approved_by("carol")(decided)


def test_an_approvals_verdict_is_read_from_its_status() -> None:
    assert judgement({"status": {}}) is None
    rejected = {
        "status": {
            "phase": "Rejected",
            "message": "bob is not among the policy's approvers (users or groups)",
            "conditions": [condition("Ready", "False", "NotAnApprover")],
        }
    }
    assert judgement(rejected) == (
        "Rejected",
        "NotAnApprover",
        "bob is not among the policy's approvers (users or groups)",
    )
    assert {"SelfApproval", "NotAnApprover", "IdentityUnverified"} == set(FORBIDDEN_REASONS)


def test_a_blocked_confirm_has_the_reference_outcome_from_the_approval_entry() -> None:
    entry = LedgerEntry(
        kind=LedgerKind.APPROVAL,
        idempotency_key="approval:x",
        actor="bob",
        namespace="ns",
        pointer="p",
        agent_id="agent",
        environment="local",
        release_id="cand",
        baseline_release_id="base",
        reason="ok",
        policy_result=PolicyResult(passed=False, reasons=("too expensive",), evaluated_at=T0),
        created_at=T0,
        seq=7,
        prev_hash="0" * 64,
        hash="0" * 64,
    )
    outcome = approval_outcome(entry, "0123abcd-4567-89ef-0000-000000000000")
    assert outcome.model_dump(mode="json") == {
        "action_id": "act_0123abcd4567",
        "action": "promote",
        "release_id": "cand",
        "agent_id": "agent",
        "environment": "local",
        "baseline_release_id": "base",
        "promoted_pointer_changed": False,
        "policy": {"passed": False, "reasons": ["too expensive"], "evaluated_at": "2026-05-05T12:00:00Z"},
    }


# --- shared with promote: 409s and Retry-After ------------------------------------------------------


def test_concurrency_forbidden_is_a_conflict_and_other_failures_stay_400() -> None:
    forbidden = request(
        "r",
        "Failed",
        conditions=[
            condition("Decided", "True", "ConcurrencyForbidden"),
            condition("Ready", "False", "ConcurrencyForbidden"),
            condition("Stalled", "True", "ConcurrencyForbidden", "another request is undecided"),
        ],
    )
    result = result_from_request(forbidden)
    assert (result.verdict, result.reason, result.message) == (
        Verdict.CONFLICT,
        "ConcurrencyForbidden",
        "another request is undecided",
    )
    moved = request(
        "r",
        "Failed",
        conditions=[
            condition("Decided", "True", "PointerMoved"),
            condition("Ready", "False", "PointerMoved"),
        ],
    )
    assert result_from_request(moved).verdict is Verdict.FAILED


def test_a_window_blocked_decision_says_when_to_retry() -> None:
    decision = {
        "actionId": "act_aaaaaaaaaaaa",
        "releaseId": "cand",
        "agentId": "agent",
        "environment": "local",
        "pointerBefore": "base",
        "pointerChanged": False,
        "policy": {"passed": False, "reasons": ["closed"], "evaluatedAt": "2026-05-05T12:00:00Z"},
        "promotionWindow": {"open": False, "message": "closed", "nextOpen": "2026-05-05T12:29:00Z"},
    }
    blocked = request(
        "r",
        "Blocked",
        decision=decision,
        conditions=[
            condition("Decided", "True", "PromotionWindowClosed"),
            condition("Ready", "False", "PromotionWindowClosed"),
        ],
    )
    result = result_from_request(blocked)
    assert (result.verdict, result.reason) == (Verdict.BLOCKED, "PromotionWindowClosed")
    assert result.next_open == dt.datetime(2026, 5, 5, 12, 29, tzinfo=dt.UTC)
    assert retry_after_seconds(result.next_open, T0) == 29 * 60
    assert (
        retry_after_seconds(result.next_open, T0 + dt.timedelta(minutes=28, seconds=59, milliseconds=500))
        == 1
    )
    assert retry_after_seconds(result.next_open, T0 + dt.timedelta(hours=1)) == 1
    assert retry_after_seconds(None, T0) is None
    # An override let it through closed windows: no retry hint. No nextOpen known: none either.
    assert closed_window_next_open({"promotionWindow": {"open": False, "message": "closed"}}) is None
    assert closed_window_next_open({"promotionWindow": {"open": True, "message": "open"}}) is None
    assert closed_window_next_open({}) is None


# --- the list ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "listed"),
    [
        ("AwaitingApproval", "pending"),
        ("Pending", "pending"),
        ("Promoted", "completed"),
        ("Superseded", "cancelled"),
        ("Blocked", "cancelled"),
        ("Failed", "cancelled"),
    ],
)
def test_phases_map_to_the_reference_statuses(phase: str, listed: str) -> None:
    assert list_status(phase) == listed


POINTERS = {"support-local": ("agent", "local")}


def test_pending_items_show_the_request_time_evaluation() -> None:
    annotations = {EVALUATION_ANNOTATION: evaluation().model_dump_json()}
    waiting = request(
        "prq-1", "AwaitingApproval", approval={"decisionDigest": "d" * 64}, annotations=annotations
    )
    summary = request_summary(waiting, POINTERS)
    assert summary is not None
    assert (summary.request_id, summary.status, summary.release_id) == ("prq-1", "pending", "cand")
    assert (summary.agent_id, summary.environment, summary.baseline_release_id) == ("agent", "local", "base")
    assert (summary.reason, summary.actor, summary.window) == ("cand", "ci", "7d")
    assert summary.policy == evaluation().policy
    assert summary.created_at == T0
    assert (summary.resolved_at, summary.completed_action_id) == (None, None)
    # A request that never needed approval is not listed.
    assert request_summary(request("http-1", "Promoted"), POINTERS) is None


def test_completed_and_cancelled_items() -> None:
    decision = {
        "actionId": "act_bbbbbbbbbbbb",
        "decidedAt": "2026-05-05T12:05:00Z",
        "releaseId": "cand",
        "agentId": "agent",
        "environment": "local",
        "pointerBefore": "base",
        "policy": POLICY,
        "approvals": [{"name": "papr-1", "approver": "bob"}],
    }
    done = request_summary(request("prq-1", "Promoted", decision=decision), {})
    assert done is not None
    assert (done.status, done.completed_action_id) == ("completed", "act_bbbbbbbbbbbb")
    assert done.resolved_at == T0 + dt.timedelta(minutes=5)
    assert (done.agent_id, done.baseline_release_id) == ("agent", "base")
    assert done.policy is not None
    assert done.policy.passed
    superseded = request(
        "prq-2",
        "Superseded",
        approval={"decisionDigest": "d" * 64},
        conditions=[condition("Decided", "True", "Superseded", at="2026-05-05T12:07:00Z")],
    )
    cancelled = request_summary(superseded, POINTERS)
    assert cancelled is not None
    assert (cancelled.status, cancelled.completed_action_id) == ("cancelled", None)
    assert cancelled.resolved_at == T0 + dt.timedelta(minutes=7)
    assert (cancelled.agent_id, cancelled.environment, cancelled.policy) == ("agent", "local", None)


def test_the_list_is_newest_first_filtered_and_limited() -> None:
    def waiting(name: str, minute: int) -> dict[str, Any]:
        return request(
            name,
            "AwaitingApproval",
            approval={"decisionDigest": "d" * 64},
            created=f"2026-05-05T12:{minute:02d}:00Z",
        )

    bodies = [waiting("prq-a", 1), waiting("prq-c", 3), waiting("prq-b", 2), request("http-x", "Promoted")]
    assert [s.request_id for s in summarize_requests(bodies, POINTERS, status=None, limit=50)] == [
        "prq-c",
        "prq-b",
        "prq-a",
    ]
    assert [s.request_id for s in summarize_requests(bodies, POINTERS, status="pending", limit=2)] == [
        "prq-c",
        "prq-b",
    ]
    assert summarize_requests(bodies, POINTERS, status="completed", limit=50) == []
    assert summarize_requests(bodies, POINTERS, status="nope", limit=50) == []


def test_confirm_needs_create_on_promotionapprovals() -> None:
    assert (Access.APPROVE.verb, Access.APPROVE.resource) == ("create", "promotionapprovals")
    assert Access.APPROVE.unauthorized_message == "Missing or invalid API token for mutation route."
