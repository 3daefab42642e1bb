"""Ingestion of run events: all or nothing per batch, the reference's validation and messages."""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from flightdeck_operator.actions.errors import ActionError, InvalidAction
from flightdeck_operator.engine.event_codec import decode_batch
from flightdeck_operator.engine.models import InvalidEventsError, RunEventData, validate_events
from flightdeck_operator.sidecar.routes.common import (
    INGEST_SCHEMA_NAME,
    IngestCaller,
    blocking,
    responses,
    state_of,
)
from flightdeck_operator.sidecar.schemas import INGEST_BATCH, IngestResponse, IngestShape
from flightdeck_operator.sidecar.state import SidecarState

fast_batch = INGEST_BATCH.validate_json

router = APIRouter()


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
        events = fast_batch(body)["events"]
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
    # The fast reader takes the common case; anything it cannot vouch for goes the usual way
    # (the same accepted inputs, the same messages; engine/event_codec.py).
    fast = decode_batch(body)
    if fast is not None and len(fast) <= state.settings.max_events_per_batch:
        inserted = state.store.insert_fast_events(fast)
        state.metrics.events_received.inc(len(fast))
        state.metrics.events_ingested.inc(inserted)
        return inserted
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
        **responses(400, 401, 403, 413, 503),
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
    state = state_of(request)
    body = await request.body()
    inserted = await blocking(_ingest, state, body)
    return JSONResponse({"inserted": inserted})
