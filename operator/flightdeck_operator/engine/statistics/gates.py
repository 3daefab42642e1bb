"""One statistical gate: a limit on a metric of the candidate, alone or against the baseline, answered
Pass, Fail or Inconclusive with the estimate, the bounds, n per side and the method used.

* **Pass**: the bound on the bad side is within the limit (``upper <= limit``);
* **Fail**: the opposite bound is already beyond it (``lower > limit``): a breach, proven;
* **Inconclusive**: the limit is inside the bounds, so more runs are needed (``runs_needed``).

Each bound holds at the gate's confidence. Two-sided comparisons (increase over, or ratio to, the
baseline) use the classical two-sample method at a fixed horizon and, in sequential mode, each arm's
confidence sequence at ``alpha/2`` combined by interval arithmetic (conservative, and still valid under
repeated looks). Promotion needs every gate to Pass, an intersection-union test, so each gate may spend
the whole alpha without a multiplicity correction (Berger 1982).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .latency_bins import Histogram, merge_histograms, quantile_estimate
from .means import (
    SampleMoments,
    fieller_ratio_interval,
    fixed_mean_interval,
    sequential_mean_interval,
)
from .proportions import Interval, beta_binomial_sequence, clopper_pearson, newcombe_difference
from .quantile_bounds import quantile_bounds
from .special import normal_upper_quantile


class Metric(StrEnum):
    ERROR_RATE = "errorRate"
    LATENCY_QUANTILE = "latencyQuantile"
    LATENCY_MEAN = "latencyMean"
    COST_PER_RUN = "costPerRun"


class LimitKind(StrEnum):
    ABSOLUTE_MAX = "max"  # candidate <= limit
    MAX_INCREASE = "maxIncrease"  # candidate - baseline <= limit
    MAX_RATIO = "maxRatio"  # candidate / baseline <= limit


class Verdict(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class Method(StrEnum):
    CLOPPER_PEARSON = "clopper-pearson"
    NEWCOMBE = "newcombe"
    BETA_BINOMIAL_CS = "beta-binomial-cs"
    ORDER_STATISTICS = "order-statistics"
    QUANTILE_CS = "quantile-cs"
    Z_INTERVAL = "z-interval"
    FIELLER = "fieller"
    ASYMPTOTIC_CS = "asymptotic-cs"


SUPPORTED_KINDS: Mapping[Metric, frozenset[LimitKind]] = {
    Metric.ERROR_RATE: frozenset({LimitKind.ABSOLUTE_MAX, LimitKind.MAX_INCREASE}),
    Metric.LATENCY_QUANTILE: frozenset({LimitKind.ABSOLUTE_MAX, LimitKind.MAX_RATIO}),
    Metric.LATENCY_MEAN: frozenset(LimitKind),
    Metric.COST_PER_RUN: frozenset(LimitKind),
}


class GateSpec(BaseModel):
    """What to check. ``limit`` is in the metric's unit (a rate, ms, USD), or a ratio for ``maxRatio``."""

    model_config = ConfigDict(frozen=True)

    metric: Metric
    kind: LimitKind
    limit: float = Field(allow_inf_nan=False)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    sequential: bool = True
    quantile: float | None = Field(default=None, gt=0.0, lt=1.0)
    # The mean's confidence sequence is tightest near this many runs (any value keeps it valid).
    expected_runs: int = Field(default=1000, ge=1)
    # Means rest on the central limit theorem: below this many runs a mean gate stays Inconclusive.
    min_runs: int = Field(default=30, ge=2)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind not in SUPPORTED_KINDS[self.metric]:
            raise ValueError(f"{self.metric} has no {self.kind} limit")
        if (self.metric is Metric.LATENCY_QUANTILE) != (self.quantile is not None):
            raise ValueError("a quantile is given for latencyQuantile gates, and only for them")
        if self.kind is LimitKind.MAX_RATIO and self.limit <= 0:
            raise ValueError(f"a ratio limit must be > 0, got {self.limit}")
        if self.limit < 0:
            raise ValueError(f"a limit must be >= 0, got {self.limit}")
        if self.metric is Metric.ERROR_RATE and self.limit > 1:
            raise ValueError(f"an error rate limit must be <= 1, got {self.limit}")
        return self

    @property
    def alpha(self) -> float:
        # Rounded so that confidence 0.95 means alpha 0.05, not 0.050000000000000044.
        return round(1.0 - self.confidence, 12)

    @property
    def compares_to_baseline(self) -> bool:
        return self.kind is not LimitKind.ABSOLUTE_MAX


@dataclass(frozen=True, slots=True)
class SideStatistics:
    """The sufficient statistics of one release over the evidence range, all mergeable by addition.

    ``latency`` and ``latency_bins`` count only the runs that reported a latency; ``cost`` is
    ``means.cost_moments`` summed over the side's models.
    """

    runs: int = 0
    failures: int = 0
    latency: SampleMoments = field(default_factory=SampleMoments)
    latency_bins: Histogram = field(default_factory=dict)
    cost: SampleMoments = field(default_factory=SampleMoments)

    def __add__(self, other: SideStatistics) -> SideStatistics:
        return SideStatistics(
            runs=self.runs + other.runs,
            failures=self.failures + other.failures,
            latency=self.latency + other.latency,
            latency_bins=merge_histograms(self.latency_bins, other.latency_bins),
            cost=self.cost + other.cost,
        )

    def sample_size(self, metric: Metric) -> int:
        """How many observations the metric rests on (runs, or runs that reported a latency)."""
        if metric is Metric.ERROR_RATE:
            return self.runs
        if metric is Metric.LATENCY_QUANTILE:
            return sum(self.latency_bins.values())
        if metric is Metric.LATENCY_MEAN:
            return self.latency.count
        return self.cost.count


class GateResult(BaseModel):
    """The answer for one gate. An unbounded end is ``inf`` (JSON ``null``); ``baseline_n`` is None for
    a gate on the candidate alone; ``estimate`` is None when there is nothing to estimate from."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="null")

    metric: Metric
    kind: LimitKind
    quantile: float | None
    limit: float
    confidence: float
    sequential: bool
    verdict: Verdict
    estimate: float | None
    lower: float
    upper: float
    candidate_n: int
    baseline_n: int | None
    method: Method


@dataclass(frozen=True, slots=True)
class _Bounds:
    estimate: float | None
    interval: Interval
    method: Method
    decidable: bool = True  # False: too few runs for the method to decide either way


def evaluate_gate(
    spec: GateSpec, candidate: SideStatistics, baseline: SideStatistics | None = None
) -> GateResult:
    """Answer one gate from both sides' statistics (``baseline`` is needed for relative limits)."""
    if spec.compares_to_baseline and baseline is None:
        raise ValueError(f"a {spec.kind} gate needs the baseline's statistics")
    other = baseline if baseline is not None else SideStatistics()
    if spec.metric is Metric.ERROR_RATE:
        bounds = _error_rate_bounds(spec, candidate, other)
    elif spec.metric is Metric.LATENCY_QUANTILE:
        bounds = _quantile_bounds(spec, candidate.latency_bins, other.latency_bins)
    elif spec.metric is Metric.LATENCY_MEAN:
        bounds = _mean_bounds(spec, candidate.latency, other.latency)
    else:
        bounds = _mean_bounds(spec, candidate.cost, other.cost)
    return GateResult(
        metric=spec.metric,
        kind=spec.kind,
        quantile=spec.quantile,
        limit=spec.limit,
        confidence=spec.confidence,
        sequential=spec.sequential,
        verdict=_verdict(bounds, spec.limit),
        estimate=bounds.estimate,
        lower=bounds.interval.lower,
        upper=bounds.interval.upper,
        candidate_n=candidate.sample_size(spec.metric),
        baseline_n=other.sample_size(spec.metric) if spec.compares_to_baseline else None,
        method=bounds.method,
    )


def _verdict(bounds: _Bounds, limit: float) -> Verdict:
    if not bounds.decidable:
        return Verdict.INCONCLUSIVE
    if bounds.interval.upper <= limit:
        return Verdict.PASS
    if bounds.interval.lower > limit:
        return Verdict.FAIL
    return Verdict.INCONCLUSIVE


def _difference(candidate: Interval, baseline: Interval) -> Interval:
    return Interval(candidate.lower - baseline.upper, candidate.upper - baseline.lower)


def _ratio(candidate: Interval, baseline: Interval) -> Interval:
    """Bounds on a ratio of two non-negative quantities from bounds on each (interval arithmetic).

    Nothing is proven about the ratio while the baseline may be 0 (no upper bound) or the candidate
    may be 0 (no lower bound above 0)."""
    smallest_candidate = max(0.0, candidate.lower)
    if smallest_candidate == 0:
        lower = 0.0
    else:
        lower = smallest_candidate / baseline.upper if baseline.upper > 0 else math.inf
    upper = candidate.upper / baseline.lower if baseline.lower > 0 else math.inf
    return Interval(lower, upper)


def _error_rate_bounds(spec: GateSpec, candidate: SideStatistics, baseline: SideStatistics) -> _Bounds:
    alpha = spec.alpha
    rate_c = candidate.failures / candidate.runs if candidate.runs else None
    if spec.kind is LimitKind.ABSOLUTE_MAX:
        if spec.sequential:
            interval = beta_binomial_sequence(candidate.failures, candidate.runs, alpha)
            return _Bounds(rate_c, interval, Method.BETA_BINOMIAL_CS)
        return _Bounds(
            rate_c, clopper_pearson(candidate.failures, candidate.runs, alpha), Method.CLOPPER_PEARSON
        )
    rate_b = baseline.failures / baseline.runs if baseline.runs else None
    estimate = rate_c - rate_b if rate_c is not None and rate_b is not None else None
    if spec.sequential:
        interval = _difference(
            beta_binomial_sequence(candidate.failures, candidate.runs, alpha / 2),
            beta_binomial_sequence(baseline.failures, baseline.runs, alpha / 2),
        )
        return _Bounds(estimate, interval, Method.BETA_BINOMIAL_CS)
    if not candidate.runs or not baseline.runs:
        return _Bounds(estimate, Interval(-1.0, 1.0), Method.NEWCOMBE)
    interval = newcombe_difference(
        candidate.failures, candidate.runs, baseline.failures, baseline.runs, alpha
    )
    return _Bounds(estimate, interval, Method.NEWCOMBE)


def _quantile_bounds(spec: GateSpec, candidate: Histogram, baseline: Histogram) -> _Bounds:
    assert spec.quantile is not None  # the spec's validator guarantees it
    quantile = spec.quantile
    method = Method.QUANTILE_CS if spec.sequential else Method.ORDER_STATISTICS
    estimate_c = quantile_estimate(candidate, quantile)
    if spec.kind is LimitKind.ABSOLUTE_MAX:
        interval = quantile_bounds(candidate, quantile, spec.alpha, sequential=spec.sequential)
        return _Bounds(estimate_c, interval, method)
    estimate_b = quantile_estimate(baseline, quantile)
    estimate = estimate_c / estimate_b if estimate_c is not None and estimate_b else None
    half_alpha = spec.alpha / 2
    interval = _ratio(
        quantile_bounds(candidate, quantile, half_alpha, sequential=spec.sequential),
        quantile_bounds(baseline, quantile, half_alpha, sequential=spec.sequential),
    )
    return _Bounds(estimate, interval, method)


def _mean_bounds(spec: GateSpec, candidate: SampleMoments, baseline: SampleMoments) -> _Bounds:
    enough = candidate.count >= spec.min_runs and (
        not spec.compares_to_baseline or baseline.count >= spec.min_runs
    )
    if spec.kind is LimitKind.ABSOLUTE_MAX:
        estimate = candidate.mean if candidate.count else None
        return _Bounds(estimate, _mean_interval(spec, candidate, spec.alpha), _mean_method(spec), enough)

    both_seen = candidate.count > 0 and baseline.count > 0
    if spec.kind is LimitKind.MAX_INCREASE:
        estimate = candidate.mean - baseline.mean if both_seen else None
    else:
        estimate = candidate.mean / baseline.mean if both_seen and baseline.mean > 0 else None
    if spec.sequential:
        arms = _mean_interval(spec, candidate, spec.alpha / 2), _mean_interval(spec, baseline, spec.alpha / 2)
        combine = _difference if spec.kind is LimitKind.MAX_INCREASE else _ratio
        return _Bounds(estimate, combine(*arms), _mean_method(spec), enough)
    if spec.kind is LimitKind.MAX_RATIO:
        interval = fieller_ratio_interval(candidate, baseline, spec.alpha)
    else:
        interval = _fixed_mean_difference(candidate, baseline, spec.alpha)
    return _Bounds(estimate, interval, _mean_method(spec), enough)


def _mean_interval(spec: GateSpec, moments: SampleMoments, alpha: float) -> Interval:
    if spec.sequential:
        return sequential_mean_interval(moments, alpha, spec.expected_runs)
    return fixed_mean_interval(moments, alpha)


def _mean_method(spec: GateSpec) -> Method:
    if spec.sequential:
        return Method.ASYMPTOTIC_CS
    return Method.FIELLER if spec.kind is LimitKind.MAX_RATIO else Method.Z_INTERVAL


def _fixed_mean_difference(candidate: SampleMoments, baseline: SampleMoments, alpha: float) -> Interval:
    """``m_c - m_b ± z·sqrt(s_c²/n_c + s_b²/n_b)`` (Welch's standard error, normal quantile)."""
    if candidate.count < 2 or baseline.count < 2:
        return Interval(-math.inf, math.inf)
    standard_error = math.sqrt(candidate.variance / candidate.count + baseline.variance / baseline.count)
    margin = normal_upper_quantile(alpha) * standard_error
    delta = candidate.mean - baseline.mean
    return Interval(delta - margin, delta + margin)
