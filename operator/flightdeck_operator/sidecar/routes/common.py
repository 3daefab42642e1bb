"""What every route group shares: the state, authentication as a dependency, worker threads, the
documented error responses and the answer to a decided request."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, TypeVar, Union

import anyio
from fastapi import Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer

from flightdeck_operator.actions.errors import ActionError, ClusterUnavailable
from flightdeck_operator.actions.promotions import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    ActionResult,
    Requester,
    Verdict,
    retry_after_seconds,
)
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.sidecar.auth import Access, AuthError, AuthUnavailable, Caller
from flightdeck_operator.sidecar.schemas import BlockedResponse, ErrorResponse, PendingResponse
from flightdeck_operator.sidecar.state import SidecarState

T = TypeVar("T")

INGEST_SCHEMA_NAME: Final = "IngestRequest"
REQUEST_HEADER: Final = "X-Flightdeck-Request"  # namespace/name of the PromotionRequest answered from
REPLAYED_HEADER: Final = "X-Flightdeck-Replayed"  # "true": an Idempotency-Key found an earlier request
RETRY_AFTER_HEADER: Final = "Retry-After"  # seconds until a closed promotion window opens
# Approvals carry who approved; only a TokenReview says who is calling.
APPROVAL_NEEDS_IDENTITY: Final = (
    "promote-confirm needs the caller's verified identity: the approval is recorded as theirs and "
    "checked against the requester and the policy's approvers. Run the sidecar with --auth kubernetes, "
    "or create a PromotionApproval with kubectl."
)
ENVIRONMENT_LABEL: Final = "flightdeck.dev/environment"
# Promote/rollback hold a worker thread while they wait for the operator; their own limiter keeps
# many concurrent waits from starving the threads that serve reads and ingestion.
MAX_CONCURRENT_DECISION_WAITS: Final = 64

bearer = HTTPBearer(auto_error=False, description="A Kubernetes bearer token, or the static token.")


def state_of(request: Request) -> SidecarState:
    state: SidecarState = request.app.state.sidecar
    return state


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described: dict[int, tuple[str, type[Any]]] = {
        400: ("The request cannot be carried out (reference message in detail).", ErrorResponse),
        401: ("Missing or invalid bearer token.", ErrorResponse),
        403: ("The caller's RBAC does not allow this.", ErrorResponse),
        404: ("Not found.", ErrorResponse),
        409: ("Blocked by policy: the reference body, with the full outcome.", BlockedResponse),
        410: ("The PromotionRequest was deleted before it was decided.", PendingResponse),
        413: ("Request body or batch too large.", ErrorResponse),
        503: ("The Kubernetes API or the store is unavailable.", ErrorResponse),
        504: ("No decision within the timeout; the request is named so it can be followed.", PendingResponse),
    }
    return {code: {"description": described[code][0], "model": described[code][1]} for code in codes}


async def authenticate(request: Request, access: Access) -> Caller:
    """The caller, authenticated and authorized for ``access``; HTTPException 401/403/503 if not."""
    auth = state_of(request).auth
    authorization = request.headers.get("authorization")
    try:
        caller = auth.cached(authorization, access)
        if caller is None:
            caller = await blocking(auth.check, authorization, access)
    except AuthError as error:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        raise HTTPException(error.status, error.message, headers=headers) from None
    except AuthUnavailable as error:
        raise HTTPException(503, str(error)) from None
    return caller


def require(access: Access) -> Callable[..., Awaitable[Caller]]:
    """A dependency that authenticates and authorizes the caller for ``access``."""

    async def dependency(request: Request, _credentials: Annotated[Any, Depends(bearer)]) -> Caller:
        return await authenticate(request, access)

    return dependency


ReadCaller = Annotated[Caller, Depends(require(Access.READ))]
IngestCaller = Annotated[Caller, Depends(require(Access.INGEST))]
PromoteCaller = Annotated[Caller, Depends(require(Access.PROMOTE))]
ApproveCaller = Annotated[Caller, Depends(require(Access.APPROVE))]
CreateWebhookCaller = Annotated[Caller, Depends(require(Access.CREATE_WEBHOOK))]
ListWebhooksCaller = Annotated[Caller, Depends(require(Access.LIST_WEBHOOKS))]
DeleteWebhookCaller = Annotated[Caller, Depends(require(Access.DELETE_WEBHOOK))]


def conflicts(*models: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    """A 409 with several documented body shapes (anyOf)."""
    return {409: {"description": description, "model": Union[models]}}  # noqa: UP007 (a runtime union)


def requester_of(caller: Caller) -> Requester:
    return Requester(
        identity=caller.identity,
        username=caller.username,
        uid=caller.uid,
        groups=caller.groups,
        verified=caller.verified,
    )


def gateway_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except GatewayError as error:
            raise ClusterUnavailable(f"Kubernetes API unavailable: {error}") from None

    return wrapper


STATUS_BY_VERDICT: Final = {
    Verdict.PASSED: 200,
    Verdict.BLOCKED: 409,
    Verdict.FAILED: 400,
    Verdict.CONFLICT: 409,
}


IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Retries with the same key (and body) return the first request's outcome.",
    ),
]


async def in_worker(state: SidecarState, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a call that waits for the operator in a worker thread, under the waits' own limiter."""
    if state.wait_limiter is None:  # created on first use: it needs the running event loop
        state.wait_limiter = anyio.CapacityLimiter(MAX_CONCURRENT_DECISION_WAITS)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=state.wait_limiter)


def count_error(state: SidecarState, label: str, error: ActionError) -> None:
    outcome = {504: "timeout", 410: "deleted", 409: "blocked", 403: "rejected"}.get(error.status)
    if outcome:
        state.metrics.decisions.labels(label, outcome).inc()


def decision_response(state: SidecarState, result: ActionResult, label: str) -> Response:
    """A decided request as the reference answers it: 200 outcome, 409 blocked (full outcome), 400
    failed; 409 with a message when another request holds the pointer (concurrencyPolicy Forbid)."""
    state.metrics.decisions.labels(label, result.verdict.value).inc()
    headers = {REQUEST_HEADER: f"{result.request.namespace}/{result.request.name}"}
    if not result.created:
        headers[REPLAYED_HEADER] = "true"
    status = STATUS_BY_VERDICT[result.verdict]
    if result.verdict in (Verdict.FAILED, Verdict.CONFLICT):
        return JSONResponse({"detail": result.message}, status_code=status, headers=headers)
    assert result.outcome is not None
    outcome_json = result.outcome.model_dump(mode="json")
    if result.verdict is Verdict.BLOCKED:
        retry_after = retry_after_seconds(result.next_open, state.clock())
        if retry_after is not None:
            headers[RETRY_AFTER_HEADER] = str(retry_after)
        content = {"detail": {"message": result.message, "outcome": outcome_json}}
        return JSONResponse(content, status_code=status, headers=headers)
    return JSONResponse(outcome_json, status_code=status, headers=headers)
