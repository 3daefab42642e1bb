"""The operator on a real API server: promotions, blocks, rollbacks and failures, end to end through
kubectl, with the ledger and the pointer checked against each other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.store import open_store

from .in_process import InProcessOperator
from .kube import (
    AGENT,
    COST_BREACH,
    ENV,
    FIRST_PROMOTION,
    apply,
    condition,
    get,
    ingest,
    pointer,
    policy,
    pricing_table,
    quickstart,
    release,
    request,
    run_events,
    wait_decided,
    wait_for,
)


def seed_quickstart_evidence(kopf_operator: InProcessOperator) -> None:
    ingest(kopf_operator.store, run_events("support-base", AGENT, ENV, 1, latency_ms=1000))
    ingest(kopf_operator.store, run_events("support-cand", AGENT, ENV, 1, latency_ms=1200))


def ledger(kopf_operator: InProcessOperator) -> list[Any]:
    with open_store(kopf_operator.store) as store:
        return list(reversed(store.list_ledger(limit=1000)))


def test_promote_block_and_rollback(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace)
    seed_quickstart_evidence(kopf_operator)

    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    first = wait_decided(control_plane, namespace, "first")
    assert first["status"]["phase"] == "Promoted"
    decision = first["status"]["decision"]
    assert decision["policy"]["reasons"] == [FIRST_PROMOTION]
    assert "pointerBefore" not in decision  # first promotion: there was no baseline
    assert decision["pointerAfter"] == "support-base"
    assert condition(first, "Ready")["status"] == "True"
    assert condition(first, "Decided")["reason"] == "Promoted"
    live = get(control_plane, namespace, "releasepointer", "support-local")
    assert live["status"]["releaseId"] == "support-base"

    apply(control_plane, namespace, request("too-costly", "support-local", "support-cand"))
    blocked = wait_decided(control_plane, namespace, "too-costly")
    assert blocked["status"]["phase"] == "Blocked"
    assert blocked["status"]["decision"]["policy"] == {
        "passed": False,
        "reasons": [COST_BREACH],
        "evaluatedAt": blocked["status"]["decision"]["policy"]["evaluatedAt"],
    }
    evidence = blocked["status"]["decision"]["evidence"]
    assert evidence["baseline"]["costPerRunUsd"] == 2.0
    assert evidence["candidate"]["costPerRunUsd"] == 5.0
    assert condition(blocked, "Ready")["status"] == "False"
    assert condition(blocked, "Stalled") == {
        **condition(blocked, "Stalled"),
        "status": "True",
        "reason": "PolicyBlocked",
    }
    assert (
        get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
        == "support-base"
    )

    entries = ledger(kopf_operator)
    decisions = [e for e in entries if e.kind.value in ("promote", "rollback")]
    assert [(e.release_id, e.pointer_changed) for e in decisions] == [
        ("support-base", True),
        ("support-cand", False),
    ]
    assert decisions[1].policy_result.reasons == (COST_BREACH,)
    assert blocked["status"]["decision"]["ledgerSeq"] == decisions[1].seq
    assert blocked["status"]["decision"]["ledgerHash"] == decisions[1].hash

    # Raise the limit: the candidate now passes, and the baseline becomes the previous release.
    apply(
        control_plane,
        namespace,
        policy(
            "gate",
            maxCostPerRunUsd=10.0,
            minCandidateRuns=1,
            minBaselineRuns=1,
            minLowRuns=1,
            requireHighDiffConfidence=False,
        ),
    )
    wait_for(
        lambda: len([e for e in ledger(kopf_operator) if e.kind.value == "policy_change"]) >= 2,
        what="the policy change in the ledger",
    )
    apply(control_plane, namespace, request("cheap-enough", "support-local", "support-cand"))
    promoted = wait_decided(control_plane, namespace, "cheap-enough")
    assert promoted["status"]["phase"] == "Promoted"
    assert promoted["status"]["decision"]["pointerBefore"] == "support-base"
    live = get(control_plane, namespace, "releasepointer", "support-local")
    assert (live["status"]["releaseId"], live["status"]["previousReleaseId"]) == (
        "support-cand",
        "support-base",
    )

    # Rollback without a target goes back to the previous release (gated by the same policy).
    apply(control_plane, namespace, request("roll-back", "support-local", None, action="rollback"))
    rolled = wait_decided(control_plane, namespace, "roll-back")
    assert rolled["status"]["phase"] == "RolledBack", rolled["status"]
    assert rolled["status"]["decision"]["releaseId"] == "support-base"
    live = get(control_plane, namespace, "releasepointer", "support-local")
    assert live["status"]["releaseId"] == "support-base"
    assert [h["releaseId"] for h in live["status"]["history"]] == [
        "support-base",
        "support-cand",
        "support-base",
    ]

    events = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=too-costly", "-o", "json"
    ).stdout
    assert any(
        e["reason"] == "PolicyBlocked" and COST_BREACH in e["message"] for e in json.loads(events)["items"]
    )


@pytest.mark.parametrize(
    ("manifests", "req", "reason", "message"),
    [
        pytest.param(
            [],
            request("r", "no-such-pointer", "support-base"),
            "PointerNotFound",
            'ReleasePointer "no-such-pointer" not found',
            id="unknown-pointer",
        ),
        pytest.param(
            ["pointer"],
            request("r", "support-local", "no-such-release"),
            "ReleaseNotFound",
            "Unknown release: no-such-release",
            id="unknown-release",
        ),
        pytest.param(
            ["pointer", "other-agent"],
            request("r", "support-local", "other-release"),
            "AgentMismatch",
            'belongs to agent "someone-else"',
            id="agent-mismatch",
        ),
        pytest.param(
            ["pointer"],
            request("r", "support-local", None, action="rollback"),
            "NothingToRollBack",
            "No promoted release exists for this agent/environment; nothing to roll back to.",
            id="nothing-to-roll-back",
        ),
    ],
)
def test_requests_that_cannot_be_evaluated_fail_clearly(
    control_plane: ControlPlane,
    namespace: str,
    kopf_operator: InProcessOperator,
    manifests: list[str],
    req: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    available = {
        "pointer": [pointer("support-local", AGENT, ENV)],
        "other-agent": [
            pricing_table("baseline-pricing", "openai", "baseline-pricing", "gpt-4.1-mini", (1.0, 2.0)),
            release("other-release", "someone-else", "openai", "baseline-pricing", "gpt-4.1-mini"),
        ],
    }
    documents = [doc for key in manifests for doc in available[key]]
    if documents:
        apply(control_plane, namespace, *documents)
    apply(control_plane, namespace, req)
    failed = wait_decided(control_plane, namespace, "r")
    assert failed["status"]["phase"] == "Failed"
    stalled = condition(failed, "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", reason)
    assert message in stalled["message"]
    assert condition(failed, "Decided")["status"] == "True"
    assert [e for e in ledger(kopf_operator) if e.kind.value in ("promote", "rollback")] == []
    if "pointer" in manifests:
        assert "releaseId" not in (
            get(control_plane, namespace, "releasepointer", "support-local").get("status") or {}
        )


def test_missing_pricing_table_fails_with_the_reference_message(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    apply(control_plane, namespace, release("unpriced", AGENT, "openai", "nowhere", "gpt-4.1-mini"))
    apply(control_plane, namespace, request("r", "support-local", "unpriced"))
    failed = wait_decided(control_plane, namespace, "r")
    assert failed["status"]["phase"] == "Failed"
    assert condition(failed, "Stalled")["reason"] == "PricingTableMissing"
    assert condition(failed, "Stalled")["message"] == (
        "Missing pricing table for candidate openai/nowhere. Run `flightdeck pricing import ...`."
    )
    assert (
        get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
        == "support-base"
    )
    unpriced = wait_for(
        lambda: (get(control_plane, namespace, "agentrelease", "unpriced").get("status") or {}).get(
            "conditions"
        ),
        what="the release's conditions",
    )
    assert {c["type"]: c["reason"] for c in unpriced}["Ready"] == "PricingTableMissing"


def test_a_hand_edited_pointer_status_is_repaired(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    control_plane.kubectl(
        "patch",
        "-n",
        namespace,
        "releasepointer/support-local",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"releaseId": "support-cand"}}),
    )
    repaired = wait_for(
        lambda: (
            get(control_plane, namespace, "releasepointer", "support-local")
            if get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
            == "support-base"
            else None
        ),
        what="the pointer to be repaired",
    )
    assert repaired["status"]["ledgerSeq"] >= 1
    events = json.loads(
        control_plane.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.name=support-local",
            "-o",
            "json",
        ).stdout
    )["items"]
    warnings = [e for e in events if e["reason"] == "PointerRepaired"]
    assert warnings
    assert warnings[0]["type"] == "Warning"
    assert "'support-cand'" in warnings[0]["message"]


def test_kubectl_get_flightdeck_shows_readable_tables(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")
    table = control_plane.kubectl("get", "flightdeck", "-n", namespace).stdout
    assert "promotionrequest.flightdeck.dev/first" in table
    assert "releasepointer.flightdeck.dev/support-local" in table
    requests_table = control_plane.kubectl("get", "preq", "-n", namespace).stdout.splitlines()
    assert requests_table[0].split()[:6] == ["NAME", "POINTER", "ACTION", "RELEASE", "PHASE", "REASON"]
    assert requests_table[1].split()[:6] == [
        "first",
        "support-local",
        "promote",
        "support-base",
        "Promoted",
        "Promoted",
    ]
    pointers_table = control_plane.kubectl("get", "rptr", "-n", namespace).stdout.splitlines()
    assert pointers_table[1].split()[:4] == ["support-local", AGENT, ENV, "support-base"]


def test_examples_folder_plays_out_as_documented(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    """`kubectl apply -f examples/` with no run events: the first promotion passes, the candidate is
    blocked for lack of evidence, and the rollback has nothing to go back to (examples/README.md)."""
    control_plane.kubectl("apply", "-n", namespace, "-f", "examples")
    first = wait_decided(control_plane, namespace, "support-bot-promote-1-4-0")
    candidate = wait_decided(control_plane, namespace, "support-bot-promote-1-5-0")
    rollback = wait_decided(control_plane, namespace, "support-bot-rollback")
    assert first["status"]["phase"] == "Promoted"
    assert candidate["status"]["phase"] == "Blocked"
    assert candidate["status"]["decision"]["policy"]["reasons"] == [
        "diff confidence is LOW (candidate sample < 200 runs; baseline sample < 200 runs; LOW floor is 50 runs); "
        "promotion requires HIGH"
    ]
    assert rollback["status"]["phase"] == "Failed"
    assert condition(rollback, "Stalled")["reason"] == "NothingToRollBack"
    live = get(control_plane, namespace, "releasepointer", "support-bot-production")
    assert live["status"]["releaseId"] == "support-bot-1-4-0"


def test_expected_current_release_guards_the_pointer(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    """spec.expectedCurrentRelease is a compare-and-swap on the pointer: a stale expectation fails
    with PointerMoved and decides nothing; a current one proceeds as usual."""
    quickstart(control_plane, namespace, max_cost=10.0)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")

    apply(
        control_plane,
        namespace,
        request("stale", "support-local", "support-cand", expectedCurrentRelease="support-cand"),
    )
    stale = wait_decided(control_plane, namespace, "stale")
    assert stale["status"]["phase"] == "Failed"
    stalled = condition(stale, "Stalled")
    assert stalled["reason"] == "PointerMoved"
    assert stalled["message"] == (
        "ReleasePointer \"support-local\" has release 'support-base' live, not the expected 'support-cand' "
        "(spec.expectedCurrentRelease); nothing was decided"
    )
    assert [e.release_id for e in ledger(kopf_operator) if e.kind.value == "promote"] == ["support-base"]

    apply(
        control_plane,
        namespace,
        request("current", "support-local", "support-cand", expectedCurrentRelease="support-base"),
    )
    assert wait_decided(control_plane, namespace, "current")["status"]["phase"] == "Promoted"
    assert (
        get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
        == "support-cand"
    )


def test_dry_run_evaluates_without_moving_the_pointer(
    control_plane: ControlPlane, namespace: str, kopf_operator: InProcessOperator
) -> None:
    quickstart(control_plane, namespace)
    seed_quickstart_evidence(kopf_operator)
    apply(control_plane, namespace, request("first", "support-local", "support-base"))
    wait_decided(control_plane, namespace, "first")

    apply(control_plane, namespace, request("would-block", "support-local", "support-cand", dryRun=True))
    evaluated = wait_decided(control_plane, namespace, "would-block")
    assert evaluated["status"]["phase"] == "Evaluated"
    assert evaluated["status"]["decision"]["outcome"] == "Evaluated"
    assert evaluated["status"]["decision"]["policy"]["reasons"] == [COST_BREACH]
    assert evaluated["status"]["decision"]["pointerChanged"] is False
    assert condition(evaluated, "Ready")["status"] == "False"
    assert (
        evaluated["status"]["message"] == f"Dry run: promote of support-cand would be blocked: {COST_BREACH}"
    )

    assert (
        get(control_plane, namespace, "releasepointer", "support-local")["status"]["releaseId"]
        == "support-base"
    )
    # Not a decision: nothing is ledgered for a dry run.
    assert [e.release_id for e in ledger(kopf_operator) if e.kind.value == "promote"] == ["support-base"]
