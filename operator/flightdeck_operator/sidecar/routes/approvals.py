"""The approval workflow: promote-request (dry run first, then a request that awaits approval) and promote-confirm (a PromotionApproval as the caller)."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from flightdeck_operator.actions.approval_workflow.confirm import ApprovalRecorded, confirm_promotion
from flightdeck_operator.actions.approval_workflow.request import PendingPromotion, request_promotion
from flightdeck_operator.actions.errors import ActionError
from flightdeck_operator.actions.promotions import ActionInput, ActionResult
from flightdeck_operator.config import AuthMode
from flightdeck_operator.engine.models import ActionOutcome, PromotionAction
from flightdeck_operator.sidecar.routes.common import (
    APPROVAL_NEEDS_IDENTITY,
    REPLAYED_HEADER,
    REQUEST_HEADER,
    ApproveCaller,
    IdempotencyHeader,
    PromoteCaller,
    conflicts,
    count_error,
    decision_response,
    in_worker,
    requester_of,
    responses,
    state_of,
)
from flightdeck_operator.sidecar.schemas import (
    ActionRequest,
    ApprovalRecordedResponse,
    BlockedResponse,
    ConfirmRequest,
    ErrorResponse,
    NotRecordedResponse,
    PromoteRequestResponse,
)

router = APIRouter()


_REQUEST_RESPONSES: Final = {
    **responses(400, 401, 403, 410, 413, 503, 504),
    **conflicts(
        NotRecordedResponse,
        BlockedResponse,
        ErrorResponse,
        description="The policy does not allow it: nothing recorded (the reference body, no outcome; "
        "Retry-After when a closed promotion window blocks it). Rarely, the request was decided at "
        "once: blocked (full outcome) or refused by concurrencyPolicy Forbid (a message).",
    ),
}


@router.post(
    "/v1/promote/request",
    response_model=PromoteRequestResponse,
    tags=["actions"],
    responses=_REQUEST_RESPONSES,
)
async def promote_request(
    request: Request,
    body: ActionRequest,
    caller: PromoteCaller,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Request a promotion that needs approval: evaluated first as a dry run (a blocked one records
    nothing: 409), then created as a PromotionRequest that awaits approval (200, ``pending``)."""
    state = state_of(request)
    label = "promote_request"
    payload = ActionInput(
        action=PromotionAction.PROMOTE,
        release_id=body.release_id,
        environment=body.environment,
        window=body.window,
        reason=body.reason,
        actor=body.actor,
    )
    try:
        result = await in_worker(
            state,
            request_promotion,
            state.gateway,
            state.namespace,
            payload,
            requester_of(caller),
            timeout=state.settings.decision_timeout_seconds,
            idempotency_key=idempotency_key,
            wait=state.decisions.wait,
        )
    except ActionError as error:
        count_error(state, label, error)
        raise
    if isinstance(result, ActionResult):
        return decision_response(state, result, label)
    state.metrics.decisions.labels(label, "pending").inc()
    return _pending_response(result)


def _pending_response(pending: PendingPromotion) -> Response:
    evaluation = pending.evaluation
    answer = PromoteRequestResponse(
        request_id=pending.request.name,
        release_id=evaluation.release_id,
        agent_id=evaluation.agent_id,
        environment=evaluation.environment,
        window=pending.window,
        baseline_release_id=evaluation.baseline_release_id,
        policy=evaluation.policy,
        created_at=pending.created_at,
    )
    headers = {REQUEST_HEADER: f"{pending.request.namespace}/{pending.request.name}"}
    if not pending.created:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(answer.model_dump(mode="json"), headers=headers)


_CONFIRM_RESPONSES: Final = {
    **responses(400, 401, 403, 410, 413, 503, 504),
    202: {
        "description": "The approval counts; the policy needs more approvals (minApprovals > 1).",
        "model": ApprovalRecordedResponse,
    },
    **conflicts(
        BlockedResponse,
        ErrorResponse,
        description="The policy blocks the promotion now: the reference body with the full outcome "
        "(the request stays pending; Retry-After when a closed promotion window blocks it); or the "
        "request's decision changed while it was being approved (a message).",
    ),
}


@router.post(
    "/v1/promote/confirm",
    response_model=ActionOutcome,
    tags=["actions"],
    responses=_CONFIRM_RESPONSES,
)
async def promote_confirm(
    request: Request,
    body: ConfirmRequest,
    caller: ApproveCaller,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Approve a pending request as the caller (a PromotionApproval the operator judges): 200 with
    the promotion's outcome, 409 when the policy blocks it now (the request stays pending), 403
    for the requester themselves or a non-approver, 400 when it is not pending."""
    state = state_of(request)
    label = "promote_confirm"
    # The local dashboard acts with its user's own kubeconfig: the API server stamps that identity.
    local = state.auth.mode is AuthMode.NONE and state.settings.local_identity
    if not caller.verified and not local:
        raise HTTPException(403, APPROVAL_NEEDS_IDENTITY)
    try:
        result = await in_worker(
            state,
            confirm_promotion,
            state.gateway,
            state.namespace,
            body.request_id,
            body.approval_reason,
            requester_of(caller),
            timeout=state.settings.decision_timeout_seconds,
            ledger_entry=state.store.ledger_entry,
            idempotency_key=idempotency_key,
            wait=state.decisions.wait,
            actor=body.actor,
        )
    except ActionError as error:
        count_error(state, label, error)
        raise
    if isinstance(result, ApprovalRecorded):
        state.metrics.decisions.labels(label, "pending").inc()
        answer = ApprovalRecordedResponse(
            request_id=result.request.name,
            approval=result.approval.name,
            approved_by=list(result.approved_by),
            required=result.required,
            message=result.message,
        )
        headers = {REQUEST_HEADER: f"{result.request.namespace}/{result.request.name}"}
        return JSONResponse(answer.model_dump(mode="json"), status_code=202, headers=headers)
    return decision_response(state, result, label)
