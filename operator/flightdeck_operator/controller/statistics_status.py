"""Pure builders for what statistical gates add to a request's status and to decision messages:
per gate the runs still needed and an ETA while it waits, every gate's verdict and bounds once
decided, and one phrase naming the verdict for Events."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flightdeck_operator.api.v1alpha1 import GateOutcome, GateWait, StatisticsOutcome
from flightdeck_operator.engine.statistical_policy import verdict_summary
from flightdeck_operator.engine.statistics import Verdict
from flightdeck_operator.engine.statistics.report import StatisticsReport


@dataclass(frozen=True, slots=True)
class StatisticsWait:
    """What a waiting request shows of its statistical gates."""

    missing_candidate_runs: int
    missing_baseline_runs: int
    # When the slowest gate is expected to have its runs; None when a gate needing runs has none
    # arriving, or is not expected to pass at all.
    eta: dt.datetime | None
    gates: tuple[GateWait, ...]

    def arrival_text(self, deadline: dt.datetime) -> str:
        """When the gates' runs are expected (nothing when every gate passes already)."""
        if not self.gates:
            return ""
        if self.eta is not None:
            late = " (after the deadline)" if self.eta > deadline else ""
            return f", expected by {self.eta.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}{late}"
        if any(g.missing_candidate_runs is None for g in self.gates):
            return ", though not every gate is expected to pass at the current estimates"
        return ", no ETA: no runs arriving in the rate window"


def statistics_wait(report: StatisticsReport) -> StatisticsWait:
    pending = [g for g in report.gates if g.verdict is not Verdict.PASS]
    waits = tuple(
        GateWait(
            gate=g.gate,
            verdict=g.verdict,
            missing_candidate_runs=None if g.runs_needed is None else g.runs_needed.candidate,
            missing_baseline_runs=None if g.runs_needed is None else g.runs_needed.baseline,
            eta=g.eta,
        )
        for g in pending
    )
    needed = [g.runs_needed for g in pending if g.runs_needed is not None]
    needing_runs = [
        g for g in pending if g.runs_needed is None or g.runs_needed.candidate or g.runs_needed.baseline
    ]
    etas = [g.eta for g in needing_runs]
    known = [e for e in etas if e is not None]
    eta = max(known) if known and len(known) == len(etas) else None
    return StatisticsWait(
        missing_candidate_runs=max((n.candidate for n in needed), default=0),
        missing_baseline_runs=max((n.baseline for n in needed), default=0),
        eta=eta,
        gates=waits,
    )


def statistics_outcome(report: StatisticsReport) -> StatisticsOutcome:
    """The decided gates, as ``status.decision.evidence.statistics`` shows them."""
    return StatisticsOutcome(
        verdict=report.verdict,
        confidence=report.confidence,
        sequential=report.sequential,
        since=report.since,
        until=report.until,
        gates=[
            GateOutcome(
                gate=g.gate,
                metric=g.metric,
                kind=g.kind,
                quantile=g.quantile,
                limit=g.limit,
                verdict=g.verdict,
                estimate=g.estimate,
                lower=g.lower,
                upper=g.upper,
                candidate_runs=g.n.candidate,
                baseline_runs=g.n.baseline,
                method=g.method,
            )
            for g in report.gates
        ],
    )


def verdict_phrase(report: StatisticsReport | None) -> str:
    """``; statistical gates Fail (1 Fail, 2 Pass)`` to append to a decision's message, or nothing."""
    return "" if report is None else f"; {verdict_summary(report)}"
