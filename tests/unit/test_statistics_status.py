"""What statistical gates add to a request's status, the decision's messages, the ledger record and
the approval digest (pure projections), checked against the CRD's status schema."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flightdeck_operator.api import v1alpha1 as api
from flightdeck_operator.api.approvals import decision_digest
from flightdeck_operator.controller.projection import (
    awaiting_evidence_status,
    decided_message,
    ledger_record,
    request_status_from_entry,
)
from flightdeck_operator.engine.decide import Comparison, Decision, DecisionRequest, decide
from flightdeck_operator.engine.ledger import GENESIS_HASH, canonical_json, seal
from flightdeck_operator.engine.models import Policy, PromotionAction
from flightdeck_operator.engine.statistics.config import StatisticalGates
from tests.factories import NOW
from tests.unit.crd_schema_tools import load_crds, openapi_schema, schema_errors
from tests.unit.test_evidence import BASE, BASE_TABLE, CAND, CAND_TABLE
from tests.unit.test_statistical_policy import LENIENT, evidence, side, spread

STATUS_SCHEMA = openapi_schema(load_crds()["PromotionRequest"])["properties"]["status"]
GATES = StatisticalGates.model_validate(
    {"error_rate": {"max": 0.05}, "latency": [{"quantile": 0.95, "max_ms": 2000, "max_ratio": 1.5}]}
)


def decision_for(
    candidate_latencies: list[int], recent: int = 60, gates: StatisticalGates = GATES
) -> Decision:
    stats = evidence(
        side("rel_base", spread(1000, 400)), side("rel_cand", candidate_latencies), recent=(600, recent)
    )
    request = DecisionRequest(
        action=PromotionAction.PROMOTE, agent_id="agent_support", environment="local", target=CAND
    )
    return decide(
        request,
        current_release_id="rel_base",
        comparison=Comparison(
            BASE, BASE_TABLE, CAND_TABLE, stats.baseline, stats.candidate, statistics=stats
        ),
        policy=Policy(**LENIENT, statistical_gates=gates),
        now=NOW,
    )


def as_stored(patch: Any) -> Any:
    """A merge patch as the object ends up: null removes a key."""
    if isinstance(patch, dict):
        return {k: as_stored(v) for k, v in patch.items() if v is not None}
    if isinstance(patch, list):
        return [as_stored(v) for v in patch]
    return patch


def waiting(decision: Decision) -> dict[str, Any]:
    return awaiting_evidence_status(
        decision,
        deadline=NOW + dt.timedelta(hours=6),
        missing_baseline_runs=0,
        missing_candidate_runs=0,
        generation=1,
        conditions=None,
        now=NOW,
    )


def test_a_waiting_request_shows_runs_needed_and_eta_per_gate() -> None:
    decision = decision_for(spread(1000, 20))
    assert decision.awaiting_evidence_only
    status = waiting(decision)
    assert schema_errors(as_stored(status), STATUS_SCHEMA) == []
    wait = status["evidenceWait"]
    gates = {g["gate"]: g for g in wait["gates"]}
    assert set(gates) == {"errorRate.max", "latency.p95.maxMs", "latency.p95.maxRatio"}
    assert all(g["verdict"] == "Inconclusive" for g in gates.values())
    needed = max(g["missingCandidateRuns"] for g in gates.values())
    assert wait["missingCandidateRuns"] == needed
    assert wait["eta"] == max(g["eta"] for g in gates.values())
    assert f"{needed} more candidate runs needed, expected by {wait['eta']}" in status["message"]
    assert "latency.p95" not in status["message"]  # the reasons speak in words
    assert "candidate p95 latency_ms inconclusive" in status["message"]
    api.PromotionRequestStatus.model_validate(as_stored(status))


def test_without_arrivals_the_eta_is_sent_as_null() -> None:
    status = waiting(decision_for(spread(1000, 20), recent=0))
    wait = status["evidenceWait"]
    assert wait["eta"] is None  # a merge patch must remove an earlier ETA
    assert all("eta" not in g for g in wait["gates"])
    assert "no ETA: no runs arriving in the rate window" in status["message"]


def test_a_decided_request_shows_every_gates_verdict_and_the_ledger_keeps_the_report() -> None:
    decision = decision_for(spread(3000, 400))
    assert decision.outcome.value == "Blocked"
    record = ledger_record(
        decision, request_uid="uid-1", request_name="r", namespace="ns", pointer="p", actor="a", reason="go"
    )
    entry = seal(record, seq=3, prev_hash=GENESIS_HASH)
    payload = canonical_json(entry.hashed_payload())
    assert '"statistics":{"arrival"' in payload
    assert entry.evidence is not None
    assert entry.evidence.statistics == decision.diff.statistics  # type: ignore[union-attr]
    status = request_status_from_entry(entry, generation=1, conditions=None, now=NOW)
    assert schema_errors(status, STATUS_SCHEMA) == []
    shown = status["decision"]["evidence"]["statistics"]
    assert shown["verdict"] == "Fail"
    assert [g["verdict"] for g in shown["gates"]] == ["Pass", "Fail", "Fail"]
    assert shown["gates"][1]["candidateRuns"] == 400
    assert "upper" in shown["gates"][1]
    message = decided_message(entry)
    assert message.endswith("(ledger seq 3; statistical gates Fail (1 Pass, 2 Fail))")
    assert status["message"] == message


def test_a_passing_promotion_names_the_verdict_too() -> None:
    gates = StatisticalGates.model_validate({"latency": [{"quantile": 0.5, "max_ms": 5000}]})
    decision = decision_for(spread(1000, 400), gates=gates)
    assert decision.passed
    entry = seal(
        ledger_record(
            decision, request_uid="u", request_name="r", namespace="n", pointer="p", actor="a", reason="x"
        ),
        seq=9,
        prev_hash=GENESIS_HASH,
    )
    assert decided_message(entry) == (
        "Promoted rel_cand for agent_support/local (ledger seq 9; statistical gates Pass (1 Pass))"
    )


def test_the_approval_digest_covers_gate_verdicts_only_with_the_block() -> None:
    gates = StatisticalGates.model_validate({"latency": [{"quantile": 0.5, "max_ms": 5000}]})
    passing = decision_for(spread(1000, 400), gates=gates)
    without = passing.model_copy(
        update={"evidence": passing.evidence.model_copy(update={"statistics": None})}  # type: ignore[union-attr]
    )
    assert decision_digest(passing) != decision_digest(without)
    # Runs arriving do not make an approval stale while every verdict stays the same.
    more = decision_for(spread(1000, 500), gates=gates)
    assert decision_digest(more) == decision_digest(passing)


def test_messages_stay_within_the_status_limit_with_every_gate_waiting() -> None:
    every = StatisticalGates.model_validate(
        {
            "error_rate": {"max": 0.01, "max_increase": 0.001},
            "latency": [{"quantile": q, "max_ms": 1500, "max_ratio": 1.05} for q in (0.5, 0.9, 0.95, 0.999)],
            "cost_per_run": {"max_usd": 100.0, "max_ratio": 1.01},
        }
    )
    decision = decision_for(spread(1000, 5), gates=every)
    gates = decision.evidence.statistics.gates  # type: ignore[union-attr]
    assert [g.verdict.value for g in gates] == ["Inconclusive"] * 12
    message = waiting(decision)["message"]
    assert 2000 < len(message) <= 4096  # status.message maxLength in the CRD
    entry = seal(
        ledger_record(
            decision, request_uid="u", request_name="r", namespace="n", pointer="p", actor="a", reason="x"
        ),
        seq=123456,
        prev_hash=GENESIS_HASH,
    )
    assert len(decided_message(entry)) <= 4096


def test_passing_gates_add_no_eta_to_a_wait_for_high_confidence() -> None:
    gates = StatisticalGates.model_validate({"latency": [{"quantile": 0.5, "max_ms": 5000}]})
    decision = decision_for(spread(1000, 400), gates=gates)
    status = awaiting_evidence_status(
        decision,
        deadline=NOW + dt.timedelta(hours=6),
        missing_baseline_runs=0,
        missing_candidate_runs=100,
        generation=1,
        conditions=None,
        now=NOW,
    )
    assert status["message"].startswith(
        "Awaiting evidence until 2026-05-05T18:00:00Z: 100 more candidate runs needed ("
    )
    assert status["evidenceWait"]["gates"] == []
