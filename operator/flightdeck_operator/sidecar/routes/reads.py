"""Reads: releases, live pointers, the ledger's actions, PromotionRequests, the workspace and the diff."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from flightdeck_operator import __version__
from flightdeck_operator.actions.approval_workflow.listing import (
    REQUEST_STATUSES,
    list_requests,
    requires_approval,
)
from flightdeck_operator.actions.diff import DiffInput, compute_release_diff
from flightdeck_operator.actions.promotions import (
    REQUESTED_BY_ANNOTATION,
    ActionResult,
    is_decided,
    result_from_request,
)
from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    AgentReleaseSpec,
    ReleasePointerSpec,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import DiffResult
from flightdeck_operator.sidecar.routes.common import (
    ENVIRONMENT_LABEL,
    STATUS_BY_VERDICT,
    ReadCaller,
    blocking,
    gateway_errors,
    responses,
    state_of,
)
from flightdeck_operator.sidecar.schemas import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    ActionItem,
    ActionsResponse,
    DiffRequest,
    PromotedItem,
    PromotedResponse,
    PromotionRequestItem,
    PromotionRequestsResponse,
    PromotionRequestView,
    ReleaseItem,
    ReleasesResponse,
    WorkspaceResponse,
)
from flightdeck_operator.sidecar.state import SidecarState

router = APIRouter()


@gateway_errors
def list_release_items(state: SidecarState) -> ReleasesResponse:
    items: list[ReleaseItem] = []
    for body in state.gateway.list_objects(AGENT_RELEASE.plural, state.namespace):
        metadata = body["metadata"]
        try:
            spec = AgentReleaseSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue  # not a release the operator could use either
        labels = metadata.get("labels") or {}
        items.append(
            ReleaseItem(
                release_id=metadata["name"],
                agent_id=spec.agent_id,
                version=spec.version,
                environment=labels.get(ENVIRONMENT_LABEL) or spec.tags.get("environment"),
                checksum=spec.checksum,
                created_at=metadata.get("creationTimestamp"),
            )
        )
    items.sort(key=lambda r: (r.created_at.isoformat() if r.created_at else "", r.release_id), reverse=True)
    return ReleasesResponse(releases=items)


@router.get(
    "/v1/releases", response_model=ReleasesResponse, tags=["reads"], responses=responses(401, 403, 503)
)
async def list_releases(request: Request, _: ReadCaller) -> ReleasesResponse:
    """AgentReleases in the sidecar's namespace, newest first."""
    return await blocking(list_release_items, state_of(request))


@gateway_errors
def _list_promoted(state: SidecarState) -> PromotedResponse:
    items: list[PromotedItem] = []
    for body in state.gateway.list_objects(RELEASE_POINTER.plural, state.namespace):
        release_id = (body.get("status") or {}).get("releaseId")
        if not release_id:
            continue
        try:
            spec = ReleasePointerSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue
        items.append(
            PromotedItem(
                agent_id=spec.agent_id,
                environment=spec.environment,
                release_id=release_id,
                pointer=body["metadata"]["name"],
            )
        )
    items.sort(key=lambda p: (p.agent_id, p.environment, p.pointer))
    return PromotedResponse(promoted=items)


@router.get(
    "/v1/promoted", response_model=PromotedResponse, tags=["reads"], responses=responses(401, 403, 503)
)
async def list_promoted(request: Request, _: ReadCaller) -> PromotedResponse:
    """Live release per (agent, environment), from ReleasePointer statuses (the ledger's projection)."""
    return await blocking(_list_promoted, state_of(request))


def _action_item(entry: LedgerEntry) -> ActionItem:
    policy = entry.policy_result
    details = entry.details or {}
    return ActionItem(
        action_id=str(details.get("action_id") or f"seq_{entry.seq}"),
        action="promote" if entry.kind is LedgerKind.PROMOTE else "rollback",
        release_id=entry.release_id,
        agent_id=entry.agent_id,
        environment=entry.environment,
        baseline_release_id=entry.baseline_release_id,
        reason=entry.reason,
        policy_passed=bool(policy and policy.passed),
        policy_reasons=list(policy.reasons) if policy else [],
        created_at=entry.created_at,
        audit_seq=entry.seq,
        actor=entry.actor,
        ledger_seq=entry.seq,
        ledger_hash=entry.hash,
        pointer=entry.pointer,
    )


@router.get("/v1/actions", response_model=ActionsResponse, tags=["reads"], responses=responses(401, 403, 503))
async def list_actions(
    request: Request,
    _: ReadCaller,
    agent: Annotated[str | None, Query(description="Filter by agent_id.")] = None,
    env: Annotated[str | None, Query(description="Filter by environment.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
) -> ActionsResponse:
    """Promote and rollback decisions from the ledger, newest first (blocked ones included)."""
    state = state_of(request)
    entries = await blocking(
        state.store.list_ledger,
        namespace=state.namespace,
        agent_id=agent,
        environment=env,
        kinds=(LedgerKind.PROMOTE, LedgerKind.ROLLBACK),
        limit=limit,
    )
    return ActionsResponse(actions=[_action_item(entry) for entry in entries])


@gateway_errors
def _request_view(state: SidecarState, name: str) -> PromotionRequestView | None:
    body = state.gateway.find(PROMOTION_REQUEST.plural, state.namespace, name)
    if body is None:
        return None
    metadata = body["metadata"]
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    result: ActionResult | None = result_from_request(body) if is_decided(body) else None
    return PromotionRequestView(
        name=metadata["name"],
        namespace=metadata["namespace"],
        uid=metadata.get("uid"),
        action=spec.get("action") or "promote",
        release_id=spec.get("release"),
        pointer=spec.get("pointer") or "",
        window=spec.get("window") or "",
        reason=spec.get("reason") or "",
        actor=spec.get("actor"),
        requested_by=(metadata.get("annotations") or {}).get(REQUESTED_BY_ANNOTATION),
        created_at=metadata.get("creationTimestamp"),
        phase=status.get("phase"),
        decided=result is not None,
        http_status=None if result is None else STATUS_BY_VERDICT[result.verdict],
        message=(result.message if result is not None else status.get("message")),
        outcome=None if result is None else result.outcome,
    )


@router.get(
    "/v1/promotion-requests/{name}",
    response_model=PromotionRequestView,
    tags=["reads"],
    responses=responses(401, 403, 404, 503),
)
async def get_promotion_request(
    request: Request,
    name: Annotated[str, Path(min_length=1, max_length=253)],
    _: ReadCaller,
) -> PromotionRequestView:
    """One PromotionRequest (e.g. the one a 504 named) and, once decided, its outcome."""
    state = state_of(request)
    view = await blocking(_request_view, state, name)
    if view is None:
        raise HTTPException(404, f'PromotionRequest "{name}" not found in namespace "{state.namespace}"')
    return view


@router.post(
    "/v1/diff", response_model=DiffResult, tags=["evaluation"], responses=responses(400, 401, 403, 413, 503)
)
async def diff(request: Request, body: DiffRequest, _: ReadCaller) -> Any:
    """The reference diff of two releases over a window, with the pointer's policy (or the default)."""
    state = state_of(request)
    result = await blocking(
        compute_release_diff,
        state.store,
        state.gateway,
        state.namespace,
        DiffInput.model_validate(body.model_dump()),
        thresholds=state.thresholds,
        default_environment=state.settings.default_environment,
        clock=state.clock,
    )
    return JSONResponse(result.model_dump(mode="json"))


@router.get(
    "/v1/workspace", response_model=WorkspaceResponse, tags=["reads"], responses=responses(401, 403, 503)
)
async def workspace(request: Request, _: ReadCaller) -> WorkspaceResponse:
    """The reference's workspace flags: promotion_requires_approval is true when any PromotionPolicy
    in the namespace requires approval."""
    state = state_of(request)
    gated = await blocking(gateway_errors(requires_approval), state.gateway, state.namespace)
    return WorkspaceResponse(
        promotion_requires_approval=gated, pricing_catalog_configured=False, server_version=__version__
    )


@router.get(
    "/v1/promotion-requests",
    response_model=PromotionRequestsResponse,
    tags=["reads"],
    responses=responses(401, 403, 503),
)
async def list_promotion_requests(
    request: Request,
    _: ReadCaller,
    status: Annotated[
        str | None, Query(description=f"One of {', '.join(REQUEST_STATUSES)}; others match nothing.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
) -> PromotionRequestsResponse:
    """PromotionRequests that went through approval, newest first: pending (awaiting approval),
    completed (promoted) or cancelled (superseded, blocked or failed)."""
    state = state_of(request)
    summaries = await blocking(
        gateway_errors(list_requests), state.gateway, state.namespace, status=status, limit=limit
    )
    return PromotionRequestsResponse(
        requests=[PromotionRequestItem.model_validate(summary, from_attributes=True) for summary in summaries]
    )
