"""Means (cost per run, mean latency) from mergeable sums: count, sum and sum of squares.

Cost per run is linear in the token counts, so its first two moments follow from the token sums and
the six sums of token products under *any* pricing table, including one replaced after the runs.
Bounds are normal-approximation ones: a z interval at a fixed horizon, and the asymptotic confidence
sequence of Waudby-Smith et al. (Annals of Statistics 2024) under repeated looks. Both lean on the
central limit theorem, hence a minimum number of runs before a mean gate may decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from .proportions import Interval
from .special import normal_upper_quantile


@dataclass(frozen=True, slots=True)
class SampleMoments:
    """``count`` observations, their sum ``total`` and their sum of squares ``total_sq``."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def __add__(self, other: SampleMoments) -> SampleMoments:
        return SampleMoments(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq
        )

    @classmethod
    def of(cls, values: list[float]) -> SampleMoments:
        return cls(len(values), math.fsum(values), math.fsum(v * v for v in values))

    @property
    def mean(self) -> float:
        """``total / count``; 0 for no observation (check ``count`` first)."""
        return self.total / self.count if self.count else 0.0

    @property
    def variance(self) -> float:
        """The sample variance ``(Q - S²/n) / (n - 1)``, clamped at 0 against rounding; 0 below 2.

        Doubles lose about ``ε(1 + 1/CV²)`` relative here (Chan, Golub & LeVeque 1983): negligible
        unless the coefficient of variation is under about 1e-6.
        """
        if self.count < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total * self.total / self.count) / (self.count - 1))


# --- cost moments from token sums -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenMoments:
    """Per-run token sums and the sums of their pairwise products, for one model's runs.

    These are the bucket columns: ``input_tokens`` etc. already exist; the six product sums
    (``Σ in²``, ``Σ out²``, ``Σ cached²``, ``Σ in·out``, ``Σ in·cached``, ``Σ out·cached``) are new.
    """

    runs: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cached_input_tokens: float = 0.0
    input_sq: float = 0.0
    output_sq: float = 0.0
    cached_input_sq: float = 0.0
    input_output: float = 0.0
    input_cached: float = 0.0
    output_cached: float = 0.0

    @classmethod
    def of_run(cls, input_tokens: int, output_tokens: int, cached_input_tokens: int) -> TokenMoments:
        """One run's contribution (what ingestion adds to its hourly bucket)."""
        i, o, c = float(input_tokens), float(output_tokens), float(cached_input_tokens)
        return cls(1, i, o, c, i * i, o * o, c * c, i * o, i * c, o * c)

    def __add__(self, other: TokenMoments) -> TokenMoments:
        return TokenMoments(
            self.runs + other.runs,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.input_sq + other.input_sq,
            self.output_sq + other.output_sq,
            self.cached_input_sq + other.cached_input_sq,
            self.input_output + other.input_output,
            self.input_cached + other.input_cached,
            self.output_cached + other.output_cached,
        )


class PerThousandTokenPrices(Protocol):
    """USD per 1,000 tokens (``models.PricingEntry`` fits); no cached rate means cached tokens are free,
    as in ``evidence.cost_usd``."""

    @property
    def input_usd_per_1k_tokens(self) -> float: ...
    @property
    def output_usd_per_1k_tokens(self) -> float: ...
    @property
    def cached_input_usd_per_1k_tokens(self) -> float | None: ...


def cost_moments(tokens: TokenMoments, prices: PerThousandTokenPrices) -> SampleMoments:
    """The per-run cost's moments: ``Σcost = r·T`` and ``Σcost² = rᵀ M r``, with ``r`` the USD per token
    and ``M`` the 3x3 matrix of token product sums. Add the results over models for a side's total."""
    r_in = prices.input_usd_per_1k_tokens / 1000.0
    r_out = prices.output_usd_per_1k_tokens / 1000.0
    cached_rate = prices.cached_input_usd_per_1k_tokens
    r_cached = 0.0 if cached_rate is None else cached_rate / 1000.0
    total = r_in * tokens.input_tokens + r_out * tokens.output_tokens + r_cached * tokens.cached_input_tokens
    total_sq = (
        r_in * r_in * tokens.input_sq
        + r_out * r_out * tokens.output_sq
        + r_cached * r_cached * tokens.cached_input_sq
        + 2.0 * r_in * r_out * tokens.input_output
        + 2.0 * r_in * r_cached * tokens.input_cached
        + 2.0 * r_out * r_cached * tokens.output_cached
    )
    return SampleMoments(tokens.runs, total, total_sq)


# --- bounds -----------------------------------------------------------------------------------------


def fixed_mean_interval(moments: SampleMoments, alpha: float) -> Interval:
    """``mean ± z·s/√n``, one-sided ``1 - alpha`` per end (no t quantiles in the stdlib; the gates ask
    for a minimum number of runs instead)."""
    if moments.count < 2:
        return Interval(-math.inf, math.inf)
    margin = normal_upper_quantile(alpha) * math.sqrt(moments.variance / moments.count)
    return Interval(moments.mean - margin, moments.mean + margin)


def mixture_rho_squared(expected_runs: int, alpha: float) -> float:
    """The mixture's tuning ``rho²`` that makes the sequence tightest near ``expected_runs`` (the
    Lambert-W approximation of ``best_rho2_approx`` in Waudby-Smith's drconfseq)."""
    if expected_runs < 1:
        raise ValueError("expected_runs must be at least 1")
    log_x = 2.0 * math.log(alpha) + alpha * alpha - 1.0  # ln(α² e^(α²-1)), the Lambert-W argument
    lambert_w = log_x - math.log(-log_x)  # W₋₁(x) ≈ ln(-x) - ln(-ln(-x))
    return (-lambert_w - 1.0) / expected_runs


def sequence_margin_per_unit_sd(runs: int, alpha: float, expected_runs: int) -> float:
    """The asymptotic sequence's half-width for unit variance after ``runs`` observations:
    ``sqrt(2(n·rho²+1)/(n²·rho²) · ln(sqrt(n·rho²+1)/alpha))`` (two-sided at ``alpha``, each side valid at it)."""
    rho2 = mixture_rho_squared(expected_runs, alpha)
    grown = runs * rho2 + 1.0
    return math.sqrt(2.0 * grown / (runs * runs * rho2) * math.log(math.sqrt(grown) / alpha))


def sequential_mean_interval(moments: SampleMoments, alpha: float, expected_runs: int) -> Interval:
    """The asymptotic confidence sequence for the mean: valid under repeated looks as n grows."""
    if moments.count < 2:
        return Interval(-math.inf, math.inf)
    margin = math.sqrt(moments.variance) * sequence_margin_per_unit_sd(moments.count, alpha, expected_runs)
    return Interval(moments.mean - margin, moments.mean + margin)


def fieller_ratio_interval(candidate: SampleMoments, baseline: SampleMoments, alpha: float) -> Interval:
    """One-sided ``1 - alpha`` bounds on ``μ_c / μ_b`` for non-negative quantities (Fieller 1954).

    ``upper`` is the smallest ``r`` for which the linear contrast ``μ_c - r·μ_b`` is proven ``<= 0``
    (its z upper bound ``m_c - r·m_b + z·sqrt(v_c + r²v_b)`` reaches 0); ``lower`` the largest for which
    it is proven ``> 0``. So "ratio <= r" holds iff the contrast test at ``r`` passes. With ``v`` the
    squared standard errors, both are roots of ``A r² - 2B r + C = 0``, ``A = m_b² - z²v_b``,
    ``B = m_b·m_c``, ``C = m_c² - z²v_c``. ``upper`` is infinite unless the baseline mean is itself
    proven above 0 (``A > 0``).
    """
    if candidate.count < 2 or baseline.count < 2:
        return Interval(0.0, math.inf)
    z = normal_upper_quantile(alpha)
    m_c, m_b = candidate.mean, baseline.mean
    v_c, v_b = candidate.variance / candidate.count, baseline.variance / baseline.count
    a = m_b * m_b - z * z * v_b
    b = m_b * m_c
    c = m_c * m_c - z * z * v_c
    # B² - AC expanded, so that no large terms cancel.
    root = math.sqrt(max(0.0, z * z * (v_b * m_c * m_c + v_c * m_b * m_b) - z**4 * v_b * v_c))
    upper = (b + root) / a if a > 0 else math.inf
    lower = 0.0
    if c > 0 and m_c > 0:  # the candidate mean is itself proven above 0
        lower = c / (b + root) if b + root > 0 else math.inf
    return Interval(lower, upper)
