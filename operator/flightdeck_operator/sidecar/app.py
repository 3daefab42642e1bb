"""The sidecar's FastAPI application: ``create_app(settings, store, gateway)``.

The app holds no state of its own beyond caches: decisions live in PromotionRequest statuses
(written by the operator), evidence and the ledger in the store. Blocking calls (the Kubernetes
client, the store) run in worker threads so the event loop keeps answering probes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flightdeck_operator import __version__
from flightdeck_operator.actions.errors import ActionError
from flightdeck_operator.actions.promotions import retry_after_seconds
from flightdeck_operator.config import AuthMode, SidecarSettings
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.sidecar.auth import (
    Authenticator,
    KubernetesAuth,
    NoAuth,
    StaticTokenAuth,
)
from flightdeck_operator.sidecar.dashboard import routes as dashboard
from flightdeck_operator.sidecar.dashboard.security import DashboardHeaders
from flightdeck_operator.sidecar.metrics import UNMATCHED_ROUTE, SidecarMetrics
from flightdeck_operator.sidecar.otlp_wire import TRACES_PATH, answer_media_type, status_body
from flightdeck_operator.sidecar.routes import GROUPS, ROUTES
from flightdeck_operator.sidecar.routes.common import INGEST_SCHEMA_NAME, RETRY_AFTER_HEADER
from flightdeck_operator.sidecar.schemas import IngestRequest
from flightdeck_operator.sidecar.state import SidecarState
from flightdeck_operator.store import Store

TITLE: Final = "FlightDeck Operator sidecar"
DESCRIPTION: Final = (
    "The FlightDeck HTTP API (reference-compatible paths, JSON fields, status codes and error shapes) "
    "on top of Kubernetes: promote and rollback create a PromotionRequest and answer from its status."
)


def build_authenticator(settings: SidecarSettings, gateway: KubeGateway) -> Authenticator:
    """The configured authenticator. Raises ValueError for a configuration that must not start."""
    if settings.auth is AuthMode.KUBERNETES:
        return KubernetesAuth(gateway, settings.namespace, settings.auth_cache_seconds)
    if settings.auth is AuthMode.TOKEN:
        if not settings.token_file:
            raise ValueError("--auth token needs --token-file (a file holding the bearer token)")
        return StaticTokenAuth.from_file(settings.token_file)
    return NoAuth()


def create_app(
    settings: SidecarSettings,
    store: Store,
    gateway: KubeGateway,
    *,
    authenticator: Authenticator | None = None,
) -> FastAPI:
    """The ASGI app. ``authenticator`` defaults to the one ``settings.auth`` selects."""
    state = SidecarState(
        settings=settings,
        store=store,
        gateway=gateway,
        auth=authenticator or build_authenticator(settings, gateway),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.decisions.start()
        state.otlp.start()
        yield
        state.otlp.stop()
        state.decisions.stop()

    app = FastAPI(
        title=TITLE, version=__version__, description=DESCRIPTION, redoc_url=None, lifespan=lifespan
    )
    app.state.sidecar = state
    for group in GROUPS:
        app.include_router(group)
    app.include_router(dashboard.router)
    app.mount(dashboard.STATIC, StaticFiles(directory=dashboard.STATIC_DIR), name="dashboard-static")

    @app.get(dashboard.ROOT, include_in_schema=False)
    async def _dashboard_root() -> RedirectResponse:
        return RedirectResponse(f"{dashboard.ROOT}/")

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, error: GatewayError) -> JSONResponse:
        # Reads that are not mapped to an ActionError (the dashboard's fragments): the caller's
        # RBAC refusal stays a 403 with the API server's message; anything else is unavailable.
        status = 403 if error.status == 403 else 503
        return JSONResponse({"detail": f"Kubernetes API: {error}"}, status_code=status)

    @app.exception_handler(ActionError)
    async def _action_error(request: Request, error: ActionError) -> JSONResponse:
        retry_after = retry_after_seconds(error.next_open, state.clock())
        headers = None if retry_after is None else {RETRY_AFTER_HEADER: str(retry_after)}
        return JSONResponse({"detail": error.detail}, status_code=error.status, headers=headers)

    def openapi() -> dict[str, Any]:
        # POST /v1/events reads its body itself (reference validation and messages, and a fast
        # path); its documented schema is added here.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            ingest = IngestRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in ingest.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[INGEST_SCHEMA_NAME] = ingest
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(DashboardHeaders, prefix=dashboard.ROOT)
    app.add_middleware(
        LimitsAndMetrics,
        metrics=state.metrics,
        max_body_bytes=settings.max_body_bytes,
        routes=ROUTES,
        otlp_refused=state.otlp.refused,
    )
    return app


class LimitsAndMetrics:
    """Pure ASGI middleware: rejects bodies over the limit (413) and times every request.

    A declared Content-Length over the limit is refused before the body is read; a chunked body
    is counted as it streams and refused as soon as it crosses the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: SidecarMetrics,
        max_body_bytes: int,
        routes: Sequence[BaseRoute],
        otlp_refused: Callable[[str], None],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.routes = routes
        self.otlp_refused = otlp_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}
        too_large = _too_large_message(self.max_body_bytes)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
            await send(message)

        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_body_bytes:
                if scope.get("path") == TRACES_PATH:  # OTLP answers are google.rpc.Status
                    self.otlp_refused("too_large")
                    await _send_otlp_status(send_wrapper, 413, too_large, _header(scope, b"content-type"))
                else:
                    await _send_json(send_wrapper, 413, {"detail": too_large})
                return
            received = 0

            async def receive_wrapper() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body_bytes:
                        # An HTTPException passes through FastAPI's body reading untouched.
                        raise HTTPException(413, too_large)
                return message

            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            template = self._template(scope)
            method = str(scope.get("method", ""))
            self.metrics.http_duration.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.http_requests.labels(method, template, str(status_holder["status"])).inc()

    def _template(self, scope: Scope) -> str:
        """The route template (bounded label values), also for requests refused before routing."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        return getattr(route, "path", None) or UNMATCHED_ROUTE


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _too_large_message(limit: int) -> str:
    return f"Request body too large: at most {limit} bytes are accepted."


async def _send_otlp_status(send: Send, status: int, message: str, content_type: str | None) -> None:
    kind = answer_media_type(content_type)
    response = Response(status_body(status, message, kind), status_code=status, media_type=kind)
    response.headers["Connection"] = "close"
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    response = JSONResponse(content, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
