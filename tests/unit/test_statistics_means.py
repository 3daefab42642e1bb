"""Means from sums: moments, cost moments under a pricing table, and the bounds on a mean and a ratio."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import special as sp
from scipy import stats

from flightdeck_operator.engine.evidence import cost_usd
from flightdeck_operator.engine.models import PricingEntry
from flightdeck_operator.engine.statistics.means import (
    SampleMoments,
    TokenMoments,
    cost_moments,
    fieller_ratio_interval,
    fixed_mean_interval,
    mixture_rho_squared,
    sequence_margin_per_unit_sd,
    sequential_mean_interval,
)

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=300)
token_runs = st.lists(
    st.tuples(*(st.integers(min_value=0, max_value=2_000_000) for _ in range(3))), min_size=2, max_size=200
)
prices = st.builds(
    PricingEntry,
    model=st.just("m"),
    input_usd_per_1k_tokens=st.floats(0, 0.1),
    output_usd_per_1k_tokens=st.floats(0, 0.1),
    cached_input_usd_per_1k_tokens=st.none() | st.floats(0, 0.1),
)


@given(first=values, second=values)
def test_moments_merge_and_match_the_statistics_module(first: list[float], second: list[float]) -> None:
    merged = SampleMoments.of(first) + SampleMoments.of(second)
    assert merged.count == len(first) + len(second)
    assert merged.mean == pytest.approx(statistics.fmean(first + second), rel=1e-9, abs=1e-9)
    # Sums of squares lose digits to cancellation when the spread is tiny next to the mean.
    assert merged.variance == pytest.approx(statistics.variance(first + second), rel=1e-6, abs=1e-3)


def test_moments_of_too_little_data() -> None:
    assert (SampleMoments().mean, SampleMoments().variance) == (0.0, 0.0)
    assert SampleMoments.of([3.0]).variance == 0.0
    assert SampleMoments(3, 3.0, 3.0 - 1e-12).variance == 0.0  # clamped, never negative


@given(runs=token_runs, entry=prices)
def test_cost_moments_equal_the_moments_of_per_run_costs(
    runs: list[tuple[int, int, int]], entry: PricingEntry
) -> None:
    """Σcost and Σcost² from the token sums and the six product sums, for any pricing table, equal
    the sums over per-run costs computed as ``evidence.cost_usd`` does."""
    tokens = TokenMoments()
    for run in runs:
        tokens += TokenMoments.of_run(*run)
    per_run = [cost_usd(*run, entry) for run in runs]
    moments = cost_moments(tokens, entry)
    assert moments.count == len(runs)
    assert moments.total == pytest.approx(math.fsum(per_run), rel=1e-9, abs=1e-12)
    assert moments.total_sq == pytest.approx(math.fsum(c * c for c in per_run), rel=1e-9, abs=1e-12)
    assert moments.mean == pytest.approx(statistics.fmean(per_run), rel=1e-9, abs=1e-12)
    spread = statistics.variance(per_run)
    assert moments.variance == pytest.approx(spread, rel=1e-6, abs=1e-9 * (1 + moments.mean**2))


@given(sample=values, alpha=st.sampled_from([0.1, 0.05, 0.01]))
def test_fixed_interval_is_the_normal_interval(sample: list[float], alpha: float) -> None:
    moments = SampleMoments.of(sample)
    assume(moments.variance > 0)
    lower, upper = stats.norm.interval(
        1 - 2 * alpha, loc=moments.mean, scale=math.sqrt(moments.variance / moments.count)
    )
    bounds = fixed_mean_interval(moments, alpha)
    assert bounds.lower == pytest.approx(lower, rel=1e-9, abs=1e-9)
    assert bounds.upper == pytest.approx(upper, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(("runs", "ratio"), [(100, 1.97), (1000, 1.55), (10_000, 1.65)])
def test_sequence_width_against_the_fixed_interval_matches_the_research(runs: int, ratio: float) -> None:
    """Research §3.5: the asymptotic sequence tuned for 1,000 runs against the two-sided 95 % z interval."""
    width = sequence_margin_per_unit_sd(runs, 0.05, expected_runs=1000)
    assert width / (stats.norm.isf(0.025) / math.sqrt(runs)) == pytest.approx(ratio, abs=0.01)


@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.025, 0.01])
def test_rho_approximation_is_close_to_the_exact_lambert_w_optimum(alpha: float) -> None:
    exact = -sp.lambertw(-(alpha**2) * math.exp(alpha**2 - 1), -1).real - 1
    assert mixture_rho_squared(1, alpha) == pytest.approx(exact, rel=0.05)
    assert mixture_rho_squared(1000, alpha) == pytest.approx(mixture_rho_squared(1, alpha) / 1000)


def test_sequential_interval_is_wider_and_shrinks() -> None:
    previous = math.inf
    for count in (30, 300, 3000, 30_000):
        moments = SampleMoments(count, 2.0 * count, 5.0 * count)  # mean 2, variance about 1
        sequence = sequential_mean_interval(moments, 0.05, expected_runs=1000)
        fixed = fixed_mean_interval(moments, 0.05)
        assert sequence.lower < fixed.lower < 2.0 < fixed.upper < sequence.upper
        assert sequence.upper - sequence.lower < previous
        previous = sequence.upper - sequence.lower
    assert math.isinf(sequential_mean_interval(SampleMoments.of([1.0]), 0.05, 1000).upper)


positive_samples = st.lists(st.floats(min_value=0.01, max_value=100), min_size=2, max_size=100)


@given(
    candidate=positive_samples,
    baseline=positive_samples,
    ratio=st.floats(0.05, 20),
    alpha=st.sampled_from([0.1, 0.05, 0.01]),
)
def test_fieller_bounds_decide_exactly_as_the_linear_contrast_test(
    candidate: list[float], baseline: list[float], ratio: float, alpha: float
) -> None:
    """``upper <= r`` iff the contrast ``μ_c - r·μ_b`` has its z upper bound at or below 0, and
    ``lower > r`` iff its z lower bound is above 0 (research §3.3: no ratio CI is needed to decide)."""
    c, b = SampleMoments.of(candidate), SampleMoments.of(baseline)
    z = stats.norm.isf(alpha)
    spread = z * math.sqrt(c.variance / c.count + ratio**2 * b.variance / b.count)
    contrast = c.mean - ratio * b.mean
    assume(abs(abs(contrast) - spread) > 1e-9 * (1 + abs(contrast)))
    bounds = fieller_ratio_interval(c, b, alpha)
    assert (bounds.upper <= ratio) == (contrast + spread <= 0)
    assert (bounds.lower > ratio) == (contrast - spread > 0)


def test_fieller_with_a_baseline_not_proven_above_zero_has_no_upper_bound() -> None:
    noisy_baseline = SampleMoments.of([0.0, 0.0, 0.0, 10.0])
    candidate = SampleMoments.of([1.0, 2.0, 3.0, 2.0])
    bounds = fieller_ratio_interval(candidate, noisy_baseline, 0.05)
    assert math.isinf(bounds.upper)
    assert bounds.lower > 0
