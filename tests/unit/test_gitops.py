"""GitOps health: the Argo CD Lua check and the Flux CEL expressions (run as those tools run them,
see ``tests/health_checks.py``) on the statuses the operator really writes (built by
``projection``), compared with the kstatus reading."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml
from lupa import lua51

from flightdeck_operator.api.conditions import ApprovalPhase, Reason, dependency_missing, ready, stalled
from flightdeck_operator.controller.notification_status import (
    Blocker,
    indexed_subscription,
    subscription_status,
)
from flightdeck_operator.controller.projection import (
    approval_status,
    dry_run_status,
    failed_status,
    pending_status,
    pointer_ready,
    pointer_status,
    request_status_from_entry,
)
from flightdeck_operator.engine.decide import Comparison, DecisionRequest, decide
from flightdeck_operator.engine.evidence import SideEvidence
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import (
    Policy,
    PolicyResult,
    PricingEntry,
    PricingTable,
    PromotionAction,
    ReleaseRef,
)
from flightdeck_operator.store.notifications import SubscriptionState
from tests.health_checks import (
    ARGOCD_CM,
    FLUX_KUSTOMIZATION,
    HEALTH_LUA,
    argocd_health,
    flux_checks,
    flux_status,
    sandboxed_runner,
)

from .test_conditions import kstatus

KINDS = (
    "PromotionRequest",
    "ReleasePointer",
    "AgentRelease",
    "PricingTable",
    "PromotionPolicy",
    "PromotionApproval",
    "NotificationSubscription",
)

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=3)
BLOCKED_REASON = "candidate cost_per_run_usd 5.000000 exceeds max 4.000000"
# Argo CD health <-> kstatus: the two must never disagree on an object.
ARGO_FOR_KSTATUS = {
    "Current": {"Healthy"},
    "Failed": {"Degraded"},
    "InProgress": {"Progressing", "Suspended"},
}


# -- the statuses, from the operator's own builders --------------------------------------------------


def entry(*, changed: bool, kind: LedgerKind = LedgerKind.PROMOTE, seq: int = 2) -> LedgerEntry:
    return LedgerEntry(
        kind=kind,
        idempotency_key=f"request:uid-{seq}",
        request_uid=f"0f3c2a1b-{seq:04d}-4000-8000-000000000000",
        actor="ci",
        namespace="agents",
        pointer="support-bot-production",
        agent_id="support-bot",
        environment="production",
        release_id="support-bot-1-5-0",
        baseline_release_id="support-bot-1-4-0",
        pointer_changed=changed,
        reason="ship 1.5.0",
        policy_result=PolicyResult(
            passed=changed, reasons=() if changed else (BLOCKED_REASON,), evaluated_at=T1
        ),
        details={"action_id": "act_0f3c2a1b0002", "request": "promote-1-5-0"},
        created_at=T1,
        seq=seq,
        prev_hash="a" * 64,
        hash="b" * 64,
    )


def pending() -> dict[str, Any]:
    return pending_status("Waiting for the operator to decide", generation=1, conditions=None, now=T0)


def request_after(ledger_entry: LedgerEntry) -> dict[str, Any]:
    return request_status_from_entry(ledger_entry, generation=1, conditions=pending()["conditions"], now=T1)


def dry_run(*, blocked: bool) -> dict[str, Any]:
    pricing = PricingTable(
        provider="openai",
        pricing_version="2026-05",
        entries=(
            PricingEntry(model="gpt-4o-mini", input_usd_per_1k_tokens=1.0, output_usd_per_1k_tokens=2.0),
        ),
    )
    target = ReleaseRef(
        release_id="support-bot-1-5-0",
        agent_id="support-bot",
        provider="openai",
        pricing_version="2026-05",
        model="gpt-4o-mini",
    )
    baseline = target.model_copy(update={"release_id": "support-bot-1-4-0"})
    since = T0 - dt.timedelta(days=7)
    comparison = Comparison(
        baseline=baseline,
        baseline_pricing=pricing,
        candidate_pricing=pricing,
        baseline_evidence=SideEvidence("support-bot-1-4-0", "production", since, T0),
        candidate_evidence=SideEvidence("support-bot-1-5-0", "production", since, T0),
    )
    decision = decide(
        DecisionRequest(
            action=PromotionAction.PROMOTE, agent_id="support-bot", environment="production", target=target
        ),
        # No events and the default policy (HIGH confidence required): blocked; no baseline: passes.
        current_release_id="support-bot-1-4-0" if blocked else None,
        comparison=comparison if blocked else None,
        policy=Policy(),
        now=T0,
    )
    assert decision.passed is not blocked
    return dry_run_status(
        decision, action_id="act_dry", generation=1, conditions=pending()["conditions"], now=T1
    )


def pointer_moved() -> dict[str, Any]:
    head = entry(changed=True)
    ready_update = pointer_ready(head, None, repaired=None, current=None, retired=None)
    return pointer_status(
        [head], history_limit=10, generation=1, conditions=None, now=T1, ready_update=ready_update
    )


def with_conditions(update: Any) -> dict[str, Any]:
    return {"observedGeneration": 1, "conditions": update.apply(None, T0, 1)}


# (name, kind, status or None, generation, Argo CD status, message start)
CASES: list[tuple[str, str, Callable[[], dict[str, Any] | None], int, str, str]] = [
    ("request-pending", "PromotionRequest", pending, 1, "Progressing", "AwaitingDecision: Waiting"),
    (
        "request-awaiting-approval",
        "PromotionRequest",
        lambda: pending_status(
            "Needs an approver", reason=Reason.AWAITING_APPROVAL, generation=1, conditions=None, now=T0
        ),
        1,
        "Suspended",
        "AwaitingApproval: Needs an approver",
    ),
    (
        "request-promoted",
        "PromotionRequest",
        lambda: request_after(entry(changed=True)),
        1,
        "Healthy",
        "Promoted: Promoted support-bot-1-5-0 for support-bot/production (ledger seq 2)",
    ),
    (
        "request-rolled-back",
        "PromotionRequest",
        lambda: request_after(entry(changed=True, kind=LedgerKind.ROLLBACK)),
        1,
        "Healthy",
        "RolledBack: Rolled back to support-bot-1-5-0",
    ),
    (
        "request-blocked",
        "PromotionRequest",
        lambda: request_after(entry(changed=False)),
        1,
        "Degraded",
        f"PolicyBlocked: Promotion blocked by policy. {BLOCKED_REASON} (ledger seq 2)",
    ),
    (
        "request-failed",
        "PromotionRequest",
        lambda: failed_status(
            Reason.POINTER_NOT_FOUND,
            'ReleasePointer "nope" not found',
            generation=1,
            conditions=pending()["conditions"],
            now=T1,
        ),
        1,
        "Degraded",
        'PointerNotFound: ReleasePointer "nope" not found',
    ),
    (
        "request-awaiting-approval",
        "PromotionRequest",
        lambda: pending_status(
            "Awaiting approval (0/1 approvals)",
            reason=Reason.AWAITING_APPROVAL,
            generation=1,
            conditions=None,
            now=T0,
        ),
        1,
        "Suspended",
        "AwaitingApproval: Awaiting approval",
    ),
    (
        "request-awaiting-evidence",
        "PromotionRequest",
        lambda: pending_status(
            "Awaiting evidence until", reason=Reason.AWAITING_EVIDENCE, generation=1, conditions=None, now=T0
        ),
        1,
        "Progressing",
        "AwaitingEvidence: Awaiting evidence",
    ),
    (
        "request-superseded",
        "PromotionRequest",
        lambda: failed_status(
            Reason.SUPERSEDED, "Superseded by the newer request b", generation=1, conditions=None, now=T1
        ),
        1,
        "Degraded",
        "Superseded: Superseded by the newer request b",
    ),
    (
        "request-window-closed",
        "PromotionRequest",
        lambda: failed_status(
            Reason.PROMOTION_WINDOW_CLOSED,
            "Promotion closed by deny window 'freeze'",
            generation=1,
            conditions=None,
            now=T1,
        ),
        1,
        "Degraded",
        "PromotionWindowClosed: Promotion closed",
    ),
    (
        "approval-accepted",
        "PromotionApproval",
        lambda: approval_status(
            ApprovalPhase.ACCEPTED,
            Reason.APPROVAL_ACCEPTED,
            "bob approved",
            ledger_seq=3,
            generation=1,
            conditions=None,
            now=T1,
        ),
        1,
        "Healthy",
        "ApprovalAccepted: bob approved",
    ),
    (
        "approval-stale",
        "PromotionApproval",
        lambda: approval_status(
            ApprovalPhase.STALE,
            Reason.APPROVAL_STALE,
            "approved an earlier digest",
            ledger_seq=3,
            generation=1,
            conditions=None,
            now=T1,
        ),
        1,
        "Degraded",
        "ApprovalStale: approved an earlier digest",
    ),
    (
        "request-dry-run-passed",
        "PromotionRequest",
        lambda: dry_run(blocked=False),
        1,
        "Healthy",
        "Evaluated: Dry run",
    ),
    (
        "request-dry-run-blocked",
        "PromotionRequest",
        lambda: dry_run(blocked=True),
        1,
        "Degraded",
        "PolicyBlocked: Dry run: promote of support-bot-1-5-0 would be blocked: diff confidence is LOW",
    ),
    (
        "request-without-status",
        "PromotionRequest",
        lambda: None,
        1,
        "Progressing",
        "Waiting for the FlightDeck",
    ),
    (
        "request-status-behind-spec",
        "PromotionRequest",
        lambda: request_after(entry(changed=True)),
        2,
        "Progressing",
        "Waiting for the FlightDeck operator to observe generation 2",
    ),
    (
        "pointer-in-sync",
        "ReleasePointer",
        pointer_moved,
        1,
        "Healthy",
        "InSync: Release support-bot-1-5-0 is live (ledger seq 2)",
    ),
    (
        "pointer-nothing-promoted",
        "ReleasePointer",
        lambda: pointer_status(
            [],
            history_limit=10,
            generation=1,
            conditions=None,
            now=T0,
            ready_update=pointer_ready(None, None, repaired=None, current=None, retired=None),
        ),
        1,
        "Healthy",
        "InSync: No release promoted yet",
    ),
    (
        "pointer-policy-missing",
        "ReleasePointer",
        lambda: with_conditions(
            dependency_missing(Reason.POLICY_NOT_FOUND, 'PromotionPolicy "gate" not found')
        ),
        1,
        "Progressing",
        "PolicyNotFound: ",
    ),
    (
        "pointer-duplicate",
        "ReleasePointer",
        lambda: with_conditions(stalled(Reason.DUPLICATE_POINTER, "Also governed by other-pointer")),
        1,
        "Degraded",
        "DuplicatePointer: Also governed by other-pointer",
    ),
    (
        "release-priced",
        "AgentRelease",
        lambda: with_conditions(ready(Reason.PRICING_RESOLVED, "Priced by PricingTable openai-2026-05")),
        1,
        "Healthy",
        "PricingResolved: ",
    ),
    (
        "release-waiting-for-pricing",
        "AgentRelease",
        lambda: with_conditions(dependency_missing(Reason.PRICING_TABLE_MISSING, "No PricingTable")),
        1,
        "Progressing",
        "PricingTableMissing: No PricingTable",
    ),
    (
        "pricing-recorded",
        "PricingTable",
        lambda: with_conditions(ready(Reason.RECORDED, "Generation 1 recorded")),
        1,
        "Healthy",
        "Recorded: ",
    ),
    (
        "policy-recorded",
        "PromotionPolicy",
        lambda: with_conditions(ready(Reason.RECORDED, "Generation 1 recorded")),
        1,
        "Healthy",
        "Recorded: ",
    ),
    (
        "subscription-delivering",
        "NotificationSubscription",
        lambda: subscription(),
        1,
        "Healthy",
        "Delivering: ",
    ),
    (
        "subscription-failing",
        "NotificationSubscription",
        lambda: subscription(failures=3),
        1,
        "Progressing",
        "DeliveryFailing: 3 attempt(s)",
    ),
    (
        "subscription-without-secret",
        "NotificationSubscription",
        lambda: subscription(blocker=Blocker(Reason.SECRET_NOT_FOUND, "Secret missing")),
        1,
        "Progressing",
        "SecretNotFound: ",
    ),
    (
        "subscription-invalid",
        "NotificationSubscription",
        lambda: subscription(url="http://2852039166/"),
        1,
        "Degraded",
        "InvalidSpec: url",
    ),
]


def subscription(
    *, failures: int = 0, blocker: Blocker | None = None, url: str = "https://hooks.example.com/"
) -> dict[str, Any]:
    """A NotificationSubscription's status as the notifier writes it."""
    indexed = indexed_subscription(
        "agents",
        "hooks",
        "uid-1",
        {"creationTimestamp": "2026-11-25T12:00:00Z", "generation": 1},
        {"url": url, "events": ["promote.succeeded"], "secretRef": {"name": "hooks-key"}},
        {},
    )
    state = SubscriptionState(
        uid="uid-1",
        namespace="agents",
        name="hooks",
        cursor_seq=7,
        next_attempt_at=T1 if failures else None,
        consecutive_failures=failures,
        delivered_total=4,
        failed_attempts_total=failures,
        expired_total=0,
        last_success_at=T0,
        last_failure_at=T1 if failures else None,
        last_error="HTTP 503" if failures else None,
        backlog=failures,
    )
    return subscription_status(indexed, state, blocker, now=T1)


def resource(kind: str, status: Mapping[str, Any] | None, generation: int) -> dict[str, Any]:
    """The object as the API server serves it (JSON: nulls dropped, as Argo CD's decoder does)."""
    body: dict[str, Any] = {
        "apiVersion": "flightdeck.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "agents", "generation": generation},
        "spec": {},
    }
    if status is not None:
        body["status"] = {key: value for key, value in status.items() if value is not None}
    return body


def kstatus_of(body: Mapping[str, Any]) -> str:
    status = body.get("status") or {}
    return kstatus(
        status.get("conditions") or [],
        generation=body["metadata"]["generation"],
        observed=status.get("observedGeneration"),
    )


# -- Argo CD ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "build", "generation", "expected", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_argocd_health(
    name: str,
    kind: str,
    build: Callable[[], dict[str, Any] | None],
    generation: int,
    expected: str,
    message: str,
) -> None:
    body = resource(kind, build(), generation)
    health = argocd_health(body)
    assert health["status"] == expected, health
    assert health["message"].startswith(message), health
    if "status" in body:
        # Without any status kstatus says Current (kustomize-controller#387); the script waits.
        assert health["status"] in ARGO_FOR_KSTATUS[kstatus_of(body)]


def test_the_sandbox_has_no_string_library() -> None:
    # Argo CD opens no string library: a string method call fails there, and the script uses none.
    runtime = lua51.LuaRuntime()
    with pytest.raises(lua51.LuaError, match="attempt to index a string value"):
        sandboxed_runner(runtime)('return ("x"):upper()', runtime.table_from({}))
    assert "string." not in HEALTH_LUA.read_text()


def test_argocd_configmap_embeds_the_script_for_every_kind() -> None:
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    script = HEALTH_LUA.read_text()
    assert data == {f"resource.customizations.health.flightdeck.dev_{kind}": script for kind in KINDS}


# -- Flux ---------------------------------------------------------------------------------------------


def test_flux_checks_every_kind() -> None:
    document = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())
    assert (document["kind"], document["spec"]["wait"]) == ("Kustomization", True)
    checks = flux_checks()
    assert sorted(checks) == sorted(KINDS)
    for check in checks.values():
        assert check["apiVersion"] == "flightdeck.dev/v1alpha1"
        assert {"inProgress", "failed", "current"} <= set(check)


WITH_STATUS = [case for case in CASES if case[0] != "request-without-status"]


@pytest.mark.parametrize(
    ("name", "kind", "build", "generation"),
    [case[:4] for case in WITH_STATUS],
    ids=[c[0] for c in WITH_STATUS],
)
def test_flux_cel_reads_like_kstatus(name: str, kind: str, build: Callable[[], Any], generation: int) -> None:
    body = resource(kind, build(), generation)
    assert flux_status(body) == kstatus_of(body)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("request-blocked", "Failed"),
        ("request-failed", "Failed"),
        ("request-promoted", "Current"),
        ("request-pending", "InProgress"),
    ],
)
def test_kstatus_reads_the_decisions_as_promised(name: str, expected: str) -> None:
    """DESIGN section 1: blocked -> Failed, promoted -> Current, pending -> InProgress."""
    (case,) = [c for c in CASES if c[0] == name]
    body = resource(case[1], case[2](), case[3])
    assert kstatus_of(body) == expected
    assert flux_status(body) == expected


def test_flux_expressions_never_read_a_missing_condition_as_true() -> None:
    """`exists`, not `all`: an object whose conditions lack a type is not Current by accident."""
    body = resource("PromotionRequest", {"observedGeneration": 1, "conditions": []}, 1)
    assert flux_status(body) == "InProgress"


def test_a_pointer_whose_live_release_failed_verification_is_degraded_in_argocd_and_failed_in_flux() -> None:
    """Degraded=True (failureThreshold failing checks in a row) beside Ready=True (in sync with the
    ledger): Argo CD and Flux follow Degraded; Verified=False alone (still below the threshold) does not."""
    in_sync = pointer_moved()
    failing = {"type": "Verified", "status": "False", "reason": "VerificationFailing", "message": "1 of 3"}
    degraded = {"type": "Degraded", "status": "True", "reason": "VerificationFailed", "message": "3 of 3"}
    body = resource("ReleasePointer", {**in_sync, "conditions": [*in_sync["conditions"], failing]}, 1)
    assert argocd_health(body)["status"] == "Healthy"
    assert flux_status(body) == "Current"
    body = resource("ReleasePointer", {**in_sync, "conditions": [*in_sync["conditions"], degraded]}, 1)
    assert argocd_health(body) == {"status": "Degraded", "message": "VerificationFailed: 3 of 3"}
    assert flux_status(body) == "Failed"
