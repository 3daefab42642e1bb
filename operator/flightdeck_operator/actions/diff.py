"""The reference's diff of two releases over a window: evidence from the store, releases, pricing
tables and the pointer's policy from the cluster, with the reference's messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

from flightdeck_operator.actions.errors import ClusterUnavailable, InvalidAction
from flightdeck_operator.actions.promotions import release_spec
from flightdeck_operator.api.pointer_rules import first_pointer
from flightdeck_operator.api.to_engine import engine_policy, engine_pricing, release_ref
from flightdeck_operator.api.v1alpha1 import (
    PRICING_TABLE,
    PROMOTION_POLICY,
    RELEASE_POINTER,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)
from flightdeck_operator.engine.evidence import DiffSide, EvidenceError, window_bounds
from flightdeck_operator.engine.models import (
    ConfidenceThresholds,
    DiffFilters,
    DiffResult,
    Policy,
    ReleaseRef,
    default_policy,
)
from flightdeck_operator.engine.statistical_policy import gated_diff
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store


class DiffInput(BaseModel):
    """The reference ``POST /v1/diff`` body."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    baseline_release_id: str
    candidate_release_id: str
    window: str
    tenant_id: str | None = None
    task_id: str | None = None
    environment: str | None = None


# --- diff -------------------------------------------------------------------------------------------


def _missing_pricing(role: str, provider: str, version: str) -> InvalidAction:
    return InvalidAction(
        f"Missing pricing table for {role} {provider}/{version}. Run `flightdeck pricing import ...`."
    )


def governing_policy(gateway: KubeGateway, namespace: str, agent_id: str, environment: str) -> Policy:
    """The policy of the pointer governing (agent, environment); the default without one."""
    pointers = {
        str(item["metadata"]["name"]): item
        for item in gateway.list_objects(RELEASE_POINTER.plural, namespace)
        if (item.get("spec") or {}).get("agentId") == agent_id
        and (item.get("spec") or {}).get("environment") == environment
    }
    governing = first_pointer((str(b["metadata"].get("creationTimestamp")), n) for n, b in pointers.items())
    if governing is None:
        return default_policy()
    try:
        spec = ReleasePointerSpec.model_validate(pointers[governing].get("spec") or {})
    except ValidationError:
        return default_policy()
    if spec.policy_ref is None:
        return default_policy()
    policy = gateway.find(PROMOTION_POLICY.plural, namespace, spec.policy_ref.name)
    if policy is None:
        raise InvalidAction(
            f'PromotionPolicy "{spec.policy_ref.name}" (policyRef of ReleasePointer '
            f'"{governing}") not found in namespace "{namespace}"'
        )
    return engine_policy(spec.policy_ref.name, PromotionPolicySpec.model_validate(policy.get("spec") or {}))


@dataclass(frozen=True, slots=True)
class PricedPair:
    """The two releases of a diff with the pricing tables that price them."""

    baseline: ReleaseRef
    candidate: ReleaseRef
    baseline_table: PricingTableSpec
    candidate_table: PricingTableSpec
    # Every table in the namespace, by (provider, pricingVersion): hints name other versions.
    tables: Mapping[tuple[str, str], PricingTableSpec]


def priced_pair(gateway: KubeGateway, namespace: str, baseline_id: str, candidate_id: str) -> PricedPair:
    """Both releases and their pricing tables, or the reference's message of what is missing."""
    baseline_spec = release_spec(gateway, namespace, baseline_id)
    if baseline_spec is None:
        raise InvalidAction(f"Unknown baseline release: {baseline_id}")
    candidate_spec = release_spec(gateway, namespace, candidate_id)
    if candidate_spec is None:
        raise InvalidAction(f"Unknown candidate release: {candidate_id}")
    baseline = release_ref(baseline_id, baseline_spec)
    candidate = release_ref(candidate_id, candidate_spec)
    if baseline.agent_id != candidate.agent_id:
        raise InvalidAction(
            f"Cross-agent diff is not allowed. Baseline agent_id={baseline.agent_id}, "
            f"candidate agent_id={candidate.agent_id}."
        )
    tables: dict[tuple[str, str], PricingTableSpec] = {}
    for item in sorted(
        gateway.list_objects(PRICING_TABLE.plural, namespace),
        key=lambda i: (str(i["metadata"].get("creationTimestamp")), str(i["metadata"]["name"])),
    ):
        try:
            spec = PricingTableSpec.model_validate(item.get("spec") or {})
        except ValidationError:
            continue
        tables.setdefault((spec.provider, spec.pricing_version), spec)  # the first created prices
    baseline_table = tables.get((baseline.provider, baseline.pricing_version))
    if baseline_table is None:
        raise _missing_pricing("baseline", baseline.provider, baseline.pricing_version)
    candidate_table = tables.get((candidate.provider, candidate.pricing_version))
    if candidate_table is None:
        raise _missing_pricing("candidate", candidate.provider, candidate.pricing_version)
    return PricedPair(baseline, candidate, baseline_table, candidate_table, tables)


def compute_release_diff(
    store: Store,
    gateway: KubeGateway,
    namespace: str,
    request: DiffInput,
    *,
    thresholds: ConfidenceThresholds,
    default_environment: str,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> DiffResult:
    """The reference diff of two AgentReleases over a window. Raises :class:`ActionError`."""
    try:
        return _compute_release_diff(
            store, gateway, namespace, request, thresholds, default_environment, clock()
        )
    except EvidenceError as error:
        raise InvalidAction(str(error)) from None
    except GatewayError as error:
        raise ClusterUnavailable(f"Kubernetes API unavailable: {error}") from None


def _compute_release_diff(
    store: Store,
    gateway: KubeGateway,
    namespace: str,
    request: DiffInput,
    thresholds: ConfidenceThresholds,
    default_environment: str,
    now: dt.datetime,
) -> DiffResult:
    pair = priced_pair(gateway, namespace, request.baseline_release_id, request.candidate_release_id)
    baseline, candidate, tables = pair.baseline, pair.candidate, pair.tables
    since, until = window_bounds(request.window, now)
    environment = request.environment or default_environment
    policy = governing_policy(gateway, namespace, baseline.agent_id, environment)
    sides = (baseline.release_id, candidate.release_id, environment, since, until)
    tenant_id, task_id = request.tenant_id, request.task_id
    statistics = None
    if policy.statistical_gates is None:
        baseline_evidence, candidate_evidence = store.diff_evidence(
            *sides, tenant_id=tenant_id, task_id=task_id
        )
    else:  # a one-shot diff: the statistics cover the same window
        rate_since = now - policy.statistical_gates.rate_window_duration
        baseline_evidence, candidate_evidence, statistics = store.statistics_evidence(
            *sides, statistics_since=since, rate_since=rate_since, tenant_id=tenant_id, task_id=task_id
        )

    def versions(provider: str) -> Sequence[str]:
        return sorted(version for (p, version) in tables if p == provider)

    diff = gated_diff(
        window=request.window,
        filters=DiffFilters(environment=environment, tenant_id=request.tenant_id, task_id=request.task_id),
        baseline=DiffSide(
            release=baseline,
            table=engine_pricing(pair.baseline_table),
            evidence=baseline_evidence,
            other_pricing_versions=versions(baseline.provider),
        ),
        candidate=DiffSide(
            release=candidate,
            table=engine_pricing(pair.candidate_table),
            evidence=candidate_evidence,
            other_pricing_versions=versions(candidate.provider),
        ),
        policy=policy,
        evaluated_at=now,
        thresholds=thresholds,
        statistics=statistics,
    )
    return diff.result
