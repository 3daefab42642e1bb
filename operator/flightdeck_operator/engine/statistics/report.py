"""The ``statistics`` block of a diff, a decision and its ledger entry: every gate's verdict with the
numbers behind it, in JSON-safe form (an unbounded end is ``null``; times are UTC ``Z``)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from .gates import GateResult, LimitKind, Method, Metric, Verdict
from .runs_needed import RunsNeeded


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("statistics times must be timezone-aware")
    return value.astimezone(dt.UTC)


Utc = Annotated[dt.datetime, AfterValidator(_utc)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class SampleSizes(_Frozen):
    """Observations each side's bound rests on (runs, or runs that reported a latency)."""

    candidate: int
    # None for a gate on the candidate alone.
    baseline: int | None = None


class MoreRuns(_Frozen):
    """Further runs each side needs before the gate is expected to Pass (0: none)."""

    candidate: int
    baseline: int


class GateReport(_Frozen):
    gate: str
    metric: Metric
    kind: LimitKind
    quantile: float | None = None
    limit: float
    verdict: Verdict
    estimate: float | None
    # null: no finite bound yet (too few runs, or nothing to compare with).
    lower: float | None
    upper: float | None
    n: SampleSizes
    method: Method
    # null: not expected to pass at the current estimates (or already failed).
    runs_needed: MoreRuns | None
    # When the runs needed will have arrived at the recent rate; null when none arrive (or never).
    eta: Utc | None

    @classmethod
    def of(cls, name: str, result: GateResult, needed: RunsNeeded, eta: dt.datetime | None) -> GateReport:
        return cls(
            gate=name,
            metric=result.metric,
            kind=result.kind,
            quantile=result.quantile,
            limit=result.limit,
            verdict=result.verdict,
            estimate=_finite(result.estimate),
            lower=_finite(result.lower),
            upper=_finite(result.upper),
            n=SampleSizes(candidate=result.candidate_n, baseline=result.baseline_n),
            method=result.method,
            runs_needed=None
            if needed.candidate is None
            else MoreRuns(candidate=needed.candidate, baseline=needed.baseline or 0),
            eta=eta,
        )


class ArrivalRates(_Frozen):
    """Runs per hour over the policy's ``rateWindow`` (the basis of every ETA)."""

    window: str
    candidate_runs_per_hour: float
    baseline_runs_per_hour: float


class StatisticsReport(_Frozen):
    """Overall: Fail if any gate fails, else Inconclusive if any is, else Pass (also with no gate)."""

    verdict: Verdict
    confidence: float
    sequential: bool
    # The evidence range: for a request anchored at its creation (``createdAt - window``).
    since: Utc
    until: Utc
    arrival: ArrivalRates
    gates: tuple[GateReport, ...]

    def counts(self) -> dict[Verdict, int]:
        found = dict.fromkeys(Verdict, 0)
        for gate in self.gates:
            found[gate.verdict] += 1
        return found


def overall_verdict(verdicts: list[Verdict]) -> Verdict:
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
