"""PromotionPolicy ``spec.statisticalGates`` (opt-in) and what requests show of it in status.

The CRD's CEL rules carry the messages below; the models mirror them word for word, so the API
server, ``kubectl apply`` and the operator reject bad input the same way (the contract test checks).
"""

from __future__ import annotations

from typing import Annotated, Final, Self

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, model_validator

from flightdeck_operator.api.v1alpha1.common import Count, Duration, SpecBase, StatusBase
from flightdeck_operator.engine.statistics import LimitKind, Method, Metric, Verdict
from flightdeck_operator.engine.statistics.config import (
    DEFAULT_CONFIDENCE,
    DEFAULT_EXPECTED_RUNS,
    DEFAULT_MIN_RUNS,
    DEFAULT_POWER,
    DEFAULT_RATE_WINDOW,
    MAX_LATENCY_QUANTILES,
)

# Messages of the CEL rules (crds/promotionpolicies.flightdeck.dev.yaml).
CONFIDENCE_MESSAGE: Final = (
    "confidence must be greater than 0.5 and less than 1, e.g. 0.95 (wrong at most 5% of the time)"
)
POWER_MESSAGE: Final = "power must be at least 0.5 and less than 1, e.g. 0.8"
QUANTILE_MESSAGE: Final = "quantile must be greater than 0 and less than 1, e.g. 0.95 for p95"
RATIO_MESSAGE: Final = "maxRatio must be greater than 0, e.g. 1.1 for at most 10% above the baseline"
LATENCY_LIMIT_MESSAGE: Final = "a latency gate needs maxMs, maxRatio or both"
UNIQUE_QUANTILES_MESSAGE: Final = "each latency quantile may be listed only once"
# A gate's name: errorRate.max, latency.p99.9.maxRatio, ... (engine.statistics.config).
MAX_GATES: Final = 2 + 2 * MAX_LATENCY_QUANTILES + 2


def _rule(check: object, message: str) -> AfterValidator:
    def validate(value: float) -> float:
        if not check(value):  # type: ignore[operator]
            raise ValueError(message)
        return value

    return AfterValidator(validate)


Fraction = Annotated[float, Field(ge=0, le=1)]
Confidence = Annotated[float, _rule(lambda v: 0.5 < v < 1.0, CONFIDENCE_MESSAGE)]
Power = Annotated[float, _rule(lambda v: 0.5 <= v < 1.0, POWER_MESSAGE)]
Quantile = Annotated[float, _rule(lambda v: 0.0 < v < 1.0, QUANTILE_MESSAGE)]
Ratio = Annotated[float, _rule(lambda v: v > 0.0, RATIO_MESSAGE)]


class ErrorRateGates(SpecBase):
    # The candidate's failure rate is at most this (0..1).
    max: Fraction | None = None
    # At most this much above the baseline's failure rate (absolute: 0.01 is one percentage point).
    max_increase: Fraction | None = None


class LatencyGate(SpecBase):
    quantile: Quantile
    max_ms: Annotated[float, Field(ge=0)] | None = None
    max_ratio: Ratio | None = None

    @model_validator(mode="after")
    def _has_a_limit(self) -> Self:
        if self.max_ms is None and self.max_ratio is None:
            raise ValueError(LATENCY_LIMIT_MESSAGE)
        return self


class CostGates(SpecBase):
    max_usd: Annotated[float, Field(ge=0)] | None = None
    max_ratio: Ratio | None = None


class StatisticalGatesSpec(SpecBase):
    """Gates that answer Pass, Fail or Inconclusive with bounds; absent: the policy as before."""

    confidence: Confidence = DEFAULT_CONFIDENCE
    sequential: bool = True
    power: Power = DEFAULT_POWER
    expected_runs: Annotated[int, Field(ge=1)] = DEFAULT_EXPECTED_RUNS
    min_runs: Annotated[int, Field(ge=2)] = DEFAULT_MIN_RUNS
    rate_window: Duration = DEFAULT_RATE_WINDOW
    error_rate: ErrorRateGates | None = None
    latency: Annotated[list[LatencyGate], Field(max_length=MAX_LATENCY_QUANTILES)] | None = None
    cost_per_run: CostGates | None = None

    @model_validator(mode="after")
    def _quantiles_unique(self) -> Self:
        quantiles = [gate.quantile for gate in self.latency or ()]
        if len(quantiles) != len(set(quantiles)):
            raise ValueError(UNIQUE_QUANTILES_MESSAGE)
        return self


# --- status ------------------------------------------------------------------------------------

GateName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class GateWait(StatusBase):
    """One statistical gate that is not passing yet, while a request waits for evidence."""

    gate: GateName
    verdict: Verdict
    # More runs needed before the gate is expected to Pass; absent: not expected to pass at the
    # current estimates.
    missing_candidate_runs: Count | None = None
    missing_baseline_runs: Count | None = None
    # When those runs will have arrived at the recent rate; absent when none arrive.
    eta: AwareDatetime | None = None


class GateOutcome(StatusBase):
    """One statistical gate as decided (``status.decision.evidence.statistics.gates``)."""

    gate: GateName
    metric: Metric
    kind: LimitKind
    quantile: float | None = None
    limit: float
    verdict: Verdict
    estimate: float | None = None
    # Absent: no finite bound.
    lower: float | None = None
    upper: float | None = None
    candidate_runs: Count
    baseline_runs: Count | None = None
    method: Method


class StatisticsOutcome(StatusBase):
    verdict: Verdict
    confidence: float
    sequential: bool
    since: AwareDatetime
    until: AwareDatetime
    gates: Annotated[list[GateOutcome], Field(max_length=MAX_GATES)] = Field(default_factory=list)
