"""Evidence arithmetic against the reference's exact values (behaviours 2-9)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from flightdeck_operator.engine.evidence import (
    CrossAgentError,
    DiffSide,
    InvalidWindowError,
    ModelAggregate,
    PricingModelMissingError,
    SideEvidence,
    compute_diff,
    cost_usd,
    merge_aggregates,
    normalize_window,
    parse_window,
    rollup,
    window_bounds,
)
from flightdeck_operator.engine.models import (
    Confidence,
    ConfidenceThresholds,
    DiffFilters,
    Policy,
    PricingEntry,
    PricingTable,
    ReleaseRef,
)
from flightdeck_operator.engine.policy import confidence_label
from tests.factories import NOW, aggregate_events, make_event

SINCE = NOW - dt.timedelta(days=7)
BASE = ReleaseRef(
    release_id="rel_base",
    agent_id="agent_support",
    provider="openai",
    pricing_version="baseline-pricing",
    model="gpt-4.1-mini",
)
CAND = ReleaseRef(
    release_id="rel_cand",
    agent_id="agent_support",
    provider="openai",
    pricing_version="candidate-pricing",
    model="gpt-4.1-mini",
)
BASE_TABLE = PricingTable(
    provider="openai",
    pricing_version="baseline-pricing",
    entries=(PricingEntry(model="gpt-4.1-mini", input_usd_per_1k_tokens=1.0, output_usd_per_1k_tokens=2.0),),
)
CAND_TABLE = PricingTable(
    provider="openai",
    pricing_version="candidate-pricing",
    entries=(PricingEntry(model="gpt-4.1-mini", input_usd_per_1k_tokens=3.0, output_usd_per_1k_tokens=4.0),),
)
Q_POLICY = Policy(
    max_cost_per_run_usd=4.0,
    max_latency_ms=3000,
    max_error_rate=0.05,
    min_candidate_runs=1,
    min_baseline_runs=1,
    min_low_runs=1,
    require_high_diff_confidence=False,
)


def side(
    release: ReleaseRef, table: PricingTable, *events_kwargs: dict[str, object], **extra: object
) -> DiffSide:
    events = [make_event(release_id=release.release_id, **kw) for kw in events_kwargs]  # type: ignore[arg-type]
    evidence = SideEvidence(release.release_id, "local", SINCE, NOW, aggregate_events(events))
    return DiffSide(release=release, table=table, evidence=evidence, **extra)  # type: ignore[arg-type]


def diff(baseline: DiffSide, candidate: DiffSide, policy: Policy = Q_POLICY, **kwargs: object):  # type: ignore[no-untyped-def]
    return compute_diff(
        window="7d",
        filters=DiffFilters(environment="local"),
        baseline=baseline,
        candidate=candidate,
        policy=policy,
        evaluated_at=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


# --- behaviour 2: cost -------------------------------------------------------------------------------


def test_cost_adds_cached_tokens_at_the_cached_rate() -> None:
    entry = PricingEntry(
        model="m",
        input_usd_per_1k_tokens=1.0,
        output_usd_per_1k_tokens=2.0,
        cached_input_usd_per_1k_tokens=0.5,
    )
    assert cost_usd(1000, 500, 400, entry) == pytest.approx(2.2, abs=1e-12)


def test_cost_charges_cached_tokens_at_the_input_rate_without_a_cached_rate() -> None:
    # A deliberate difference from the reference, which makes them free (docs/engine.md).
    entry = PricingEntry(model="m", input_usd_per_1k_tokens=1.0, output_usd_per_1k_tokens=2.0)
    assert cost_usd(1000, 500, 400, entry) == pytest.approx(2.4, abs=1e-12)
    assert cost_usd(1400, 500, 0, entry) == pytest.approx(cost_usd(1000, 500, 400, entry), abs=1e-12)


# --- behaviour 3: rollup -----------------------------------------------------------------------------


def test_rollup_skips_null_latencies() -> None:
    events = [
        make_event(latency_ms=None),
        make_event(latency_ms=300, success=False),
        make_event(latency_ms=100),
    ]
    result = rollup(aggregate_events(events), BASE_TABLE)
    assert result.runs == 3
    assert result.latency_ms_avg == 200.0
    assert result.error_rate == pytest.approx(1 / 3)
    assert result.cost_per_run_usd == 2.0


def test_rollup_of_no_events() -> None:
    result = rollup((), BASE_TABLE)
    assert (result.runs, result.cost_per_run_usd, result.latency_ms_avg, result.error_rate) == (
        0,
        0.0,
        None,
        0.0,
    )


def test_rollup_over_several_models_costs_each_with_its_entry() -> None:
    table = PricingTable(
        provider="openai",
        pricing_version="v",
        entries=(
            PricingEntry(model="a", input_usd_per_1k_tokens=1.0, output_usd_per_1k_tokens=0.0),
            PricingEntry(model="b", input_usd_per_1k_tokens=3.0, output_usd_per_1k_tokens=0.0),
        ),
    )
    events = [make_event(model="a", latency_ms=None), make_event(model="b", latency_ms=None)]
    result = rollup(aggregate_events(events), table)
    assert result.cost_per_run_usd == 2.0  # (1.0 + 3.0) / 2
    assert result.latency_ms_avg is None


def test_merge_aggregates_adds_parts_of_the_same_model() -> None:
    part = ModelAggregate("ag", "m", 1, 10, 5, 1, 100, 1, 0)
    merged = merge_aggregates([part, part, ModelAggregate("ag", "a", 2, 0, 0, 0, 0, 0, 2)])
    assert merged == (
        ModelAggregate("ag", "a", 2, 0, 0, 0, 0, 0, 2),
        ModelAggregate("ag", "m", 2, 20, 10, 2, 200, 2, 0),
    )


# --- behaviour 6: windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", dt.timedelta(days=7)),
        ("24h", dt.timedelta(hours=24)),
        ("30m", dt.timedelta(minutes=30)),
        (" 7D ", dt.timedelta(days=7)),
        ("+7d", dt.timedelta(days=7)),
        ("07d", dt.timedelta(days=7)),
        ("1_0d", dt.timedelta(days=10)),
    ],
)
def test_window_accepted(text: str, expected: dt.timedelta) -> None:
    assert parse_window(text) == expected
    canonical = normalize_window(text)
    assert parse_window(canonical) == expected
    assert canonical == canonical.strip().lower()


@pytest.mark.parametrize(
    ("text", "canonical"), [("  7D ", "7d"), ("07h", "7h"), ("+30m", "30m"), ("1_0d", "10d"), ("7d", "7d")]
)
def test_a_window_is_recorded_as_understood(text: str, canonical: str) -> None:
    assert normalize_window(text) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7w", "Invalid window unit: 7w"),
        ("0h", "Invalid window: 0h"),
        ("-7d", "Invalid window: -7d"),
        ("abc", "Invalid window: abc"),
        ("1.5h", "Invalid window: 1.5h"),
        ("7", "Invalid window: 7"),
        ("", "Invalid window: "),
        (" 7W ", "Invalid window unit: 7w"),
        ("9999999999999d", "Invalid window: 9999999999999d"),
    ],
)
def test_window_rejected_with_reference_message(text: str, message: str) -> None:
    with pytest.raises(InvalidWindowError):
        normalize_window(text)
    with pytest.raises(InvalidWindowError) as caught:
        parse_window(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_window_bounds_end_now_in_utc() -> None:
    now = dt.datetime(2026, 5, 5, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    since, until = window_bounds("1h", now)
    assert until == dt.datetime(2026, 5, 5, 12, 0, tzinfo=dt.UTC)
    assert until.utcoffset() == dt.timedelta(0)
    assert since == dt.datetime(2026, 5, 5, 11, 0, tzinfo=dt.UTC)


# --- behaviour 8: confidence -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("baseline", "candidate", "label", "reason"),
    [
        (100, 100, Confidence.MEDIUM, "candidate sample < 500 runs; baseline sample < 500 runs"),
        (49, 600, Confidence.LOW, "baseline sample < 500 runs; LOW floor is 50 runs"),
        (50, 200, Confidence.MEDIUM, "candidate sample < 500 runs; baseline sample < 500 runs"),
        (500, 500, Confidence.HIGH, None),
        (
            5,
            5,
            Confidence.LOW,
            "candidate sample < 500 runs; baseline sample < 500 runs; LOW floor is 50 runs",
        ),
    ],
)
def test_confidence_labels(baseline: int, candidate: int, label: Confidence, reason: str | None) -> None:
    assert confidence_label(baseline, candidate, ConfidenceThresholds()) == (label, reason)


def test_zero_overrides_make_empty_windows_high_and_passing() -> None:
    policy = Policy(
        min_candidate_runs=0, min_baseline_runs=0, min_low_runs=0, require_high_diff_confidence=True
    )
    result = diff(side(BASE, BASE_TABLE), side(CAND, CAND_TABLE), policy).result
    assert result.samples.confidence == Confidence.HIGH
    assert result.samples.confidence_reason is None
    assert result.policy.passed is True
    assert result.policy.reasons == ()


def test_policy_none_thresholds_fall_back_to_workspace_defaults() -> None:
    custom = ConfidenceThresholds(min_candidate_runs=1, min_baseline_runs=1, min_low_runs=1)
    result = diff(side(BASE, BASE_TABLE, {}), side(CAND, CAND_TABLE, {}), Policy(), thresholds=custom).result
    assert result.samples.confidence == Confidence.HIGH


# --- behaviour 4: the quickstart diff ------------------------------------------------------------------


def q_diff():  # type: ignore[no-untyped-def]
    return diff(side(BASE, BASE_TABLE, {"latency_ms": 1000}), side(CAND, CAND_TABLE, {"latency_ms": 1200}))


def test_quickstart_diff_metrics() -> None:
    result = q_diff().result
    m = result.metrics
    assert (m.baseline_cost_per_run_usd, m.candidate_cost_per_run_usd) == (2.0, 5.0)
    assert (m.delta_cost_per_run_usd, m.delta_cost_per_run_pct) == (3.0, 1.5)
    assert (m.baseline_latency_ms_avg, m.candidate_latency_ms_avg, m.delta_latency_ms_avg) == (
        1000.0,
        1200.0,
        200.0,
    )
    assert (m.baseline_error_rate, m.candidate_error_rate, m.delta_error_rate) == (0.0, 0.0, 0.0)
    assert (result.samples.confidence, result.samples.confidence_reason) == (Confidence.HIGH, None)
    assert result.pricing.pricing_or_model_changed is True
    prices = result.pricing.prices
    assert prices.baseline_input_usd_per_1k_tokens == 1.0
    assert prices.candidate_input_usd_per_1k_tokens == 3.0
    assert prices.baseline_cached_input_usd_per_1k_tokens is None
    assert prices.candidate_cached_input_usd_per_1k_tokens is None


def test_quickstart_cost_breach_reason() -> None:
    policy = q_diff().result.policy
    assert policy.passed is False
    assert policy.reasons == ("candidate cost_per_run_usd 5.000000 exceeds max 4.000000",)


def test_diff_json_has_the_reference_shape() -> None:
    body = json.loads(q_diff().result.model_dump_json())
    assert list(body) == ["window", "since", "until", "filters", "pricing", "samples", "metrics", "policy"]
    assert body["window"] == "7d"
    assert body["since"] == "2026-04-28T12:00:00+00:00"
    assert body["until"] == "2026-05-05T12:00:00+00:00"
    assert body["filters"] == {"environment": "local", "tenant_id": None, "task_id": None}
    assert body["policy"]["evaluated_at"] == "2026-05-05T12:00:00Z"
    assert set(body["pricing"]) == {
        "baseline_provider",
        "baseline_version",
        "baseline_model",
        "candidate_provider",
        "candidate_version",
        "candidate_model",
        "pricing_or_model_changed",
        "prices",
        "warnings",
        "hints",
        "catalog",
    }
    assert body["pricing"]["catalog"] == {
        "enabled": False,
        "catalog_version": None,
        "baseline_slot_id": None,
        "candidate_slot_id": None,
        "baseline_cost_per_run_usd": None,
        "candidate_cost_per_run_usd": None,
        "delta_cost_per_run_usd": None,
        "warnings": [],
    }
    assert set(body["samples"]) == {"baseline_runs", "candidate_runs", "confidence", "confidence_reason"}
    assert len(body["metrics"]) == 10
    assert len(body["pricing"]["prices"]) == 6


# --- behaviour 5: None guards ------------------------------------------------------------------------


def test_delta_pct_is_null_when_the_baseline_costs_nothing() -> None:
    metrics = diff(side(BASE, BASE_TABLE), side(CAND, CAND_TABLE, {})).result.metrics
    assert metrics.baseline_cost_per_run_usd == 0.0
    assert metrics.candidate_cost_per_run_usd == 5.0
    assert metrics.delta_cost_per_run_pct is None


def test_latency_delta_null_and_latency_check_skipped_without_latency_data() -> None:
    policy = Policy(max_latency_ms=1, require_high_diff_confidence=False)
    result = diff(
        side(BASE, BASE_TABLE, {"latency_ms": 500}), side(CAND, CAND_TABLE, {"latency_ms": None}), policy
    ).result
    assert result.metrics.candidate_latency_ms_avg is None
    assert result.metrics.delta_latency_ms_avg is None
    assert result.policy.passed is True
    assert result.policy.reasons == ()
    other = diff(
        side(BASE, BASE_TABLE, {"latency_ms": None}), side(CAND, CAND_TABLE, {"latency_ms": 5}), policy
    ).result
    assert other.metrics.delta_latency_ms_avg is None


# --- pricing warnings, hints and errors --------------------------------------------------------------


def test_missing_runtime_model_warns_and_nulls_that_sides_prices() -> None:
    renamed = CAND.model_copy(update={"model": "gpt-4.1"})
    result = diff(side(BASE, BASE_TABLE), side(renamed, CAND_TABLE)).result
    assert result.pricing.warnings == (
        "candidate pricing table openai/candidate-pricing has no entry for model 'gpt-4.1'",
    )
    assert result.pricing.prices.candidate_input_usd_per_1k_tokens is None
    assert result.pricing.prices.candidate_output_usd_per_1k_tokens is None
    assert result.pricing.prices.baseline_input_usd_per_1k_tokens == 1.0
    assert result.pricing.hints == (
        "candidate: table has no exact model 'gpt-4.1'; similar names: gpt-4.1-mini",
    )
    assert result.policy.passed is True  # advisory only


def test_stale_bundled_snapshot_warns_once_per_version() -> None:
    bundled = "flightdeck-bundled-2026-01"
    table = BASE_TABLE.model_copy(update={"pricing_version": bundled})
    base = BASE.model_copy(update={"pricing_version": bundled})
    cand = CAND.model_copy(update={"pricing_version": bundled})
    result = diff(side(base, table), side(cand, table)).result
    assert result.pricing.warnings == (
        "baseline pricing_version 'flightdeck-bundled-2026-01' is a FlightDeck bundled snapshot from 2026-01-01 "
        "(~124 days old). List prices drift; run `flightdeck pricing import` with authoritative YAML or upgrade "
        "to a newer `flightdeck-ai` minor for refreshed bundled tables.",
    )
    fresh = "flightdeck-bundled-2026-04"
    base, cand = (
        base.model_copy(update={"pricing_version": fresh}),
        cand.model_copy(update={"pricing_version": fresh}),
    )
    assert diff(side(base, table), side(cand, table)).result.pricing.warnings == ()


def test_other_pricing_versions_hint_lists_five_then_counts() -> None:
    versions = ["baseline-pricing", "v1", "v2", "v3", "v4", "v5", "v6", "v7"]
    result = diff(side(BASE, BASE_TABLE, other_pricing_versions=versions), side(CAND, CAND_TABLE)).result
    assert result.pricing.hints == (
        "baseline: provider 'openai' has other imported pricing_version values besides 'baseline-pricing': "
        "v1, v2, v3, v4, v5 (+2 more). Confirm the release pins the table you intend.",
    )


def test_event_model_missing_from_table_is_an_error_with_reference_text() -> None:
    baseline = side(BASE, BASE_TABLE, {"model": "unknown-model"})
    with pytest.raises(PricingModelMissingError) as caught:
        diff(baseline, side(CAND, CAND_TABLE))
    assert str(caught.value) == (
        "Pricing table missing model entry. baseline_model=gpt-4.1-mini candidate_model=gpt-4.1-mini. "
        "Check pricing tables: openai/baseline-pricing and openai/candidate-pricing."
    )
    assert caught.value.missing_model == "unknown-model"
    with pytest.raises(PricingModelMissingError) as promoted:
        diff(baseline, side(CAND, CAND_TABLE), for_promotion=True)
    assert str(promoted.value) == (
        "Pricing table missing model entry. baseline_model=gpt-4.1-mini candidate_model=gpt-4.1-mini."
    )


def test_cross_agent_releases_are_rejected() -> None:
    other = CAND.model_copy(update={"agent_id": "agent_two"})
    with pytest.raises(CrossAgentError) as caught:
        diff(side(BASE.model_copy(update={"agent_id": "agent_one"}), BASE_TABLE), side(other, CAND_TABLE))
    assert (
        str(caught.value)
        == "Cross-agent diff is not allowed. Baseline agent_id=agent_one, candidate agent_id=agent_two."
    )


def test_cross_agent_events_are_rejected() -> None:
    with pytest.raises(CrossAgentError) as mixed:
        diff(side(BASE, BASE_TABLE, {}, {"agent_id": "x"}), side(CAND, CAND_TABLE, {}))
    assert (
        str(mixed.value) == "Each side of the diff must have a single consistent agent_id among run events."
    )
    with pytest.raises(CrossAgentError) as crossed:
        diff(side(BASE, BASE_TABLE, {"agent_id": "x"}), side(CAND, CAND_TABLE, {}))
    assert str(crossed.value) == (
        "Cross-agent diff rejected: baseline and candidate run events must share the same agent_id."
    )
