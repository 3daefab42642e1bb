"""``POST/GET/DELETE /v1/webhooks``: the reference's webhook API over NotificationSubscriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from flightdeck_operator.actions.webhooks import (
    WebhookCreate,
    WebhookDeleted,
    WebhookList,
    WebhookPublic,
    create_webhook,
    delete_webhook,
    list_webhooks,
)
from flightdeck_operator.sidecar.routes.common import (
    CreateWebhookCaller,
    DeleteWebhookCaller,
    ListWebhooksCaller,
    blocking,
    responses,
    state_of,
)

router = APIRouter()


@router.post(
    "/v1/webhooks",
    response_model=WebhookPublic,
    response_model_exclude_none=False,
    tags=["webhooks"],
    responses=responses(400, 401, 403, 503),
)
async def post_webhook(request: Request, body: WebhookCreate, caller: CreateWebhookCaller) -> WebhookPublic:
    """Create a webhook: a NotificationSubscription and the Secret holding its generated signing
    key. The answer is the only time the secret is shown."""
    state = state_of(request)
    return await blocking(create_webhook, state.gateway, state.namespace, body, requested_by=caller.username)


@router.get("/v1/webhooks", response_model=WebhookList, tags=["webhooks"], responses=responses(401, 403, 503))
async def get_webhooks(request: Request, _: ListWebhooksCaller) -> WebhookList:
    """Every NotificationSubscription of the namespace, secrets redacted to a preview."""
    state = state_of(request)
    return await blocking(list_webhooks, state.gateway, state.namespace)


@router.delete(
    "/v1/webhooks/{webhook_id}",
    response_model=WebhookDeleted,
    tags=["webhooks"],
    responses=responses(401, 403, 404, 503),
)
async def remove_webhook(
    request: Request, webhook_id: Annotated[str, Path(min_length=1)], _: DeleteWebhookCaller
) -> WebhookDeleted:
    """Delete a webhook (its subscription; the Secret is garbage-collected with it)."""
    state = state_of(request)
    if not await blocking(delete_webhook, state.gateway, state.namespace, webhook_id):
        raise HTTPException(404, f"Unknown webhook: {webhook_id}")
    return WebhookDeleted(webhook_id=webhook_id)
