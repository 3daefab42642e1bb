"""Failure-rate bounds against statsmodels and SciPy, and the research's worked numbers.

Our ``alpha`` is per side, so each fixed-horizon oracle is asked for the two-sided ``1 - 2·alpha``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from flightdeck_operator.engine.statistics.proportions import (
    beta_binomial_sequence,
    clopper_pearson,
    fixed_lower_at_least,
    fixed_upper_at_most,
    newcombe_difference,
    sequential_lower_at_least,
    sequential_upper_at_most,
    wilson,
)

alphas = st.sampled_from([0.2, 0.1, 0.05, 0.025, 0.01])


@st.composite
def counts(draw: st.DrawFn, max_runs: int = 20_000) -> tuple[int, int]:
    runs = draw(st.integers(min_value=1, max_value=max_runs))
    return draw(st.integers(min_value=0, max_value=runs)), runs


@given(sample=counts(), alpha=alphas)
def test_clopper_pearson_matches_statsmodels_beta(sample: tuple[int, int], alpha: float) -> None:
    failures, runs = sample
    lower, upper = proportion_confint(failures, runs, alpha=2 * alpha, method="beta")
    bounds = clopper_pearson(failures, runs, alpha)
    assert bounds.lower == pytest.approx(lower, rel=1e-9, abs=1e-14)
    assert bounds.upper == pytest.approx(upper, rel=1e-9, abs=1e-14)


@given(sample=counts(), alpha=alphas)
def test_wilson_matches_statsmodels(sample: tuple[int, int], alpha: float) -> None:
    failures, runs = sample
    lower, upper = proportion_confint(failures, runs, alpha=2 * alpha, method="wilson")
    bounds = wilson(failures, runs, alpha)
    assert bounds.lower == pytest.approx(lower, rel=1e-9, abs=1e-14)
    assert bounds.upper == pytest.approx(upper, rel=1e-9, abs=1e-14)


@given(candidate=counts(), baseline=counts(), alpha=alphas)
def test_newcombe_matches_statsmodels(
    candidate: tuple[int, int], baseline: tuple[int, int], alpha: float
) -> None:
    lower, upper = confint_proportions_2indep(
        *candidate, *baseline, method="newcomb", compare="diff", alpha=2 * alpha
    )
    bounds = newcombe_difference(*candidate, *baseline, alpha)
    assert bounds.lower == pytest.approx(lower, rel=1e-9, abs=1e-12)
    assert bounds.upper == pytest.approx(upper, rel=1e-9, abs=1e-12)


def test_clopper_pearson_at_a_million_runs() -> None:
    lower, upper = proportion_confint(20_000, 1_000_000, alpha=0.1, method="beta")
    bounds = clopper_pearson(20_000, 1_000_000, 0.05)
    assert bounds.lower == pytest.approx(lower, rel=1e-8)
    assert bounds.upper == pytest.approx(upper, rel=1e-8)


@given(sample=counts(max_runs=5000), alpha=alphas, limit=st.floats(0.001, 0.999))
def test_fixed_tests_agree_with_the_clopper_pearson_bounds(
    sample: tuple[int, int], alpha: float, limit: float
) -> None:
    failures, runs = sample
    bounds = clopper_pearson(failures, runs, alpha)
    assume(abs(bounds.upper - limit) > 1e-9 and abs(bounds.lower - limit) > 1e-9)
    assert fixed_upper_at_most(failures, runs, limit, alpha) == (bounds.upper <= limit)
    assert fixed_lower_at_least(failures, runs, limit, alpha) == (bounds.lower >= limit)


# --- the confidence sequence ------------------------------------------------------------------------


@given(sample=counts(max_runs=100_000), alpha=alphas)
def test_sequence_ends_are_where_robbins_bound_is_met(sample: tuple[int, int], alpha: float) -> None:
    """With a flat Beta(1, 1) prior the mixture boundary is ``C(n,f) p^f (1-p)^(n-f) = alpha/(n+1)``
    (Robbins 1970): check each finite end against SciPy's binomial pmf."""
    failures, runs = sample
    bounds = beta_binomial_sequence(failures, runs, alpha, prior=(1.0, 1.0))
    boundary = math.log(alpha / (runs + 1))
    for end in (bounds.lower, bounds.upper):
        if 0.0 < end < 1.0:
            # An end within 1e-12 of 1 is only as precise as a double near 1 can be: allow the
            # log-pmf's slope times a few ulps of the end.
            slope = abs(failures / end - (runs - failures) / (1.0 - end))
            tolerance = 1e-6 + 4 * slope * math.ulp(end)
            assert stats.binom.logpmf(failures, runs, end) == pytest.approx(boundary, abs=tolerance)
    assert bounds.lower <= failures / runs <= bounds.upper


@given(sample=counts(max_runs=100_000), alpha=alphas)
def test_sequence_is_wider_than_the_fixed_interval_from_a_few_runs_on(
    sample: tuple[int, int], alpha: float
) -> None:
    failures, runs = sample
    assume(runs >= 20)
    sequence = beta_binomial_sequence(failures, runs, alpha)
    fixed = clopper_pearson(failures, runs, alpha)
    assert sequence.upper >= fixed.upper - 1e-12
    # The Beta(0.5, 1) prior favours small rates, so the lower end may sit above Clopper-Pearson's
    # when there are few failures; from a handful of failures on it is wider there too.
    if failures >= 5:
        assert sequence.lower <= fixed.lower + 1e-12


@pytest.mark.parametrize(
    ("prior", "limit", "runs_needed"),
    # Research §3.5: runs to prove "at most 1 %" (and "at most 5 %") with zero failures at 95 %.
    [((1.0, 1.0), 0.01, 984), ((0.5, 1.0), 0.01, 631), ((1.0, 1.0), 0.05, 158), ((0.5, 1.0), 0.05, 107)],
)
def test_zero_failure_runs_needed_match_the_research(
    prior: tuple[float, float], limit: float, runs_needed: int
) -> None:
    assert sequential_upper_at_most(0, runs_needed, limit, 0.05, prior)
    assert not sequential_upper_at_most(0, runs_needed - 1, limit, 0.05, prior)
    assert beta_binomial_sequence(0, runs_needed, 0.05, prior).upper <= limit
    assert beta_binomial_sequence(0, runs_needed - 1, 0.05, prior).upper > limit


@pytest.mark.parametrize(("limit", "runs_needed"), [(0.05, 59), (0.01, 299)])
def test_fixed_zero_failure_runs_needed_match_the_research(limit: float, runs_needed: int) -> None:
    assert fixed_upper_at_most(0, runs_needed, limit, 0.05)
    assert not fixed_upper_at_most(0, runs_needed - 1, limit, 0.05)


@given(sample=counts(max_runs=5000), alpha=alphas, limit=st.floats(0.001, 0.999))
def test_sequential_tests_agree_with_the_sequence_bounds(
    sample: tuple[int, int], alpha: float, limit: float
) -> None:
    failures, runs = sample
    bounds = beta_binomial_sequence(failures, runs, alpha)
    assume(abs(bounds.upper - limit) > 1e-9 and abs(bounds.lower - limit) > 1e-9)
    assert sequential_upper_at_most(failures, runs, limit, alpha) == (bounds.upper <= limit)
    assert sequential_lower_at_least(failures, runs, limit, alpha) == (bounds.lower >= limit)


def test_no_runs_bound_nothing() -> None:
    for bounds in (clopper_pearson(0, 0, 0.05), wilson(0, 0, 0.05), beta_binomial_sequence(0, 0, 0.05)):
        assert (bounds.lower, bounds.upper) == (0.0, 1.0)


@pytest.mark.parametrize(("failures", "runs", "alpha"), [(-1, 10, 0.05), (11, 10, 0.05), (1, 10, 0.5)])
def test_impossible_counts_and_levels_are_rejected(failures: int, runs: int, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"count|alpha"):
        clopper_pearson(failures, runs, alpha)
