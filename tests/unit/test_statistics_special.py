"""The hand-written special functions against SciPy (a test-only oracle)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special as sp
from scipy import stats

from flightdeck_operator.engine.statistics.special import (
    binomial_at_least,
    binomial_at_most,
    find_root,
    incomplete_beta_tails,
    normal_upper_quantile,
)

shape = st.floats(min_value=0.05, max_value=5e4, allow_nan=False)
unit = st.floats(min_value=1e-9, max_value=1 - 1e-9, allow_nan=False)


@given(a=shape, b=shape, x=unit)
def test_incomplete_beta_tails_match_scipy(a: float, b: float, x: float) -> None:
    """Each tail to 1e-8 relative, however small, down to 1e-200. Below that SciPy itself drifts: at
    a=5973.7, b=31.467, x=0.88271 it gives 1.305e-270 where quadrature and the hypergeometric series
    agree on our 9.1545e-271. (At a=0.063, b=36595 the two differ by 6e-9 relative on a 0.015 tail;
    the series sides with us there too.)"""
    lower, upper = incomplete_beta_tails(a, b, x)
    expected_lower, expected_upper = sp.betainc(a, b, x), sp.betaincc(a, b, x)
    if expected_lower > 1e-200:
        assert lower == pytest.approx(expected_lower, rel=1e-8)
    if expected_upper > 1e-200:
        assert upper == pytest.approx(expected_upper, rel=1e-8)


@given(a=st.integers(1, 80), b=st.integers(1, 80), x=unit)
def test_incomplete_beta_of_whole_shapes_is_exactly_a_binomial_tail(a: int, b: int, x: float) -> None:
    """``I_x(a, b) = P(Bin(a+b-1, x) >= a)`` for whole ``a, b``: an exact rational oracle."""
    p, n = Fraction(x), a + b - 1
    at_least_a = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(a, n + 1))
    lower, upper = incomplete_beta_tails(a, b, x)
    assert lower == pytest.approx(float(at_least_a), rel=1e-11, abs=1e-300)
    assert upper == pytest.approx(float(1 - at_least_a), rel=1e-11, abs=1e-300)


@pytest.mark.parametrize(
    ("a", "b", "x"),
    [(2e4, 9.8e5, 0.0205), (5e5, 5e5, 0.5), (3e5, 1e7, 0.031), (0.5, 1.0, 1e-12), (1.0, 1e6, 1e-7)],
)
def test_incomplete_beta_holds_for_a_million_runs(a: float, b: float, x: float) -> None:
    lower, upper = incomplete_beta_tails(a, b, x)
    # ln B(a, b) from lgamma loses about 1e-16 · lgamma(a + b) in absolute terms: ~1e-8 at 1e7.
    assert lower == pytest.approx(sp.betainc(a, b, x), rel=1e-7, abs=1e-300)
    assert upper == pytest.approx(sp.betaincc(a, b, x), rel=1e-7, abs=1e-300)


@given(n=st.integers(min_value=1, max_value=5000), data=st.data(), p=unit)
def test_binomial_tails_match_scipy(n: int, data: st.DataObject, p: float) -> None:
    """Down to 1e-200, as above (at n=297, k=283, p=0.078125 SciPy's 5.12692227e-291 is off by 1e-9
    relative; the exact rational sum gives our 5.126922264916e-291)."""
    k = data.draw(st.integers(min_value=-1, max_value=n + 1))
    for ours, expected in (
        (binomial_at_least(k, n, p), stats.binom.sf(k - 1, n, p)),
        (binomial_at_most(k, n, p), stats.binom.cdf(k, n, p)),
    ):
        if expected > 1e-200 or ours > 1e-200:
            assert ours == pytest.approx(expected, rel=1e-9)


def test_binomial_tails_at_the_ends_of_p() -> None:
    assert binomial_at_least(1, 10, 0.0) == 0.0
    assert binomial_at_least(0, 10, 0.0) == 1.0
    assert binomial_at_most(9, 10, 1.0) == 0.0
    assert binomial_at_most(10, 10, 1.0) == 1.0


@pytest.mark.parametrize("alpha", [0.5, 0.2, 0.05, 0.025, 0.01, 1e-6])
def test_normal_upper_quantile_matches_scipy(alpha: float) -> None:
    assert normal_upper_quantile(alpha) == pytest.approx(stats.norm.isf(alpha), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_normal_upper_quantile_rejects_impossible_levels(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        normal_upper_quantile(alpha)


def test_find_root_converges_with_and_without_a_derivative() -> None:
    def cubic(x: float) -> float:
        return x**3 - 2.0

    def slope(x: float) -> float:
        return 3.0 * x * x

    assert find_root(cubic, slope, 0.0, 5.0) == pytest.approx(2 ** (1 / 3), rel=1e-12)
    assert find_root(cubic, None, 0.0, 5.0) == pytest.approx(2 ** (1 / 3), rel=1e-12)
    # A misleading derivative cannot throw it out of the bracket.
    assert find_root(cubic, lambda x: -1.0, 0.0, 5.0, start=4.9) == pytest.approx(2 ** (1 / 3), rel=1e-12)
    with pytest.raises(ValueError, match="bracketed"):
        find_root(cubic, slope, 2.0, 5.0)
    assert math.isclose(find_root(lambda x: x - 1.0, None, 1.0, 3.0), 1.0)
