"""A policy's ``statisticalGates`` evaluated on stored evidence (pure): each gate's verdict, bounds,
runs still needed and ETA, the ``statistics`` report, and the reasons they add to the policy's.

A gate that **Fails** adds a ``PolicyBreach`` reason (blocked at once, like any breach); one that is
**Inconclusive** adds an ``InsufficientEvidence`` reason, so ``waitForEvidence`` waits on it. The
reasons come after the reference's four, in the gates' fixed order, and say in words what the
report says in numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .evidence import (
    DEFAULT_MAX_PRICING_AGE_DAYS,
    Diff,
    DiffSide,
    PricingModelMissingError,
    SideEvidence,
    compute_diff,
)
from .models import ConfidenceThresholds, DiffFilters, Policy, PolicyResult, PricingTable
from .policy import ClassifiedReason, ReasonKind
from .statistics import (
    GateResult,
    GateSpec,
    LimitKind,
    Metric,
    SampleMoments,
    SideStatistics,
    Verdict,
    cost_moments,
    eta,
    evaluate_gate,
    runs_needed,
    runs_per_hour,
)
from .statistics.config import StatisticalGates
from .statistics.report import ArrivalRates, GateReport, StatisticsReport, overall_verdict
from .statistics.runs_needed import RunsNeeded


class ModelNotPriced(LookupError):
    """A model in the evidence has no entry in its release's pricing table."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


@dataclass(frozen=True, slots=True)
class StatisticsEvidence:
    """What statistical gates are evaluated on: both sides' evidence *with moments* over the
    statistics range (for a request, anchored at its creation) and the runs each side had in the
    policy's ``rateWindow`` (the arrival rate behind ETAs)."""

    baseline: SideEvidence
    candidate: SideEvidence
    baseline_recent_runs: int
    candidate_recent_runs: int


def side_statistics(evidence: SideEvidence, table: PricingTable) -> SideStatistics:
    """The gates' sufficient statistics of one side; cost under ``table`` (any table: the moments
    hold token products, not costs). Raises ``ModelNotPriced``."""
    if evidence.moments is None:
        raise ValueError("statistical gates need evidence with moments (Store.statistics_evidence)")
    runs = failures = latency_count = latency_sum = 0
    for part in evidence.aggregates:
        runs += part.runs
        failures += part.failures
        latency_count += part.latency_count
        latency_sum += part.latency_ms_sum
    cost = SampleMoments()
    latency_sq = 0.0
    for moments in evidence.moments.models:
        entry = table.entry_for(moments.model)
        if entry is None:
            raise ModelNotPriced(moments.model)
        cost = cost + cost_moments(moments.tokens, entry)
        latency_sq += moments.latency_ms_sq
    return SideStatistics(
        runs=runs,
        failures=failures,
        latency=SampleMoments(latency_count, float(latency_sum), latency_sq),
        latency_bins=evidence.moments.latency_bins,
        cost=cost,
    )


def evaluate_statistical_gates(
    gates: StatisticalGates,
    evidence: StatisticsEvidence,
    *,
    baseline_table: PricingTable,
    candidate_table: PricingTable,
    now: dt.datetime,
) -> tuple[StatisticsReport, tuple[ClassifiedReason, ...]]:
    """Every configured gate answered, with runs needed and ETA; the reasons for the non-passing ones."""
    baseline = side_statistics(evidence.baseline, baseline_table)
    candidate = side_statistics(evidence.candidate, candidate_table)
    window = gates.rate_window_duration
    rates = ArrivalRates(
        window=gates.rate_window,
        candidate_runs_per_hour=runs_per_hour(evidence.candidate_recent_runs, window),
        baseline_runs_per_hour=runs_per_hour(evidence.baseline_recent_runs, window),
    )
    reports: list[GateReport] = []
    reasons: list[ClassifiedReason] = []
    for name, spec in gates.gates():
        result = evaluate_gate(spec, candidate, baseline if spec.compares_to_baseline else None)
        needed = runs_needed(spec, candidate, baseline, power=gates.power, current=result)
        when = eta(
            needed,
            candidate_runs_per_hour=rates.candidate_runs_per_hour,
            baseline_runs_per_hour=rates.baseline_runs_per_hour,
            now=now,
        )
        if result.verdict is Verdict.PASS:
            when = None
        elif when is not None:
            when = _whole_minute_after(when)
        gate = GateReport.of(name, result, needed, when)
        reports.append(gate)
        if result.verdict is Verdict.FAIL:
            reasons.append(ClassifiedReason(ReasonKind.POLICY_BREACH, breach_text(spec, result)))
        elif result.verdict is Verdict.INCONCLUSIVE:
            reasons.append(
                ClassifiedReason(
                    ReasonKind.INSUFFICIENT_EVIDENCE, inconclusive_text(spec, result, needed, gate.eta)
                )
            )
    report = StatisticsReport(
        verdict=overall_verdict([r.verdict for r in reports]),
        confidence=gates.confidence,
        sequential=gates.sequential,
        since=evidence.candidate.since,
        until=evidence.candidate.until,
        arrival=rates,
        gates=tuple(reports),
    )
    return report, tuple(reasons)


def gated_diff(
    *,
    window: str,
    filters: DiffFilters,
    baseline: DiffSide,
    candidate: DiffSide,
    policy: Policy,
    evaluated_at: dt.datetime,
    statistics: StatisticsEvidence | None,
    thresholds: ConfidenceThresholds | None = None,
    max_pricing_age_days: int = DEFAULT_MAX_PRICING_AGE_DAYS,
    for_promotion: bool = False,
) -> Diff:
    """``compute_diff``, then the policy's statistical gates: the ``statistics`` report and the
    gates' reasons after the reference's (``passed`` is still "no reason"). Without the block this
    *is* ``compute_diff`` and ``statistics`` is not looked at."""
    diff = compute_diff(
        window=window,
        filters=filters,
        baseline=baseline,
        candidate=candidate,
        policy=policy,
        evaluated_at=evaluated_at,
        thresholds=thresholds,
        max_pricing_age_days=max_pricing_age_days,
        for_promotion=for_promotion,
    )
    if policy.statistical_gates is None:
        return diff
    if statistics is None:
        raise ValueError(
            "a policy with statisticalGates needs StatisticsEvidence (Store.statistics_evidence)"
        )
    try:
        report, extra = evaluate_statistical_gates(
            policy.statistical_gates,
            statistics,
            baseline_table=baseline.table,
            candidate_table=candidate.table,
            now=evaluated_at,
        )
    except ModelNotPriced as exc:
        raise PricingModelMissingError(
            baseline=baseline.release,
            candidate=candidate.release,
            missing_model=exc.model,
            for_promotion=for_promotion,
        ) from None
    reasons = (*diff.reasons, *extra)
    verdict = PolicyResult(
        passed=not reasons, reasons=tuple(r.text for r in reasons), evaluated_at=evaluated_at
    )
    result = diff.result.model_copy(update={"policy": verdict, "statistics": report})
    return Diff(result=result, reasons=reasons, baseline=diff.baseline, candidate=diff.candidate)


def _whole_minute_after(when: dt.datetime) -> dt.datetime:
    """ETAs are rough: rounded up to the minute, so a waiting request's status does not change on
    every look just because the clock moved."""
    rounded = when.replace(second=0, microsecond=0)
    return rounded if rounded == when else rounded + dt.timedelta(minutes=1)


# --- the reasons, in words ---------------------------------------------------------------------


def _subject(spec: GateSpec, role: str = "candidate") -> str:
    if spec.metric is Metric.ERROR_RATE:
        metric = "error_rate"
    elif spec.metric is Metric.COST_PER_RUN:
        metric = "cost_per_run_usd"
    elif spec.metric is Metric.LATENCY_MEAN:
        metric = "latency_ms mean"
    else:
        assert spec.quantile is not None
        metric = "p" + f"{spec.quantile * 100:.6f}".rstrip("0").rstrip(".") + " latency_ms"
    if spec.kind is LimitKind.MAX_INCREASE:
        return f"{role} {metric} increase over baseline"
    if spec.kind is LimitKind.MAX_RATIO:
        return f"{role} {metric} ratio to baseline"
    return f"{role} {metric}"


def _limit_word(spec: GateSpec) -> str:
    return {
        LimitKind.ABSOLUTE_MAX: "max",
        LimitKind.MAX_INCREASE: "max increase",
        LimitKind.MAX_RATIO: "max ratio",
    }[spec.kind]


def _number(spec: GateSpec, value: float) -> str:
    if spec.kind is LimitKind.MAX_RATIO:
        return f"{value:.3f}"
    if spec.metric is Metric.ERROR_RATE:
        return f"{value:+.4f}" if spec.kind is LimitKind.MAX_INCREASE else f"{value:.4f}"
    if spec.metric is Metric.COST_PER_RUN:
        return f"{value:+.6f}" if spec.kind is LimitKind.MAX_INCREASE else f"{value:.6f}"
    return f"{value:.2f}"


def _limit(spec: GateSpec) -> str:
    if spec.metric is Metric.ERROR_RATE:
        return f"{spec.limit:.4f}"
    if spec.metric is Metric.COST_PER_RUN and spec.kind is not LimitKind.MAX_RATIO:
        return f"{spec.limit:.6f}"
    return f"{spec.limit:g}"


def _basis(spec: GateSpec, result: GateResult) -> str:
    sizes = f"n={result.candidate_n}" + (f"/{result.baseline_n}" if result.baseline_n is not None else "")
    return f"{spec.confidence * 100:g}% confidence, {sizes}"


def breach_text(spec: GateSpec, result: GateResult, *, role: str = "candidate") -> str:
    """``candidate p95 latency_ms lower bound 3412.00 exceeds max 3000 (95% confidence, n=1843)``"""
    return (
        f"{_subject(spec, role)} lower bound {_number(spec, result.lower)} exceeds {_limit_word(spec)} "
        f"{_limit(spec)} ({_basis(spec, result)})"
    )


def inconclusive_text(
    spec: GateSpec, result: GateResult, needed: RunsNeeded, when: dt.datetime | None
) -> str:
    """``candidate error_rate increase over baseline inconclusive: upper bound +0.0130 above max
    increase 0.0100 (95% confidence, n=812/9031); ~640 more candidate runs needed, expected by ...``"""
    return f"{inconclusive_bound_text(spec, result)}; {needs_text(needed, when)}"


def inconclusive_bound_text(spec: GateSpec, result: GateResult, *, role: str = "candidate") -> str:
    """Why the gate is Inconclusive, without the runs it needs: ``live p95 latency_ms inconclusive:
    upper bound 3120.00 above max 3000 (95% confidence, n=40)``."""
    if result.upper != float("inf") and result.upper <= spec.limit:
        where = f"fewer than {spec.min_runs} runs on a side, too few for a bound on a mean"
    elif result.upper == float("inf"):
        where = f"no upper bound yet, {_limit_word(spec)} {_limit(spec)}"
    else:
        where = f"upper bound {_number(spec, result.upper)} above {_limit_word(spec)} {_limit(spec)}"
    return f"{_subject(spec, role)} inconclusive: {where} ({_basis(spec, result)})"


def needs_text(needed: RunsNeeded, when: dt.datetime | None) -> str:
    if needed.candidate is None:
        return "not expected to pass at the current estimates"
    sides = [
        f"~{count:,} more {side} runs"
        for side, count in (("candidate", needed.candidate), ("baseline", needed.baseline))
        if count
    ]
    if not sides:
        return "more runs needed"
    arrival = (
        f"expected by {when.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
        if when is not None
        else "no ETA: no runs arriving in the rate window"
    )
    return f"{' and '.join(sides)} needed, {arrival}"


def verdict_summary(report: StatisticsReport) -> str:
    """``statistical gates Inconclusive (2 Pass, 1 Inconclusive)``: one phrase for Events and messages."""
    counts = report.counts()
    parts = [f"{counts[v]} {v.value}" for v in Verdict if counts[v]]
    detail = f" ({', '.join(parts)})" if parts else " (no gate configured)"
    return f"statistical gates {report.verdict.value}{detail}"
