"""The custom resources' specs as engine models: the one place the API's shape meets the engine's.

Pure. The engine knows nothing of Kubernetes; the controller, the actions and the CLI translate
what they read from the API server through these functions before deciding anything.
"""

from __future__ import annotations

from flightdeck_operator.api.v1alpha1 import AgentReleaseSpec, PricingTableSpec, PromotionPolicySpec
from flightdeck_operator.api.v1alpha1.statistics_types import StatisticalGatesSpec
from flightdeck_operator.engine.models import Policy, PricingEntry, PricingTable, ReleaseRef
from flightdeck_operator.engine.statistics.config import StatisticalGates


def release_ref(name: str, spec: AgentReleaseSpec) -> ReleaseRef:
    return ReleaseRef(
        release_id=name,
        agent_id=spec.agent_id,
        provider=spec.pricing_reference.provider,
        pricing_version=spec.pricing_reference.pricing_version,
        model=spec.runtime.model,
    )


def engine_policy(name: str, spec: PromotionPolicySpec) -> Policy:
    return Policy(
        policy_id=name,
        max_cost_per_run_usd=spec.max_cost_per_run_usd,
        max_latency_ms=spec.max_latency_ms,
        max_error_rate=spec.max_error_rate,
        min_candidate_runs=spec.min_candidate_runs,
        min_baseline_runs=spec.min_baseline_runs,
        min_low_runs=spec.min_low_runs,
        require_high_diff_confidence=spec.require_high_diff_confidence,
        statistical_gates=None if spec.statistical_gates is None else engine_gates(spec.statistical_gates),
    )


def engine_gates(spec: StatisticalGatesSpec) -> StatisticalGates:
    """The block in the engine's terms (snake_case; the same fields and defaults)."""
    return StatisticalGates.model_validate(spec.model_dump(mode="python", by_alias=False, exclude_none=True))


def engine_pricing(spec: PricingTableSpec) -> PricingTable:
    return PricingTable(
        provider=spec.provider,
        pricing_version=spec.pricing_version,
        entries=tuple(
            PricingEntry(
                model=e.model,
                input_usd_per_1k_tokens=e.input_usd_per_1k_tokens,
                output_usd_per_1k_tokens=e.output_usd_per_1k_tokens,
                cached_input_usd_per_1k_tokens=e.cached_input_usd_per_1k_tokens,
            )
            for e in spec.entries
        ),
    )
