"""Bounds on a failure rate (or any proportion) from a count and a total, and on a difference of two.

Conventions, shared by every function here: ``alpha`` is the error allowed on *each* side, so a
bound's one-sided statement ("the rate is at most ``upper``") holds with probability ``1 - alpha``.
A fixed-horizon interval at ``alpha`` is therefore the classical two-sided ``1 - 2·alpha`` interval.
The confidence sequence is two-sided at ``alpha`` and each one-sided statement inherits ``alpha``
(Ville's inequality bounds the whole crossing event), valid however often it is looked at.

Counts are ``float`` so that projections (runs still needed) can use fractional expectations; real
evidence always passes integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .special import (
    beta_density,
    binomial_at_least,
    binomial_at_most,
    find_root,
    incomplete_beta_tails,
    log_beta,
    normal_upper_quantile,
)

# Beta(0.5, 1) puts its mass near small rates, where failure rates live: proving "at most 1 %" from
# zero failures takes 631 runs with it, against 984 with the flat Beta(1, 1) (research §3.5).
RATE_PRIOR = (0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Interval:
    """``lower <= value <= upper``; either end may be infinite where no finite bound exists yet."""

    lower: float
    upper: float


def _check_counts(successes: float, total: float, alpha: float) -> None:
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= count <= total, got count={successes}, total={total}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")


# --- fixed horizon ----------------------------------------------------------------------------------


def _beta_quantile(
    a: float, b: float, lower_tail: float | None, upper_tail: float | None, start: float
) -> float:
    """``x`` with ``I_x(a, b) = lower_tail`` (or ``1 - I_x(a, b) = upper_tail``), by Newton+bisection."""
    if lower_tail is not None:
        target, index, sign = lower_tail, 0, 1.0
    elif upper_tail is not None:
        target, index, sign = upper_tail, 1, -1.0
    else:
        raise ValueError("give one tail")

    def gap(x: float) -> float:
        return incomplete_beta_tails(a, b, x)[index] - target

    def slope(x: float) -> float:
        return sign * beta_density(a, b, x)

    return find_root(gap, slope, 0.0, 1.0, start=start)


def clopper_pearson(failures: float, runs: float, alpha: float) -> Interval:
    """The exact (Clopper-Pearson 1934) bounds: ``P(Bin(n, lower) >= f) = alpha`` and
    ``P(Bin(n, upper) <= f) = alpha``. Conservative: coverage is at least ``1 - alpha`` per side."""
    _check_counts(failures, runs, alpha)
    if runs == 0:
        return Interval(0.0, 1.0)
    near = wilson(failures, runs, alpha)  # a close first guess saves most Newton steps
    lower = 0.0
    if failures > 0:
        lower = _beta_quantile(failures, runs - failures + 1.0, alpha, None, near.lower)
    upper = 1.0
    if failures < runs:
        upper = _beta_quantile(failures + 1.0, runs - failures, None, alpha, near.upper)
    return Interval(lower, upper)


def wilson(failures: float, runs: float, alpha: float) -> Interval:
    """Wilson's score interval (1927): good coverage on average, but liberal near zero, so the gates
    use it for display and inside Newcombe's difference, never alone for a near-zero limit."""
    _check_counts(failures, runs, alpha)
    if runs == 0:
        return Interval(0.0, 1.0)
    return _wilson_with_z(failures, runs, normal_upper_quantile(alpha))


def _wilson_with_z(failures: float, runs: float, z: float) -> Interval:
    p = failures / runs
    z2n = z * z / runs
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half_width = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / runs + z2n / (4.0 * runs))
    return Interval(max(0.0, centre - half_width), min(1.0, centre + half_width))


def newcombe_difference(
    candidate_failures: float,
    candidate_runs: float,
    baseline_failures: float,
    baseline_runs: float,
    alpha: float,
) -> Interval:
    """Bounds on ``p_candidate - p_baseline``: Newcombe's hybrid score interval (1998, method 10),
    which combines each arm's Wilson limits."""
    candidate = wilson(candidate_failures, candidate_runs, alpha)
    baseline = wilson(baseline_failures, baseline_runs, alpha)
    p_c = candidate_failures / candidate_runs if candidate_runs else 0.0
    p_b = baseline_failures / baseline_runs if baseline_runs else 0.0
    delta = p_c - p_b
    return Interval(
        delta - math.hypot(p_c - candidate.lower, baseline.upper - p_b),
        delta + math.hypot(candidate.upper - p_c, p_b - baseline.lower),
    )


def fixed_upper_at_most(failures: float, runs: float, limit: float, alpha: float) -> bool:
    """Clopper-Pearson's upper bound is ``<= limit``, decided by one binomial tail (no inversion)."""
    return binomial_at_most(failures, runs, limit) <= alpha


def fixed_lower_at_least(failures: float, runs: float, limit: float, alpha: float) -> bool:
    """Clopper-Pearson's lower bound is ``>= limit``."""
    return binomial_at_least(failures, runs, limit) <= alpha


# --- sequential: the beta-binomial mixture confidence sequence ---------------------------------------


def _log_mixture_ratio(failures: float, runs: float, prior: tuple[float, float]) -> float:
    """``ln`` of the prior-mixed likelihood ``∫ θ^f (1-θ)^(n-f) dBeta(a, b)``."""
    a, b = prior
    return log_beta(failures + a, runs - failures + b) - log_beta(a, b)


def _log_likelihood(failures: float, runs: float, p: float) -> float:
    successes = runs - failures
    return (failures * math.log(p) if failures else 0.0) + (successes * math.log1p(-p) if successes else 0.0)


def _excluded(failures: float, runs: float, p: float, alpha: float, prior: tuple[float, float]) -> bool:
    """``p`` is outside the confidence sequence: the mixture martingale against ``p`` reached 1/alpha."""
    if p <= 0.0:
        return failures > 0
    if p >= 1.0:
        return failures < runs
    return _log_mixture_ratio(failures, runs, prior) - _log_likelihood(failures, runs, p) >= -math.log(alpha)


def sequential_upper_at_most(
    failures: float, runs: float, limit: float, alpha: float, prior: tuple[float, float] = RATE_PRIOR
) -> bool:
    """The confidence sequence lies wholly at or below ``limit``."""
    return runs > 0 and failures <= limit * runs and _excluded(failures, runs, limit, alpha, prior)


def sequential_lower_at_least(
    failures: float, runs: float, limit: float, alpha: float, prior: tuple[float, float] = RATE_PRIOR
) -> bool:
    """The confidence sequence lies wholly at or above ``limit``."""
    return runs > 0 and failures >= limit * runs and _excluded(failures, runs, limit, alpha, prior)


def beta_binomial_sequence(
    failures: float, runs: float, alpha: float, prior: tuple[float, float] = RATE_PRIOR
) -> Interval:
    """The always-valid bounds after ``runs`` runs with ``failures`` failures (Robbins 1970):
    ``{p : ln B(f+a, n-f+b) - ln B(a, b) - f ln p - (n-f) ln(1-p) < ln(1/alpha)}``.

    ``P(some n has p_true outside) <= alpha``, so a request may be re-checked every 30 s forever.
    The set is an interval around ``f/n`` (the log-likelihood is concave); its ends are found by
    Newton+bisection on each side.
    """
    _check_counts(failures, runs, alpha)
    if runs == 0:
        return Interval(0.0, 1.0)
    if failures > runs / 2:
        # Solve for the success rate instead: the root finder's relative tolerance then applies to
        # 1 - p, which is what a bound near 1 needs (the sequence is symmetric under the swap).
        mirrored = beta_binomial_sequence(runs - failures, runs, alpha, (prior[1], prior[0]))
        return Interval(1.0 - mirrored.upper, 1.0 - mirrored.lower)
    threshold = -math.log(alpha)
    log_mixture = _log_mixture_ratio(failures, runs, prior)
    successes = runs - failures
    estimate = failures / runs

    def excess(p: float) -> float:  # > 0 outside the sequence
        return log_mixture - _log_likelihood(failures, runs, p) - threshold

    def slope(p: float) -> float:
        return -failures / p + successes / (1.0 - p)

    # A first guess for Newton: the ends sit where the log-likelihood has dropped by
    # threshold + (max log-likelihood - log mixture), which a Wilson interval with that z matches.
    drop = (
        threshold - log_mixture + _log_likelihood(failures, runs, estimate)
        if 0 < failures < runs
        else threshold
    )
    near = _wilson_with_z(failures, runs, math.sqrt(2.0 * max(drop, threshold)))
    # Both ends are bracketed by the estimate (excess < 0: the mixture never beats the maximum
    # likelihood) and by 0 or 1 (excess -> +inf there, unless no failures or no successes).
    lower = 0.0
    if failures > 0 and excess(_NEAR_ZERO) > 0:
        lower = find_root(excess, slope, _NEAR_ZERO, estimate, start=near.lower)
    upper = 1.0
    if successes > 0 and excess(_NEAR_ONE) > 0:
        upper = find_root(excess, slope, estimate, _NEAR_ONE, start=near.upper)
    return Interval(lower, upper)


_NEAR_ZERO = 1e-300
_NEAR_ONE = math.nextafter(1.0, 0.0)
