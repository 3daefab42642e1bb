"""Health, probes and Prometheus metrics: answered without authentication."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flightdeck_operator.config import AuthMode
from flightdeck_operator.sidecar.routes.common import blocking, state_of
from flightdeck_operator.sidecar.schemas import HealthResponse, ProbeResponse

router = APIRouter()


@router.get("/health", response_model=HealthResponse, tags=["health"])
async def health(request: Request) -> HealthResponse:
    """The reference's health document, saying which auth the server enforces."""
    mode = state_of(request).auth.mode
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
    state = state_of(request)
    checks: dict[str, str] = {}
    ready = True
    try:
        versions = await blocking(state.store.applied_migrations)
        checks["store"] = f"ok ({state.store.backend}, schema {max(versions, default=0)})"
    except Exception as error:  # any store failure means not ready
        checks["store"] = f"unavailable: {error}"
        ready = False
    try:
        checks["kubernetes"] = f"ok ({await blocking(state.gateway.ping)})"
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
    """Prometheus text format: decisions by outcome, HTTP latency per route, events ingested,
    notification deliveries per subscription (read from the store, so in a worker thread)."""
    text = await blocking(generate_latest, state_of(request).metrics.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
