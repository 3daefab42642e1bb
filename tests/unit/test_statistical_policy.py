"""A policy's statisticalGates on evidence (engine): verdicts become reasons of the right kind after
the reference's, in the gates' fixed order; the statistics report carries bounds, n, runs needed and
an ETA from the recent arrival rate; the policy's digest changes only when the block is set."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pydantic import ValidationError

from flightdeck_operator.engine.decide import Comparison, DecisionRequest, Outcome, decide
from flightdeck_operator.engine.evidence import DiffSide, PricingModelMissingError, SideEvidence, compute_diff
from flightdeck_operator.engine.ledger import canonical_json, policy_digest
from flightdeck_operator.engine.models import DiffFilters, Policy, PricingTable, PromotionAction
from flightdeck_operator.engine.policy import ReasonKind
from flightdeck_operator.engine.statistical_policy import (
    StatisticsEvidence,
    gated_diff,
    side_statistics,
    verdict_summary,
)
from flightdeck_operator.engine.statistics import GateSpec, LimitKind, Metric, Verdict, evaluate_gate
from flightdeck_operator.engine.statistics.config import StatisticalGates
from tests.factories import NOW, aggregate_events, make_event, moments_of_events
from tests.unit.test_evidence import BASE, BASE_TABLE, CAND, CAND_TABLE, SINCE

LENIENT = {
    "min_candidate_runs": 0,
    "min_baseline_runs": 0,
    "min_low_runs": 0,
    "require_high_diff_confidence": False,
}


def side(release_id: str, latencies: list[int], *, failures: int = 0, tokens: int = 1000) -> SideEvidence:
    events = [
        make_event(
            release_id=release_id,
            latency_ms=ms,
            success=i >= failures,
            input_tokens=tokens + i % 7,
            timestamp=NOW - dt.timedelta(hours=2),
        )
        for i, ms in enumerate(latencies)
    ]
    return SideEvidence(
        release_id, "local", SINCE, NOW, aggregate_events(events), moments=moments_of_events(events)
    )


def spread(center: int, count: int) -> list[int]:
    """``count`` latencies around ``center`` (±10 %), deterministic."""
    return [center + (i * 37) % (center // 5) - center // 10 for i in range(count)]


def evidence(
    baseline: SideEvidence, candidate: SideEvidence, recent: tuple[int, int] = (600, 600)
) -> StatisticsEvidence:
    return StatisticsEvidence(
        baseline, candidate, baseline_recent_runs=recent[0], candidate_recent_runs=recent[1]
    )


def diff_of(gates: dict[str, Any], stats: StatisticsEvidence, **policy: Any) -> Any:
    return gated_diff(
        window="7d",
        filters=DiffFilters(environment="local"),
        baseline=DiffSide(BASE, BASE_TABLE, stats.baseline),
        candidate=DiffSide(CAND, CAND_TABLE, stats.candidate),
        policy=Policy(**{**LENIENT, **policy}, statistical_gates=StatisticalGates.model_validate(gates)),
        evaluated_at=NOW,
        statistics=stats,
    )


def test_a_clearly_slower_candidate_fails_with_breach_reasons() -> None:
    stats = evidence(side("rel_base", spread(1000, 400)), side("rel_cand", spread(3000, 400)))
    diff = diff_of({"latency": [{"quantile": 0.95, "max_ms": 2000, "max_ratio": 1.2}]}, stats)
    report = diff.result.statistics
    assert report is not None
    assert report.verdict is Verdict.FAIL
    assert [g.gate for g in report.gates] == ["latency.p95.maxMs", "latency.p95.maxRatio"]
    assert [g.verdict for g in report.gates] == [Verdict.FAIL, Verdict.FAIL]
    assert [r.kind for r in diff.reasons] == [ReasonKind.POLICY_BREACH] * 2
    first = diff.result.policy.reasons[0]
    assert first.startswith("candidate p95 latency_ms lower bound ")
    assert first.endswith("exceeds max 2000 (95% confidence, n=400)")
    assert "ratio to baseline lower bound" in diff.result.policy.reasons[1]
    assert "(95% confidence, n=400/400)" in diff.result.policy.reasons[1]
    assert diff.result.policy.passed is False
    assert all(g.runs_needed is None and g.eta is None for g in report.gates)


def test_an_undersampled_candidate_is_inconclusive_with_runs_needed_and_eta() -> None:
    stats = evidence(
        side("rel_base", spread(1000, 400)), side("rel_cand", spread(1000, 20)), recent=(600, 60)
    )
    diff = diff_of({"latency": [{"quantile": 0.95, "max_ms": 2000}]}, stats)
    [gate] = diff.result.statistics.gates
    assert gate.verdict is Verdict.INCONCLUSIVE
    assert gate.upper is None  # 20 runs cannot bound a p95 from above
    assert gate.runs_needed is not None
    needed = gate.runs_needed.candidate
    assert 30 < needed < 200  # sequential p95 needs about 107 runs without a slow one
    exact = NOW + dt.timedelta(hours=needed / 10)  # 60 runs in the 6h rate window
    assert dt.timedelta(0) <= gate.eta - exact < dt.timedelta(minutes=1)
    assert (gate.eta.second, gate.eta.microsecond) == (0, 0)
    [reason] = diff.reasons
    assert reason.kind is ReasonKind.INSUFFICIENT_EVIDENCE
    assert reason.text == (
        "candidate p95 latency_ms inconclusive: no upper bound yet, max 2000 (95% confidence, n=20); "
        f"~{needed} more candidate runs needed, expected by {gate.eta:%Y-%m-%dT%H:%M:%SZ}"
    )


def test_no_arrivals_means_no_eta() -> None:
    stats = evidence(side("rel_base", spread(1000, 400)), side("rel_cand", spread(1000, 20)), recent=(600, 0))
    diff = diff_of({"latency": [{"quantile": 0.95, "max_ms": 2000}]}, stats)
    [gate] = diff.result.statistics.gates
    assert gate.runs_needed is not None
    assert gate.eta is None
    assert diff.result.statistics.arrival.candidate_runs_per_hour == 0
    assert diff.reasons[0].text.endswith("needed, no ETA: no runs arriving in the rate window")


def test_passing_gates_add_nothing_to_the_reasons() -> None:
    stats = evidence(side("rel_base", spread(1000, 2000)), side("rel_cand", spread(1000, 2000)))
    diff = diff_of(
        {
            "error_rate": {"max": 0.05},
            "latency": [{"quantile": 0.5, "max_ms": 1500, "max_ratio": 1.2}],
            "cost_per_run": {"max_usd": 10.0, "max_ratio": 3.0},  # candidate tokens cost 2.5x
        },
        stats,
    )
    assert diff.result.policy.passed is True
    assert diff.result.policy.reasons == ()
    report = diff.result.statistics
    assert report.verdict is Verdict.PASS
    assert all(g.runs_needed is not None and g.runs_needed.candidate == 0 for g in report.gates)
    assert verdict_summary(report) == "statistical gates Pass (5 Pass)"


def test_reasons_keep_the_reference_first_then_the_gates_in_fixed_order() -> None:
    stats = evidence(side("rel_base", spread(1000, 300)), side("rel_cand", spread(1000, 10), failures=5))
    gates = {
        "cost_per_run": {"max_usd": 100.0},
        "latency": [{"quantile": 0.99, "max_ms": 5000}, {"quantile": 0.5, "max_ratio": 2.0}],
        "error_rate": {"max": 0.01, "max_increase": 0.05},
    }
    diff = diff_of(gates, stats, max_error_rate=0.1, require_high_diff_confidence=True, min_candidate_runs=50)
    names = [g.gate for g in diff.result.statistics.gates]
    assert names == [
        "errorRate.max",
        "errorRate.maxIncrease",
        "latency.p99.maxMs",
        "latency.p50.maxRatio",
        "costPerRun.maxUsd",
    ]
    texts = diff.result.policy.reasons
    assert texts[0] == "candidate error_rate 0.5000 exceeds max 0.1000"
    assert texts[1].startswith("diff confidence is MEDIUM")
    assert texts[2].startswith("candidate error_rate lower bound")  # errorRate.max fails: 5/10 failed
    assert all(t.startswith("candidate ") for t in texts[3:])
    assert len(texts) == 2 + sum(g.verdict is not Verdict.PASS for g in diff.result.statistics.gates)


def test_report_is_plain_json_for_the_ledger() -> None:
    stats = evidence(side("rel_base", spread(1000, 50)), side("rel_cand", spread(1000, 3)), recent=(0, 0))
    diff = diff_of({"error_rate": {"max_increase": 0.01}, "cost_per_run": {"max_ratio": 1.1}}, stats)
    dumped = diff.result.model_dump(mode="json")["statistics"]
    canonical_json(dumped)  # no NaN or infinity (allow_nan=False)
    assert dumped["gates"][1]["lower"] is None or isinstance(dumped["gates"][1]["lower"], float)
    assert dumped["since"] == "2026-04-28T12:00:00Z"
    assert set(dumped) == {"verdict", "confidence", "sequential", "since", "until", "arrival", "gates"}
    assert set(dumped["gates"][0]) == {
        "gate", "metric", "kind", "quantile", "limit", "verdict", "estimate", "lower", "upper", "n",
        "method", "runs_needed", "eta",
    }  # fmt: skip
    assert diff.summary.statistics == diff.result.statistics


def test_gate_results_are_the_cores_own() -> None:
    base, cand = (
        side("rel_base", spread(1000, 500), failures=5),
        side("rel_cand", spread(1100, 400), failures=9),
    )
    stats = evidence(base, cand)
    diff = diff_of({"error_rate": {"max_increase": 0.02}, "cost_per_run": {"max_ratio": 1.05}}, stats)
    candidate, baseline = side_statistics(cand, CAND_TABLE), side_statistics(base, BASE_TABLE)
    for gate, (metric, kind, limit) in zip(
        diff.result.statistics.gates,
        [(Metric.ERROR_RATE, LimitKind.MAX_INCREASE, 0.02), (Metric.COST_PER_RUN, LimitKind.MAX_RATIO, 1.05)],
        strict=True,
    ):
        core = evaluate_gate(GateSpec(metric=metric, kind=kind, limit=limit), candidate, baseline)
        assert (gate.verdict, gate.estimate, gate.lower, gate.upper) == (
            core.verdict,
            core.estimate,
            core.lower,
            core.upper,
        )
        assert (gate.n.candidate, gate.n.baseline, gate.method) == (
            core.candidate_n,
            core.baseline_n,
            core.method,
        )


def test_a_decision_under_statistical_gates() -> None:
    stats = evidence(side("rel_base", spread(1000, 400)), side("rel_cand", spread(1000, 20)))
    policy = Policy(
        **LENIENT, statistical_gates=StatisticalGates(latency=({"quantile": 0.95, "max_ms": 2000},))
    )  # type: ignore[arg-type]
    comparison = Comparison(BASE, BASE_TABLE, CAND_TABLE, stats.baseline, stats.candidate, statistics=stats)
    request = DecisionRequest(
        action=PromotionAction.PROMOTE, agent_id="agent_support", environment="local", target=CAND
    )
    decision = decide(request, current_release_id="rel_base", comparison=comparison, policy=policy, now=NOW)
    assert decision.outcome is Outcome.BLOCKED
    assert decision.awaiting_evidence_only  # Inconclusive: waitForEvidence waits on it
    assert decision.evidence is not None
    assert decision.evidence.statistics is not None
    assert decision.evidence.statistics.verdict is Verdict.INCONCLUSIVE


def test_statistical_gates_need_their_evidence() -> None:
    stats = evidence(side("rel_base", [1000]), side("rel_cand", [1000]))
    with pytest.raises(ValueError, match="StatisticsEvidence"):
        gated_diff(
            window="7d",
            filters=DiffFilters(environment="local"),
            baseline=DiffSide(BASE, BASE_TABLE, stats.baseline),
            candidate=DiffSide(CAND, CAND_TABLE, stats.candidate),
            policy=Policy(statistical_gates=StatisticalGates()),
            evaluated_at=NOW,
            statistics=None,
        )


def test_an_unpriced_model_in_the_statistics_range_is_the_reference_error() -> None:
    empty = PricingTable(provider="openai", pricing_version="candidate-pricing")
    stats = evidence(side("rel_base", [1000]), side("rel_cand", [1000]))
    with pytest.raises(PricingModelMissingError):
        gated_diff(
            window="7d",
            filters=DiffFilters(environment="local"),
            baseline=DiffSide(BASE, BASE_TABLE, SideEvidence("rel_base", "local", SINCE, NOW)),
            candidate=DiffSide(CAND, empty, SideEvidence("rel_cand", "local", SINCE, NOW)),
            policy=Policy(statistical_gates=StatisticalGates(cost_per_run={"max_usd": 1.0})),  # type: ignore[arg-type]
            evaluated_at=NOW,
            statistics=stats,
        )


def test_without_the_block_the_diff_is_the_reference_diff() -> None:
    stats = evidence(side("rel_base", spread(1000, 40)), side("rel_cand", spread(3000, 40)))
    args = {
        "window": "7d",
        "filters": DiffFilters(environment="local"),
        "baseline": DiffSide(BASE, BASE_TABLE, stats.baseline),
        "candidate": DiffSide(CAND, CAND_TABLE, stats.candidate),
        "policy": Policy(**LENIENT),
        "evaluated_at": NOW,
    }
    plain = compute_diff(**args)  # type: ignore[arg-type]
    gated = gated_diff(**args, statistics=stats)  # type: ignore[arg-type]
    assert gated == plain
    assert "statistics" not in json.loads(gated.result.model_dump_json())


def test_digest_changes_only_when_the_block_is_set() -> None:
    plain = Policy(max_latency_ms=100)
    assert "statistical_gates" not in plain.model_dump(mode="json")
    with_gates = Policy(max_latency_ms=100, statistical_gates=StatisticalGates(error_rate={"max": 0.02}))  # type: ignore[arg-type]
    assert policy_digest(with_gates) != policy_digest(plain)
    looser = Policy(max_latency_ms=100, statistical_gates=StatisticalGates(error_rate={"max": 0.03}))  # type: ignore[arg-type]
    assert policy_digest(looser) != policy_digest(with_gates)


@pytest.mark.parametrize(
    "bad",
    [
        {"confidence": 1.2},
        {"confidence": 0.5},
        {"latency": [{"quantile": 0.0, "max_ms": 1}]},
        {"latency": [{"quantile": q, "max_ms": 1} for q in (0.5, 0.9, 0.95, 0.99, 0.999)]},
        {"latency": [{"quantile": 0.95, "max_ms": 1}, {"quantile": 0.95, "max_ratio": 2}]},
        {"latency": [{"quantile": 0.95, "max_ratio": -1.1}]},
        {"cost_per_run": {"max_ratio": 0}},
        {"error_rate": {"max": 1.5}},
        {"power": 1.0},
        {"rate_window": "6 hours"},
    ],
)
def test_bad_blocks_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StatisticalGates.model_validate(bad)


def test_gate_names_and_rate_window() -> None:
    gates = StatisticalGates.model_validate(
        {
            "rate_window": "90m",
            "latency": [{"quantile": 0.999, "max_ms": 1}, {"quantile": 0.5, "max_ratio": 1.1}],
        }
    )
    assert [name for name, _ in gates.gates()] == ["latency.p99.9.maxMs", "latency.p50.maxRatio"]
    assert gates.rate_window_duration == dt.timedelta(minutes=90)
    assert StatisticalGates().gates() == ()
