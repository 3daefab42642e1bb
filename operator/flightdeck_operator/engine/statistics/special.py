"""Special functions the statistics need, in plain ``math``: normal and binomial tails, the
regularized incomplete beta function and a safeguarded root finder.

SciPy has all of these, but the operator's runtime image stays free of it; the unit tests use SciPy as
the oracle for every function here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

_STANDARD_NORMAL = NormalDist()
_TINY = 1e-300  # keeps Lentz's continued fraction away from division by zero
_CF_EPSILON = 1e-15


def normal_upper_quantile(alpha: float) -> float:
    """``z`` with ``P(Z > z) = alpha`` for a standard normal ``Z`` (1.6449 for 0.05)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return -_STANDARD_NORMAL.inv_cdf(alpha)  # not inv_cdf(1 - alpha): 1 - alpha rounds


def log_beta(a: float, b: float) -> float:
    """``ln B(a, b)`` for ``a, b > 0``."""
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (modified Lentz), fast when ``x < (a+1)/(a+b+2)``.

    It needs about ``sqrt(max(a, b))`` terms in the worst case, hence the generous cap.
    """
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    max_terms = 200 + int(20 * math.sqrt(max(a, b)))
    for m in range(1, max_terms):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            result *= step
        if abs(step - 1.0) < _CF_EPSILON:
            return result
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def incomplete_beta_tails(a: float, b: float, x: float) -> tuple[float, float]:
    """``(I_x(a, b), 1 - I_x(a, b))``, each to full relative precision.

    The smaller of the two is computed directly (never as ``1 - larger``), so tail probabilities as
    small as 1e-300 keep their digits; that is what the binomial tests below compare with alpha.
    """
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be positive, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0, 1.0
    if x >= 1.0:
        return 1.0, 0.0
    log_front = a * math.log(x) + b * math.log1p(-x) - log_beta(a, b)
    if x < (a + 1.0) / (a + b + 2.0):
        lower = math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
        return lower, 1.0 - lower
    upper = math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b
    return 1.0 - upper, upper


def beta_density(a: float, b: float, x: float) -> float:
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return math.exp((a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - log_beta(a, b))


def binomial_at_least(k: float, n: float, p: float) -> float:
    """``P(Bin(n, p) >= k)``; ``k`` and ``n`` may be non-integer (the beta identity extends them)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return incomplete_beta_tails(k, n - k + 1.0, p)[0]


def binomial_at_most(k: float, n: float, p: float) -> float:
    """``P(Bin(n, p) <= k)``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return incomplete_beta_tails(k + 1.0, n - k, p)[1]


def find_root(
    function: Callable[[float], float],
    derivative: Callable[[float], float] | None,
    low: float,
    high: float,
    *,
    start: float | None = None,
    relative_tolerance: float = 1e-13,
    max_iterations: int = 200,
) -> float:
    """A root of ``function`` in ``[low, high]``, whose end values have opposite signs (or are zero).

    Newton steps (from ``start``, if inside the bracket) when a derivative is given and the step stays
    inside the bracket, bisection otherwise; the bracket always shrinks, so this converges even where
    Newton alone would not.
    """
    f_low, f_high = function(low), function(high)
    if f_low == 0.0:
        return low
    if f_high == 0.0:
        return high
    if (f_low > 0) == (f_high > 0):
        raise ValueError("the root is not bracketed")
    x = start if start is not None and low < start < high else 0.5 * (low + high)
    for _ in range(max_iterations):
        f_x = function(x)
        if f_x == 0.0:
            return x
        if (f_x > 0) == (f_low > 0):
            low, f_low = x, f_x
        else:
            high = x
        if high - low <= relative_tolerance * max(abs(low), abs(high)):
            break
        slope = derivative(x) if derivative is not None else 0.0
        newton = x - f_x / slope if slope != 0.0 and math.isfinite(slope) else math.nan
        if low < newton < high:
            # Newton may creep towards the root from one side, leaving the bracket wide: stop on
            # the step size too.
            if abs(newton - x) <= relative_tolerance * abs(newton):
                return newton
            x = newton
        else:
            x = 0.5 * (low + high)
    return 0.5 * (low + high)
