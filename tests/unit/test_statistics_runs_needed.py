"""Runs still needed and the ETA: exact where the answer is known (zero failures), close to the
research's sample-size formulas elsewhere, and honest about power in a seeded check."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from scipy import stats

from flightdeck_operator.engine.statistics import (
    GateSpec,
    LimitKind,
    Metric,
    RunsNeeded,
    SideStatistics,
    Verdict,
    bin_of,
    eta,
    evaluate_gate,
    runs_needed,
    runs_per_hour,
)

NOW = dt.datetime(2026, 11, 18, 9, 0, tzinfo=dt.UTC)
Z_ALPHA, Z_BETA = stats.norm.isf(0.05), stats.norm.isf(0.2)


def rates(limit: float, kind: LimitKind = LimitKind.ABSOLUTE_MAX, **extra: object) -> GateSpec:
    return GateSpec.model_validate({"metric": Metric.ERROR_RATE, "kind": kind, "limit": limit, **extra})


def test_a_passing_gate_needs_nothing_and_a_failing_one_is_not_expected_to_pass() -> None:
    assert runs_needed(rates(0.05), SideStatistics(runs=2000, failures=10)) == RunsNeeded(0, 0)
    assert runs_needed(rates(0.05), SideStatistics(runs=2000, failures=400)) == RunsNeeded(None, None)
    assert not RunsNeeded(None, None).expected_to_pass


@pytest.mark.parametrize(("sequential", "total"), [(False, 59), (True, 107)])
def test_zero_failures_need_exactly_the_zero_failure_sample(sequential: bool, total: int) -> None:
    """With no failure seen, more runs are projected failure-free: the answer is exact."""
    needed = runs_needed(rates(0.05, sequential=sequential), SideStatistics(runs=10))
    assert needed == RunsNeeded(total - 10, 0)


def test_rate_against_a_limit_is_close_to_the_textbook_sample_size() -> None:
    """Research §3.4: ``n = [z_alpha·√(p0(1-p0)) + z_beta·√(p1(1-p1))]² / (p0-p1)²`` for a rate p1 against p0."""
    p0, p1 = 0.05, 0.02
    textbook = (Z_ALPHA * math.sqrt(p0 * (1 - p0)) + Z_BETA * math.sqrt(p1 * (1 - p1))) ** 2 / (p0 - p1) ** 2
    needed = runs_needed(rates(p0, sequential=False), SideStatistics(runs=100, failures=2))
    assert needed.candidate is not None
    assert 100 + needed.candidate == pytest.approx(textbook, rel=0.2)


def test_non_inferiority_is_close_to_the_research_example() -> None:
    """Research §3.4: both arms at 2 %, margin +1 point, 9,000 baseline runs: about 1,400 candidate runs
    by the Wald formula. Newcombe's Wilson limits are wider than Wald's near 0, so somewhat more."""
    baseline = SideStatistics(runs=9000, failures=180)
    candidate = SideStatistics(runs=200, failures=4)
    needed = runs_needed(rates(0.01, LimitKind.MAX_INCREASE, sequential=False), candidate, baseline)
    assert needed.baseline == 0
    assert needed.candidate is not None
    assert 1400 <= 200 + needed.candidate <= 1.3 * 1400


def test_p99_is_close_to_the_rate_design_on_the_share_above_the_limit() -> None:
    """Research §3.2: with F(limit) = q = 0.995 the p99 upper bound needs about
    ``[z_alpha·√(p(1-p)) + z_beta·√(q(1-q))]²/(q-p)²`` runs, 1,991 at 95 % and power 0.8 (its 2,448 uses
    ``p(1-p)`` for both terms, which is more conservative). And the design holds its power."""
    limit = 4096  # a bin edge, so the share at or below it is exact
    fast, slow = bin_of(2000), bin_of(8000)
    candidate = SideStatistics(runs=200, latency_bins={fast: 199, slow: 1})
    spec = GateSpec(
        metric=Metric.LATENCY_QUANTILE,
        kind=LimitKind.ABSOLUTE_MAX,
        quantile=0.99,
        limit=limit,
        sequential=False,
    )
    p, q = 0.99, 0.995
    design = (Z_ALPHA * math.sqrt(p * (1 - p)) + Z_BETA * math.sqrt(q * (1 - q))) ** 2 / (q - p) ** 2
    needed = runs_needed(spec, candidate).candidate
    assert needed is not None
    assert 200 + needed == pytest.approx(design, rel=0.1)

    slow_runs = np.random.default_rng(3).binomial(needed, 1 - q, size=300)
    passed = [
        evaluate_gate(
            spec,
            SideStatistics(runs=200 + needed, latency_bins={fast: 199 + needed - int(s), slow: 1 + int(s)}),
        ).verdict
        is Verdict.PASS
        for s in slow_runs
    ]
    assert 0.78 <= sum(passed) / len(passed) <= 0.95


def test_sequential_needs_more_runs_than_fixed_horizon() -> None:
    candidate = SideStatistics(runs=300, failures=6)
    fixed = runs_needed(rates(0.05, sequential=False), candidate).candidate
    sequential = runs_needed(rates(0.05), candidate).candidate
    assert fixed is not None
    assert sequential is not None
    assert fixed < sequential


def test_an_estimate_on_the_wrong_side_of_the_limit_is_not_expected_to_pass() -> None:
    inconclusive = SideStatistics(runs=100, failures=6)  # 6 % against a 5 % limit: not yet a proven breach
    assert evaluate_gate(rates(0.05), inconclusive).verdict is Verdict.INCONCLUSIVE
    assert runs_needed(rates(0.05), inconclusive) == RunsNeeded(None, None)


def test_when_the_baseline_is_too_uncertain_both_sides_need_runs() -> None:
    # The baseline's own lower margin (1 % from 200 runs) is wider than the 0.5 point allowed.
    candidate, baseline = SideStatistics(runs=200, failures=2), SideStatistics(runs=200, failures=2)
    needed = runs_needed(rates(0.005, LimitKind.MAX_INCREASE, sequential=False), candidate, baseline)
    assert needed.candidate is not None
    assert needed.baseline is not None
    assert needed.candidate == needed.baseline > 0


def test_a_candidate_without_runs_is_projected_like_its_baseline() -> None:
    baseline = SideStatistics(runs=5000, failures=100)
    spec = rates(0.01, LimitKind.MAX_INCREASE, sequential=False)
    fresh = runs_needed(spec, SideStatistics(), baseline)
    like_baseline = runs_needed(spec, SideStatistics(runs=50, failures=1), baseline)  # 2 % as well
    assert fresh.candidate is not None
    assert like_baseline.candidate is not None
    assert fresh.candidate == pytest.approx(50 + like_baseline.candidate, rel=0.1)
    assert runs_needed(rates(0.05), SideStatistics()) == RunsNeeded(None, None)  # nothing to go on


def test_the_projection_passes_about_power_of_the_time_when_the_estimate_is_the_truth() -> None:
    """Seeded: a candidate at 1 % against a 3 % limit. Draw the needed runs at 1 % and check how often
    the gate then passes: about ``power`` (0.8), a little more as counts are whole numbers."""
    observed = SideStatistics(runs=100, failures=1)
    for sequential in (False, True):
        spec = rates(0.03, sequential=sequential)
        needed = runs_needed(spec, observed)
        assert needed.candidate is not None
        assert needed.candidate > 100
        new_failures = np.random.default_rng(7).binomial(needed.candidate, 0.01, size=500)
        passed = [
            evaluate_gate(spec, SideStatistics(runs=100 + needed.candidate, failures=1 + int(f))).verdict
            is Verdict.PASS
            for f in new_failures
        ]
        assert 0.78 <= sum(passed) / len(passed) <= 0.95


def test_nothing_is_projected_beyond_the_cap() -> None:
    assert runs_needed(rates(0.05), SideStatistics(runs=100, failures=4), max_runs=150) == RunsNeeded(
        None, None
    )


def test_power_must_be_sensible() -> None:
    with pytest.raises(ValueError, match="power"):
        runs_needed(rates(0.05), SideStatistics(runs=10), power=1.0)


# --- ETA --------------------------------------------------------------------------------------------


def test_eta_is_the_slower_side_at_its_recent_rate() -> None:
    needed = RunsNeeded(candidate=640, baseline=100)
    assert eta(needed, candidate_runs_per_hour=80, baseline_runs_per_hour=10, now=NOW) == NOW + dt.timedelta(
        hours=10
    )
    assert eta(RunsNeeded(640, 0), candidate_runs_per_hour=80, baseline_runs_per_hour=0, now=NOW) == (
        NOW + dt.timedelta(hours=8)
    )


def test_eta_is_none_when_nothing_arrives_or_nothing_will_do() -> None:
    assert eta(RunsNeeded(640, 0), candidate_runs_per_hour=0, baseline_runs_per_hour=50, now=NOW) is None
    assert eta(RunsNeeded(None, None), candidate_runs_per_hour=80, baseline_runs_per_hour=50, now=NOW) is None
    assert eta(RunsNeeded(0, 0), candidate_runs_per_hour=0, baseline_runs_per_hour=0, now=NOW) == NOW
    assert eta(RunsNeeded(10**9, 0), candidate_runs_per_hour=1e-9, baseline_runs_per_hour=0, now=NOW) is None


def test_runs_per_hour_over_the_rate_window() -> None:
    assert runs_per_hour(480, dt.timedelta(hours=6)) == 80
    with pytest.raises(ValueError, match="window"):
        runs_per_hour(5, dt.timedelta(0))
