"""Run forensics: ``GET /v1/runs`` (a page, newest first) and ``GET /v1/runs/export`` (NDJSON,
streamed from one snapshot)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, JsonValue
from starlette.background import BackgroundTask

from flightdeck_operator.actions.runs import (
    DEFAULT_EXPORT_LIMIT,
    DEFAULT_LIST_LIMIT,
    MATCHED_TOTAL_HEADER,
    MAX_EXPORT_LIMIT,
    MAX_LIST_LIMIT,
    MAX_OFFSET,
    NDJSON,
    OFFSET_HEADER,
    RETURNED_HEADER,
    TRUNCATED_HEADER,
    RunsQuery,
    list_runs_json,
    open_export,
    resolve_filters,
)
from flightdeck_operator.sidecar.routes.common import ReadCaller, blocking, responses, state_of
from flightdeck_operator.sidecar.state import SidecarState
from flightdeck_operator.store import RunFilters

router = APIRouter()


class RunFiltersView(BaseModel):
    model_config = ConfigDict(frozen=True)

    environment: str
    tenant_id: str | None
    task_id: str | None
    trace_id: str | None
    session_id: str | None
    span_id: str | None


class RunsResponse(BaseModel):
    """The reference's ``GET /v1/runs`` body (``events``: RunEvent JSON as ingested, defaults filled)."""

    model_config = ConfigDict(frozen=True)

    release_id: str
    since: str
    until: str
    filters: RunFiltersView
    offset: int
    limit: int
    matched_total: int
    returned: int
    truncated: bool
    events: list[dict[str, JsonValue]]


ReleaseId = Annotated[str, Query(min_length=1, description="AgentRelease name in the sidecar's namespace.")]
WindowQuery = Annotated[str, Query(min_length=1, description="Window ending now: 7d, 24h, 30m.")]
Text = Annotated[str | None, Query()]
RequestId = Annotated[
    str | None, Query(description="Exact match on request.<id> (stripped; empty: no filter).")
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


@router.get(
    "/v1/runs",
    response_model=RunsResponse,
    tags=["forensics"],
    responses=responses(400, 401, 403, 503),
)
async def list_runs(
    request: Request,
    _: ReadCaller,
    release_id: ReleaseId,
    window: WindowQuery,
    environment: Text = None,
    tenant_id: Text = None,
    task_id: Text = None,
    trace_id: RequestId = None,
    session_id: RequestId = None,
    span_id: RequestId = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
) -> Response:
    """A release's run events over a window, newest first, filtered and paged as the reference does;
    400 ``Unknown release: <id>`` or ``Invalid window: <w>``."""
    state = state_of(request)
    query = RunsQuery(
        release_id=release_id,
        window=window,
        environment=environment,
        tenant_id=tenant_id,
        task_id=task_id,
        trace_id=trace_id,
        session_id=session_id,
        span_id=span_id,
        offset=offset,
        limit=limit,
    )
    filters = await _resolve(state, query)
    body = await blocking(list_runs_json, state.store, filters, query)
    return Response(body, media_type="application/json")


@router.get(
    "/v1/runs/export",
    tags=["forensics"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One event per line, keys sorted; the counts in the X-Flightdeck-* headers.",
            "content": {NDJSON: {"schema": {"type": "string"}}},
            "headers": {
                name: {"schema": {"type": "string"}}
                for name in (MATCHED_TOTAL_HEADER, RETURNED_HEADER, OFFSET_HEADER, TRUNCATED_HEADER)
            },
        },
        **responses(400, 401, 403, 503),
    },
)
async def export_runs(
    request: Request,
    _: ReadCaller,
    release_id: ReleaseId,
    window: WindowQuery,
    environment: Text = None,
    tenant_id: Text = None,
    task_id: Text = None,
    trace_id: RequestId = None,
    session_id: RequestId = None,
    span_id: RequestId = None,
    offset: Offset = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_EXPORT_LIMIT, description="The reference stops at 500; up to 1,000,000 here.")
    ] = DEFAULT_EXPORT_LIMIT,
) -> StreamingResponse:
    """The same slice as ``GET /v1/runs`` as NDJSON, streamed in batches from one store snapshot
    (memory stays flat whatever ``limit``)."""
    state = state_of(request)
    query = RunsQuery(
        release_id=release_id,
        window=window,
        environment=environment,
        tenant_id=tenant_id,
        task_id=task_id,
        trace_id=trace_id,
        session_id=session_id,
        span_id=span_id,
        offset=offset,
        limit=limit,
    )
    filters = await _resolve(state, query)
    export = await blocking(open_export, state.store, filters, query)
    # Starlette steps a synchronous iterator in worker threads; the export's own connection makes
    # that safe. The background task releases the snapshot if the client goes away early.
    return StreamingResponse(
        export.chunks(), media_type=NDJSON, headers=export.headers, background=BackgroundTask(export.close)
    )


async def _resolve(state: SidecarState, query: RunsQuery) -> RunFilters:
    """The release and window as store filters (400 for an unknown release or a bad window)."""
    return await blocking(
        resolve_filters,
        state.gateway,
        state.namespace,
        query,
        default_environment=state.settings.default_environment,
        clock=state.clock,
    )
