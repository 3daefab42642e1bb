"""Typed boundary models of the decision core (pydantic v2).

Shapes, defaults and validation follow the FlightDeck reference: ``RunEvent`` and ``Policy`` ignore
unknown keys, the diff and action JSON keep the reference's snake_case keys. Output models are frozen.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    TypeAdapter,
    ValidationError,
    field_serializer,
)
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from .statistics.config import StatisticalGates
from .statistics.report import StatisticsReport

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)


def as_utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` in UTC. A naive datetime is taken to be UTC already (as the reference does)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def format_time(now: dt.datetime) -> str:
    """RFC 3339 in UTC with second precision, as ``metav1.Time`` serialises."""
    if now.tzinfo is None:
        raise ValueError("condition times must be timezone-aware")
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_micros(value: dt.datetime) -> int:
    """Exact integer microseconds since the Unix epoch, in UTC (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // _ONE_MICROSECOND  # aware subtraction applies the offset


def from_utc_micros(value: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=value)


UtcDatetime = Annotated[dt.datetime, AfterValidator(as_utc)]
"""A datetime stored in UTC; pydantic's JSON for it ends in ``Z`` as the reference's ``evaluated_at``."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


def _is_none(value: object) -> bool:
    """Opt-in fields added after the reference are left out of dumps while unset (byte-identical JSON)."""
    return value is None


class PromotionAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class Confidence(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


# --- Run events (reference 1.4) ---------------------------------------------------------------------


class RunRequest(_Frozen):
    session_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None


# Upper bounds keep every stored count (and the evidence sums over millions of events) inside a
# signed 64-bit SQL integer; anything above them is a client bug, not a real run.
MAX_TOKENS_PER_RUN = 10**12
MAX_LATENCY_MS = 10**10  # about 115 days
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_RUN)]
LatencyMs = Annotated[int, Field(ge=0, le=MAX_LATENCY_MS)]


class RunMetrics(_Frozen):
    latency_ms: LatencyMs | None = None
    success: bool = True
    error_type: str | None = None


class ModelUsage(_Frozen):
    provider: str
    model: str
    input_tokens: TokenCount
    output_tokens: TokenCount
    # Tokens served from a prompt cache, *not* included in input_tokens (see docs/engine.md).
    cached_input_tokens: TokenCount = 0


class ToolUsage(_Frozen):
    tool_name: str
    invocations: NonNegativeInt = 0
    cost_units: NonNegativeFloat = 0


class RunUsage(_Frozen):
    model: ModelUsage
    # A list (not a tuple) so validation messages match the reference's word for word.
    tools: list[ToolUsage] = Field(default_factory=list)


class RunEvent(_Frozen):
    """One agent run, as posted to ``POST /v1/events``. Unknown keys are ignored."""

    api_version: Literal["v1"] = "v1"
    type: Literal["run_start", "run_end"] = "run_end"
    # Kept as sent (offset included) for forensics; the store indexes it as UTC microseconds.
    timestamp: dt.datetime
    workspace_id: str = "ws_local"
    agent_id: str
    release_id: str
    run_id: str
    tenant_id: str
    task_id: str
    environment: str
    request: RunRequest | None = None
    metrics: RunMetrics = RunMetrics()
    usage: RunUsage
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def timestamp_us(self) -> int:
        return utc_micros(self.timestamp)


# Plain-data mirrors of the run event models, for the ingestion hot path: validating a batch into
# dicts is about twice as fast as into model instances, and serialising a dict is cheaper too.
# Field for field (names, order, types, constraints, defaults) the same as the models above, so they
# accept exactly the same input and serialise to the same JSON; tests/unit/test_models.py checks it.


class RunRequestData(TypedDict):
    session_id: NotRequired[Annotated[str | None, Field(default=None)]]
    trace_id: NotRequired[Annotated[str | None, Field(default=None)]]
    span_id: NotRequired[Annotated[str | None, Field(default=None)]]


class RunMetricsData(TypedDict):
    latency_ms: NotRequired[Annotated[LatencyMs | None, Field(default=None)]]
    success: NotRequired[Annotated[bool, Field(default=True)]]
    error_type: NotRequired[Annotated[str | None, Field(default=None)]]


class ModelUsageData(TypedDict):
    provider: str
    model: str
    input_tokens: TokenCount
    output_tokens: TokenCount
    cached_input_tokens: NotRequired[Annotated[TokenCount, Field(default=0)]]


class ToolUsageData(TypedDict):
    tool_name: str
    invocations: NotRequired[Annotated[NonNegativeInt, Field(default=0)]]
    cost_units: NotRequired[Annotated[NonNegativeFloat, Field(default=0)]]


class RunUsageData(TypedDict):
    model: ModelUsageData
    tools: NotRequired[Annotated[list[ToolUsageData], Field(default_factory=list)]]


def _default_metrics() -> RunMetricsData:
    return {"latency_ms": None, "success": True, "error_type": None}


class RunEventData(TypedDict):
    """A validated ``RunEvent`` as plain data, every default filled in (``RunEvent.model_dump()``)."""

    api_version: NotRequired[Annotated[Literal["v1"], Field(default="v1")]]
    type: NotRequired[Annotated[Literal["run_start", "run_end"], Field(default="run_end")]]
    timestamp: dt.datetime
    workspace_id: NotRequired[Annotated[str, Field(default="ws_local")]]
    agent_id: str
    release_id: str
    run_id: str
    tenant_id: str
    task_id: str
    environment: str
    request: NotRequired[Annotated[RunRequestData | None, Field(default=None)]]
    metrics: NotRequired[Annotated[RunMetricsData, Field(default_factory=_default_metrics)]]
    usage: RunUsageData
    labels: NotRequired[Annotated[dict[str, str], Field(default_factory=dict)]]


RUN_EVENT_DATA = TypeAdapter(RunEventData)
"""Validates and serialises ``RunEventData``; its JSON is byte for byte ``RunEvent.model_dump_json()``."""


class InvalidEventsError(ValueError):
    """A batch of run events was rejected whole; the message is the reference's HTTP 400 detail."""


def validate_events(raw_items: Sequence[Any]) -> list[RunEvent]:
    """Validate a batch before anything is stored: the first bad item rejects the whole batch.

    Each item is checked in order, ``api_version`` first (exactly ``'v1'``, or absent), then the schema.
    """
    events: list[RunEvent] = []
    for item in raw_items:
        if isinstance(item, Mapping):
            api_version = item.get("api_version", "v1")
            if api_version != "v1":
                raise InvalidEventsError(
                    f"Unsupported api_version for POST /v1/events: {api_version!r} (only 'v1' is accepted)."
                )
        try:
            events.append(RunEvent.model_validate(item))
        except ValidationError as exc:
            raise InvalidEventsError(f"Invalid RunEvent: {exc}") from exc
    return events


# --- Pricing (reference 1.3) ------------------------------------------------------------------------


class PricingEntry(_Frozen):
    """USD per 1,000 tokens for one model."""

    model: str
    input_usd_per_1k_tokens: NonNegativeFloat
    output_usd_per_1k_tokens: NonNegativeFloat
    cached_input_usd_per_1k_tokens: NonNegativeFloat | None = None


class PricingTable(_Frozen):
    provider: str
    pricing_version: str
    entries: tuple[PricingEntry, ...] = ()

    def entry_for(self, model: str) -> PricingEntry | None:
        # First match wins, as the reference's linear scan.
        for entry in self.entries:
            if entry.model == model:
                return entry
        return None

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.pricing_version}"


class ReleaseRef(_Frozen):
    """What the engine needs to know about a release: its agent, pinned pricing and runtime model."""

    release_id: str
    agent_id: str
    provider: str
    pricing_version: str
    model: str

    @property
    def pricing_key(self) -> str:
        return f"{self.provider}/{self.pricing_version}"


# --- Policy (reference 1.7) -------------------------------------------------------------------------


class Policy(_Frozen):
    """The promotion gate. ``None`` on a ``max_*`` disables it; on a ``min_*`` it inherits the default
    threshold (500/500/50). ``0`` on a ``min_*`` means no minimum."""

    policy_id: str = "default"
    max_cost_per_run_usd: NonNegativeFloat | None = None
    max_latency_ms: NonNegativeInt | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    min_candidate_runs: NonNegativeInt | None = None
    min_baseline_runs: NonNegativeInt | None = None
    min_low_runs: NonNegativeInt | None = None
    require_high_diff_confidence: bool = True
    # Opt-in (issue 16). Left out of every dump while unset, so a policy without it keeps its digest
    # (and the approvals bound to it) byte for byte.
    statistical_gates: StatisticalGates | None = Field(default=None, exclude_if=_is_none)


def default_policy() -> Policy:
    """The implicit policy when none is set: every limit off, HIGH confidence required."""
    return Policy()


class ConfidenceThresholds(_Frozen):
    """Workspace-level sample thresholds (the reference's ``diff.*`` defaults)."""

    min_candidate_runs: NonNegativeInt = 500
    min_baseline_runs: NonNegativeInt = 500
    min_low_runs: NonNegativeInt = 50


class PolicyResult(_Frozen):
    passed: bool
    reasons: tuple[str, ...]
    evaluated_at: UtcDatetime


# --- Rollups and diff (reference 1.5, 1.6) ----------------------------------------------------------


class Rollup(_Frozen):
    runs: int
    cost_per_run_usd: float
    latency_ms_avg: float | None
    error_rate: float


class DiffFilters(_Frozen):
    environment: str
    tenant_id: str | None = None
    task_id: str | None = None


class DiffPrices(_Frozen):
    baseline_input_usd_per_1k_tokens: float | None = None
    baseline_output_usd_per_1k_tokens: float | None = None
    baseline_cached_input_usd_per_1k_tokens: float | None = None
    candidate_input_usd_per_1k_tokens: float | None = None
    candidate_output_usd_per_1k_tokens: float | None = None
    candidate_cached_input_usd_per_1k_tokens: float | None = None


class CatalogReport(_Frozen):
    """The reference's optional pricing catalog. The operator has none yet, so it is reported disabled."""

    enabled: bool = False
    catalog_version: str | None = None
    baseline_slot_id: str | None = None
    candidate_slot_id: str | None = None
    baseline_cost_per_run_usd: float | None = None
    candidate_cost_per_run_usd: float | None = None
    delta_cost_per_run_usd: float | None = None
    warnings: tuple[str, ...] = ()


class DiffPricing(_Frozen):
    baseline_provider: str
    baseline_version: str
    baseline_model: str
    candidate_provider: str
    candidate_version: str
    candidate_model: str
    pricing_or_model_changed: bool
    prices: DiffPrices
    warnings: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    catalog: CatalogReport = CatalogReport()


class DiffSamples(_Frozen):
    baseline_runs: int
    candidate_runs: int
    confidence: Confidence
    confidence_reason: str | None


class DiffMetrics(_Frozen):
    baseline_cost_per_run_usd: float
    candidate_cost_per_run_usd: float
    delta_cost_per_run_usd: float
    delta_cost_per_run_pct: float | None
    baseline_latency_ms_avg: float | None
    candidate_latency_ms_avg: float | None
    delta_latency_ms_avg: float | None
    baseline_error_rate: float
    candidate_error_rate: float
    delta_error_rate: float


class DiffResult(_Frozen):
    """The reference's diff JSON (``POST /v1/diff``), key for key."""

    window: str
    since: UtcDatetime
    until: UtcDatetime
    filters: DiffFilters
    pricing: DiffPricing
    samples: DiffSamples
    metrics: DiffMetrics
    policy: PolicyResult
    # Only when the policy has statisticalGates (absent otherwise: the reference's JSON).
    statistics: StatisticsReport | None = Field(default=None, exclude_if=_is_none)

    # The reference prints since/until with isoformat() ("+00:00"), unlike evaluated_at ("Z").
    @field_serializer("since", "until")
    def _isoformat(self, value: dt.datetime) -> str:
        return value.isoformat()


class EvidenceSummary(_Frozen):
    """The numbers behind a decision, kept in the ledger and in the request status."""

    window: str
    since: UtcDatetime
    until: UtcDatetime
    baseline: Rollup
    candidate: Rollup
    confidence: Confidence
    confidence_reason: str | None
    # Only when the policy has statisticalGates.
    statistics: StatisticsReport | None = Field(default=None, exclude_if=_is_none)


class ActionOutcome(_Frozen):
    """The reference's promote/rollback HTTP body (200, or inside a 409 ``detail.outcome``)."""

    action_id: str
    action: PromotionAction
    release_id: str
    agent_id: str
    environment: str
    baseline_release_id: str | None
    promoted_pointer_changed: bool
    policy: PolicyResult
