"""Run forensics as the reference serves them (``GET /v1/runs``, ``/v1/runs/export``, ``runs list``,
``runs export``): the release must be an AgentRelease of the namespace, the window is the
reference's, the events come from the store's indexed pages and snapshots.

The list answer is assembled from the stored ``event_json`` texts without parsing them (they are
``RunEvent`` JSON already); an export line is the reference's ``json.dumps(event, sort_keys=True)``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from flightdeck_operator.actions.errors import ClusterUnavailable, InvalidAction
from flightdeck_operator.actions.promotions import release_spec
from flightdeck_operator.engine.evidence import EvidenceError, window_bounds
from flightdeck_operator.kube.errors import GatewayError
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import RunExport, RunFilters, Store

MAX_OFFSET: Final = 500_000
MAX_LIST_LIMIT: Final = 500
DEFAULT_LIST_LIMIT: Final = 100
DEFAULT_EXPORT_LIMIT: Final = 500
# The reference stops at 500 lines per export; ours streams, so a whole window can be exported.
MAX_EXPORT_LIMIT: Final = 1_000_000

MATCHED_TOTAL_HEADER: Final = "X-Flightdeck-Matched-Total"
RETURNED_HEADER: Final = "X-Flightdeck-Returned"
OFFSET_HEADER: Final = "X-Flightdeck-Offset"
TRUNCATED_HEADER: Final = "X-Flightdeck-Truncated"
NDJSON: Final = "application/x-ndjson"


class RunsQuery(BaseModel):
    """The reference's query parameters of ``GET /v1/runs`` and ``/v1/runs/export``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    release_id: str = Field(min_length=1)
    window: str = Field(min_length=1)
    environment: str | None = None
    tenant_id: str | None = None
    task_id: str | None = None
    trace_id: str | None = None
    session_id: str | None = None
    span_id: str | None = None
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    limit: int = Field(default=DEFAULT_LIST_LIMIT, ge=1, le=MAX_EXPORT_LIMIT)


def _request_id(value: str | None) -> str | None:
    """The reference strips request ids; an empty one means no filter."""
    return (value or "").strip() or None


def resolve_filters(
    gateway: KubeGateway,
    namespace: str,
    query: RunsQuery,
    *,
    default_environment: str,
    clock: Callable[[], dt.datetime],
) -> RunFilters:
    """The reference's checks, in its order: the release exists, then the window parses."""
    try:
        known = release_spec(gateway, namespace, query.release_id) is not None
    except GatewayError as error:
        raise ClusterUnavailable(f"Kubernetes API unavailable: {error}") from None
    if not known:
        raise InvalidAction(f"Unknown release: {query.release_id}")
    try:
        since, until = window_bounds(query.window, clock())
    except EvidenceError as error:
        raise InvalidAction(str(error)) from None
    return RunFilters(
        release_id=query.release_id,
        environment=query.environment or default_environment,
        since=since,
        until=until,
        tenant_id=query.tenant_id,
        task_id=query.task_id,
        trace_id=_request_id(query.trace_id),
        session_id=_request_id(query.session_id),
        span_id=_request_id(query.span_id),
    )


def list_runs_json(store: Store, filters: RunFilters, query: RunsQuery) -> bytes:
    """The reference's ``GET /v1/runs`` body, keys in its order, events as stored."""
    page = store.run_page(filters, offset=query.offset, limit=query.limit)
    head = {
        "release_id": filters.release_id,
        "since": filters.since.isoformat(),
        "until": filters.until.isoformat(),
        "filters": {
            "environment": filters.environment,
            "tenant_id": filters.tenant_id,
            "task_id": filters.task_id,
            "trace_id": filters.trace_id,
            "session_id": filters.session_id,
            "span_id": filters.span_id,
        },
        "offset": query.offset,
        "limit": query.limit,
        "matched_total": page.matched_total,
        "returned": len(page.events_json),
        "truncated": page.truncated,
    }
    # Compact, as FastAPI's JSONResponse writes every other answer.
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)[:-1]
    return (text + ',"events":[' + ",".join(page.events_json) + "]}").encode()


def reference_line(event_json: str) -> str:
    """One export line, byte for byte the reference's ``json.dumps(event, sort_keys=True)``."""
    return json.dumps(json.loads(event_json), sort_keys=True) + "\n"


@dataclass(frozen=True)
class RunsExport:
    """An export ready to stream: the reference's headers, then NDJSON chunks (one per batch)."""

    export: RunExport

    @property
    def headers(self) -> dict[str, str]:
        return {
            MATCHED_TOTAL_HEADER: str(self.export.matched_total),
            RETURNED_HEADER: str(self.export.returned),
            OFFSET_HEADER: str(self.export.offset),
            TRUNCATED_HEADER: "true" if self.export.truncated else "false",
        }

    def chunks(self) -> Iterator[bytes]:
        for batch in self.export.batches():
            yield "".join(reference_line(text) for text in batch).encode()

    def close(self) -> None:
        self.export.close()


def open_export(store: Store, filters: RunFilters, query: RunsQuery) -> RunsExport:
    return RunsExport(store.open_run_export(filters, offset=query.offset, limit=query.limit))
