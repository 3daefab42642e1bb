"""``GET /v1/metrics``: the reference's JSON counters, cheap enough to poll.

Nothing is counted per call: run events and ledger actions come from counters the store keeps on
every insert, delete and append (exact); releases, pricing tables and promoted pointers are the
objects of the namespace as the API server's watch cache holds them (small lists, no etcd read).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from flightdeck_operator.api.v1alpha1 import AGENT_RELEASE, PRICING_TABLE, RELEASE_POINTER
from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.sidecar.routes.common import (
    ReadCaller,
    blocking,
    gateway_errors,
    responses,
    state_of,
)
from flightdeck_operator.sidecar.state import SidecarState
from flightdeck_operator.store import LATEST_SCHEMA_VERSION

router = APIRouter()

# The reference's actions: promote and rollback decisions (passed or blocked).
ACTION_KINDS = (LedgerKind.PROMOTE.value, LedgerKind.ROLLBACK.value)


class Counters(BaseModel):
    model_config = ConfigDict(frozen=True)

    releases_total: int = Field(description="AgentReleases in the namespace.")
    pricing_tables_total: int = Field(description="PricingTables in the namespace.")
    run_events_total: int = Field(description="Run events in the store (every namespace: events carry none).")
    promoted_pointers_total: int = Field(description="ReleasePointers in the namespace with a live release.")
    actions_total: int = Field(description="Promote and rollback decisions in the namespace's ledger.")
    actions_by_action: dict[str, int]


class MetricsResponse(BaseModel):
    """The reference's ``GET /v1/metrics`` (JSON; Prometheus text is ``GET /metrics``)."""

    model_config = ConfigDict(frozen=True)

    counters: Counters
    schema_version: int
    generated_at: str


@gateway_errors
def _counters(state: SidecarState) -> Counters:
    def listed(plural: str) -> list[dict[str, Any]]:
        return state.gateway.list_objects(plural, state.namespace, cached=True)

    pointers = listed(RELEASE_POINTER.plural)
    by_kind = state.store.ledger_counts(state.namespace)
    actions = {kind: by_kind[kind] for kind in sorted(ACTION_KINDS) if by_kind.get(kind)}
    return Counters(
        releases_total=len(listed(AGENT_RELEASE.plural)),
        pricing_tables_total=len(listed(PRICING_TABLE.plural)),
        run_events_total=state.store.run_events_total(),
        promoted_pointers_total=sum(1 for p in pointers if (p.get("status") or {}).get("releaseId")),
        actions_total=sum(actions.values()),
        actions_by_action=actions,
    )


@router.get("/v1/metrics", response_model=MetricsResponse, tags=["reads"], responses=responses(401, 403, 503))
async def ledger_metrics(request: Request, _: ReadCaller) -> MetricsResponse:
    """Counts for dashboards, in the reference's shape; ``schema_version`` is the store's schema."""
    state = state_of(request)
    counters = await blocking(_counters, state)
    return MetricsResponse(
        counters=counters,
        schema_version=LATEST_SCHEMA_VERSION,
        generated_at=state.clock().isoformat(),
    )
