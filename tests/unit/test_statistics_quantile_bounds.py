"""Quantile bounds from bins: the fixed-horizon ones are the order-statistic interval (SciPy's binomial
ranks on the sorted raw latencies); the sequential ones are a linear scan of the rate sequence's
bounds over the bin edges."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from flightdeck_operator.engine.statistics.latency_bins import (
    bin_lower_edge,
    bin_of,
    bin_upper_edge,
    histogram_of,
    quantile_estimate,
)
from flightdeck_operator.engine.statistics.proportions import beta_binomial_sequence
from flightdeck_operator.engine.statistics.quantile_bounds import quantile_bounds

latency_lists = st.lists(st.integers(min_value=0, max_value=60_000), min_size=1, max_size=600)
quantiles = st.sampled_from([0.05, 0.5, 0.9, 0.95, 0.99])
alphas = st.sampled_from([0.1, 0.05, 0.025, 0.01])


def order_statistic_bounds(latencies: list[int], quantile: float, alpha: float) -> tuple[float, float]:
    """Textbook distribution-free bounds: the u-th smallest run with ``P(Bin(n,p) < u) >= 1-alpha`` is an
    upper bound, the l-th with ``P(Bin(n,p) < l) <= alpha`` a lower one; reported by their bin's edges."""
    ordered = sorted(latencies)
    n = len(ordered)
    ranks = range(1, n + 1)
    # A binomial probability equal to the level up to rounding (n = 1, p = 0.05) is a coin toss for
    # any two implementations; real counts never sit there.
    assume(
        all(min(abs(c - alpha), abs(c - 1 + alpha)) > 1e-9 for c in stats.binom.cdf(range(n), n, quantile))
    )
    upper_rank = next((u for u in ranks if stats.binom.cdf(u - 1, n, quantile) >= 1 - alpha), None)
    lower_rank = max((r for r in ranks if stats.binom.cdf(r - 1, n, quantile) <= alpha), default=None)
    upper = bin_upper_edge(bin_of(ordered[upper_rank - 1])) if upper_rank else math.inf
    lower = bin_lower_edge(bin_of(ordered[lower_rank - 1])) if lower_rank else 0.0
    return lower, upper


@given(latencies=latency_lists, quantile=quantiles, alpha=alphas)
def test_fixed_horizon_bounds_are_the_order_statistic_interval(
    latencies: list[int], quantile: float, alpha: float
) -> None:
    bounds = quantile_bounds(histogram_of(latencies), quantile, alpha, sequential=False)
    assert (bounds.lower, bounds.upper) == order_statistic_bounds(latencies, quantile, alpha)


def sequence_scan_bounds(latencies: list[int], quantile: float, alpha: float) -> tuple[float, float]:
    """Every bin edge, in order, with the rate sequence's numeric bounds on the share of runs above it."""
    histogram = histogram_of(latencies)
    n = len(latencies)
    bins = sorted(histogram)
    upper, lower = math.inf, 0.0
    at_or_below = 0
    if beta_binomial_sequence(n, n, alpha).lower >= 1 - quantile:
        lower = bin_lower_edge(bins[0])
    for position, index in enumerate(bins):
        at_or_below += histogram[index]
        above = beta_binomial_sequence(n - at_or_below, n, alpha)
        assume(min(abs(above.upper - (1 - quantile)), abs(above.lower - (1 - quantile))) > 1e-9)  # no ties
        if above.upper <= 1 - quantile and upper == math.inf:
            upper = bin_upper_edge(index)
        if above.lower >= 1 - quantile and position + 1 < len(bins):
            lower = bin_lower_edge(bins[position + 1])
    return lower, upper


@given(latencies=latency_lists, quantile=quantiles, alpha=alphas)
def test_sequential_bounds_are_the_scan_of_the_rate_sequence(
    latencies: list[int], quantile: float, alpha: float
) -> None:
    bounds = quantile_bounds(histogram_of(latencies), quantile, alpha, sequential=True)
    assert (bounds.lower, bounds.upper) == sequence_scan_bounds(latencies, quantile, alpha)


@given(latencies=latency_lists, quantile=quantiles, alpha=alphas, sequential=st.booleans())
def test_bounds_are_ordered_and_straddle_the_estimate_when_finite(
    latencies: list[int], quantile: float, alpha: float, sequential: bool
) -> None:
    histogram = histogram_of(latencies)
    bounds = quantile_bounds(histogram, quantile, alpha, sequential=sequential)
    estimate = quantile_estimate(histogram, quantile)
    assert estimate is not None
    assert bounds.lower <= estimate <= bounds.upper


@pytest.mark.parametrize(
    ("quantile", "sequential", "runs_needed"),
    # Research §3.2: a finite one-sided 95 % upper bound needs n >= ln(alpha)/ln(p) at a fixed horizon;
    # the sequence, on the share of runs above, needs what "at most 5 %" (1 %) needs with no failure.
    [(0.95, False, 59), (0.99, False, 299), (0.95, True, 107), (0.99, True, 631)],
)
def test_runs_before_the_upper_bound_is_finite(quantile: float, sequential: bool, runs_needed: int) -> None:
    enough = {bin_of(1000): runs_needed}
    too_few = {bin_of(1000): runs_needed - 1}
    assert quantile_bounds(enough, quantile, 0.05, sequential=sequential).upper == bin_upper_edge(
        bin_of(1000)
    )
    assert quantile_bounds(too_few, quantile, 0.05, sequential=sequential).upper == math.inf


def test_no_runs_bound_nothing() -> None:
    bounds = quantile_bounds({}, 0.95, 0.05, sequential=True)
    assert (bounds.lower, bounds.upper) == (0.0, math.inf)


def test_a_quantile_must_be_strictly_between_0_and_1() -> None:
    with pytest.raises(ValueError, match="quantile"):
        quantile_bounds({1: 1}, 0.0, 0.05, sequential=False)
