"""The dashboard's routes under ``/ui``.

Pages are shells: HTML with no data, served to anyone (they hold nothing secret), each reachable by
URL with its filters in the query string. Their data arrives as HTML fragments (``/ui/fragments``)
and chart series (``/ui/data``), which need the same authentication and RBAC as the HTTP API's
reads: the browser sends the bearer token kept in the tab. Writes are never made here: the forms
post to the HTTP API's routes, and are only rendered for callers whose RBAC allows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from flightdeck_operator.actions.diff import DiffInput, compute_release_diff, governing_policy
from flightdeck_operator.actions.errors import ActionError, InvalidAction
from flightdeck_operator.actions.promotions import release_spec
from flightdeck_operator.actions.series import compare_series
from flightdeck_operator.config import AuthMode
from flightdeck_operator.engine.evidence import EvidenceError, window_bounds
from flightdeck_operator.engine.models import Policy, RunEvent
from flightdeck_operator.sidecar.auth import Access, AuthError, AuthUnavailable, Caller
from flightdeck_operator.sidecar.dashboard import views
from flightdeck_operator.sidecar.routes.common import ReadCaller, blocking, state_of
from flightdeck_operator.sidecar.routes.reads import list_release_items
from flightdeck_operator.sidecar.state import SidecarState
from flightdeck_operator.store.forensics import RunFilters

ROOT: Final = "/ui"
STATIC: Final = f"{ROOT}/static"
STATIC_DIR: Final = Path(__file__).parent / "static"
PAGES: Final = (
    ("overview", "Overview", "/"),
    ("compare", "Compare", "/compare"),
    ("runs", "Runs", "/runs"),
    ("requests", "Requests", "/requests"),
    ("ledger", "Ledger", "/ledger"),
)
POINTERS_PAGE: Final = 100
RUNS_PAGE: Final = 50
REQUESTS_SHOWN: Final = 200
LEDGER_SHOWN: Final = 200

# Autoescaping everywhere: a release name or a reason holding "<script>" is text, never markup.
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

router = APIRouter(prefix=ROOT, include_in_schema=False)


def _render(request: Request, template: str, **context: Any) -> HTMLResponse:
    state = state_of(request)
    html = _templates.get_template(template).render(
        root=ROOT,
        static=STATIC,
        pages=PAGES,
        namespace=state.namespace,
        default_environment=state.settings.default_environment,
        **context,
    )
    return HTMLResponse(html)


def _query(**values: str | None) -> str:
    return urlencode({key: value for key, value in values.items() if value})


# --- pages (shells) ---------------------------------------------------------------------------------


@router.get("/")
async def overview_page(
    request: Request, match: str = "", offset: Annotated[int, Query(ge=0)] = 0
) -> HTMLResponse:
    query = _query(match=match, offset=str(offset) if offset else None)
    return _render(request, "overview.html", title="Overview", page="overview", query=query, match=match)


@router.get("/compare")
async def compare_page(
    request: Request,
    baseline: str = "",
    candidate: str = "",
    window: str = "7d",
    environment: str = "",
    tenant: str = "",
    task: str = "",
) -> HTMLResponse:
    query = _query(
        baseline=baseline,
        candidate=candidate,
        window=window,
        environment=environment,
        tenant=tenant,
        task=task,
    )
    return _render(
        request,
        "compare.html",
        title="Compare",
        page="compare",
        query=query,
        query_complete=bool(baseline and candidate),
    )


@router.get("/runs")
async def runs_page(
    request: Request,
    release: str = "",
    environment: str = "",
    window: str = "7d",
    tenant: str = "",
    task: str = "",
    trace_id: str = "",
    session_id: str = "",
    span_id: str = "",
    group: str = "",
    offset: Annotated[int, Query(ge=0, le=500_000)] = 0,
) -> HTMLResponse:
    values = {
        "release": release,
        "environment": environment,
        "window": window,
        "tenant": tenant,
        "task": task,
        "trace_id": trace_id,
        "session_id": session_id,
        "span_id": span_id,
        "group": group,
    }
    query = _query(**values, offset=str(offset) if offset else None)
    export = _query(
        release_id=release,
        environment=environment,
        window=window,
        tenant_id=tenant,
        task_id=task,
        trace_id=trace_id,
        session_id=session_id,
        span_id=span_id,
    )
    return _render(
        request,
        "runs.html",
        title="Runs",
        page="runs",
        values=values,
        query=query,
        query_complete=bool(release),
        export_url=f"/v1/runs/export?{export}",
    )


@router.get("/requests")
async def requests_page(request: Request) -> HTMLResponse:
    return _render(request, "requests.html", title="Requests", page="requests")


@router.get("/ledger")
async def ledger_page(request: Request, pointer: str = "", kind: str = "") -> HTMLResponse:
    return _render(
        request, "ledger.html", title="Ledger", page="ledger", query=_query(pointer=pointer, kind=kind)
    )


# --- fragments (authenticated) ----------------------------------------------------------------------


@router.get("/fragments/overview")
async def overview_fragment(
    request: Request, _: ReadCaller, match: str = "", offset: Annotated[int, Query(ge=0)] = 0
) -> HTMLResponse:
    state = state_of(request)

    def build() -> views.Overview:
        health = state.ledger_verifier.check()
        return views.overview(state, health, state.clock(), match=match, offset=offset, limit=POINTERS_PAGE)

    shown = await blocking(build)
    paging = {
        "prev": _query(match=match, offset=str(max(0, offset - POINTERS_PAGE))) if offset else None,
        "next": _query(match=match, offset=str(offset + POINTERS_PAGE))
        if offset + POINTERS_PAGE < shown.matching
        else None,
    }
    return _render(request, "fragments/overview.html", overview=shown, paging=paging)


@router.get("/fragments/compare-form")
async def compare_form_fragment(
    request: Request,
    _: ReadCaller,
    baseline: str = "",
    candidate: str = "",
    window: str = "7d",
    environment: str = "",
    tenant: str = "",
    task: str = "",
) -> HTMLResponse:
    releases = await blocking(list_release_items, state_of(request))
    values = {
        "baseline": baseline,
        "candidate": candidate,
        "window": window,
        "environment": environment,
        "tenant": tenant,
        "task": task,
    }
    return _render(request, "fragments/compare_form.html", releases=releases.releases, values=values)


def _diff_input(
    baseline: str, candidate: str, window: str, environment: str, tenant: str, task: str
) -> DiffInput:
    return DiffInput(
        baseline_release_id=baseline,
        candidate_release_id=candidate,
        window=window,
        environment=environment or None,
        tenant_id=tenant or None,
        task_id=task or None,
    )


@router.get("/fragments/compare")
async def compare_fragment(
    request: Request,
    _: ReadCaller,
    baseline: str,
    candidate: str,
    window: str = "7d",
    environment: str = "",
    tenant: str = "",
    task: str = "",
) -> HTMLResponse:
    state = state_of(request)
    wanted = _diff_input(baseline, candidate, window, environment, tenant, task)
    try:
        diff = await blocking(
            compute_release_diff,
            state.store,
            state.gateway,
            state.namespace,
            wanted,
            thresholds=state.thresholds,
            default_environment=state.settings.default_environment,
            clock=state.clock,
        )
        policy = await blocking(_policy_of, state, baseline, diff.filters.environment)
    except ActionError as error:
        return _render(request, "fragments/error.html", message=error.detail)
    series_url = f"{ROOT}/data/compare?" + _query(
        baseline=baseline,
        candidate=candidate,
        window=window,
        environment=environment,
        tenant=tenant,
        task=task,
    )
    return _render(
        request,
        "fragments/compare.html",
        diff=diff,
        baseline_id=baseline,
        candidate_id=candidate,
        policy_id=policy.policy_id,
        series_url=series_url,
    )


@dataclass(frozen=True, slots=True)
class RunsShown:
    """One page of runs as the Runs page shows them (parsed from the stored JSON)."""

    matched_total: int
    offset: int
    truncated: bool
    events: tuple[RunEvent, ...]


def _policy_of(state: SidecarState, baseline: str, environment: str) -> Policy:
    """The policy the diff applied: the one governing the baseline's agent in the environment."""
    spec = release_spec(state.gateway, state.namespace, baseline)
    if spec is None:
        raise InvalidAction(f"Unknown baseline release: {baseline}")
    return governing_policy(state.gateway, state.namespace, spec.agent_id, environment)


@router.get("/data/compare")
async def compare_data(
    request: Request,
    _: ReadCaller,
    baseline: str,
    candidate: str,
    window: str = "7d",
    environment: str = "",
    tenant: str = "",
    task: str = "",
) -> Response:
    state = state_of(request)
    series = await blocking(
        compare_series,
        state.store,
        state.gateway,
        state.namespace,
        _diff_input(baseline, candidate, window, environment, tenant, task),
        default_environment=state.settings.default_environment,
        clock=state.clock,
    )
    return JSONResponse(series.model_dump(mode="json"))


@router.get("/fragments/runs")
async def runs_fragment(
    request: Request,
    _: ReadCaller,
    release: str,
    environment: str = "",
    window: str = "7d",
    tenant: str = "",
    task: str = "",
    trace_id: str = "",
    session_id: str = "",
    span_id: str = "",
    group: str = "",
    offset: Annotated[int, Query(ge=0, le=500_000)] = 0,
) -> HTMLResponse:
    state = state_of(request)
    try:
        since, until = window_bounds(window, state.clock())
    except EvidenceError as error:
        return _render(request, "fragments/error.html", message=str(error))
    filters = RunFilters(
        release_id=release,
        environment=environment or state.settings.default_environment,
        since=since,
        until=until,
        tenant_id=tenant or None,
        task_id=task or None,
        trace_id=trace_id.strip() or None,
        session_id=session_id.strip() or None,
        span_id=span_id.strip() or None,
    )
    stored = await blocking(state.store.run_page, filters, offset=offset, limit=RUNS_PAGE)
    page = RunsShown(
        matched_total=stored.matched_total,
        offset=stored.offset,
        truncated=stored.truncated,
        events=tuple(RunEvent.model_validate_json(text) for text in stored.events_json),
    )
    grouped = group == "trace"
    groups: dict[str | None, list[Any]] = {}
    for event in page.events:
        key = (event.request.trace_id if event.request else None) if grouped else None
        groups.setdefault(key, []).append(event)
    base = {
        "release": release,
        "environment": environment,
        "window": window,
        "tenant": tenant,
        "task": task,
        "trace_id": trace_id,
        "session_id": session_id,
        "span_id": span_id,
        "group": group,
    }
    return _render(
        request,
        "fragments/runs.html",
        page=page,
        groups=list(groups.items()),
        grouped=grouped,
        prev_query=_query(**base, offset=str(max(0, offset - RUNS_PAGE)) or None),
        next_query=_query(**base, offset=str(offset + RUNS_PAGE)),
    )


@router.get("/fragments/runs/{run_id}")
async def run_fragment(request: Request, run_id: str, _: ReadCaller) -> HTMLResponse:
    event = await blocking(state_of(request).store.run_event, run_id)
    if event is None:
        return _render(request, "fragments/error.html", message=f"Run {run_id} not found")
    pretty = json.dumps(event.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=True)
    return _render(request, "fragments/run.html", event=event, event_json=pretty)


async def _may(request: Request, access: Access) -> Caller | None:
    """The caller, when its RBAC allows ``access`` (forms are only rendered for those who may)."""
    auth = state_of(request).auth
    authorization = request.headers.get("authorization")
    try:
        return auth.cached(authorization, access) or await blocking(auth.check, authorization, access)
    except (AuthError, AuthUnavailable):
        return None


@router.get("/fragments/requests")
async def requests_fragment(request: Request, caller: ReadCaller) -> HTMLResponse:
    state = state_of(request)
    rows = await blocking(views.requests, state, REQUESTS_SHOWN)
    promoter = await _may(request, Access.PROMOTE)
    approver = await _may(request, Access.APPROVE)
    # An approval records who approved: only a verified identity, or the local dashboard acting
    # with the user's own kubeconfig (the API server stamps that identity), may approve here.
    local = state.auth.mode is AuthMode.NONE and state.settings.local_identity
    may_approve = approver is not None and (approver.verified or local)
    releases = (await blocking(list_release_items, state)).releases if promoter is not None else []
    environments = await blocking(views.environments, state) if promoter is not None else ()
    return _render(
        request,
        "fragments/requests.html",
        requests=rows,
        may_promote=promoter is not None,
        may_approve=may_approve,
        releases=releases,
        environments=environments,
        caller=await _acting_as(state) if local else caller.username,
    )


async def _acting_as(state: SidecarState) -> str:
    """The local dashboard's user: who its kubeconfig authenticates as (asked once)."""
    if state.local_user is None:
        state.local_user = await blocking(state.gateway.whoami)
    return state.local_user


@router.get("/fragments/ledger")
async def ledger_fragment(request: Request, _: ReadCaller, pointer: str = "", kind: str = "") -> HTMLResponse:
    state = state_of(request)

    def build() -> tuple[views.LedgerPage, Any]:
        return views.ledger(
            state, pointer=pointer, kind=kind, limit=LEDGER_SHOWN
        ), state.ledger_verifier.check()

    page, health = await blocking(build)
    return _render(
        request, "fragments/ledger.html", page=page, health=health, values={"pointer": pointer, "kind": kind}
    )
