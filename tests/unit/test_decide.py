"""decide(): first promotion, rollback without a pointer, reasons in order (behaviours 10-13, 16)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from flightdeck_operator.engine.decide import (
    FIRST_PROMOTION_REASON,
    NOTHING_TO_ROLL_BACK,
    Comparison,
    DecisionRequest,
    Outcome,
    ReasonKind,
    decide,
    needs_comparison,
)
from flightdeck_operator.engine.evidence import PricingModelMissingError, SideEvidence
from flightdeck_operator.engine.models import Policy, PromotionAction
from tests.factories import NOW, aggregate_events, make_event
from tests.unit.test_evidence import BASE, BASE_TABLE, CAND, CAND_TABLE, Q_POLICY, SINCE


def request(action: PromotionAction = PromotionAction.PROMOTE) -> DecisionRequest:
    return DecisionRequest(
        action=action, agent_id="agent_support", environment="local", target=CAND, window="7d"
    )


def comparison(
    baseline_events: list[dict[str, object]], candidate_events: list[dict[str, object]], table=BASE_TABLE
) -> Comparison:  # type: ignore[no-untyped-def]
    def evidence(release_id: str, kwargs: list[dict[str, object]]) -> SideEvidence:
        events = [make_event(release_id=release_id, **kw) for kw in kwargs]  # type: ignore[arg-type]
        return SideEvidence(release_id, "local", SINCE, NOW, aggregate_events(events))

    return Comparison(
        baseline=BASE,
        baseline_pricing=BASE_TABLE,
        candidate_pricing=table,
        baseline_evidence=evidence(BASE.release_id, baseline_events),
        candidate_evidence=evidence(CAND.release_id, candidate_events),
    )


Q_COMPARISON = comparison([{"latency_ms": 1000}], [{"latency_ms": 1200}], CAND_TABLE)


def test_first_promotion_passes_without_a_diff() -> None:
    assert needs_comparison(request(), None) is False
    decision = decide(
        request(), current_release_id=None, comparison=None, policy=Policy(max_cost_per_run_usd=0), now=NOW
    )
    assert decision.outcome is Outcome.PASSED
    assert decision.first_promotion is True
    assert decision.baseline_release_id is None
    assert decision.diff is None
    assert decision.evidence is None
    assert decision.policy_result is not None
    assert decision.policy_result.passed is True
    assert decision.policy_result.reasons == (FIRST_PROMOTION_REASON,)
    assert FIRST_PROMOTION_REASON == "first promotion: no promoted baseline for agent/environment"
    assert [r.kind for r in decision.reasons] == [ReasonKind.INFORMATIONAL]
    outcome = json.loads(decision.to_action_outcome("act_0123456789ab").model_dump_json())
    assert outcome == {
        "action_id": "act_0123456789ab",
        "action": "promote",
        "release_id": "rel_cand",
        "agent_id": "agent_support",
        "environment": "local",
        "baseline_release_id": None,
        "promoted_pointer_changed": True,
        "policy": {
            "passed": True,
            "reasons": ["first promotion: no promoted baseline for agent/environment"],
            "evaluated_at": "2026-05-05T12:00:00Z",
        },
    }


def test_rollback_without_a_pointer_has_nothing_to_roll_back_to() -> None:
    decision = decide(
        request(PromotionAction.ROLLBACK), current_release_id=None, comparison=None, policy=None, now=NOW
    )
    assert decision.outcome is Outcome.NOTHING_TO_ROLL_BACK
    assert decision.message == NOTHING_TO_ROLL_BACK
    assert (
        NOTHING_TO_ROLL_BACK
        == "No promoted release exists for this agent/environment; nothing to roll back to."
    )
    assert decision.policy_result is None
    assert decision.passed is False
    assert [r.kind for r in decision.reasons] == [ReasonKind.PRECONDITION]
    with pytest.raises(ValueError, match="no action outcome"):
        decision.to_action_outcome("act_x")


def test_implicit_default_policy_demands_high_confidence() -> None:
    five = [{}] * 5
    decision = decide(
        request(), current_release_id=BASE.release_id, comparison=comparison(five, five), policy=None, now=NOW
    )
    assert decision.outcome is Outcome.BLOCKED
    assert decision.policy_result is not None
    assert decision.policy_result.reasons == (
        "diff confidence is LOW (candidate sample < 500 runs; baseline sample < 500 runs; LOW floor is 50 runs); "
        "promotion requires HIGH",
    )
    assert [r.kind for r in decision.reasons] == [ReasonKind.INSUFFICIENT_EVIDENCE]
    assert decision.awaiting_evidence_only is True
    assert decision.policy == Policy()


def test_quickstart_promote_is_blocked_by_cost() -> None:
    decision = decide(
        request(), current_release_id=BASE.release_id, comparison=Q_COMPARISON, policy=Q_POLICY, now=NOW
    )
    assert decision.outcome is Outcome.BLOCKED
    assert decision.message == "Promotion blocked by policy."
    assert decision.baseline_release_id == "rel_base"
    assert decision.awaiting_evidence_only is False
    outcome = decision.to_action_outcome("act_0123456789ab")
    assert outcome.promoted_pointer_changed is False
    assert outcome.policy.reasons == ("candidate cost_per_run_usd 5.000000 exceeds max 4.000000",)
    assert decision.evidence is not None
    assert decision.evidence.candidate.cost_per_run_usd == 5.0
    assert decision.diff is not None
    assert decision.diff.metrics.delta_cost_per_run_pct == 1.5


def test_passing_promote_moves_the_pointer() -> None:
    policy = Q_POLICY.model_copy(update={"max_cost_per_run_usd": 10.0})
    decision = decide(
        request(), current_release_id=BASE.release_id, comparison=Q_COMPARISON, policy=policy, now=NOW
    )
    assert decision.outcome is Outcome.PASSED
    assert decision.policy_result is not None
    assert decision.policy_result.reasons == ()
    assert decision.to_action_outcome("act_1").promoted_pointer_changed is True
    assert decision.to_action_outcome("act_1", pointer_changed=False).promoted_pointer_changed is False


def test_rollback_is_gated_like_promote() -> None:
    decision = decide(
        request(PromotionAction.ROLLBACK),
        current_release_id=BASE.release_id,
        comparison=Q_COMPARISON,
        policy=Q_POLICY,
        now=NOW,
    )
    assert decision.outcome is Outcome.BLOCKED
    assert decision.message == "Rollback blocked by policy."
    assert decision.to_action_outcome("act_1").action is PromotionAction.ROLLBACK


def test_all_constraints_accumulate_in_order() -> None:
    policy = Policy(
        max_cost_per_run_usd=0.5, max_latency_ms=50, max_error_rate=0.1, require_high_diff_confidence=True
    )
    baseline = [{"latency_ms": 100}] * 5
    candidate = [{"latency_ms": 123, "success": i >= 3} for i in range(7)]
    decision = decide(
        request(),
        current_release_id=BASE.release_id,
        comparison=comparison(baseline, candidate),
        policy=policy,
        now=NOW,
    )
    assert decision.policy_result is not None
    assert decision.policy_result.reasons == (
        "candidate cost_per_run_usd 2.000000 exceeds max 0.500000",
        "candidate latency_ms_avg 123.00 exceeds max 50",
        "candidate error_rate 0.4286 exceeds max 0.1000",
        "diff confidence is LOW (candidate sample < 500 runs; baseline sample < 500 runs; LOW floor is 50 runs); "
        "promotion requires HIGH",
    )
    assert [r.kind for r in decision.reasons] == [ReasonKind.POLICY_BREACH] * 3 + [
        ReasonKind.INSUFFICIENT_EVIDENCE
    ]
    assert decision.awaiting_evidence_only is False


def test_a_value_equal_to_its_limit_passes() -> None:
    policy = Policy(
        max_cost_per_run_usd=5.0, max_latency_ms=1200, max_error_rate=0.0, require_high_diff_confidence=False
    )
    decision = decide(
        request(), current_release_id=BASE.release_id, comparison=Q_COMPARISON, policy=policy, now=NOW
    )
    assert decision.outcome is Outcome.PASSED


def test_missing_model_price_uses_the_promote_text() -> None:
    broken = comparison([{"model": "nope"}], [{}])
    with pytest.raises(PricingModelMissingError) as caught:
        decide(request(), current_release_id=BASE.release_id, comparison=broken, policy=Q_POLICY, now=NOW)
    assert str(caught.value) == (
        "Pricing table missing model entry. baseline_model=gpt-4.1-mini candidate_model=gpt-4.1-mini."
    )


def test_inconsistent_inputs_are_programming_errors() -> None:
    assert needs_comparison(request(), "rel_base") is True
    with pytest.raises(ValueError, match="needs a Comparison"):
        decide(request(), current_release_id="rel_base", comparison=None, policy=None, now=NOW)
    with pytest.raises(ValueError, match="is not the current release"):
        decide(request(), current_release_id="rel_other", comparison=Q_COMPARISON, policy=None, now=NOW)


def test_decided_at_is_utc() -> None:
    local_now = NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))
    decision = decide(request(), current_release_id=None, comparison=None, policy=None, now=local_now)
    assert decision.decided_at == NOW
    assert decision.decided_at.utcoffset() == dt.timedelta(0)
