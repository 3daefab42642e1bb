"""One gate, answered Pass / Fail / Inconclusive: the spec's validation, the verdict rule, the method per
mode, and the numbers each verdict carries."""

from __future__ import annotations

import json
import math
import random

import pytest
from pydantic import ValidationError
from statsmodels.stats.proportion import confint_proportions_2indep

from flightdeck_operator.engine.models import PricingEntry
from flightdeck_operator.engine.statistics import (
    GateSpec,
    LimitKind,
    Method,
    Metric,
    SampleMoments,
    SideStatistics,
    TokenMoments,
    Verdict,
    beta_binomial_sequence,
    clopper_pearson,
    cost_moments,
    evaluate_gate,
    fieller_ratio_interval,
    histogram_of,
    quantile_bounds,
)


def rates(limit: float, kind: LimitKind = LimitKind.ABSOLUTE_MAX, **extra: object) -> GateSpec:
    return GateSpec.model_validate({"metric": Metric.ERROR_RATE, "kind": kind, "limit": limit, **extra})


def latency_side(latencies: list[int], failures: int = 0) -> SideStatistics:
    return SideStatistics(
        runs=len(latencies),
        failures=failures,
        latency=SampleMoments.of([float(v) for v in latencies]),
        latency_bins=histogram_of(latencies),
    )


def lognormal_latencies(seed: int, runs: int, median_ms: float, sigma: float = 0.5) -> list[int]:
    rng = random.Random(seed)
    return [round(rng.lognormvariate(math.log(median_ms), sigma)) for _ in range(runs)]


# --- the spec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metric": "errorRate", "kind": "max", "limit": 0.05, "confidence": 1.2}, "less than 1"),
        ({"metric": "errorRate", "kind": "max", "limit": 0.05, "confidence": 0.5}, "greater than 0.5"),
        ({"metric": "latencyQuantile", "kind": "max", "limit": 3000, "quantile": 0}, "greater than 0"),
        ({"metric": "latencyQuantile", "kind": "max", "limit": 3000}, "a quantile is given"),
        ({"metric": "errorRate", "kind": "max", "limit": 0.05, "quantile": 0.5}, "a quantile is given"),
        ({"metric": "costPerRun", "kind": "maxRatio", "limit": -1.05}, "ratio limit must be > 0"),
        ({"metric": "costPerRun", "kind": "maxRatio", "limit": 0}, "ratio limit must be > 0"),
        ({"metric": "costPerRun", "kind": "max", "limit": -0.5}, "limit must be >= 0"),
        ({"metric": "errorRate", "kind": "max", "limit": 1.5}, "error rate limit must be <= 1"),
        ({"metric": "errorRate", "kind": "maxRatio", "limit": 2}, "errorRate has no maxRatio"),
        ({"metric": "latencyQuantile", "kind": "maxIncrease", "limit": 9, "quantile": 0.9}, "no maxIncrease"),
        ({"metric": "costPerRun", "kind": "max", "limit": math.inf}, "finite number"),
        ({"metric": "latencyMean", "kind": "max", "limit": 1, "min_runs": 1}, "greater than or equal to 2"),
    ],
)
def test_bad_specs_are_rejected_with_a_clear_message(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GateSpec.model_validate(fields)


def test_spec_defaults_follow_the_research() -> None:
    spec = rates(0.05)
    assert (spec.confidence, spec.sequential, spec.expected_runs, spec.min_runs) == (0.95, True, 1000, 30)
    assert spec.alpha == pytest.approx(0.05)
    assert not spec.compares_to_baseline


# --- error rate -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "runs", "verdict"),
    [
        (0, 200, Verdict.PASS),
        (30, 200, Verdict.FAIL),
        (8, 200, Verdict.INCONCLUSIVE),
        (0, 0, Verdict.INCONCLUSIVE),
    ],
)
@pytest.mark.parametrize("sequential", [True, False])
def test_error_rate_max_verdict_follows_the_bounds(
    failures: int, runs: int, verdict: Verdict, sequential: bool
) -> None:
    spec = rates(0.05, sequential=sequential)
    result = evaluate_gate(spec, SideStatistics(runs=runs, failures=failures))
    expected = (beta_binomial_sequence if sequential else clopper_pearson)(failures, runs, 0.05)
    assert result.verdict is verdict
    assert (result.lower, result.upper) == (expected.lower, expected.upper)
    assert result.method is (Method.BETA_BINOMIAL_CS if sequential else Method.CLOPPER_PEARSON)
    assert result.estimate == (failures / runs if runs else None)
    assert (result.candidate_n, result.baseline_n) == (runs, None)


def test_a_limit_equal_to_the_upper_bound_passes_and_to_the_lower_bound_does_not_fail() -> None:
    side = SideStatistics(runs=500, failures=10)
    bounds = clopper_pearson(10, 500, 0.05)
    assert evaluate_gate(rates(bounds.upper, sequential=False), side).verdict is Verdict.PASS
    assert evaluate_gate(rates(bounds.lower, sequential=False), side).verdict is Verdict.INCONCLUSIVE


def test_error_rate_increase_uses_newcombe_at_a_fixed_horizon() -> None:
    candidate, baseline = SideStatistics(runs=812, failures=20), SideStatistics(runs=9031, failures=180)
    result = evaluate_gate(rates(0.01, LimitKind.MAX_INCREASE, sequential=False), candidate, baseline)
    lower, upper = confint_proportions_2indep(20, 812, 180, 9031, method="newcomb", compare="diff", alpha=0.1)
    assert result.lower == pytest.approx(lower, rel=1e-9)
    assert result.upper == pytest.approx(upper, rel=1e-9)
    assert result.estimate == pytest.approx(20 / 812 - 180 / 9031)
    assert (result.candidate_n, result.baseline_n, result.method) == (812, 9031, Method.NEWCOMBE)
    assert result.verdict is Verdict.INCONCLUSIVE


def test_error_rate_increase_combines_each_sides_sequence_at_half_alpha() -> None:
    candidate, baseline = SideStatistics(runs=5000, failures=100), SideStatistics(runs=20000, failures=400)
    result = evaluate_gate(rates(0.015, LimitKind.MAX_INCREASE), candidate, baseline)
    c, b = beta_binomial_sequence(100, 5000, 0.025), beta_binomial_sequence(400, 20000, 0.025)
    assert (result.lower, result.upper) == (c.lower - b.upper, c.upper - b.lower)
    assert result.upper == pytest.approx(0.0126, abs=1e-4)  # Newcombe's, for one look, is 0.0039
    assert result.verdict is Verdict.PASS
    fixed = evaluate_gate(rates(0.015, LimitKind.MAX_INCREASE, sequential=False), candidate, baseline)
    assert fixed.upper < result.upper


def test_a_clearly_worse_error_rate_fails_the_increase_gate() -> None:
    candidate, baseline = SideStatistics(runs=2000, failures=200), SideStatistics(runs=20000, failures=400)
    for sequential in (True, False):
        spec = rates(0.01, LimitKind.MAX_INCREASE, sequential=sequential)
        assert evaluate_gate(spec, candidate, baseline).verdict is Verdict.FAIL


def test_relative_gates_need_the_baseline() -> None:
    with pytest.raises(ValueError, match="needs the baseline"):
        evaluate_gate(rates(0.01, LimitKind.MAX_INCREASE), SideStatistics(runs=10))


# --- latency quantiles ------------------------------------------------------------------------------


def p95(limit: float, kind: LimitKind = LimitKind.ABSOLUTE_MAX, **extra: object) -> GateSpec:
    fields = {"metric": Metric.LATENCY_QUANTILE, "kind": kind, "limit": limit, "quantile": 0.95, **extra}
    return GateSpec.model_validate(fields)


@pytest.mark.parametrize("sequential", [True, False])
def test_p95_max_reports_the_bin_bounds(sequential: bool) -> None:
    side = latency_side(lognormal_latencies(1, 2000, 2000))  # true p95 = 2000·e^(1.645·0.5) ≈ 4550 ms
    result = evaluate_gate(p95(6000, sequential=sequential), side)
    bounds = quantile_bounds(side.latency_bins, 0.95, 0.05, sequential=sequential)
    assert (result.lower, result.upper) == (bounds.lower, bounds.upper)
    assert result.lower < 4550 < result.upper <= 6000
    assert result.verdict is Verdict.PASS
    assert result.method is (Method.QUANTILE_CS if sequential else Method.ORDER_STATISTICS)
    assert evaluate_gate(p95(3000, sequential=sequential), side).verdict is Verdict.FAIL


def test_a_candidate_whose_p95_is_clearly_worse_is_blocked_by_the_ratio_gate() -> None:
    baseline = latency_side(lognormal_latencies(2, 3000, 2000))
    slower = latency_side(lognormal_latencies(3, 300, 3000))  # 1.5x the baseline
    same = latency_side(lognormal_latencies(4, 3000, 2000))
    spec = p95(1.10, LimitKind.MAX_RATIO)
    blocked = evaluate_gate(spec, slower, baseline)
    assert blocked.verdict is Verdict.FAIL
    assert blocked.estimate == pytest.approx(1.5, rel=0.15)
    assert blocked.lower > 1.10
    assert (blocked.candidate_n, blocked.baseline_n) == (300, 3000)
    assert evaluate_gate(spec, same, baseline).verdict is Verdict.INCONCLUSIVE
    assert evaluate_gate(p95(1.5, LimitKind.MAX_RATIO), same, baseline).verdict is Verdict.PASS


def test_too_few_latencies_leave_the_quantile_unbounded_and_serialise_as_null() -> None:
    result = evaluate_gate(p95(3000), latency_side([100] * 10))
    assert result.upper == math.inf
    assert result.verdict is Verdict.INCONCLUSIVE
    assert json.loads(result.model_dump_json())["upper"] is None


def test_no_latency_at_all_estimates_nothing() -> None:
    result = evaluate_gate(p95(2.0, LimitKind.MAX_RATIO), SideStatistics(runs=5), SideStatistics(runs=9))
    assert (result.estimate, result.lower, result.upper) == (None, 0.0, math.inf)
    assert (result.candidate_n, result.baseline_n) == (0, 0)


# --- means ------------------------------------------------------------------------------------------

PRICES = PricingEntry(model="m", input_usd_per_1k_tokens=0.003, output_usd_per_1k_tokens=0.015)


def cost_side(seed: int, runs: int, scale: float = 1.0) -> SideStatistics:
    rng = random.Random(seed)
    tokens = TokenMoments()
    for _ in range(runs):
        tokens += TokenMoments.of_run(round(rng.expovariate(1 / (4000 * scale))), round(600 * scale), 0)
    return SideStatistics(runs=runs, cost=cost_moments(tokens, PRICES))


def cost(limit: float, kind: LimitKind = LimitKind.ABSOLUTE_MAX, **extra: object) -> GateSpec:
    return GateSpec.model_validate({"metric": Metric.COST_PER_RUN, "kind": kind, "limit": limit, **extra})


def test_mean_gates_wait_for_min_runs() -> None:
    side = cost_side(1, 29)
    result = evaluate_gate(cost(1.0), side)  # a limit far above any cost: only min_runs holds it
    assert result.upper < 1.0
    assert result.verdict is Verdict.INCONCLUSIVE
    assert evaluate_gate(cost(1.0), cost_side(1, 30)).verdict is Verdict.PASS
    assert evaluate_gate(cost(1.0, min_runs=10), side).verdict is Verdict.PASS


def test_cost_ratio_uses_fieller_at_a_fixed_horizon_and_half_alpha_sequences_otherwise() -> None:
    candidate, baseline = cost_side(2, 400, scale=1.5), cost_side(3, 4000)
    fixed = evaluate_gate(cost(1.05, LimitKind.MAX_RATIO, sequential=False), candidate, baseline)
    interval = fieller_ratio_interval(candidate.cost, baseline.cost, 0.05)
    assert (fixed.lower, fixed.upper, fixed.method) == (interval.lower, interval.upper, Method.FIELLER)
    assert fixed.estimate == pytest.approx(candidate.cost.mean / baseline.cost.mean)
    assert fixed.verdict is Verdict.FAIL
    sequential = evaluate_gate(cost(1.05, LimitKind.MAX_RATIO), candidate, baseline)
    assert sequential.method is Method.ASYMPTOTIC_CS
    assert sequential.lower < fixed.lower
    assert sequential.upper > fixed.upper
    assert sequential.verdict is Verdict.FAIL


def test_mean_latency_increase_in_milliseconds() -> None:
    baseline = latency_side(lognormal_latencies(5, 4000, 2000))
    candidate = latency_side(lognormal_latencies(6, 4000, 2000))
    spec = GateSpec(metric=Metric.LATENCY_MEAN, kind=LimitKind.MAX_INCREASE, limit=200, sequential=False)
    result = evaluate_gate(spec, candidate, baseline)
    assert result.estimate == pytest.approx(candidate.latency.mean - baseline.latency.mean)
    assert result.method is Method.Z_INTERVAL
    assert result.verdict is Verdict.PASS


def test_sides_add_up() -> None:
    one, two = latency_side([10, 20, 30], failures=1), latency_side([40, 50], failures=2)
    both = one + two
    assert both == latency_side([10, 20, 30, 40, 50], failures=3)
