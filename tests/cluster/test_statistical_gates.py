"""Statistical gates end to end, on a real API server with the operator (issue 16): a candidate whose
p95 is clearly worse is blocked at once, with its verdict on the request, the pointer's Events and
the ledger; one that is fine but under-sampled waits with runs needed and an ETA, then passes as
runs arrive; POST /v1/diff and the CLI diff carry the statistics block. (Bad policy input is refused
by the API server: tests/cluster/fixtures/invalid/promotionpolicy-statistical-*.yaml.)"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from flightdeck_operator.localdev.controlplane import ControlPlane
from flightdeck_operator.localdev.processes import OperatorProcess, SidecarProcess

from .conftest import REPO_ROOT
from .kube import AGENT, ENV, apply, condition, get, ingest, policy, request, run_events, wait_decided
from .sidecar_client import as_user
from .test_gates import GATE, request_entries, start_with_base_promoted, wait_phase
from .test_sidecar_ingest_and_diff import cli

# The reference checks off (limits generous, no HIGH-confidence rule): only the gates decide.
NO_REFERENCE_LIMITS = {
    **GATE,
    "maxLatencyMs": None,
    "minCandidateRuns": 0,
    "minBaselineRuns": 0,
    "minLowRuns": 0,
}


def gated_policy(**gates: Any) -> dict[str, Any]:
    spec = {k: v for k, v in NO_REFERENCE_LIMITS.items() if v is not None}
    return policy("gate", **spec, statisticalGates=gates)


def events(release_id: str, count: int, latency_ms: int) -> list[dict[str, Any]]:
    return run_events(release_id, AGENT, ENV, count, latency_ms=latency_ms)


def pointer_events(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    listed = cp.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=support-local",
        "-o",
        "json",
    )
    return list(json.loads(listed.stdout)["items"])


def test_a_clearly_slower_candidate_is_blocked_at_once(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator)
    ingest(operator.store, events("support-base", 300, 1000))
    ingest(operator.store, events("support-cand", 300, 3000))
    apply(control_plane, namespace, gated_policy(latency=[{"quantile": 0.95, "maxRatio": 1.2}]))
    apply(
        control_plane,
        namespace,
        request("slow", "support-local", "support-cand", waitForEvidence={"timeout": "30m"}),
    )
    decided = wait_decided(control_plane, namespace, "slow")
    assert decided["status"]["phase"] == "Blocked"  # a proven breach is never waited for
    assert condition(decided, "Ready")["reason"] == "PolicyBlocked"
    statistics = decided["status"]["decision"]["evidence"]["statistics"]
    assert statistics["verdict"] == "Fail"
    [gate] = statistics["gates"]
    assert (gate["gate"], gate["verdict"], gate["method"]) == ("latency.p95.maxRatio", "Fail", "quantile-cs")
    assert gate["lower"] > 1.2
    [reason] = decided["status"]["decision"]["policy"]["reasons"]
    assert reason.startswith("candidate p95 latency_ms ratio to baseline lower bound ")
    assert reason.endswith("exceeds max ratio 1.2 (95% confidence, n=301/301)")

    [entry] = request_entries(operator, "slow")
    assert entry.evidence is not None
    assert entry.evidence.statistics is not None
    assert entry.evidence.statistics.gates[0].runs_needed is None
    warnings = [e for e in pointer_events(control_plane, namespace) if e["reason"] == "PolicyBlocked"]
    assert any("statistical gates Fail (1 Fail)" in e["message"] for e in warnings), warnings


def test_an_undersampled_candidate_waits_with_runs_needed_and_eta_then_passes(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator)
    ingest(operator.store, events("support-base", 300, 1000))
    ingest(operator.store, events("support-cand", 19, 1000))  # 20 with the quickstart's one
    apply(control_plane, namespace, gated_policy(latency=[{"quantile": 0.95, "maxMs": 2000}]))
    apply(
        control_plane,
        namespace,
        request("patient", "support-local", "support-cand", waitForEvidence={"timeout": "30m"}),
    )
    waiting = wait_phase(control_plane, namespace, "promotionrequest", "patient", "AwaitingEvidence")
    assert condition(waiting, "Reconciling")["reason"] == "AwaitingEvidence"
    wait = waiting["status"]["evidenceWait"]
    [gate] = wait["gates"]
    assert (gate["gate"], gate["verdict"]) == ("latency.p95.maxMs", "Inconclusive")
    needed = gate["missingCandidateRuns"]
    assert 50 < needed < 150  # a p95 bounded from above, sequentially: about 107 runs without a slow one
    assert wait["missingCandidateRuns"] == needed
    eta = dt.datetime.fromisoformat(wait["eta"].replace("Z", "+00:00"))
    # 20 runs in the last 6 h (the rate window): 3.3 runs/h, so `needed` runs take needed/3.3 hours.
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(hours=needed * 6 / 20)
    assert abs(eta - expected) < dt.timedelta(minutes=10)
    assert gate["eta"] == wait["eta"]
    message = waiting["status"]["message"]
    assert f"{needed} more candidate runs needed, expected by {wait['eta']}" in message
    assert "candidate p95 latency_ms inconclusive: no upper bound yet, max 2000" in message
    assert request_entries(operator, "patient") == []

    ingest(operator.store, events("support-cand", needed + 10, 1000))
    decided = wait_decided(control_plane, namespace, "patient")
    assert decided["status"]["phase"] == "Promoted"
    statistics = decided["status"]["decision"]["evidence"]["statistics"]
    assert statistics["verdict"] == "Pass"
    assert statistics["gates"][0]["upper"] <= 2000
    created = dt.datetime.fromisoformat(
        get(control_plane, namespace, "promotionrequest", "patient")["metadata"]["creationTimestamp"].replace(
            "Z", "+00:00"
        )
    )
    since = dt.datetime.fromisoformat(statistics["since"].replace("Z", "+00:00"))
    assert since == created - dt.timedelta(days=7)  # anchored at the request's creation
    [entry] = request_entries(operator, "patient")
    assert entry.pointer_changed
    moved = [e for e in pointer_events(control_plane, namespace) if e["reason"] == "Promoted"]
    assert any("statistical gates Pass (1 Pass)" in e["message"] for e in moved), moved


def test_diff_over_http_and_the_cli_carry_the_statistics_block(
    control_plane: ControlPlane, namespace: str, operator: OperatorProcess, sidecar: SidecarProcess
) -> None:
    start_with_base_promoted(control_plane, namespace, operator)
    ingest(operator.store, events("support-base", 200, 1000))
    ingest(operator.store, events("support-cand", 200, 1100))
    apply(
        control_plane,
        namespace,
        gated_policy(sequential=False, errorRate={"maxIncrease": 0.02}, costPerRun={"maxUsd": 10}),
    )
    body = {"baseline_release_id": "support-base", "candidate_release_id": "support-cand", "window": "7d"}
    with as_user(control_plane, sidecar, "admin") as api:
        answer = api.post("/v1/diff", json=body)
    assert answer.status_code == 200
    statistics = answer.json()["statistics"]
    assert (statistics["sequential"], statistics["verdict"]) == (False, "Pass")
    assert [(g["gate"], g["method"]) for g in statistics["gates"]] == [
        ("errorRate.maxIncrease", "newcombe"),
        ("costPerRun.maxUsd", "z-interval"),
    ]
    assert statistics["gates"][0]["n"] == {"candidate": 201, "baseline": 201}

    text = cli(
        control_plane, namespace, operator.store, "diff", "support-base", "support-cand", "--window", "7d"
    )
    assert text.returncode == 0, text.stderr
    assert "Statistical gates (95% confidence, fixed horizon): Pass\n" in text.stdout
    assert "- errorRate.maxIncrease Pass: estimate 0, bounds [" in text.stdout
    as_json = cli(
        control_plane,
        namespace,
        operator.store,
        "diff",
        "support-base",
        "support-cand",
        "--window",
        "7d",
        "--output",
        "json",
    )
    assert json.loads(as_json.stdout)["statistics"]["gates"] == statistics["gates"]


def test_the_statistical_gate_examples_are_accepted(
    control_plane: ControlPlane, crds: Path, namespace: str
) -> None:
    applied = control_plane.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", str(REPO_ROOT / "examples" / "statistical-gates")
    )
    assert applied.returncode == 0, applied.stderr
    assert "promotionpolicy.flightdeck.dev/support-bot-statistical created (server dry run)" in applied.stdout
