"""The reference's list of promotion requests (those that went through approval) and the workspace flag."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from flightdeck_operator.actions.approval_workflow.common import parse_timestamp, phase_of
from flightdeck_operator.actions.approval_workflow.request import request_evaluation
from flightdeck_operator.api.conditions import ConditionType, Phase, find_condition
from flightdeck_operator.api.v1alpha1 import (
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    PromotionPolicySpec,
)
from flightdeck_operator.engine.models import (
    PolicyResult,
)
from flightdeck_operator.kube.gateway import KubeGateway

# --- list -------------------------------------------------------------------------------------------

REQUEST_STATUSES: Final = ("pending", "completed", "cancelled")
_CANCELLED_PHASES: Final = frozenset({Phase.SUPERSEDED.value, Phase.BLOCKED.value, Phase.FAILED.value})


def list_status(phase: str) -> str:
    """The reference's request status for a phase: completed (promoted), cancelled (superseded,
    blocked or failed: the reference's unreachable "cancelled"), else pending."""
    if phase == Phase.PROMOTED.value:
        return "completed"
    if phase in _CANCELLED_PHASES:
        return "cancelled"
    return "pending"


def went_through_approval(body: Mapping[str, Any]) -> bool:
    status = body.get("status") or {}
    return bool(status.get("approval")) or bool((status.get("decision") or {}).get("approvals"))


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One item of ``GET /v1/promotion-requests`` (the reference's fields)."""

    request_id: str
    status: str
    release_id: str | None
    agent_id: str | None
    environment: str | None
    window: str
    reason: str
    actor: str | None
    baseline_release_id: str | None
    policy: PolicyResult | None
    created_at: dt.datetime | None
    resolved_at: dt.datetime | None
    completed_action_id: str | None


def request_summary(
    body: Mapping[str, Any], pointers: Mapping[str, tuple[str, str]]
) -> RequestSummary | None:
    """The list item of a request that went through approval (None: any other request).
    ``pointers``: pointer name -> (agentId, environment), for requests not decided yet."""
    if not went_through_approval(body):
        return None
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    decision = status.get("decision") or {}
    phase = phase_of(body)
    evaluation = request_evaluation(body)
    agent_id, environment = pointers.get(str(spec.get("pointer") or ""), (None, None))
    policy: PolicyResult | None = evaluation.policy if evaluation is not None else None
    if policy is None and decision.get("policy"):
        raw = decision["policy"]
        policy = PolicyResult(
            passed=bool(raw.get("passed")),
            reasons=tuple(raw.get("reasons") or ()),
            evaluated_at=raw["evaluatedAt"],
        )
    listed = list_status(phase)
    resolved: dt.datetime | None = None
    if listed != "pending":
        decided = find_condition(status.get("conditions") or (), ConditionType.DECIDED) or {}
        resolved = parse_timestamp(decision.get("decidedAt") or decided.get("lastTransitionTime"))
    return RequestSummary(
        request_id=str(metadata.get("name") or ""),
        status=listed,
        release_id=decision.get("releaseId") or spec.get("release"),
        agent_id=decision.get("agentId") or (evaluation.agent_id if evaluation else None) or agent_id,
        environment=decision.get("environment")
        or (evaluation.environment if evaluation else None)
        or environment,
        window=str(spec.get("window") or ""),
        reason=str(spec.get("reason") or ""),
        actor=spec.get("actor"),
        baseline_release_id=(
            evaluation.baseline_release_id if evaluation is not None else decision.get("pointerBefore")
        ),
        policy=policy,
        created_at=parse_timestamp(metadata.get("creationTimestamp")),
        resolved_at=resolved,
        completed_action_id=str(decision.get("actionId"))
        if listed == "completed" and decision.get("actionId")
        else None,
    )


def summarize_requests(
    bodies: Iterable[Mapping[str, Any]],
    pointers: Mapping[str, tuple[str, str]],
    *,
    status: str | None,
    limit: int,
) -> list[RequestSummary]:
    """Requests that went through approval, newest first, optionally of one status (an unknown
    status matches nothing, as in the reference)."""
    summaries = [s for s in (request_summary(b, pointers) for b in bodies) if s is not None]
    if status is not None:
        summaries = [s for s in summaries if s.status == status]
    summaries.sort(
        key=lambda s: (s.created_at or dt.datetime.min.replace(tzinfo=dt.UTC), s.request_id), reverse=True
    )
    return summaries[:limit]


def list_requests(
    gateway: KubeGateway, namespace: str, *, status: str | None, limit: int
) -> list[RequestSummary]:
    pointers = {
        str(p["metadata"]["name"]): (
            str((p.get("spec") or {}).get("agentId") or ""),
            str((p.get("spec") or {}).get("environment") or ""),
        )
        for p in gateway.list_objects(RELEASE_POINTER.plural, namespace, cached=True)
    }
    bodies = gateway.list_objects(PROMOTION_REQUEST.plural, namespace)
    return summarize_requests(bodies, pointers, status=status, limit=limit)


def requires_approval(gateway: KubeGateway, namespace: str) -> bool:
    """Whether any PromotionPolicy in the namespace requires approval (the reference's workspace
    flag; here it is per policy, so this says whether the workflow is in use at all)."""
    for body in gateway.list_objects(PROMOTION_POLICY.plural, namespace):
        try:
            if PromotionPolicySpec.model_validate(body.get("spec") or {}).approval is not None:
                return True
        except ValidationError:
            continue
    return False
