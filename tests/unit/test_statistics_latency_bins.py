"""The latency bins: exact boundaries (property tests), the error bound, merging, quantile estimates
against a sort of the raw latencies, and DDSketch's logarithmic mapping as an oracle."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from ddsketch.mapping import LogarithmicMapping
from hypothesis import given
from hypothesis import strategies as st

from flightdeck_operator.engine.models import MAX_LATENCY_MS
from flightdeck_operator.engine.statistics.latency_bins import (
    BASE,
    MAX_RELATIVE_ERROR,
    ZERO_BIN,
    bin_lower_edge,
    bin_of,
    bin_upper_edge,
    bin_value,
    histogram_of,
    largest_integer_in_bin,
    merge_histograms,
    nearest_rank,
    quantile_estimate,
)

integer_ms = st.integers(min_value=1, max_value=2**31 - 1)
positive_ms = st.floats(
    min_value=1e-6, max_value=float(MAX_LATENCY_MS), allow_nan=False, allow_infinity=False
)


def in_bin_exactly(value: float, index: int) -> bool:
    """``2**(i/16) < value <= 2**((i+1)/16)``, in exact rational arithmetic."""
    power = Fraction(value) ** 16
    return Fraction(2) ** index < power <= Fraction(2) ** (index + 1)


def test_the_error_bound_is_the_research_figure() -> None:
    assert BASE == 2 ** (1 / 16)
    assert abs(MAX_RELATIVE_ERROR - 0.02166) < 1e-5  # "scale 4 -> 2.17 %"


@given(value=integer_ms)
def test_every_integer_latency_falls_in_its_bin_exactly(value: int) -> None:
    assert in_bin_exactly(value, bin_of(value))


@given(value=positive_ms)
def test_every_latency_falls_in_its_bin_exactly(value: float) -> None:
    assert in_bin_exactly(value, bin_of(value))


@pytest.mark.parametrize("exponent", range(-3, 34))
def test_powers_of_two_are_upper_edges(exponent: int) -> None:
    """``2**k`` is the upper edge of bin ``16k - 1``: the worst case for the logarithm's rounding."""
    value = 2.0**exponent
    assert bin_of(value) == 16 * exponent - 1
    assert bin_of(math.nextafter(value, math.inf)) == 16 * exponent
    assert bin_upper_edge(16 * exponent - 1) == value


@given(value=positive_ms)
def test_the_reported_value_is_within_the_error_bound(value: float) -> None:
    reported = bin_value(bin_of(value))
    assert abs(reported - value) <= MAX_RELATIVE_ERROR * value * (1 + 1e-12)


@given(value=integer_ms)
def test_edges_enclose_the_value_and_follow_each_other(value: int) -> None:
    index = bin_of(value)
    assert bin_lower_edge(index) <= value <= bin_upper_edge(index) * (1 + 1e-15)
    assert bin_upper_edge(index) == pytest.approx(bin_lower_edge(index + 1), rel=1e-15)


def test_zero_has_a_bin_of_its_own_below_every_other() -> None:
    assert bin_of(0) == ZERO_BIN
    assert (bin_lower_edge(ZERO_BIN), bin_upper_edge(ZERO_BIN), bin_value(ZERO_BIN)) == (0.0, 0.0, 0.0)
    assert bin_of(1e-6) > ZERO_BIN
    assert bin_of(MAX_LATENCY_MS) <= 32767  # every latency the API accepts fits a SMALLINT
    assert bin_of(2**31 - 1) <= 495  # the research's figure for int32 milliseconds


@pytest.mark.parametrize("value", [-1.0, math.inf, math.nan])
def test_impossible_latencies_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="latency"):
        bin_of(value)


@given(value=integer_ms)
def test_the_integer_table_bins_integers_like_bin_of(value: int) -> None:
    index = bin_of(value)
    assert value <= largest_integer_in_bin(index)
    assert value > largest_integer_in_bin(index - 1)  # bin -1 holds 1 ms, its table entry is 1


@given(value=st.floats(min_value=1e-3, max_value=1e9))
def test_ddsketch_logarithmic_mapping_is_the_same_bins(value: float) -> None:
    """DDSketch at relative accuracy (base-1)/(base+1) has gamma = base: its key ``ceil(log_gamma x)``
    is our bin + 1 and its reported value is ours, except where float logs round across an edge."""
    mapping = LogarithmicMapping(MAX_RELATIVE_ERROR)
    index = bin_of(value)
    near_an_edge = min(value / bin_lower_edge(index) - 1, 1 - value / bin_upper_edge(index)) < 1e-9
    if not near_an_edge:
        assert mapping.key(value) == index + 1
    assert mapping.value(index + 1) == pytest.approx(bin_value(index), rel=1e-9)


# --- histograms and quantiles ------------------------------------------------------------------------

latency_lists = st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=400)
quantiles = st.sampled_from([0.01, 0.07, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999])


@given(first=latency_lists, second=latency_lists)
def test_merging_is_binning_the_concatenation(first: list[int], second: list[int]) -> None:
    assert merge_histograms(histogram_of(first), histogram_of(second)) == histogram_of(first + second)


def test_merging_drops_bins_that_cancel_out() -> None:
    assert merge_histograms({3: 2, 5: 1}, {3: -2}) == {5: 1}


def raw_nearest_rank(latencies: list[int], quantile: float) -> int:
    """The oracle: sort the raw latencies and take rank ceil(q·n) (numpy's "inverted_cdf")."""
    ordered = sorted(latencies)
    rank = max(1, math.ceil(Fraction(str(quantile)) * len(ordered)))
    return ordered[rank - 1]


@given(latencies=latency_lists, quantile=quantiles)
def test_quantile_estimate_is_within_the_error_bound_of_the_sorted_raw_value(
    latencies: list[int], quantile: float
) -> None:
    exact = raw_nearest_rank(latencies, quantile)
    estimate = quantile_estimate(histogram_of(latencies), quantile)
    assert estimate is not None
    assert abs(estimate - exact) <= MAX_RELATIVE_ERROR * exact * (1 + 1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_of_a_large_lognormal_sample(seed: int) -> None:
    rng = random.Random(seed)
    latencies = [round(rng.lognormvariate(math.log(5000), 1.0)) for _ in range(50_000)]
    histogram = histogram_of(latencies)
    assert len(histogram) < 200  # sparse: tens to ~150 bins, as the research measured
    for quantile in (0.5, 0.9, 0.95, 0.99):
        exact = raw_nearest_rank(latencies, quantile)
        estimate = quantile_estimate(histogram, quantile)
        assert estimate == pytest.approx(exact, rel=MAX_RELATIVE_ERROR)


def test_nearest_rank_ignores_float_noise() -> None:
    assert nearest_rank(0.07, 100) == 7  # 0.07 * 100 == 7.000000000000001
    assert nearest_rank(0.95, 100) == 95
    assert nearest_rank(0.95, 101) == 96
    assert nearest_rank(0.001, 10) == 1


def test_quantile_of_nothing_is_none() -> None:
    assert quantile_estimate({}, 0.5) is None
    with pytest.raises(ValueError, match="quantile"):
        quantile_estimate({1: 1}, 1.0)
