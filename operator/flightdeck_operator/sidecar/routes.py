"""The sidecar's routes: reference paths, fields, status codes and error shapes.

Promote and rollback answer only from the PromotionRequest's status (``promotions``); the approval
workflow (promote-request, promote-confirm, the request list) from PromotionRequests,
PromotionApprovals and the ledger (``approval_workflow``); reads come
from the API server (releases, pointers, requests) or the ledger (actions); ingestion and diff use
the store. Auth is a dependency per route (``require``), run before the body is looked at.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar, Union, cast

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from flightdeck_operator import __version__
from flightdeck_operator.actions.approval_workflow import (
    REQUEST_STATUSES,
    ApprovalRecorded,
    PendingPromotion,
    confirm_promotion,
    list_requests,
    request_promotion,
    requires_approval,
)
from flightdeck_operator.actions.promotions import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    REQUESTED_BY_ANNOTATION,
    ActionError,
    ActionInput,
    ActionResult,
    ClusterUnavailable,
    DiffInput,
    InvalidAction,
    Requester,
    Verdict,
    compute_release_diff,
    is_decided,
    result_from_request,
    retry_after_seconds,
    run_action,
)
from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    AgentReleaseSpec,
    ReleasePointerSpec,
)
from flightdeck_operator.config import AuthMode
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind
from flightdeck_operator.engine.models import (
    ActionOutcome,
    DiffResult,
    InvalidEventsError,
    PromotionAction,
    RunEventData,
    validate_events,
)
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.sidecar.auth import Access, AuthError, AuthUnavailable, Caller
from flightdeck_operator.sidecar.schemas import (
    DEFAULT_LIST_LIMIT,
    INGEST_BATCH,
    MAX_LIST_LIMIT,
    ActionItem,
    ActionRequest,
    ActionsResponse,
    ApprovalRecordedResponse,
    BlockedResponse,
    ConfirmRequest,
    DiffRequest,
    ErrorResponse,
    HealthResponse,
    IngestResponse,
    IngestShape,
    NotRecordedResponse,
    PendingResponse,
    ProbeResponse,
    PromotedItem,
    PromotedResponse,
    PromoteRequestResponse,
    PromotionRequestItem,
    PromotionRequestsResponse,
    PromotionRequestView,
    ReleaseItem,
    ReleasesResponse,
    WorkspaceResponse,
)

if TYPE_CHECKING:
    from flightdeck_operator.sidecar.app import SidecarState

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

router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="A Kubernetes bearer token, or the static token.")
_fast_batch = INGEST_BATCH.validate_json


def _state(request: Request) -> SidecarState:
    state: SidecarState = request.app.state.sidecar
    return state


async def _blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
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


def require(access: Access) -> Callable[..., Awaitable[Caller]]:
    """A dependency that authenticates and authorizes the caller for ``access``."""

    async def dependency(request: Request, _credentials: Annotated[Any, Depends(_bearer)]) -> Caller:
        auth = _state(request).auth
        authorization = request.headers.get("authorization")
        try:
            caller = auth.cached(authorization, access)
            if caller is None:
                caller = await _blocking(auth.check, authorization, access)
        except AuthError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
            raise HTTPException(error.status, error.message, headers=headers) from None
        except AuthUnavailable as error:
            raise HTTPException(503, str(error)) from None
        return caller

    return dependency


ReadCaller = Annotated[Caller, Depends(require(Access.READ))]
IngestCaller = Annotated[Caller, Depends(require(Access.INGEST))]
PromoteCaller = Annotated[Caller, Depends(require(Access.PROMOTE))]
ApproveCaller = Annotated[Caller, Depends(require(Access.APPROVE))]


def _conflicts(*models: type[Any], description: str) -> dict[int | str, dict[str, Any]]:
    """A 409 with several documented body shapes (anyOf)."""
    return {409: {"description": description, "model": Union[models]}}  # noqa: UP007 (a runtime union)


def _requester(caller: Caller) -> Requester:
    return Requester(
        identity=caller.identity,
        username=caller.username,
        uid=caller.uid,
        groups=caller.groups,
        verified=caller.verified,
    )


# --- health and probes ------------------------------------------------------------------------------


@router.get("/health", response_model=HealthResponse, tags=["health"])
async def health(request: Request) -> HealthResponse:
    """The reference's health document, saying which auth the server enforces."""
    mode = _state(request).auth.mode
    open_ = mode is AuthMode.NONE
    return HealthResponse(
        mutation_auth="loopback" if open_ else "bearer",
        read_auth="open" if open_ else "bearer",
        auth_mode=mode.value,
    )


@router.get("/healthz", response_model=ProbeResponse, tags=["health"])
async def healthz() -> ProbeResponse:
    """Liveness: the process serves HTTP."""
    return ProbeResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ProbeResponse,
    tags=["health"],
    responses={
        503: {"description": "The store or the Kubernetes API is unreachable.", "model": ProbeResponse}
    },
)
async def readyz(request: Request) -> Any:
    """Readiness: the store answers and the Kubernetes API is reachable."""
    state = _state(request)
    checks: dict[str, str] = {}
    ready = True
    try:
        versions = await _blocking(state.store.applied_migrations)
        checks["store"] = f"ok ({state.store.backend}, schema {max(versions, default=0)})"
    except Exception as error:  # any store failure means not ready
        checks["store"] = f"unavailable: {error}"
        ready = False
    try:
        checks["kubernetes"] = f"ok ({await _blocking(state.gateway.ping)})"
    except Exception as error:  # any API failure means not ready
        checks["kubernetes"] = f"unavailable: {error}"
        ready = False
    body = ProbeResponse(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics."}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text format: decisions by outcome, HTTP latency per route, events ingested."""
    return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


# --- reads ------------------------------------------------------------------------------------------


def _gateway_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except GatewayError as error:
            raise ClusterUnavailable(f"Kubernetes API unavailable: {error}") from None

    return wrapper


@_gateway_errors
def _list_releases(state: SidecarState) -> ReleasesResponse:
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
    "/v1/releases", response_model=ReleasesResponse, tags=["reads"], responses=_responses(401, 403, 503)
)
async def list_releases(request: Request, _: ReadCaller) -> ReleasesResponse:
    """AgentReleases in the sidecar's namespace, newest first."""
    return await _blocking(_list_releases, _state(request))


@_gateway_errors
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
    "/v1/promoted", response_model=PromotedResponse, tags=["reads"], responses=_responses(401, 403, 503)
)
async def list_promoted(request: Request, _: ReadCaller) -> PromotedResponse:
    """Live release per (agent, environment), from ReleasePointer statuses (the ledger's projection)."""
    return await _blocking(_list_promoted, _state(request))


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


@router.get(
    "/v1/actions", response_model=ActionsResponse, tags=["reads"], responses=_responses(401, 403, 503)
)
async def list_actions(
    request: Request,
    _: ReadCaller,
    agent: Annotated[str | None, Query(description="Filter by agent_id.")] = None,
    env: Annotated[str | None, Query(description="Filter by environment.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
) -> ActionsResponse:
    """Promote and rollback decisions from the ledger, newest first (blocked ones included)."""
    state = _state(request)
    entries = await _blocking(
        state.store.list_ledger,
        namespace=state.namespace,
        agent_id=agent,
        environment=env,
        kinds=(LedgerKind.PROMOTE, LedgerKind.ROLLBACK),
        limit=limit,
    )
    return ActionsResponse(actions=[_action_item(entry) for entry in entries])


_STATUS_BY_VERDICT: Final = {
    Verdict.PASSED: 200,
    Verdict.BLOCKED: 409,
    Verdict.FAILED: 400,
    Verdict.CONFLICT: 409,
}


@_gateway_errors
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
        http_status=None if result is None else _STATUS_BY_VERDICT[result.verdict],
        message=(result.message if result is not None else status.get("message")),
        outcome=None if result is None else result.outcome,
    )


@router.get(
    "/v1/promotion-requests/{name}",
    response_model=PromotionRequestView,
    tags=["reads"],
    responses=_responses(401, 403, 404, 503),
)
async def get_promotion_request(
    request: Request,
    name: Annotated[str, Path(min_length=1, max_length=253)],
    _: ReadCaller,
) -> PromotionRequestView:
    """One PromotionRequest (e.g. the one a 504 named) and, once decided, its outcome."""
    state = _state(request)
    view = await _blocking(_request_view, state, name)
    if view is None:
        raise HTTPException(404, f'PromotionRequest "{name}" not found in namespace "{state.namespace}"')
    return view


# --- ingestion --------------------------------------------------------------------------------------


class TooManyEvents(ActionError):
    status = 413


def _validation_error(error: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
    )


def _parse_events(state: SidecarState, body: bytes) -> list[RunEventData]:
    """Validate a batch. Fast path: the whole body in one pass (pydantic-core, from bytes, to plain
    data). If that fails, redo it the reference's way for the exact error: JSON, shape (422), then
    each item in order (api_version first, then the schema: 400)."""
    limit = state.settings.max_events_per_batch
    try:
        events = _fast_batch(body)["events"]
    except ValidationError:
        try:
            raw = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            position = getattr(error, "pos", 0)
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", position),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": getattr(error, "msg", str(error))},
                    }
                ]
            ) from None
        try:
            shape = IngestShape.model_validate(raw)
        except ValidationError as error:
            raise _validation_error(error) from None
        if len(shape.events) > limit:
            raise _too_many(len(shape.events), limit) from None
        try:
            valid = validate_events(shape.events)
        except InvalidEventsError as error:
            raise InvalidAction(str(error)) from None
        # Not reached while the plain-data schema mirrors the models (tested); kept as a safety net.
        events = [cast("RunEventData", event.model_dump()) for event in valid]
    if len(events) > limit:
        raise _too_many(len(events), limit)
    return events


def _too_many(count: int, limit: int) -> TooManyEvents:
    return TooManyEvents(
        f"Too many events in one batch: {count} (at most {limit} per request); split the batch."
    )


def _ingest(state: SidecarState, body: bytes) -> int:
    try:
        events = _parse_events(state, body)
    except (ActionError, RequestValidationError) as error:
        reason = "too_large" if isinstance(error, TooManyEvents) else "invalid"
        state.metrics.batches_rejected.labels(reason).inc()
        raise
    inserted = state.store.insert_event_data(events)
    state.metrics.events_received.inc(len(events))
    state.metrics.events_ingested.inc(inserted)
    return inserted


@router.post(
    "/v1/events",
    response_model=IngestResponse,
    tags=["ingestion"],
    responses={
        **_responses(400, 401, 403, 413, 503),
        422: {
            "description": "Not a non-empty list of objects under `events`.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{INGEST_SCHEMA_NAME}"}}
            },
        }
    },
)
async def ingest_events(request: Request, _: IngestCaller) -> Any:
    """Store run events: all or nothing per batch, duplicates of a known ``run_id`` skipped."""
    state = _state(request)
    body = await request.body()
    inserted = await _blocking(_ingest, state, body)
    return JSONResponse({"inserted": inserted})


# --- diff -------------------------------------------------------------------------------------------


@router.post(
    "/v1/diff", response_model=DiffResult, tags=["evaluation"], responses=_responses(400, 401, 403, 413, 503)
)
async def diff(request: Request, body: DiffRequest, _: ReadCaller) -> Any:
    """The reference diff of two releases over a window, with the pointer's policy (or the default)."""
    state = _state(request)
    result = await _blocking(
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


# --- promote and rollback ---------------------------------------------------------------------------

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
_ACTION_RESPONSES: Final = {
    **_responses(400, 401, 403, 410, 413, 503, 504),
    **_conflicts(
        BlockedResponse,
        ErrorResponse,
        description="Blocked by policy (the reference body, with the full outcome; Retry-After when a "
        "closed promotion window blocked it), or another request for the pointer is undecided "
        "(concurrencyPolicy Forbid: a message).",
    ),
}


async def _in_worker(state: SidecarState, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a call that waits for the operator in a worker thread, under the waits' own limiter."""
    if state.wait_limiter is None:  # created on first use: it needs the running event loop
        state.wait_limiter = anyio.CapacityLimiter(MAX_CONCURRENT_DECISION_WAITS)
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=state.wait_limiter)


def _count_error(state: SidecarState, label: str, error: ActionError) -> None:
    outcome = {504: "timeout", 410: "deleted", 409: "blocked", 403: "rejected"}.get(error.status)
    if outcome:
        state.metrics.decisions.labels(label, outcome).inc()


def _decision_response(state: SidecarState, result: ActionResult, label: str) -> Response:
    """A decided request as the reference answers it: 200 outcome, 409 blocked (full outcome), 400
    failed; 409 with a message when another request holds the pointer (concurrencyPolicy Forbid)."""
    state.metrics.decisions.labels(label, result.verdict.value).inc()
    headers = {REQUEST_HEADER: f"{result.request.namespace}/{result.request.name}"}
    if not result.created:
        headers[REPLAYED_HEADER] = "true"
    status = _STATUS_BY_VERDICT[result.verdict]
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


async def _act(
    request: Request, action: PromotionAction, body: ActionRequest, caller: Caller, key: str | None
) -> Response:
    state = _state(request)
    payload = ActionInput(
        action=action,
        release_id=body.release_id,
        environment=body.environment,
        window=body.window,
        reason=body.reason,
        actor=body.actor,
    )
    try:
        result = await _in_worker(
            state,
            run_action,
            state.gateway,
            state.namespace,
            payload,
            _requester(caller),
            timeout=state.settings.decision_timeout_seconds,
            idempotency_key=key,
            wait=state.decisions.wait,
        )
    except ActionError as error:
        if error.status in (504, 410):
            _count_error(state, action.value, error)
        raise
    return _decision_response(state, result, action.value)


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


# --- the approval workflow (promote-request, promote-confirm) ---------------------------------------

_REQUEST_RESPONSES: Final = {
    **_responses(400, 401, 403, 410, 413, 503, 504),
    **_conflicts(
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
    state = _state(request)
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
        result = await _in_worker(
            state,
            request_promotion,
            state.gateway,
            state.namespace,
            payload,
            _requester(caller),
            timeout=state.settings.decision_timeout_seconds,
            idempotency_key=idempotency_key,
            wait=state.decisions.wait,
        )
    except ActionError as error:
        _count_error(state, label, error)
        raise
    if isinstance(result, ActionResult):
        return _decision_response(state, result, label)
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
    **_responses(400, 401, 403, 410, 413, 503, 504),
    202: {
        "description": "The approval counts; the policy needs more approvals (minApprovals > 1).",
        "model": ApprovalRecordedResponse,
    },
    **_conflicts(
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
    state = _state(request)
    label = "promote_confirm"
    if not caller.verified:
        raise HTTPException(403, APPROVAL_NEEDS_IDENTITY)
    try:
        result = await _in_worker(
            state,
            confirm_promotion,
            state.gateway,
            state.namespace,
            body.request_id,
            body.approval_reason,
            _requester(caller),
            timeout=state.settings.decision_timeout_seconds,
            ledger_entry=state.store.ledger_entry,
            idempotency_key=idempotency_key,
            wait=state.decisions.wait,
            actor=body.actor,
        )
    except ActionError as error:
        _count_error(state, label, error)
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
    return _decision_response(state, result, label)


# --- workspace and the list of requests -------------------------------------------------------------


@router.get(
    "/v1/workspace", response_model=WorkspaceResponse, tags=["reads"], responses=_responses(401, 403, 503)
)
async def workspace(request: Request, _: ReadCaller) -> WorkspaceResponse:
    """The reference's workspace flags: promotion_requires_approval is true when any PromotionPolicy
    in the namespace requires approval."""
    state = _state(request)
    gated = await _blocking(_gateway_errors(requires_approval), state.gateway, state.namespace)
    return WorkspaceResponse(
        promotion_requires_approval=gated, pricing_catalog_configured=False, server_version=__version__
    )


@router.get(
    "/v1/promotion-requests",
    response_model=PromotionRequestsResponse,
    tags=["reads"],
    responses=_responses(401, 403, 503),
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
    state = _state(request)
    summaries = await _blocking(
        _gateway_errors(list_requests), state.gateway, state.namespace, status=status, limit=limit
    )
    return PromotionRequestsResponse(
        requests=[PromotionRequestItem.model_validate(summary, from_attributes=True) for summary in summaries]
    )
