"""The latency histogram: OpenTelemetry's base-2 exponential bins at scale 4, kept sparse.

Bin ``i`` holds the latencies in ``(base**i, base**(i+1)]`` with ``base = 2**(1/16)``; a 0 ms latency
has a bin of its own, ``ZERO_BIN``. Reporting a bin by ``2·base**(i+1)/(base+1)`` is within
``(base-1)/(base+1) = 2.166 %`` of every value in it. A histogram is a sparse ``{bin: runs}`` mapping,
and merging histograms (hours, models, tenants) is adding counts per bin: the SQL table of bins *is*
the sketch, and ``GROUP BY bin`` is its merge. The mapping is OTel's, so OTLP exponential histograms at
scale >= 4 can be folded in later (scale ``s`` bin ``i`` is scale ``s-1`` bin ``i >> 1``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Final

SCALE: Final = 4
BINS_PER_DOUBLING: Final = 16  # 2**SCALE
BASE = 2.0 ** (1.0 / BINS_PER_DOUBLING)
MAX_RELATIVE_ERROR = (BASE - 1.0) / (BASE + 1.0)
"""Largest relative error of a bin's representative value: 0.021660..."""

ZERO_BIN = -32768  # the smallest SMALLINT, so that 0 ms sorts first
"""The bin of a 0 ms latency (a run that reported no measurable time)."""

Histogram = Mapping[int, int]
"""Sparse bin counts: ``{bin index: runs}``; absent bins hold no run."""


def _above_power_of_two(value: float, exponent: int) -> bool:
    """``value**16 > 2**exponent``, decided exactly on the float's integer ratio (no rounding)."""
    numerator, denominator = value.as_integer_ratio()
    left, right = numerator**BINS_PER_DOUBLING, denominator**BINS_PER_DOUBLING
    if exponent >= 0:
        return left > right << exponent
    return left << -exponent > right


def bin_of(value_ms: float) -> int:
    """The bin of a latency: the ``i`` with ``base**i < value_ms <= base**(i+1)``, exactly.

    The logarithm gives ``i`` up to float rounding; an exact integer comparison then settles values
    that sit on or next to a bin edge (every power of two is one).
    """
    if not math.isfinite(value_ms) or value_ms < 0:
        raise ValueError(f"a latency must be a finite number >= 0, got {value_ms}")
    if value_ms == 0:
        return ZERO_BIN
    index = math.ceil(math.log2(value_ms) * BINS_PER_DOUBLING) - 1
    while not _above_power_of_two(value_ms, index):
        index -= 1
    while _above_power_of_two(value_ms, index + 1):
        index += 1
    return index


def bin_lower_edge(index: int) -> float:
    """The exclusive lower edge ``base**index`` (0 for ``ZERO_BIN``)."""
    return 0.0 if index == ZERO_BIN else 2.0 ** (index / BINS_PER_DOUBLING)


def bin_upper_edge(index: int) -> float:
    """The inclusive upper edge ``base**(index+1)`` (0 for ``ZERO_BIN``)."""
    return 0.0 if index == ZERO_BIN else 2.0 ** ((index + 1) / BINS_PER_DOUBLING)


def bin_value(index: int) -> float:
    """The value reported for a bin, ``2·base**(index+1)/(base+1)``: the point whose relative distance
    to both edges is the same, ``MAX_RELATIVE_ERROR``."""
    return 0.0 if index == ZERO_BIN else 2.0 * bin_upper_edge(index) / (BASE + 1.0)


def largest_integer_in_bin(index: int) -> int:
    """``floor(base**(index+1))``: an integer latency ``ms >= 1`` is in the first bin ``i`` with
    ``ms <= largest_integer_in_bin(i)`` (the exact table a SQL backfill can join against; bins below
    -1 hold fractions of a millisecond only, their entry is 0)."""
    if index == ZERO_BIN:
        return 0
    candidate = math.floor(bin_upper_edge(index))
    while _above_power_of_two(float(candidate), index + 1):
        candidate -= 1
    while not _above_power_of_two(float(candidate + 1), index + 1):
        candidate += 1
    return candidate


def _integer_bins() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The bins that hold at least one integer latency, with the largest integer each holds."""
    largest, bins = [0], [ZERO_BIN]
    index = -1  # holds 1 ms, the smallest positive integer
    while largest[-1] < MAX_INTEGER_MS:
        top = largest_integer_in_bin(index)
        if top > largest[-1]:
            largest.append(top)
            bins.append(index)
        index += 1
    return tuple(largest), tuple(bins)


MAX_INTEGER_MS: Final = 10**10
"""The largest latency the API accepts (``models.MAX_LATENCY_MS``): the integer table reaches it."""

INTEGER_BIN_LARGEST, INTEGER_BIN_INDEX = _integer_bins()
"""Parallel tables: ``INTEGER_BIN_INDEX[k]`` holds the integers up to ``INTEGER_BIN_LARGEST[k]``
(and above the previous entry); 0 ms is ``ZERO_BIN``. The SQL store keeps the same table."""


def bin_of_integer(value_ms: int) -> int:
    """``bin_of`` for a whole number of milliseconds (what run events carry), by table lookup:
    exact, and several times cheaper than the logarithm (ingestion bins every event)."""
    position = bisect.bisect_left(INTEGER_BIN_LARGEST, value_ms)
    if value_ms < 0 or position == len(INTEGER_BIN_LARGEST):
        raise ValueError(f"a latency must be a whole number of ms in [0, {MAX_INTEGER_MS}], got {value_ms}")
    return INTEGER_BIN_INDEX[position]


def histogram_of(latencies_ms: Iterable[float]) -> dict[int, int]:
    """Bin raw latencies (what ingestion does one event at a time)."""
    counts: dict[int, int] = {}
    for value in latencies_ms:
        index = bin_of(value)
        counts[index] = counts.get(index, 0) + 1
    return counts


def merge_histograms(*histograms: Histogram) -> dict[int, int]:
    """Sum bin counts; bins that end up empty are dropped so equal data gives equal dicts."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for index, count in histogram.items():
            merged[index] = merged.get(index, 0) + count
    return {index: count for index, count in merged.items() if count}


def nearest_rank(quantile: float, total: float) -> int:
    """The rank (1-based) of the ``quantile`` by the nearest-rank rule, ``ceil(q·n)``, at least 1.

    Rounded to 9 decimals first so that ``0.07 * 100 = 7.000000000000001`` is rank 7, not 8.
    """
    return max(1, math.ceil(round(quantile * total, 9)))


def quantile_estimate(histogram: Histogram, quantile: float) -> float | None:
    """The reported value of the bin holding the nearest-rank ``quantile``; None for no runs.

    The true order statistic is in that bin, so the estimate is within ``MAX_RELATIVE_ERROR`` of it.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"a quantile must be in (0, 1), got {quantile}")
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = nearest_rank(quantile, total)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bin_value(index)
    raise AssertionError("unreachable: the ranks add up to the total")
