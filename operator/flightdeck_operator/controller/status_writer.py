"""Writes what the controller decided onto the objects: a request's or an approval's status, then
an Event saying the same. A 404 is expected (the object was deleted meanwhile; the ledger keeps the
decision) and ends the write quietly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flightdeck_operator.api.conditions import ApprovalPhase, Reason
from flightdeck_operator.api.v1alpha1 import PROMOTION_APPROVAL, PROMOTION_REQUEST
from flightdeck_operator.controller.pending import PendingRequest
from flightdeck_operator.controller.projection import (
    approval_status,
    dry_run_status,
    failed_status,
    outcome_reason,
    request_status_from_entry,
)
from flightdeck_operator.controller.resolve import Failure
from flightdeck_operator.controller.view import ApprovalObject
from flightdeck_operator.engine.decide import Decision
from flightdeck_operator.engine.ledger import LedgerEntry, action_id_for
from flightdeck_operator.kube.errors import NotFound
from flightdeck_operator.kube.gateway import KubeGateway


@dataclass
class StatusWriter:
    gateway: KubeGateway
    clock: Callable[[], dt.datetime]

    def project_request(
        self, namespace: str, request: PendingRequest, entry: LedgerEntry, *, replay: bool = False
    ) -> None:
        status = request_status_from_entry(
            entry,
            generation=request.generation,
            conditions=request.conditions,
            now=self.clock(),
            replay=replay,
        )
        if replay:
            self.write_request(namespace, request, status, "Normal", Reason.REPLAYED.value)
            return
        event_type = "Normal" if entry.pointer_changed else "Warning"
        self.write_request(namespace, request, status, event_type, outcome_reason(entry).value)

    def fail(self, namespace: str, request: PendingRequest, failure: Failure, now: dt.datetime) -> None:
        status = failed_status(
            failure.reason,
            failure.message,
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self.write_request(namespace, request, status, "Warning", failure.reason.value)

    def write_dry_run(
        self, namespace: str, request: PendingRequest, decision: Decision, now: dt.datetime
    ) -> None:
        status = dry_run_status(
            decision,
            action_id=action_id_for(request.uid),
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self.write_request(namespace, request, status, "Normal", Reason.EVALUATED.value)

    def write_waiting(
        self, namespace: str, request: PendingRequest, status: dict[str, Any], reason: Reason
    ) -> None:
        """Write a waiting status only when what it says changed (rechecks are frequent)."""
        keys = ("phase", "message", "approval")
        if all(_same(request.shown.get(k), status.get(k)) for k in keys) and _same_wait(
            request.shown.get("evidenceWait"), status.get("evidenceWait")
        ):
            return
        self.write_request(namespace, request, status, "Normal", reason.value)

    def write_request(
        self, namespace: str, request: PendingRequest, status: dict[str, Any], event_type: str, reason: str
    ) -> None:
        """Patch the request's status, then record an Event saying the same."""
        try:
            body = self.gateway.patch_status(PROMOTION_REQUEST.plural, namespace, request.name, status)
        except NotFound:  # deleted meanwhile: the ledger keeps the decision
            return
        self.gateway.post_event(
            body, kind=PROMOTION_REQUEST.kind, event_type=event_type, reason=reason, message=status["message"]
        )

    def project_approval(self, namespace: str, approval: ApprovalObject, entry: LedgerEntry) -> None:
        """The approval's status from its ledger entry alone (the verdict is never re-judged)."""
        details = entry.details or {}
        self.write_approval(
            namespace,
            approval,
            ApprovalPhase(str(details.get("outcome"))),
            Reason(str(details.get("condition_reason"))),
            str(details.get("message") or ""),
            entry.seq,
        )

    def write_approval(
        self,
        namespace: str,
        approval: ApprovalObject,
        phase: ApprovalPhase,
        reason: Reason,
        message: str,
        ledger_seq: int | None,
    ) -> None:
        status = approval_status(
            phase,
            reason,
            message,
            ledger_seq=ledger_seq,
            generation=approval.generation,
            conditions=approval.conditions,
            now=self.clock(),
        )
        try:
            body = self.gateway.patch_status(PROMOTION_APPROVAL.plural, namespace, approval.name, status)
        except NotFound:
            return
        self.gateway.post_event(
            body,
            kind=PROMOTION_APPROVAL.kind,
            event_type="Normal" if phase is ApprovalPhase.ACCEPTED else "Warning",
            reason=reason.value,
            message=message,
        )


def _same(shown: Any, wanted: Any) -> bool:
    return (shown or None) == (wanted or None)


def _same_wait(shown: Any, wanted: Any) -> bool:
    """evidenceWait without lastEvaluatedAt (which changes on every recheck)."""

    def strip(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value or None
        return {k: v for k, v in value.items() if k != "lastEvaluatedAt"}

    return bool(strip(shown) == strip(wanted))
