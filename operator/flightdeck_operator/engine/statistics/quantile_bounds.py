"""Distribution-free bounds on a latency quantile from the binned counts (no shape assumed).

The number of runs at or below any value ``v`` is ``Binomial(n, F(v))`` whatever the latency
distribution, and a bin edge ``e`` has an exactly known count ``K(e)``. So a bound on the proportion
``F(e)`` turns into a bound on the quantile ``ξ_p``:

* upper bound: the smallest upper edge whose count proves ``F(e) >= p`` (then ``ξ_p <= e``);
* lower bound: the lower edge just past the last count that proves ``F(e) < p`` (then ``ξ_p > e``).

With the fixed-horizon proportion test this is the classical order-statistic interval (the ``u``-th
smallest run, ``u`` the binomial rank); with the confidence sequence it stays valid under repeated
looks, because the counts are monotone in ``e``: only the one stream at ``ξ_p`` matters (Howard &
Ramdas, Bernoulli 2022). The bounds are bin edges, so they carry no sketch error, only the coarseness
of one bin (4.4 %). The proportion tests run on the *exceedance* count ``n - K(e)``: near the tail
quantiles it is small, where the rate prior of the sequence is at its best.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .latency_bins import Histogram, bin_lower_edge, bin_upper_edge
from .proportions import (
    Interval,
    fixed_lower_at_least,
    fixed_upper_at_most,
    sequential_lower_at_least,
    sequential_upper_at_most,
)

_RateTest = Callable[[float, float, float, float], bool]


def _last_true(predicate: Callable[[int], bool], count: int) -> int:
    """The largest ``j`` in ``[-1, count)`` with ``predicate(j)`` for a predicate that is true, then
    false, along ``j`` (``-1`` when it is never true, ``predicate(-1)`` is not asked)."""
    low, high = -1, count  # predicate(low) assumed true, predicate(high) assumed false
    while high - low > 1:
        middle = (low + high) // 2
        if predicate(middle):
            low = middle
        else:
            high = middle
    return low


def quantile_bounds(histogram: Histogram, quantile: float, alpha: float, *, sequential: bool) -> Interval:
    """One-sided ``1 - alpha`` bounds on the true ``quantile`` of the latency distribution.

    ``upper`` is ``inf`` until enough runs are in (95th percentile, 95 %: 59 runs fixed-horizon); the
    ``lower`` end is 0 when no count yet proves anything.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"a quantile must be in (0, 1), got {quantile}")
    bins = sorted(index for index, count in histogram.items() if count)
    total = sum(histogram[index] for index in bins)
    if total == 0:
        return Interval(0.0, math.inf)
    cumulative: list[int] = []
    running = 0
    for index in bins:
        running += histogram[index]
        cumulative.append(running)

    upper_at_most: _RateTest = sequential_upper_at_most if sequential else fixed_upper_at_most
    lower_at_least: _RateTest = sequential_lower_at_least if sequential else fixed_lower_at_least
    exceedance_limit = 1.0 - quantile

    def proves_at_least_quantile(j: int) -> bool:  # F(upper edge of bin j) >= quantile
        return upper_at_most(total - cumulative[j], total, exceedance_limit, alpha)

    def proves_below_quantile(j: int) -> bool:  # F(upper edge of bin j) < quantile; j = -1: nothing
        at_or_below = cumulative[j] if j >= 0 else 0
        return lower_at_least(total - at_or_below, total, exceedance_limit, alpha)

    # Proving "F >= p" gets easier along the bins: find the first j where it holds.
    first_proving = _last_true(lambda j: not proves_at_least_quantile(j), len(bins)) + 1
    upper = bin_upper_edge(bins[first_proving]) if first_proving < len(bins) else math.inf

    lower = 0.0
    if proves_below_quantile(-1):
        last_below = _last_true(proves_below_quantile, len(bins))
        # Every run counted up to bin last_below is below ξ_p; the next bin starts above its edge.
        if last_below + 1 < len(bins):
            lower = bin_lower_edge(bins[last_below + 1])
    return Interval(lower, upper)
