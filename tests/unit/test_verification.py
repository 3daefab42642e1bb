"""Continuous verification (pure): one check of a live release, the run of checks, the response to a
confirmed failure (cooldown, quarantine), soak, and the soak gate on a promotion."""

from __future__ import annotations

import datetime as dt

import pytest

from flightdeck_operator.engine.decide import (
    Decision,
    DecisionRequest,
    Outcome,
    ReasonKind,
    SoakGate,
    apply_promotion_window,
    apply_soak,
    decide,
)
from flightdeck_operator.engine.evidence import EvidenceError, SideEvidence
from flightdeck_operator.engine.models import Policy, PricingEntry, PricingTable, PromotionAction, ReleaseRef
from flightdeck_operator.engine.statistics import Verdict
from flightdeck_operator.engine.statistics.config import StatisticalGates
from flightdeck_operator.engine.verification import (
    AutomaticRollback,
    LiveCheck,
    OnFailure,
    Promotion,
    Tracker,
    VerificationRules,
    absolute_gates,
    check_live,
    parse_span,
    quarantined,
    respond,
    soak_progress,
    track,
)
from flightdeck_operator.engine.windows import WindowState
from tests.factories import NOW, aggregate_events, make_event, moments_of_events

TABLE = PricingTable(
    provider="openai",
    pricing_version="v1",
    entries=(
        PricingEntry(model="gpt-4.1-mini", input_usd_per_1k_tokens=0.001, output_usd_per_1k_tokens=0.002),
    ),
)
RULES = VerificationRules(
    interval=dt.timedelta(minutes=1),
    window=dt.timedelta(hours=1),
    failure_threshold=3,
    min_runs=20,
    on_failure=OnFailure.ROLLBACK,
    cooldown=dt.timedelta(hours=1),
)


def evidence(runs: int, failures: int = 0, latency_ms: int = 1000, *, moments: bool = False) -> SideEvidence:
    events = [
        make_event(
            release_id="rel-b",
            environment="prod",
            success=i >= failures,
            latency_ms=latency_ms,
            timestamp=NOW - dt.timedelta(minutes=30),
        )
        for i in range(runs)
    ]
    return SideEvidence(
        release_id="rel-b",
        environment="prod",
        since=NOW - dt.timedelta(hours=1),
        until=NOW,
        aggregates=aggregate_events(events),
        moments=moments_of_events(events) if moments else None,
    )


def check(verdict: Verdict, at: dt.datetime, release: str = "rel-b") -> LiveCheck:
    result = check_live(evidence=evidence(100), table=TABLE, limits=Policy(), gates=None, rules=RULES, now=at)
    return result.model_copy(update={"verdict": verdict, "release_id": release})


# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h", 3600), ("2d", 172800), ("0s", 0), ("0m", 0)]
)
def test_parse_span(text: str, seconds: int) -> None:
    assert parse_span(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "-5m", "5", "05m", "1w", "1.5h", "100000s"])
def test_parse_span_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_span(text)


# --- one check -----------------------------------------------------------------------------------------


def test_healthy_release_passes_with_its_numbers() -> None:
    result = check_live(
        evidence=evidence(100, failures=1),
        table=TABLE,
        limits=Policy(max_error_rate=0.05, max_latency_ms=2000),
        gates=None,
        rules=RULES,
        now=NOW,
    )
    assert result.verdict is Verdict.PASS
    assert result.reasons == ()
    assert result.rollup.runs == 100
    assert result.rollup.error_rate == pytest.approx(0.01)
    assert (result.since, result.until, result.checked_at) == (NOW - dt.timedelta(hours=1), NOW, NOW)


def test_a_limit_exceeded_fails_naming_the_live_release() -> None:
    result = check_live(
        evidence=evidence(100, failures=21, latency_ms=3000),
        table=TABLE,
        limits=Policy(max_error_rate=0.05, max_latency_ms=2000),
        gates=None,
        rules=RULES,
        now=NOW,
    )
    assert result.verdict is Verdict.FAIL
    assert result.reason_texts == (
        "live latency_ms_avg 3000.00 exceeds max 2000",
        "live error_rate 0.2100 exceeds max 0.0500",
    )
    assert {r.kind for r in result.reasons} == {ReasonKind.POLICY_BREACH}


def test_too_few_runs_is_inconclusive_even_when_every_run_failed() -> None:
    result = check_live(
        evidence=evidence(5, failures=5),
        table=TABLE,
        limits=Policy(max_error_rate=0.05),
        gates=None,
        rules=RULES,
        now=NOW,
    )
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reason_texts == ("5 runs of rel-b in the last 1h; verification needs at least 20",)


def test_the_confidence_requirement_of_promotions_does_not_apply() -> None:
    # requireHighDiffConfidence is about comparing two releases for a promotion, not about the live one.
    result = check_live(
        evidence=evidence(30),
        table=TABLE,
        limits=Policy(require_high_diff_confidence=True),
        gates=None,
        rules=RULES,
        now=NOW,
    )
    assert result.verdict is Verdict.PASS


def test_a_model_without_a_price_is_an_evidence_error() -> None:
    other = PricingTable(
        provider="openai", pricing_version="v1", entries=(TABLE.entries[0].model_copy(update={"model": "x"}),)
    )
    with pytest.raises(EvidenceError, match=r"no entry for model 'gpt-4\.1-mini'"):
        check_live(evidence=evidence(30), table=other, limits=Policy(), gates=None, rules=RULES, now=NOW)


def test_only_absolute_statistical_gates_are_verified() -> None:
    gates = StatisticalGates.model_validate(
        {
            "error_rate": {"max": 0.05, "max_increase": 0.01},
            "latency": [{"quantile": 0.95, "max_ratio": 1.2}, {"quantile": 0.99, "max_ms": 5000}],
            "cost_per_run": {"max_ratio": 1.1},
        }
    )
    kept = absolute_gates(gates)
    assert kept is not None
    assert [name for name, _ in kept.gates()] == ["errorRate.max", "latency.p99.maxMs"]
    only_ratios = StatisticalGates.model_validate({"latency": [{"quantile": 0.95, "max_ratio": 1.2}]})
    assert absolute_gates(only_ratios) is None
    assert absolute_gates(None) is None


def test_a_proven_gate_breach_fails_and_an_unproven_one_is_inconclusive() -> None:
    gates = absolute_gates(StatisticalGates.model_validate({"error_rate": {"max": 0.05}}))
    bad = check_live(
        evidence=evidence(400, failures=120, moments=True),
        table=TABLE,
        limits=Policy(),
        gates=gates,
        rules=RULES,
        now=NOW,
    )
    assert bad.verdict is Verdict.FAIL
    assert bad.reason_texts[0].startswith("live error_rate lower bound ")
    assert bad.statistics is not None
    assert bad.statistics.verdict is Verdict.FAIL
    # 2 failures in 40 runs: not proven above 5 %, not proven below either.
    unsure = check_live(
        evidence=evidence(40, failures=2, moments=True),
        table=TABLE,
        limits=Policy(),
        gates=gates,
        rules=RULES,
        now=NOW,
    )
    assert unsure.verdict is Verdict.INCONCLUSIVE
    assert unsure.reason_texts[0].startswith("live error_rate inconclusive: upper bound ")
    good = check_live(
        evidence=evidence(2000, moments=True), table=TABLE, limits=Policy(), gates=gates, rules=RULES, now=NOW
    )
    assert good.verdict is Verdict.PASS


# --- the run of checks --------------------------------------------------------------------------------


def test_failures_count_in_a_row_and_anything_else_breaks_the_run() -> None:
    tracker = None
    verdicts = [Verdict.FAIL, Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.FAIL, Verdict.FAIL, Verdict.FAIL]
    counts = []
    for minute, verdict in enumerate(verdicts):
        tracker = track(tracker, check(verdict, NOW + dt.timedelta(minutes=minute)), move_seq=7)
        counts.append(tracker.consecutive_failures)
    assert counts == [1, 2, 0, 1, 2, 3]
    assert tracker is not None
    assert tracker.confirmed(RULES)
    assert not track(tracker, check(Verdict.PASS, NOW), move_seq=7).confirmed(RULES)


def test_verified_since_is_the_start_of_the_unbroken_run_of_passes() -> None:
    t0 = NOW
    tracker = track(None, check(Verdict.PASS, t0), move_seq=7)
    tracker = track(tracker, check(Verdict.PASS, t0 + dt.timedelta(minutes=1)), move_seq=7)
    assert tracker.verified_since == t0
    tracker = track(tracker, check(Verdict.INCONCLUSIVE, t0 + dt.timedelta(minutes=2)), move_seq=7)
    assert tracker.verified_since is None
    tracker = track(tracker, check(Verdict.PASS, t0 + dt.timedelta(minutes=3)), move_seq=7)
    assert tracker.verified_since == t0 + dt.timedelta(minutes=3)


def test_a_new_live_release_starts_afresh() -> None:
    tracker = Tracker(
        release_id="rel-b", move_seq=7, verdict=Verdict.FAIL, checked_at=NOW, consecutive_failures=2
    )
    moved = track(tracker, check(Verdict.FAIL, NOW, release="rel-a"), move_seq=9)
    assert (moved.release_id, moved.move_seq, moved.consecutive_failures) == ("rel-a", 9, 1)
    # The same release made live again by another move is another run too.
    again = track(tracker, check(Verdict.FAIL, NOW), move_seq=11)
    assert again.consecutive_failures == 1


# --- the response -------------------------------------------------------------------------------------


def test_rollback_to_the_previous_release() -> None:
    response = respond(RULES, previous_release="rel-a", last_automatic_rollback=None, quarantined=(), now=NOW)
    assert (response.action, response.target, response.held) == (OnFailure.ROLLBACK, "rel-a", None)


def test_alert_only_policy_never_rolls_back() -> None:
    rules = RULES.model_copy(update={"on_failure": OnFailure.ALERT})
    response = respond(rules, previous_release="rel-a", last_automatic_rollback=None, quarantined=(), now=NOW)
    assert (response.action, response.target, response.held) == (OnFailure.ALERT, None, None)


def test_nothing_to_roll_back_to_alerts() -> None:
    response = respond(RULES, previous_release=None, last_automatic_rollback=None, quarantined=(), now=NOW)
    assert response.action is OnFailure.ALERT
    assert response.held == "no previous release to roll back to"


def test_cooldown_holds_a_second_rollback_and_ends() -> None:
    last = NOW - dt.timedelta(minutes=30)
    held = respond(RULES, previous_release="rel-a", last_automatic_rollback=last, quarantined=(), now=NOW)
    assert held.action is OnFailure.ALERT
    assert held.cooldown_until == last + dt.timedelta(hours=1)
    assert held.held is not None
    assert "no other before 2026-05-05T12:30:00Z" in held.held
    later = respond(
        RULES,
        previous_release="rel-a",
        last_automatic_rollback=last,
        quarantined=(),
        now=NOW + dt.timedelta(minutes=31),
    )
    assert later.action is OnFailure.ROLLBACK


def test_a_release_rolled_back_automatically_is_not_restored_automatically() -> None:
    response = respond(
        RULES, previous_release="rel-a", last_automatic_rollback=None, quarantined={"rel-a"}, now=NOW
    )
    assert response.action is OnFailure.ALERT
    assert response.held is not None
    assert "until a person promotes it" in response.held


def test_quarantine_is_lifted_by_a_later_manual_promotion_only() -> None:
    rollbacks = [AutomaticRollback("rel-b", seq=10, at=NOW), AutomaticRollback("rel-c", seq=20, at=NOW)]
    promotions = [
        Promotion("rel-b", seq=5, manual=True),  # before its rollback: does not count
        Promotion("rel-c", seq=25, manual=False),  # the operator's own promotion: does not count
    ]
    assert quarantined(rollbacks, promotions) == {"rel-b", "rel-c"}
    assert quarantined(rollbacks, [*promotions, Promotion("rel-b", seq=12, manual=True)]) == {"rel-c"}


# --- soak -------------------------------------------------------------------------------------------


def test_soaked_once_the_run_of_passes_spans_the_soak_time() -> None:
    soak = dt.timedelta(minutes=30)
    tracker = track(None, check(Verdict.PASS, NOW), move_seq=3)
    progress = soak_progress(tracker, soak)
    assert (progress.soaked, progress.verified_since, progress.due) == (False, NOW, NOW + soak)
    tracker = track(tracker, check(Verdict.PASS, NOW + dt.timedelta(minutes=29)), move_seq=3)
    assert not soak_progress(tracker, soak).soaked
    tracker = track(tracker, check(Verdict.PASS, NOW + dt.timedelta(minutes=30)), move_seq=3)
    assert soak_progress(tracker, soak).soaked
    # A failure ends it; so does a check that cannot tell.
    failed = track(tracker, check(Verdict.FAIL, NOW + dt.timedelta(minutes=31)), move_seq=3)
    assert soak_progress(failed, soak) == soak_progress(None, soak)
    assert not soak_progress(failed, soak).soaked


def test_zero_soak_time_is_soaked_at_the_first_pass() -> None:
    tracker = track(None, check(Verdict.PASS, NOW), move_seq=3)
    assert soak_progress(tracker, dt.timedelta(0)).soaked


# --- the soak gate on a promotion ------------------------------------------------------------------


def _decision(action: PromotionAction = PromotionAction.PROMOTE) -> Decision:
    release = ReleaseRef(
        release_id="rel-c", agent_id="bot", provider="openai", pricing_version="v1", model="m"
    )
    request = DecisionRequest(action=action, agent_id="bot", environment="prod", target=release)
    return decide(request, current_release_id=None, comparison=None, policy=None, now=NOW)


NOT_SOAKED = SoakGate(upstream="canary", soaked=False, message="rel-c has not soaked on canary")


def test_unsoaked_promotion_is_blocked_with_the_soak_first() -> None:
    decision = apply_soak(_decision(), NOT_SOAKED, override_reason=None)
    assert decision.outcome is Outcome.BLOCKED
    assert decision.blocked_by_soak
    assert not decision.blocked_by_window
    assert decision.policy_result is not None
    assert decision.policy_result.reasons[0] == "rel-c has not soaked on canary"
    assert decision.soak == NOT_SOAKED
    assert not decision.awaiting_evidence_only


def test_soaked_or_no_pipeline_changes_nothing_and_break_glass_passes() -> None:
    base = _decision()
    assert apply_soak(base, None, override_reason=None) == base
    soaked = SoakGate(upstream="canary", soaked=True, message="soaked")
    assert apply_soak(base, soaked, override_reason=None) == base
    broken = apply_soak(base, NOT_SOAKED, override_reason="hotfix")
    assert broken.outcome is Outcome.PASSED
    assert (broken.override_reason, broken.soak) == ("hotfix", NOT_SOAKED)


def test_both_soak_and_window_block_name_both() -> None:
    closed = WindowState(
        open=False,
        message="Promotion closed by deny window 'freeze'",
        active=("freeze",),
        next_change=None,
        next_open=None,
    )
    decision = apply_soak(
        apply_promotion_window(_decision(), closed, override_reason=None),
        NOT_SOAKED,
        override_reason=None,
    )
    assert decision.policy_result is not None
    assert decision.policy_result.reasons[:2] == (
        "rel-c has not soaked on canary",
        "Promotion closed by deny window 'freeze'",
    )
    assert decision.blocked_by_window
    assert decision.blocked_by_soak
