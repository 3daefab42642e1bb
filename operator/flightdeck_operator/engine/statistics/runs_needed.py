"""How many more runs an Inconclusive gate needs to Pass, and roughly when they will have arrived.

The current estimates are taken as the truth and the future is projected from them: ``k`` more runs
are added with the side's observed shape (failure rate, latency histogram, means and variances), each
moved ``z_beta`` standard errors of the *new* runs in the unfavourable direction (candidate worse,
baseline better). "Runs needed" is the smallest ``k`` for which the gate, evaluated by the very same
method on the projected statistics, Passes; the gate then Passes with probability about ``power`` if
the estimates are right. This is the textbook sample-size design (``n = (z_alpha + z_beta)²·sd²/(limit - mean)²``
for a mean, Chow, Shao & Wang) done numerically, so it holds for the exact and the sequential bounds
alike, and for zero observed failures it gives the exact zero-failure requirement (59 runs for
"at most 5 %" at 95 %, fixed horizon).

For a comparison with the baseline, the candidate alone grows first; if that can never be enough
(the baseline's own uncertainty exceeds the margin), both grow by the same number of runs. A side with
no runs yet borrows the other side's shape (a new candidate is presumed like its baseline). ``None``
means not expected to pass at the current estimates (or within ``max_runs``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass

from .gates import GateResult, GateSpec, SideStatistics, Verdict, evaluate_gate
from .means import SampleMoments
from .special import normal_upper_quantile

DEFAULT_POWER = 0.8
MAX_PROJECTED_RUNS = 10_000_000  # per side; beyond this a gate is, in practice, not going to pass


@dataclass(frozen=True, slots=True)
class RunsNeeded:
    """More runs needed per side (0: none). Both None: not expected to pass at current estimates."""

    candidate: int | None
    baseline: int | None

    @property
    def expected_to_pass(self) -> bool:
        return self.candidate is not None


NOT_EXPECTED = RunsNeeded(None, None)


def _synthetic_moments(count: int, mean: float, variance: float) -> SampleMoments:
    """Moments of ``count`` observations with exactly this mean and sample variance."""
    if count <= 0:
        return SampleMoments()
    return SampleMoments(count, count * mean, max(0, count - 1) * variance + count * mean * mean)


def _project_moments(
    observed: SampleMoments, shape: SampleMoments, extra: int, shift: float
) -> SampleMoments:
    if extra <= 0 or shape.count == 0:
        return observed
    sd = math.sqrt(shape.variance)
    return observed + _synthetic_moments(extra, shape.mean + shift * sd / math.sqrt(extra), shape.variance)


def _project_histogram(
    observed: dict[int, int], shape: dict[int, int], extra: int, shift: float
) -> dict[int, int]:
    """Add ``extra`` runs spread like ``shape``; ``shift > 0`` moves them towards slower bins."""
    total = sum(shape.values())
    if extra <= 0 or total == 0:
        return dict(observed)
    projected = dict(observed)
    previous = running = 0
    for index in sorted(shape):
        running += shape[index]
        share = running / total
        spread = shift * math.sqrt(extra * share * (1.0 - share))
        at_or_below = extra * share - spread  # slower means fewer runs at or below each edge
        rounded = round(at_or_below)
        cumulative = extra if running == total else min(extra, max(previous, rounded))
        if cumulative > previous:
            projected[index] = projected.get(index, 0) + cumulative - previous
        previous = cumulative
    return projected


def project(observed: SideStatistics, shape: SideStatistics, extra_runs: int, shift: float) -> SideStatistics:
    """``observed`` plus ``extra_runs`` runs like ``shape``, each metric ``shift`` standard errors
    worse (``shift > 0``: more failures, slower, costlier) or better (``shift < 0``)."""
    if extra_runs <= 0 or shape.runs == 0:
        return observed

    def share_of_runs(count: int) -> int:  # latency is reported by only some runs
        return round(extra_runs * count / shape.runs)

    rate = shape.failures / shape.runs
    expected = extra_runs * rate + shift * math.sqrt(extra_runs * rate * (1.0 - rate))
    new_failures = round(expected)
    latency_extra = share_of_runs(shape.latency.count)
    bins_extra = share_of_runs(sum(shape.latency_bins.values()))
    return SideStatistics(
        runs=observed.runs + extra_runs,
        failures=observed.failures + min(extra_runs, max(0, new_failures)),
        latency=_project_moments(observed.latency, shape.latency, latency_extra, shift),
        latency_bins=_project_histogram(
            dict(observed.latency_bins), dict(shape.latency_bins), bins_extra, shift
        ),
        cost=_project_moments(observed.cost, shape.cost, share_of_runs(shape.cost.count), shift),
    )


def _smallest_passing(passes: Callable[[int], bool], cap: int) -> int | None:
    """The smallest ``k`` in ``[1, cap]`` with ``passes(k)``, assuming passing is monotone in ``k``."""
    if cap < 1 or not passes(cap):  # one look at the far end settles "never" (the common case)
        return None
    low, high = 0, min(16, cap)  # passes(low) is known to be False
    while not passes(high):
        if high >= cap:
            return None
        low, high = high, min(2 * high, cap)
    while high - low > 1:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle
    return high


def runs_needed(
    spec: GateSpec,
    candidate: SideStatistics,
    baseline: SideStatistics | None = None,
    *,
    power: float = DEFAULT_POWER,
    max_runs: int = MAX_PROJECTED_RUNS,
    current: GateResult | None = None,
) -> RunsNeeded:
    """More runs per side for the gate to Pass (0, 0 when it already does; not expected after a Fail).

    ``current`` is this gate's ``evaluate_gate`` result when the caller already has it.
    """
    if not 0.5 <= power < 1.0:
        raise ValueError(f"power must be in [0.5, 1), got {power}")
    result = current if current is not None else evaluate_gate(spec, candidate, baseline)
    if result.verdict is Verdict.PASS:
        return RunsNeeded(0, 0)
    if result.verdict is Verdict.FAIL:
        return NOT_EXPECTED
    other = baseline if baseline is not None else SideStatistics()
    # A side with no observation of the metric borrows the other side's shape.
    candidate_shape = candidate if candidate.sample_size(spec.metric) else other
    baseline_shape = other if other.sample_size(spec.metric) else candidate
    if not candidate_shape.sample_size(spec.metric):
        return NOT_EXPECTED
    z_beta = normal_upper_quantile(1.0 - power) if power > 0.5 else 0.0

    def passes(extra_candidate: int, extra_baseline: int) -> bool:
        projected_candidate = project(candidate, candidate_shape, extra_candidate, z_beta)
        projected_baseline = None
        if spec.compares_to_baseline:
            projected_baseline = project(other, baseline_shape, extra_baseline, -z_beta)
        return evaluate_gate(spec, projected_candidate, projected_baseline).verdict is Verdict.PASS

    candidate_only = _smallest_passing(lambda k: passes(k, 0), max_runs - candidate.runs)
    if candidate_only is not None:
        return RunsNeeded(candidate_only, 0)
    if not spec.compares_to_baseline or not baseline_shape.sample_size(spec.metric):
        return NOT_EXPECTED
    both = _smallest_passing(lambda k: passes(k, k), max_runs - max(candidate.runs, other.runs))
    return NOT_EXPECTED if both is None else RunsNeeded(both, both)


# --- arrival rate and ETA ---------------------------------------------------------------------------


def runs_per_hour(runs: int, window: dt.timedelta) -> float:
    """The recent arrival rate: runs seen in the last ``window`` (the policy's ``rateWindow``)."""
    hours = window.total_seconds() / 3600.0
    if hours <= 0:
        raise ValueError("the rate window must be positive")
    return runs / hours


def eta(
    needed: RunsNeeded,
    *,
    candidate_runs_per_hour: float,
    baseline_runs_per_hour: float,
    now: dt.datetime,
) -> dt.datetime | None:
    """When the slower side will have its needed runs at the recent rate; ``now`` if none are needed;
    None when not expected to pass, or when a side that needs runs has none arriving."""
    if needed.candidate is None:
        return None
    hours = 0.0
    for missing, rate in (
        (needed.candidate, candidate_runs_per_hour),
        (needed.baseline or 0, baseline_runs_per_hour),
    ):
        if missing > 0:
            if rate <= 0:
                return None
            hours = max(hours, missing / rate)
    try:
        return now + dt.timedelta(hours=hours)
    except OverflowError:  # centuries away: as good as never
        return None
