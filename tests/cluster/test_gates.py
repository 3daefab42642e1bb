"""Gates beyond the reference, on a real API server through kubectl: approvals, promotion windows
with break-glass, the concurrency policy and waiting for evidence.

Each test starts from the quickstart: support-base promoted first (no baseline), then support-cand
as the candidate. The operator re-examines waiting requests every second here
(FLIGHTDECK_RECHECK_SECONDS=1) and sweeps pointers every 5 s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.localdev.controlplane import ControlPlane, KubectlError
from flightdeck_operator.localdev.processes import OperatorProcess
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
from .sidecar_client import role, role_binding
from .test_clitools import cli

GATE = {
    "maxCostPerRunUsd": 10.0,
    "maxLatencyMs": 3000,
    "maxErrorRate": 0.05,
    "minCandidateRuns": 1,
    "minBaselineRuns": 1,
    "minLowRuns": 1,
    "requireHighDiffConfidence": False,
}


def start_with_base_promoted(
    cp: ControlPlane, namespace: str, operator: OperatorProcess, **gate: Any
) -> None:
    """Quickstart, evidence for both releases, support-base live; then the policy gets ``gate``."""
    quickstart(cp, namespace, max_cost=10.0)
    ingest(operator.store, run_events("support-base", AGENT, ENV, 1, latency_ms=1000))
    ingest(operator.store, run_events("support-cand", AGENT, ENV, 1, latency_ms=1200))
    apply(cp, namespace, request("base", "support-local", "support-base"))
    assert wait_decided(cp, namespace, "base")["status"]["phase"] == "Promoted"
    if gate:
        apply(cp, namespace, policy("gate", **{**GATE, **gate}))


def entries_for(operator: OperatorProcess, **filters: Any) -> list[LedgerEntry]:
    with open_store(operator.store) as store:
        return list(reversed(store.list_ledger(limit=1000, **filters)))


def request_entries(operator: OperatorProcess, name: str) -> list[LedgerEntry]:
    return [e for e in entries_for(operator) if (e.details or {}).get("request") == name and e.request_uid]


def wait_phase(cp: ControlPlane, namespace: str, kind: str, name: str, phase: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cp, namespace, kind, name)
        return obj if (obj.get("status") or {}).get("phase") == phase else None

    return wait_for(probe, timeout=60, what=f"{kind}/{name} phase {phase}")


def approval(name: str, target: dict[str, Any], reason: str = "looks good") -> dict[str, Any]:
    return {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": "PromotionApproval",
        "metadata": {"name": name},
        "spec": {
            "request": {"name": target["metadata"]["name"], "uid": target["metadata"]["uid"]},
            "decisionDigest": target["status"]["approval"]["decisionDigest"],
            "reason": reason,
        },
    }


def apply_as(cp: ControlPlane, namespace: str, user: str, document: dict[str, Any]) -> None:
    """``kubectl apply`` as ``user``: the webhook stamps that identity."""
    cp.kubectl("apply", "-n", namespace, "-f", "-", user=user, input=_yaml(document))


def alice_requests_ship(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    """alice requests support-cand; returns the request once it awaits approval."""
    apply_as(cp, namespace, "alice", request("ship", "support-local", "support-cand"))
    return wait_phase(cp, namespace, "promotionrequest", "ship", "AwaitingApproval")


def wait_approved_by(cp: ControlPlane, namespace: str, approvers: list[str]) -> None:
    wait_for(
        lambda: (
            get(cp, namespace, "promotionrequest", "ship")["status"]["approval"].get("approvedBy")
            == approvers
        ),
        what=f"approvedBy {approvers}",
    )


def grant_promoters(cp: ControlPlane, namespace: str) -> None:
    """alice and bob may create requests and approvals (and read them), nothing else."""
    apply(
        cp,
        namespace,
        role(
            "promoter",
            ("create", "promotionrequests"),
            ("get", "promotionrequests"),
            ("create", "promotionapprovals"),
            ("get", "promotionapprovals"),
            # `flightdeck-operator approve` watches its approval for the verdict.
            ("list", "promotionapprovals"),
            ("watch", "promotionapprovals"),
        ),
        role_binding("alice-promoter", "promoter", user="alice"),
        role_binding("bob-promoter", "promoter", user="bob"),
    )


# -- approvals --------------------------------------------------------------------------------------


def test_approval_by_another_user_promotes_and_is_ledgered(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator, approval={"minApprovals": 1})
    grant_promoters(control_plane, namespace)
    waiting = alice_requests_ship(control_plane, namespace)
    assert waiting["spec"]["requestedBy"]["username"] == "alice"
    assert condition(waiting, "Reconciling")["reason"] == "AwaitingApproval"
    assert condition(waiting, "Decided")["status"] == "False"
    assert waiting["status"]["approval"]["required"] == 1
    assert waiting["status"]["approval"]["passed"] is True
    assert request_entries(operator, "ship") == []  # nothing decided yet

    # The requester cannot approve her own request: denied at admission, with a clear message.
    with pytest.raises(KubectlError, match="cannot approve it"):
        apply_as(control_plane, namespace, "alice", approval("by-alice", waiting))

    apply_as(control_plane, namespace, "bob", approval("by-bob", waiting))
    decided = wait_decided(control_plane, namespace, "ship")
    assert decided["status"]["phase"] == "Promoted"
    assert decided["status"]["decision"]["approvals"] == [{"name": "by-bob", "approver": "bob"}]
    approved = get(control_plane, namespace, "promotionapproval", "by-bob")
    assert approved["spec"]["approver"]["username"] == "bob"
    assert approved["status"]["phase"] == "Accepted"
    assert condition(approved, "Ready")["reason"] == "ApprovalAccepted"

    [approval_entry] = entries_for(operator, kind=LedgerKind.APPROVAL)
    assert approval_entry.actor == "bob"
    assert (approval_entry.details or {})["outcome"] == "Accepted"
    [final] = request_entries(operator, "ship")
    assert final.pointer_changed
    assert (final.details or {})["approvals"] == [
        {"name": "by-bob", "approver": "bob", "seq": approval_entry.seq}
    ]
    assert (final.details or {})["requested_by"] == "alice"
    assert final.reason == "test promote | approval: looks good"
    assert (
        get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
        == "support-cand"
    )


def test_policy_change_makes_approvals_stale(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator, approval={"minApprovals": 2})
    grant_promoters(control_plane, namespace)
    waiting = alice_requests_ship(control_plane, namespace)
    first_digest = waiting["status"]["approval"]["decisionDigest"]
    apply_as(control_plane, namespace, "bob", approval("by-bob", waiting))
    wait_approved_by(control_plane, namespace, ["bob"])

    # Tightening the latency limit changes the policy digest: bob approved something else.
    apply(
        control_plane,
        namespace,
        policy("gate", **{**GATE, "maxLatencyMs": 2500, "approval": {"minApprovals": 2}}),
    )

    def stale() -> dict[str, Any] | None:
        obj = get(control_plane, namespace, "promotionrequest", "ship")
        shown = obj["status"]["approval"]
        return obj if shown["decisionDigest"] != first_digest and shown.get("stale") == ["by-bob"] else None

    refreshed = wait_for(stale, what="the approval to go stale")
    assert refreshed["status"]["phase"] == "AwaitingApproval"
    assert not refreshed["status"]["approval"].get("approvedBy")
    bobs = wait_phase(control_plane, namespace, "promotionapproval", "by-bob", "Stale")
    assert condition(bobs, "Ready")["reason"] == "ApprovalStale"
    # An approval of the old digest made now is stale at once.
    apply_as(control_plane, namespace, "bob", approval("by-bob-again", waiting))
    late = wait_phase(control_plane, namespace, "promotionapproval", "by-bob-again", "Stale")
    assert late["status"]["ledgerSeq"] > 0
    assert request_entries(operator, "ship") == []


def test_cli_approve_reads_uid_and_digest_and_reports_the_verdict(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator, approval={"minApprovals": 1})
    grant_promoters(control_plane, namespace)
    apply_as(
        control_plane,
        namespace,
        "alice",
        request("ship", "support-local", "support-cand"),
    )
    wait_phase(control_plane, namespace, "promotionrequest", "ship", "AwaitingApproval")
    refused = cli(control_plane, namespace, "approve", "ship", "--reason", "mine", user="alice")
    assert refused.exit_code == 1
    assert "cannot approve it" in refused.output
    approved = cli(control_plane, namespace, "approve", "ship", "--reason", "lgtm", user="bob")
    assert approved.exit_code == 0, approved.output
    assert "Accepted: bob approved request ship" in approved.output
    assert wait_decided(control_plane, namespace, "ship")["status"]["phase"] == "Promoted"
    not_waiting = cli(control_plane, namespace, "approve", "ship", "--reason", "again", user="bob")
    assert not_waiting.exit_code == 1
    assert "is not awaiting approval (phase Promoted)" in not_waiting.output


def test_stale_approvals_never_count_again_and_revoked_approvers_go_stale(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    gate = {"minApprovals": 2, "approvers": {"users": ["bob", "admin"]}}
    start_with_base_promoted(control_plane, namespace, operator, approval=gate)
    grant_promoters(control_plane, namespace)
    waiting = alice_requests_ship(control_plane, namespace)
    apply_as(control_plane, namespace, "bob", approval("by-bob", waiting))
    wait_approved_by(control_plane, namespace, ["bob"])
    # bob is removed from the approvers: his approval no longer counts.
    apply(
        control_plane,
        namespace,
        policy("gate", **GATE, approval={"minApprovals": 2, "approvers": {"users": ["admin"]}}),
    )
    wait_phase(control_plane, namespace, "promotionapproval", "by-bob", "Stale")
    # Restoring the policy brings the old digest back, but a stale approval stays stale.
    apply(control_plane, namespace, policy("gate", **GATE, approval=gate))

    def digest_back() -> dict[str, Any] | None:
        obj = get(control_plane, namespace, "promotionrequest", "ship")
        same = obj["status"]["approval"]["decisionDigest"] == waiting["status"]["approval"]["decisionDigest"]
        return obj if same else None

    restored = wait_for(digest_back, what="the original digest to come back")
    apply(control_plane, namespace, approval("by-admin", restored))
    wait_approved_by(control_plane, namespace, ["admin"])
    shown = get(control_plane, namespace, "promotionrequest", "ship")["status"]
    assert shown["phase"] == "AwaitingApproval"
    assert shown["approval"]["stale"] == ["by-bob"]
    stale_marks = [
        e
        for e in entries_for(operator, kind=LedgerKind.APPROVAL)
        if e.idempotency_key.startswith("approval-stale:")
    ]
    assert [(e.details or {})["approval"] for e in stale_marks] == ["by-bob"]


def test_an_approval_of_a_request_decided_meanwhile_is_still_recorded(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane,
        namespace,
        operator,
        minCandidateRuns=4,
        requireHighDiffConfidence=True,
        approval={"minApprovals": 1},
    )
    grant_promoters(control_plane, namespace)
    apply_as(
        control_plane,
        namespace,
        "alice",
        request("short", "support-local", "support-cand", waitForEvidence={"timeout": "1m"}),
    )
    early = wait_phase(control_plane, namespace, "promotionrequest", "short", "AwaitingEvidence")
    early["status"]["approval"] = {"decisionDigest": "0" * 64}  # nothing to approve yet
    apply_as(control_plane, namespace, "bob", approval("early", early))
    assert wait_decided(control_plane, namespace, "short", timeout=120)["status"]["phase"] == "Blocked"
    judged = wait_phase(control_plane, namespace, "promotionapproval", "early", "Rejected")
    assert condition(judged, "Ready")["reason"] == "RequestMismatch"
    assert judged["status"]["ledgerSeq"] > 0


def test_approver_outside_the_policy_list_is_rejected(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, approval={"minApprovals": 1, "approvers": {"users": ["bob"]}}
    )
    grant_promoters(control_plane, namespace)
    waiting = alice_requests_ship(control_plane, namespace)
    apply(control_plane, namespace, approval("by-admin", waiting))
    rejected = wait_phase(control_plane, namespace, "promotionapproval", "by-admin", "Rejected")
    assert condition(rejected, "Ready")["reason"] == "NotAnApprover"
    assert get(control_plane, namespace, "promotionrequest", "ship")["status"]["phase"] == "AwaitingApproval"


def test_rollback_never_needs_approval(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator)
    apply(control_plane, namespace, request("cand", "support-local", "support-cand"))
    assert wait_decided(control_plane, namespace, "cand")["status"]["phase"] == "Promoted"
    apply(control_plane, namespace, policy("gate", **GATE, approval={"minApprovals": 1}))
    apply(control_plane, namespace, request("back", "support-local", None, action="rollback"))
    assert wait_decided(control_plane, namespace, "back")["status"]["phase"] == "RolledBack"


# -- promotion windows --------------------------------------------------------------------------------


def freeze_started_a_minute_ago(duration: str = "30m", kind: str = "Deny") -> dict[str, Any]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return {
        "name": "freeze",
        "kind": kind,
        "schedule": f"{start.minute} {start.hour} * * *",
        "duration": duration,
    }


def test_deny_window_blocks_with_next_open_and_override_breaks_glass(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, promotionWindows=[freeze_started_a_minute_ago()]
    )

    pointer = wait_for(
        lambda: (
            (p := get(control_plane, namespace, "releasepointer", "support-local"))["status"].get(
                "promotionWindow"
            )
            and p
        ),
        what="the pointer to show the window",
    )
    shown = pointer["status"]["promotionWindow"]
    assert shown["open"] is False
    assert shown["activeWindows"] == ["freeze"]
    next_change = dt.datetime.fromisoformat(shown["nextChange"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=25) < next_change - dt.datetime.now(dt.UTC) < dt.timedelta(minutes=30)

    apply(control_plane, namespace, request("frozen", "support-local", "support-cand"))
    blocked = wait_decided(control_plane, namespace, "frozen")
    assert blocked["status"]["phase"] == "Blocked"
    assert condition(blocked, "Ready")["reason"] == "PromotionWindowClosed"
    window = blocked["status"]["decision"]["promotionWindow"]
    assert window["open"] is False
    assert window["nextOpen"] == shown["nextChange"]
    assert blocked["status"]["decision"]["policy"]["reasons"][0].startswith(
        "Promotion closed by deny window 'freeze'"
    )
    [entry] = request_entries(operator, "frozen")
    assert not entry.pointer_changed
    assert (entry.details or {})["blocked_by"] == "PromotionWindowClosed"

    # A dry run shows the same block, with the window, and records nothing.
    apply(control_plane, namespace, request("peek", "support-local", "support-cand", dryRun=True))
    peek = wait_decided(control_plane, namespace, "peek")
    assert peek["status"]["phase"] == "Evaluated"
    assert peek["status"]["decision"]["promotionWindow"]["nextOpen"] == shown["nextChange"]
    assert request_entries(operator, "peek") == []

    # Rollbacks are never frozen.
    apply(control_plane, namespace, request("back", "support-local", "support-base", action="rollback"))
    assert wait_decided(control_plane, namespace, "back")["status"]["phase"] == "RolledBack"

    # Break-glass (admin holds every verb, including "override"): decided, and the override is ledgered.
    apply(
        control_plane,
        namespace,
        request("hotfix", "support-local", "support-cand", override={"reason": "CVE fix during the freeze"}),
    )
    hotfix = wait_decided(control_plane, namespace, "hotfix")
    assert hotfix["status"]["phase"] == "Promoted"
    assert hotfix["status"]["decision"]["override"] == {"reason": "CVE fix during the freeze", "by": "admin"}
    [entry] = request_entries(operator, "hotfix")
    assert (entry.details or {})["override"] == {"reason": "CVE fix during the freeze", "by": "admin"}


def test_pointer_drops_next_change_when_none_is_found(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, promotionWindows=[freeze_started_a_minute_ago()]
    )
    wait_for(
        lambda: (
            "nextChange"
            in (
                get(control_plane, namespace, "releasepointer", "support-local")["status"].get(
                    "promotionWindow"
                )
                or {}
            )
        ),
        what="the pointer to show the next change",
    )
    # A freeze that never ends within the look-ahead: no next change, and the old one must go.
    always = {"name": "always", "kind": "Deny", "schedule": "* * * * *", "duration": "2m"}
    apply(control_plane, namespace, policy("gate", **GATE, promotionWindows=[always]))

    def updated() -> dict[str, Any] | None:
        shown = get(control_plane, namespace, "releasepointer", "support-local")["status"]["promotionWindow"]
        return shown if shown["activeWindows"] == ["always"] else None

    shown = wait_for(updated, what="the new window on the pointer")
    assert shown["open"] is False
    assert "nextChange" not in shown
    assert "no opening found" in shown["message"]


def test_override_needs_its_own_rbac_verb(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, promotionWindows=[freeze_started_a_minute_ago()]
    )
    grant_promoters(control_plane, namespace)
    hotfix = request("hotfix", "support-local", "support-cand", override={"reason": "urgent"})
    with pytest.raises(KubectlError, match="override"):
        apply_as(control_plane, namespace, "alice", hotfix)
    apply(
        control_plane,
        namespace,
        role("breakglass", ("override", "promotionrequests")),
        role_binding("alice-breakglass", "breakglass", user="alice"),
    )
    apply_as(control_plane, namespace, "alice", hotfix)
    assert wait_decided(control_plane, namespace, "hotfix")["status"]["phase"] == "Promoted"


def test_allow_window_opens_promotion(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, promotionWindows=[freeze_started_a_minute_ago(kind="Allow")]
    )
    apply(control_plane, namespace, request("inside", "support-local", "support-cand"))
    assert wait_decided(control_plane, namespace, "inside")["status"]["phase"] == "Promoted"


# -- concurrency policy -------------------------------------------------------------------------------


def test_forbid_fails_a_new_request_while_one_waits(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, approval={"minApprovals": 1}, concurrencyPolicy="Forbid"
    )
    apply(control_plane, namespace, request("first", "support-local", "support-cand"))
    wait_phase(control_plane, namespace, "promotionrequest", "first", "AwaitingApproval")
    apply(control_plane, namespace, request("second", "support-local", "support-cand"))
    second = wait_decided(control_plane, namespace, "second")
    assert second["status"]["phase"] == "Failed"
    assert condition(second, "Ready")["reason"] == "ConcurrencyForbidden"
    assert "first" in second["status"]["message"]
    # A dry run is never forbidden.
    apply(control_plane, namespace, request("peek", "support-local", "support-cand", dryRun=True))
    assert wait_decided(control_plane, namespace, "peek")["status"]["phase"] == "Evaluated"
    # Neither is a rollback: backing out is never held up by a waiting promotion.
    apply(control_plane, namespace, request("back", "support-local", "support-base", action="rollback"))
    assert wait_decided(control_plane, namespace, "back")["status"]["phase"] == "RolledBack"
    assert get(control_plane, namespace, "promotionrequest", "first")["status"]["phase"] == "AwaitingApproval"
    assert request_entries(operator, "second") == []


def test_replace_supersedes_the_older_waiting_request(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, approval={"minApprovals": 1}, concurrencyPolicy="Replace"
    )
    apply(control_plane, namespace, request("first", "support-local", "support-cand"))
    wait_phase(control_plane, namespace, "promotionrequest", "first", "AwaitingApproval")
    apply(control_plane, namespace, request("second", "support-local", "support-cand"))
    first = wait_decided(control_plane, namespace, "first")
    assert first["status"]["phase"] == "Superseded"
    assert condition(first, "Stalled")["reason"] == "Superseded"
    assert "second" in first["status"]["message"]
    wait_phase(control_plane, namespace, "promotionrequest", "second", "AwaitingApproval")
    assert request_entries(operator, "first") == []


def test_queue_lets_newer_requests_pass_a_waiting_one(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator, approval={"minApprovals": 1})
    apply(control_plane, namespace, request("waits", "support-local", "support-cand"))
    wait_phase(control_plane, namespace, "promotionrequest", "waits", "AwaitingApproval")
    apply(control_plane, namespace, request("back", "support-local", "support-base", action="rollback"))
    assert wait_decided(control_plane, namespace, "back")["status"]["phase"] == "RolledBack"
    assert get(control_plane, namespace, "promotionrequest", "waits")["status"]["phase"] == "AwaitingApproval"


# -- waiting for evidence -----------------------------------------------------------------------------


def test_waits_for_evidence_then_promotes_with_one_ledger_entry(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, minCandidateRuns=4, requireHighDiffConfidence=True
    )
    apply(
        control_plane,
        namespace,
        request("patient", "support-local", "support-cand", waitForEvidence={"timeout": "30m"}),
    )
    waiting = wait_phase(control_plane, namespace, "promotionrequest", "patient", "AwaitingEvidence")
    assert condition(waiting, "Reconciling")["reason"] == "AwaitingEvidence"
    assert condition(waiting, "Decided")["status"] == "False"
    assert waiting["status"]["evidenceWait"]["missingCandidateRuns"] == 3
    assert "3 more candidate runs" in waiting["status"]["message"]
    assert request_entries(operator, "patient") == []

    ingest(operator.store, run_events("support-cand", AGENT, ENV, 3, latency_ms=1200))
    decided = wait_decided(control_plane, namespace, "patient")
    assert decided["status"]["phase"] == "Promoted"
    assert decided["status"]["decision"]["evidence"]["candidate"]["runs"] == 4
    assert len(request_entries(operator, "patient")) == 1


def test_waiting_for_evidence_blocks_at_the_timeout(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane, namespace, operator, minCandidateRuns=4, requireHighDiffConfidence=True
    )
    apply(
        control_plane,
        namespace,
        request("short", "support-local", "support-cand", waitForEvidence={"timeout": "1m"}),
    )
    wait_phase(control_plane, namespace, "promotionrequest", "short", "AwaitingEvidence")
    blocked = wait_decided(control_plane, namespace, "short", timeout=120)
    assert blocked["status"]["phase"] == "Blocked"
    assert condition(blocked, "Ready")["reason"] == "PolicyBlocked"
    [entry] = request_entries(operator, "short")
    assert not entry.pointer_changed


def test_a_breach_is_not_waited_for(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(
        control_plane,
        namespace,
        operator,
        maxCostPerRunUsd=4.0,
        minCandidateRuns=4,
        requireHighDiffConfidence=True,
    )
    apply(
        control_plane,
        namespace,
        request("hopeless", "support-local", "support-cand", waitForEvidence={"timeout": "30m"}),
    )
    assert wait_decided(control_plane, namespace, "hopeless")["status"]["phase"] == "Blocked"


def _yaml(document: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(document)
