"""The sidecar's routes by group, with the reference's paths, fields, status codes and error shapes.

Promote and rollback answer only from the PromotionRequest's status (``actions.promotions``); the
approval workflow from PromotionRequests, PromotionApprovals and the ledger
(``actions.approval_workflow``); reads come from the API server (releases, pointers, requests) or
the ledger (actions); ingestion and the diff use the store. Auth is a dependency per route
(``common.require``), run before the body is looked at.
"""

from __future__ import annotations

from fastapi import APIRouter

from flightdeck_operator.sidecar.routes import actions, approvals, health, ingest, reads

router = APIRouter()
for group in (health, reads, ingest, actions, approvals):
    router.include_router(group.router)

__all__ = ["router"]
