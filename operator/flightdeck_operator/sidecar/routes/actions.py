"""Promote and rollback: create a PromotionRequest, wait for the operator, answer from its status."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flightdeck_operator.actions.errors import ActionError
from flightdeck_operator.actions.promotions import ActionInput, run_action
from flightdeck_operator.engine.models import ActionOutcome, PromotionAction
from flightdeck_operator.sidecar.auth import Caller
from flightdeck_operator.sidecar.routes.common import (
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
from flightdeck_operator.sidecar.schemas import ActionRequest, BlockedResponse, ErrorResponse

router = APIRouter()


_ACTION_RESPONSES: Final = {
    **responses(400, 401, 403, 410, 413, 503, 504),
    **conflicts(
        BlockedResponse,
        ErrorResponse,
        description="Blocked by policy (the reference body, with the full outcome; Retry-After when a "
        "closed promotion window blocked it), or another request for the pointer is undecided "
        "(concurrencyPolicy Forbid: a message).",
    ),
}


async def _act(
    request: Request, action: PromotionAction, body: ActionRequest, caller: Caller, key: str | None
) -> Response:
    state = state_of(request)
    payload = ActionInput(
        action=action,
        release_id=body.release_id,
        environment=body.environment,
        window=body.window,
        reason=body.reason,
        actor=body.actor,
    )
    try:
        result = await in_worker(
            state,
            run_action,
            state.gateway,
            state.namespace,
            payload,
            requester_of(caller),
            timeout=state.settings.decision_timeout_seconds,
            idempotency_key=key,
            wait=state.decisions.wait,
            decisions=state.store.decision_for_name,
        )
    except ActionError as error:
        if error.status in (504, 410):
            count_error(state, action.value, error)
        raise
    return decision_response(state, result, action.value)


@router.post("/v1/promote", response_model=ActionOutcome, tags=["actions"], responses=_ACTION_RESPONSES)
async def promote(
    request: Request,
    body: ActionRequest,
    caller: PromoteCaller,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Create a PromotionRequest, wait for the operator's decision and answer from its status:
    200 promoted, 409 blocked (the reference body), 400 failed, 504 not decided in time. 400 when
    the pointer's policy requires approval (use /v1/promote/request)."""
    return await _act(request, PromotionAction.PROMOTE, body, caller, idempotency_key)


@router.post("/v1/rollback", response_model=ActionOutcome, tags=["actions"], responses=_ACTION_RESPONSES)
async def rollback(
    request: Request,
    body: ActionRequest,
    caller: PromoteCaller,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """As promote, with ``action: rollback`` (409 message ``Rollback blocked by policy.``)."""
    return await _act(request, PromotionAction.ROLLBACK, body, caller, idempotency_key)
