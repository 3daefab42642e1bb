"""What a policy's ``statisticalGates`` block asks for, as the engine sees it (snake_case, pure).

Each limit becomes one gate (``GateSpec``), named and ordered as reasons and reports show them:
``errorRate.max``, ``errorRate.maxIncrease``, then per latency quantile ``latency.p95.maxMs`` and
``latency.p95.maxRatio`` (in the order listed), then ``costPerRun.maxUsd`` and ``costPerRun.maxRatio``.
A limit left unset is no gate; a block with no limit checks nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .gates import GateSpec, LimitKind, Metric

DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_POWER: Final = 0.8
DEFAULT_EXPECTED_RUNS: Final = 1000
DEFAULT_MIN_RUNS: Final = 30
DEFAULT_RATE_WINDOW: Final = "6h"
MAX_LATENCY_QUANTILES: Final = 4
RATE_WINDOW_PATTERN: Final = r"^[1-9][0-9]{0,4}[mhd]$"  # as promotion window durations
_RATE_UNITS: Final = {"m": dt.timedelta(minutes=1), "h": dt.timedelta(hours=1), "d": dt.timedelta(days=1)}

Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
PositiveRatio = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorRateLimits(_Config):
    # The candidate's failure rate is at most this (0..1).
    max: Fraction | None = None
    # The candidate's failure rate exceeds the baseline's by at most this (absolute, 0.01 = 1 point).
    max_increase: Fraction | None = None


class LatencyLimits(_Config):
    quantile: Annotated[float, Field(gt=0.0, lt=1.0)]
    # The candidate's quantile is at most this many milliseconds.
    max_ms: NonNegative | None = None
    # The candidate's quantile is at most this multiple of the baseline's (1.10: 10 % slower at most).
    max_ratio: PositiveRatio | None = None

    @property
    def label(self) -> str:
        """``p95``, ``p50``, ``p99.9``: the quantile as a percentile."""
        return "p" + f"{self.quantile * 100:.6f}".rstrip("0").rstrip(".")


class CostLimits(_Config):
    # The candidate's mean cost per run is at most this many USD.
    max_usd: NonNegative | None = None
    # The candidate's mean cost per run is at most this multiple of the baseline's.
    max_ratio: PositiveRatio | None = None


class StatisticalGates(_Config):
    """The opt-in statistical gates of a policy (absent: the policy behaves as before)."""

    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = DEFAULT_CONFIDENCE
    # Always-valid bounds (confidence sequences) for requests re-examined while they wait; False:
    # fixed-horizon bounds, valid for a single look (a one-shot diff).
    sequential: bool = True
    # For runs needed only: the chance the gate passes once those runs are in, if nothing changes.
    power: Annotated[float, Field(ge=0.5, lt=1.0)] = DEFAULT_POWER
    # Mean gates (cost) are tightest around this many runs; any value keeps them valid.
    expected_runs: Annotated[int, Field(ge=1)] = DEFAULT_EXPECTED_RUNS
    # Mean gates (cost) stay Inconclusive below this many runs per side.
    min_runs: Annotated[int, Field(ge=2)] = DEFAULT_MIN_RUNS
    # The arrival rate behind an ETA: runs per hour over this much recent time.
    rate_window: Annotated[str, Field(pattern=RATE_WINDOW_PATTERN)] = DEFAULT_RATE_WINDOW
    error_rate: ErrorRateLimits | None = None
    latency: Annotated[tuple[LatencyLimits, ...], Field(max_length=MAX_LATENCY_QUANTILES)] = ()
    cost_per_run: CostLimits | None = None

    @model_validator(mode="after")
    def _quantiles_unique(self) -> Self:
        quantiles = [limits.quantile for limits in self.latency]
        if len(quantiles) != len(set(quantiles)):
            raise ValueError("each latency quantile may be listed only once")
        return self

    @property
    def rate_window_duration(self) -> dt.timedelta:
        """``rate_window`` as a duration (the field's pattern guarantees the shape)."""
        return int(self.rate_window[:-1]) * _RATE_UNITS[self.rate_window[-1]]

    def gates(self) -> tuple[tuple[str, GateSpec], ...]:
        """Every configured limit as a named gate, in the order reasons are given."""
        common = {
            "confidence": self.confidence,
            "sequential": self.sequential,
            "expected_runs": self.expected_runs,
            "min_runs": self.min_runs,
        }
        named: list[tuple[str, GateSpec]] = []

        def add(name: str, metric: Metric, kind: LimitKind, limit: float | None, **extra: float) -> None:
            if limit is not None:
                named.append((name, GateSpec(metric=metric, kind=kind, limit=limit, **common, **extra)))

        if self.error_rate is not None:
            add("errorRate.max", Metric.ERROR_RATE, LimitKind.ABSOLUTE_MAX, self.error_rate.max)
            add(
                "errorRate.maxIncrease",
                Metric.ERROR_RATE,
                LimitKind.MAX_INCREASE,
                self.error_rate.max_increase,
            )
        for limits in self.latency:
            quantile = {"quantile": limits.quantile}
            prefix = f"latency.{limits.label}"
            add(f"{prefix}.maxMs", Metric.LATENCY_QUANTILE, LimitKind.ABSOLUTE_MAX, limits.max_ms, **quantile)
            add(
                f"{prefix}.maxRatio",
                Metric.LATENCY_QUANTILE,
                LimitKind.MAX_RATIO,
                limits.max_ratio,
                **quantile,
            )
        if self.cost_per_run is not None:
            add("costPerRun.maxUsd", Metric.COST_PER_RUN, LimitKind.ABSOLUTE_MAX, self.cost_per_run.max_usd)
            add("costPerRun.maxRatio", Metric.COST_PER_RUN, LimitKind.MAX_RATIO, self.cost_per_run.max_ratio)
        return tuple(named)
