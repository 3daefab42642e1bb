"""The sidecar's routes by group, with the reference's paths, fields, status codes and error shapes.

Promote and rollback answer only from the PromotionRequest's status (``actions.promotions``); the
approval workflow from PromotionRequests, PromotionApprovals and the ledger
(``actions.approval_workflow``); reads come from the API server (releases, pointers, requests) or
the ledger (actions); ingestion, the diff, run forensics (``runs``) and the JSON counters
(``counters``) use the store; ``webhooks`` manages NotificationSubscriptions. Auth is a dependency per route
(``common.require``), run before the body is looked at.
"""

from __future__ import annotations

from fastapi import APIRouter

from flightdeck_operator.sidecar.routes import (
    actions,
    approvals,
    counters,
    health,
    ingest,
    reads,
    runs,
    traces,
    webhooks,
)

GROUPS: tuple[APIRouter, ...] = (
    health.router,
    reads.router,
    runs.router,
    counters.router,
    ingest.router,
    traces.router,
    actions.router,
    approvals.router,
    webhooks.router,
)
# Every route, flat: the middleware matches requests it refuses before routing (413) against them.
ROUTES = tuple(route for group in GROUPS for route in group.routes)

__all__ = ["GROUPS", "ROUTES"]
