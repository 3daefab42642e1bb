"""OTLP/HTTP trace ingestion (``POST /v1/traces``) and what became of it (``GET /v1/otlp/status``).

Every answer of ``POST /v1/traces`` is OTLP-shaped, in the request's encoding, errors included
(a ``google.rpc.Status``): the exporter's retry rules depend on the status code only. Auth is the
same as ``POST /v1/events`` (the exporter sends ``OTEL_EXPORTER_OTLP_HEADERS``).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from flightdeck_operator.otlp.decode import (
    OtlpDecodeError,
    OtlpPayloadError,
    OtlpTooLargeError,
    OtlpUnsupportedError,
)
from flightdeck_operator.sidecar.auth import Access
from flightdeck_operator.sidecar.otlp_service import StagingFull, StoreUnavailable
from flightdeck_operator.sidecar.otlp_status import OtlpStatusResponse
from flightdeck_operator.sidecar.otlp_wire import (
    TRACES_PATH,
    answer_media_type,
    status_body,
    success_body,
)
from flightdeck_operator.sidecar.routes.common import (
    RETRY_AFTER_HEADER,
    ReadCaller,
    authenticate,
    bearer,
    blocking,
    responses,
    state_of,
)

router = APIRouter()

_REFUSALS: Final[dict[type[OtlpPayloadError], tuple[int, str]]] = {
    OtlpTooLargeError: (413, "too_large"),
    OtlpUnsupportedError: (415, "media_type"),
    OtlpDecodeError: (400, "decode"),
}
_OTLP_BODY = {"schema": {"type": "string", "format": "binary"}}
_JSON_STATUS = {
    "schema": {
        "type": "object",
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    }
}
_JSON_SUCCESS = {
    "schema": {
        "type": "object",
        "properties": {
            "partialSuccess": {
                "type": "object",
                "properties": {"rejectedSpans": {"type": "string"}, "errorMessage": {"type": "string"}},
            }
        },
    }
}


def _answer(status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=kind, headers=headers)


@router.post(
    TRACES_PATH,
    tags=["ingestion"],
    dependencies=[Depends(bearer)],
    response_class=Response,
    responses={
        200: {
            "description": "An ExportTraceServiceResponse, with partial_success when spans were rejected.",
            "content": {"application/x-protobuf": _OTLP_BODY, "application/json": _JSON_SUCCESS},
        },
        **{
            code: {
                "description": description,
                "content": {"application/x-protobuf": _OTLP_BODY, "application/json": _JSON_STATUS},
            }
            for code, description in (
                (400, "Not a valid ExportTraceServiceRequest (google.rpc.Status)."),
                (401, "Missing or invalid bearer token."),
                (403, "The caller's RBAC does not allow ingestion."),
                (413, "The body, decompressed, is over the limit."),
                (415, "Content-Type not protobuf or JSON, or Content-Encoding not gzip/deflate."),
                (503, "Staging is full or the store is busy: retry after Retry-After seconds."),
            )
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-protobuf": _OTLP_BODY, "application/json": {"schema": {}}},
        }
    },
)
async def export_traces(request: Request) -> Response:
    """OTLP/HTTP traces: GenAI agent runs become run events once their trace has settled."""
    state = state_of(request)
    content_type = request.headers.get("content-type")
    kind = answer_media_type(content_type)
    if not state.settings.otlp_enabled:
        return _answer(404, status_body(404, "OTLP ingestion is disabled on this sidecar.", kind), kind)
    try:
        await authenticate(request, Access.INGEST)
        raw = await request.body()
    except HTTPException as error:
        if error.status_code == 413:
            state.otlp.refused("too_large")
        return _answer(error.status_code, status_body(error.status_code, str(error.detail), kind), kind)
    try:
        received = await blocking(
            state.otlp.receive, raw, content_type, request.headers.get("content-encoding")
        )
    except OtlpPayloadError as error:
        status, reason = _REFUSALS[type(error)]
        state.otlp.refused(reason)
        return _answer(status, status_body(status, str(error), kind), kind)
    except (StagingFull, StoreUnavailable) as error:
        state.otlp.refused("staging_full" if isinstance(error, StagingFull) else "store_unavailable")
        retry = {RETRY_AFTER_HEADER: str(state.settings.otlp_retry_after_seconds)}
        return _answer(503, status_body(503, str(error), kind), kind, retry)
    return _answer(200, success_body(received.rejections, kind), kind)


@router.get(
    "/v1/otlp/status",
    response_model=OtlpStatusResponse,
    tags=["ingestion"],
    responses=responses(401, 403, 503),
)
async def otlp_status(request: Request, _: ReadCaller) -> Any:
    """Staged traces, totals by outcome and reason since the sidecar started, the latest rejections."""
    return await blocking(state_of(request).otlp.status_report)
