"""Evidence arithmetic (pure): windows, cost, rollups from SQL aggregates, and the diff.

The store aggregates run events per (agent, model) in SQL; everything here works on those sums.
Cost is linear in tokens, so costing the sums equals summing per-event costs (up to float rounding).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .models import (
    ConfidenceThresholds,
    DiffFilters,
    DiffMetrics,
    DiffPrices,
    DiffPricing,
    DiffResult,
    DiffSamples,
    EvidenceSummary,
    Policy,
    PricingEntry,
    PricingTable,
    ReleaseRef,
    Rollup,
    as_utc,
)
from .policy import ClassifiedReason, confidence_label, evaluate_policy, resolve_thresholds
from .statistics.moments import SideMoments

# --- errors -----------------------------------------------------------------------------------------


class EvidenceError(ValueError):
    """The evidence could not be evaluated; the message is the reference's (HTTP 400) text."""


class InvalidWindowError(EvidenceError):
    """``Invalid window: <s>`` or ``Invalid window unit: <s>``."""


class CrossAgentError(EvidenceError):
    """The two releases, or their run events, belong to different agents."""


class PricingModelMissingError(EvidenceError):
    """A run event's model has no entry in its release's pricing table."""

    def __init__(
        self,
        *,
        baseline: ReleaseRef,
        candidate: ReleaseRef,
        missing_model: str,
        for_promotion: bool = False,
    ) -> None:
        self.baseline = baseline
        self.candidate = candidate
        self.missing_model = missing_model
        message = (
            f"Pricing table missing model entry. baseline_model={baseline.model} "
            f"candidate_model={candidate.model}."
        )
        if not for_promotion:  # the promote path uses the same text without the suffix
            message += f" Check pricing tables: {baseline.pricing_key} and {candidate.pricing_key}."
        super().__init__(message)


class _ModelNotPriced(LookupError):
    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.model = model


# --- windows ----------------------------------------------------------------------------------------

_WINDOW_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_window(window: str) -> dt.timedelta:
    """``<positive int><d|h|m>``, case and surrounding spaces ignored; ``m`` means minutes.

    Python's ``int()`` rules apply to the number, as in the reference (``+7d``, ``07d``, ``1_0d`` pass).
    """
    text = window.strip().lower()
    if len(text) < 2:
        raise InvalidWindowError(f"Invalid window: {text}")
    try:
        amount = int(text[:-1])
    except ValueError:
        raise InvalidWindowError(f"Invalid window: {text}") from None
    if amount <= 0:
        raise InvalidWindowError(f"Invalid window: {text}")
    unit = _WINDOW_UNITS.get(text[-1])
    if unit is None:
        raise InvalidWindowError(f"Invalid window unit: {text}")
    try:
        return dt.timedelta(**{unit: amount})
    except OverflowError:  # the reference crashes here; a window this long is simply invalid
        raise InvalidWindowError(f"Invalid window: {text}") from None


def normalize_window(window: str) -> str:
    """The canonical spelling of a valid window (``"  07D "`` is ``"7d"``); raises like ``parse_window``."""
    parse_window(window)
    text = window.strip().lower()
    return f"{int(text[:-1])}{text[-1]}"


def window_bounds(window: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The half-open evaluation range ``[now - window, now)`` in UTC."""
    until = as_utc(now)
    try:
        return until - parse_window(window), until
    except OverflowError:
        raise InvalidWindowError(f"Invalid window: {window.strip().lower()}") from None


# --- aggregates -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelAggregate:
    """SQL sums for one (agent, model) over a window; latency sum/count skip null latencies."""

    agent_id: str
    model: str
    runs: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    latency_ms_sum: int
    latency_count: int
    failures: int

    def __add__(self, other: ModelAggregate) -> ModelAggregate:
        if (self.agent_id, self.model) != (other.agent_id, other.model):
            raise ValueError("only aggregates of the same (agent_id, model) can be added")
        return ModelAggregate(
            agent_id=self.agent_id,
            model=self.model,
            runs=self.runs + other.runs,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            latency_ms_sum=self.latency_ms_sum + other.latency_ms_sum,
            latency_count=self.latency_count + other.latency_count,
            failures=self.failures + other.failures,
        )


def merge_aggregates(parts: Iterable[ModelAggregate]) -> tuple[ModelAggregate, ...]:
    """Add partial aggregates of the same (agent, model); the result is sorted by that key."""
    merged: dict[tuple[str, str], ModelAggregate] = {}
    for part in parts:
        key = (part.agent_id, part.model)
        merged[key] = merged[key] + part if key in merged else part
    return tuple(merged[key] for key in sorted(merged))


@dataclass(frozen=True, slots=True)
class SideEvidence:
    """What the store returns for one release over ``[since, until)``."""

    release_id: str
    environment: str
    since: dt.datetime
    until: dt.datetime
    aggregates: tuple[ModelAggregate, ...] = field(default=())
    tenant_id: str | None = None
    task_id: str | None = None
    # Second moments and the latency histogram, for statistical gates only (None otherwise).
    moments: SideMoments | None = None

    @property
    def runs(self) -> int:
        return sum(a.runs for a in self.aggregates)

    @property
    def agent_ids(self) -> frozenset[str]:
        return frozenset(a.agent_id for a in self.aggregates if a.runs)


# --- cost and rollup --------------------------------------------------------------------------------


def cost_usd(input_tokens: int, output_tokens: int, cached_input_tokens: int, entry: PricingEntry) -> float:
    """``in/1000·input + out/1000·output + cached/1000·cached`` (cached term only if a rate is set).

    ``input_tokens`` excludes cached tokens, so adding the cached term does not charge them twice.
    """
    cost = (
        input_tokens / 1000 * entry.input_usd_per_1k_tokens
        + output_tokens / 1000 * entry.output_usd_per_1k_tokens
    )
    if entry.cached_input_usd_per_1k_tokens is not None:
        cost += cached_input_tokens / 1000 * entry.cached_input_usd_per_1k_tokens
    return cost


def rollup(aggregates: Iterable[ModelAggregate], table: PricingTable) -> Rollup:
    """Runs, cost per run, mean latency (null if no run reported one) and error rate.

    Raises ``LookupError`` (internal ``_ModelNotPriced``) when a model has no entry in ``table``.
    """
    runs = latency_sum = latency_count = failures = 0
    total_cost = 0.0
    for agg in aggregates:
        if agg.runs == 0:
            continue
        entry = table.entry_for(agg.model)
        if entry is None:
            raise _ModelNotPriced(agg.model)
        total_cost += cost_usd(agg.input_tokens, agg.output_tokens, agg.cached_input_tokens, entry)
        runs += agg.runs
        latency_sum += agg.latency_ms_sum
        latency_count += agg.latency_count
        failures += agg.failures
    if runs == 0:
        return Rollup(runs=0, cost_per_run_usd=0.0, latency_ms_avg=None, error_rate=0.0)
    return Rollup(
        runs=runs,
        cost_per_run_usd=total_cost / runs,
        latency_ms_avg=latency_sum / latency_count if latency_count else None,
        error_rate=failures / runs,
    )


def price_rollup(aggregates: Iterable[ModelAggregate], table: PricingTable) -> Rollup:
    """``rollup`` for callers outside a diff: a missing model raises ``EvidenceError``."""
    try:
        return rollup(aggregates, table)
    except _ModelNotPriced as exc:
        raise EvidenceError(f"Pricing table {table.key} has no entry for model '{exc.model}'") from None


# --- pricing warnings and hints ---------------------------------------------------------------------

BUNDLED_PRICING_VERSION = re.compile(r"^flightdeck-bundled-(\d{4})-(\d{2})$")
DEFAULT_MAX_PRICING_AGE_DAYS = 90
_MAX_LISTED_VERSIONS = 5


def bundled_snapshot_age_days(pricing_version: str, now: dt.datetime) -> tuple[dt.date, int] | None:
    """Anchor date (1st of the month) and age in days for a bundled snapshot version, else None."""
    match = BUNDLED_PRICING_VERSION.match(pricing_version)
    if match is None:
        return None
    try:
        anchor = dt.date(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        return None
    return anchor, (as_utc(now).date() - anchor).days


def stale_pricing_warning(
    role: str, pricing_version: str, now: dt.datetime, max_age_days: int = DEFAULT_MAX_PRICING_AGE_DAYS
) -> str | None:
    age = bundled_snapshot_age_days(pricing_version, now)
    if age is None or age[1] <= max_age_days:
        return None
    anchor, days = age
    return (
        f"{role} pricing_version '{pricing_version}' is a FlightDeck bundled snapshot from "
        f"{anchor.isoformat()} (~{days} days old). List prices drift; run `flightdeck pricing import` "
        "with authoritative YAML or upgrade to a newer `flightdeck-ai` minor for refreshed bundled tables."
    )


def missing_model_warning(role: str, release: ReleaseRef) -> str:
    return f"{role} pricing table {release.pricing_key} has no entry for model '{release.model}'"


def other_versions_hint(role: str, release: ReleaseRef, known_versions: Iterable[str]) -> str | None:
    others = sorted(set(known_versions) - {release.pricing_version})
    if not others:
        return None
    listed = ", ".join(others[:_MAX_LISTED_VERSIONS])
    if len(others) > _MAX_LISTED_VERSIONS:
        listed += f" (+{len(others) - _MAX_LISTED_VERSIONS} more)"
    return (
        f"{role}: provider '{release.provider}' has other imported pricing_version values besides "
        f"'{release.pricing_version}': {listed}. Confirm the release pins the table you intend."
    )


def similar_models_hint(role: str, model: str, table: PricingTable) -> str | None:
    """Entries whose name contains, or is contained in, the missing model name (case-insensitive)."""
    wanted = model.lower()
    similar = sorted(
        {e.model for e in table.entries if wanted in e.model.lower() or e.model.lower() in wanted}
    )
    if not similar:
        return None
    return f"{role}: table has no exact model '{model}'; similar names: {', '.join(similar[:5])}"


# --- diff -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffSide:
    """One side of a diff: the release, its pinned pricing table, its evidence and the provider's
    other known pricing versions (for hints)."""

    release: ReleaseRef
    table: PricingTable
    evidence: SideEvidence
    other_pricing_versions: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Diff:
    """The reference diff JSON plus what the decision needs that the JSON does not carry."""

    result: DiffResult
    reasons: tuple[ClassifiedReason, ...]
    baseline: Rollup
    candidate: Rollup

    @property
    def summary(self) -> EvidenceSummary:
        return EvidenceSummary(
            window=self.result.window,
            since=self.result.since,
            until=self.result.until,
            baseline=self.baseline,
            candidate=self.candidate,
            confidence=self.result.samples.confidence,
            confidence_reason=self.result.samples.confidence_reason,
            statistics=self.result.statistics,
        )


def _delta_pct(baseline_cost: float, delta: float) -> float | None:
    return delta / baseline_cost if baseline_cost > 0 else None


def _delta_latency(baseline: float | None, candidate: float | None) -> float | None:
    return None if baseline is None or candidate is None else candidate - baseline


def _check_agents(baseline: DiffSide, candidate: DiffSide) -> None:
    base_agent, cand_agent = baseline.release.agent_id, candidate.release.agent_id
    if base_agent != cand_agent:
        raise CrossAgentError(
            f"Cross-agent diff is not allowed. Baseline agent_id={base_agent}, candidate agent_id={cand_agent}."
        )
    base_agents, cand_agents = baseline.evidence.agent_ids, candidate.evidence.agent_ids
    if base_agents and cand_agents:
        if len(base_agents) != 1 or len(cand_agents) != 1:
            raise CrossAgentError(
                "Each side of the diff must have a single consistent agent_id among run events."
            )
        if base_agents != cand_agents:
            raise CrossAgentError(
                "Cross-agent diff rejected: baseline and candidate run events must share the same agent_id."
            )


def compute_diff(
    *,
    window: str,
    filters: DiffFilters,
    baseline: DiffSide,
    candidate: DiffSide,
    policy: Policy,
    evaluated_at: dt.datetime,
    thresholds: ConfidenceThresholds | None = None,
    max_pricing_age_days: int = DEFAULT_MAX_PRICING_AGE_DAYS,
    for_promotion: bool = False,
) -> Diff:
    """Assemble the reference diff from both sides' evidence. ``since``/``until`` come from the evidence.

    The policy's ``statistical_gates`` are not evaluated here: see ``statistical_policy.gated_diff``.

    Raises ``CrossAgentError`` or ``PricingModelMissingError`` with the reference's messages.
    """
    _check_agents(baseline, candidate)
    since, until = baseline.evidence.since, baseline.evidence.until
    if (candidate.evidence.since, candidate.evidence.until) != (since, until):
        raise ValueError("both sides of a diff must cover the same window")
    try:
        base_rollup = rollup(baseline.evidence.aggregates, baseline.table)
        cand_rollup = rollup(candidate.evidence.aggregates, candidate.table)
    except _ModelNotPriced as exc:
        raise PricingModelMissingError(
            baseline=baseline.release,
            candidate=candidate.release,
            missing_model=exc.model,
            for_promotion=for_promotion,
        ) from None

    resolved = resolve_thresholds(policy, thresholds or ConfidenceThresholds())
    confidence, confidence_reason = confidence_label(base_rollup.runs, cand_rollup.runs, resolved)
    evaluation = evaluate_policy(policy, cand_rollup, confidence, confidence_reason, evaluated_at)

    delta_cost = cand_rollup.cost_per_run_usd - base_rollup.cost_per_run_usd
    metrics = DiffMetrics(
        baseline_cost_per_run_usd=base_rollup.cost_per_run_usd,
        candidate_cost_per_run_usd=cand_rollup.cost_per_run_usd,
        delta_cost_per_run_usd=delta_cost,
        delta_cost_per_run_pct=_delta_pct(base_rollup.cost_per_run_usd, delta_cost),
        baseline_latency_ms_avg=base_rollup.latency_ms_avg,
        candidate_latency_ms_avg=cand_rollup.latency_ms_avg,
        delta_latency_ms_avg=_delta_latency(base_rollup.latency_ms_avg, cand_rollup.latency_ms_avg),
        baseline_error_rate=base_rollup.error_rate,
        candidate_error_rate=cand_rollup.error_rate,
        delta_error_rate=cand_rollup.error_rate - base_rollup.error_rate,
    )
    result = DiffResult(
        window=window,
        since=since,
        until=until,
        filters=filters,
        pricing=_pricing_report(baseline, candidate, evaluated_at, max_pricing_age_days),
        samples=DiffSamples(
            baseline_runs=base_rollup.runs,
            candidate_runs=cand_rollup.runs,
            confidence=confidence,
            confidence_reason=confidence_reason,
        ),
        metrics=metrics,
        policy=evaluation.result,
    )
    return Diff(result=result, reasons=evaluation.reasons, baseline=base_rollup, candidate=cand_rollup)


def _pricing_report(
    baseline: DiffSide, candidate: DiffSide, now: dt.datetime, max_pricing_age_days: int
) -> DiffPricing:
    warnings: list[str] = []
    hints: list[str] = []
    prices: dict[str, float | None] = {}
    for role, side in (("baseline", baseline), ("candidate", candidate)):
        entry = side.table.entry_for(side.release.model)
        if entry is None:
            warnings.append(missing_model_warning(role, side.release))
        prices[f"{role}_input_usd_per_1k_tokens"] = entry.input_usd_per_1k_tokens if entry else None
        prices[f"{role}_output_usd_per_1k_tokens"] = entry.output_usd_per_1k_tokens if entry else None
        prices[f"{role}_cached_input_usd_per_1k_tokens"] = (
            entry.cached_input_usd_per_1k_tokens if entry else None
        )
        versions_hint = other_versions_hint(role, side.release, side.other_pricing_versions)
        if versions_hint:
            hints.append(versions_hint)
        if entry is None:
            similar = similar_models_hint(role, side.release.model, side.table)
            if similar:
                hints.append(similar)
    seen_versions: set[str] = set()
    for role, side in (("baseline", baseline), ("candidate", candidate)):
        version = side.release.pricing_version
        if version in seen_versions:
            continue
        seen_versions.add(version)
        stale = stale_pricing_warning(role, version, now, max_pricing_age_days)
        if stale:
            warnings.append(stale)
    base, cand = baseline.release, candidate.release
    return DiffPricing(
        baseline_provider=base.provider,
        baseline_version=base.pricing_version,
        baseline_model=base.model,
        candidate_provider=cand.provider,
        candidate_version=cand.pricing_version,
        candidate_model=cand.model,
        pricing_or_model_changed=(
            base.provider != cand.provider
            or base.pricing_version != cand.pricing_version
            or base.model != cand.model
        ),
        prices=DiffPrices.model_validate(prices),
        warnings=tuple(warnings),
        hints=tuple(hints),
    )
