"""The approval gate of one request: judge each PromotionApproval once (the verdict is ledgered
under ``approval:<uid>``), mark approvals of an earlier decision digest stale (once, ledgered), and
count the quorum from the ledger. An approval of a request that does not await approval is
ledgered as rejected, so every attempt is on record."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from flightdeck_operator.api.approvals import (
    accepted_entries,
    approval_key,
    decision_digest,
    judge,
    stale_key,
)
from flightdeck_operator.api.conditions import ApprovalPhase, Reason
from flightdeck_operator.api.v1alpha1 import ApprovalPolicy, PromotionApprovalSpec, PromotionRequestSpec
from flightdeck_operator.controller.notable_records import approval_requested_record
from flightdeck_operator.controller.pending import PendingRequest, Waiting
from flightdeck_operator.controller.projection import approval_record, awaiting_approval_status
from flightdeck_operator.controller.status_writer import StatusWriter
from flightdeck_operator.controller.view import ApprovalObject, NamespaceView
from flightdeck_operator.engine.decide import Decision
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind, LedgerRecord, approval_requested_key
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)


@dataclass
class ApprovalGate:
    store: Store
    writer: StatusWriter
    clock: Callable[[], dt.datetime]
    recheck_seconds: float

    def check(
        self,
        namespace: str,
        pointer: str,
        request: PendingRequest,
        view: NamespaceView,
        decision: Decision,
        gate: ApprovalPolicy,
        spec: PromotionRequestSpec,
        now: dt.datetime,
    ) -> list[LedgerEntry] | Waiting:
        """Judge new approvals (each once, ledgered), then either the quorum is met (its approval
        entries are returned) or the request keeps waiting with its status saying why."""
        digest = decision_digest(decision, gate)
        requester = spec.requested_by.username if spec.requested_by is not None else None
        objects = sorted(view.approvals.get(request.name, ()), key=lambda a: (a.created, a.name))
        for approval in objects:
            judged = self.store.ledger_entry_for_key(approval_key(approval.uid))
            if judged is None:
                self._judge(namespace, pointer, approval, decision, request, requester, gate, digest)
            elif not approval.phase:  # judged before a crash, status not written yet
                self.writer.project_approval(namespace, approval, judged)
        entries = self.store.approvals_for_request(namespace, pointer, request.uid)
        accepted = accepted_entries(entries, digest)
        stale = self._mark_stale(namespace, objects, entries, digest, now)
        if decision.passed and len(accepted) >= gate.min_approvals:
            return accepted
        if decision.passed:
            self._announce(namespace, pointer, request, decision, gate, spec, digest)
        status = awaiting_approval_status(
            decision,
            digest=digest,
            required=gate.min_approvals,
            approved_by=[str((e.details or {}).get("approver")) for e in accepted],
            stale=stale,
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self.writer.write_waiting(namespace, request, status, Reason.AWAITING_APPROVAL)
        return Waiting(self.recheck_seconds)

    def _announce(
        self,
        namespace: str,
        pointer: str,
        request: PendingRequest,
        decision: Decision,
        gate: ApprovalPolicy,
        spec: PromotionRequestSpec,
        digest: str,
    ) -> None:
        """Ledger (once per decision digest) that the request awaits approvals: approval.requested."""
        if self.store.ledger_entry_for_key(approval_requested_key(request.uid, digest)) is not None:
            return
        actor = spec.actor or (spec.requested_by.username if spec.requested_by else "unknown")
        self.store.append(
            approval_requested_record(
                namespace,
                pointer,
                request,
                decision,
                gate,
                digest,
                actor=actor,
                reason=spec.reason,
                window=spec.window,
            )
        )

    def _judge(
        self,
        namespace: str,
        pointer: str,
        approval: ApprovalObject,
        decision: Decision,
        request: PendingRequest,
        requester: str | None,
        gate: ApprovalPolicy | None,
        digest: str | None,
    ) -> None:
        """Judge one approval once: ledger the verdict, then show it on the approval's status."""
        spec = _approval_spec(namespace, approval)
        if spec is None:
            return
        verdict = judge(
            spec,
            request_uid=request.uid,
            requester=requester,
            policy=gate,
            current_digest=digest,
            passed=decision.passed,
        )
        entry = self.store.append(
            approval_record(
                decision,
                verdict,
                approval_name=approval.name,
                approval_uid=approval.uid,
                approver=spec.approver,
                approval_reason=spec.reason,
                request_name=request.name,
                request_uid=request.uid,
                namespace=namespace,
                pointer=pointer,
                digest=digest,
                approved_digest=spec.decision_digest,
            )
        )
        log.info(
            "Ledgered approval %s/%s as seq %d: %s", namespace, approval.name, entry.seq, verdict.phase.value
        )
        self.writer.write_approval(
            namespace, approval, verdict.phase, verdict.reason, verdict.message, entry.seq
        )

    def _mark_stale(
        self,
        namespace: str,
        objects: Sequence[ApprovalObject],
        entries: Sequence[LedgerEntry],
        digest: str,
        now: dt.datetime,
    ) -> list[str]:
        """Approvals accepted for an earlier digest no longer count, ever: the first time one is seen
        stale, that is ledgered (so the digest coming back, e.g. a reverted policy, cannot revive
        it) and shown on its status. The list comes from the ledger (stale approvals leave the index)."""
        by_uid = {approval.uid: approval for approval in objects}
        marked = {
            str((e.details or {}).get("approval_uid"))
            for e in entries
            if e.idempotency_key.startswith("approval-stale:")
        }
        stale: list[str] = []
        for entry in entries:
            details = entry.details or {}
            uid = str(details.get("approval_uid"))
            if details.get("outcome") != ApprovalPhase.ACCEPTED.value:
                continue
            if details.get("decision_digest") == digest and uid not in marked:
                continue
            stale.append(str(details.get("approval")))
            if uid in marked:
                continue
            message = (
                f"Approved decision {str(details.get('decision_digest'))[:12]}, but the request now "
                f"awaits {digest[:12]} (the policy, its approval rules, the pointer or the evidence "
                "verdict changed); it no longer counts"
            )
            record = entry.record().model_copy(
                update={
                    "idempotency_key": stale_key(uid),
                    "details": {
                        **details,
                        "outcome": ApprovalPhase.STALE.value,
                        "condition_reason": Reason.APPROVAL_STALE.value,
                        "message": message,
                        "current_digest": digest,
                    },
                    "created_at": now,
                }
            )
            marked_entry = self.store.append(record)
            approval = by_uid.get(uid)
            if approval is not None:
                self.writer.write_approval(
                    namespace, approval, ApprovalPhase.STALE, Reason.APPROVAL_STALE, message, marked_entry.seq
                )
        return stale

    def judge_orphan(self, namespace: str, approval: ApprovalObject) -> None:
        """An approval whose request is not awaiting approval (decided, deleted, never existed):
        ledgered as rejected so that every approval attempt is on record."""
        judged = self.store.ledger_entry_for_key(approval_key(approval.uid))
        if judged is not None:
            self.writer.project_approval(namespace, approval, judged)
            return
        spec = _approval_spec(namespace, approval)
        if spec is None:
            return
        message = f"request {spec.request.name} is not awaiting approval (decided, deleted or never created)"
        entry = self.store.append(_orphan_record(namespace, approval, spec, message, self.clock()))
        self.writer.write_approval(
            namespace, approval, ApprovalPhase.REJECTED, Reason.REQUEST_MISMATCH, message, entry.seq
        )


def _approval_spec(namespace: str, approval: ApprovalObject) -> PromotionApprovalSpec | None:
    """The approval's spec, or None (logged) when it does not validate: the CRD schema makes that
    unreachable unless it is installed without its rules."""
    try:
        return PromotionApprovalSpec.model_validate(approval.spec)
    except ValidationError as error:
        log.warning(
            "Ignoring PromotionApproval %s/%s with an invalid spec: %s", namespace, approval.name, error
        )
        return None


def _orphan_record(
    namespace: str, approval: ApprovalObject, spec: PromotionApprovalSpec, message: str, now: dt.datetime
) -> LedgerRecord:
    return LedgerRecord(
        kind=LedgerKind.APPROVAL,
        idempotency_key=approval_key(approval.uid),
        actor=spec.approver.username if spec.approver is not None else "unknown",
        namespace=namespace,
        reason=spec.reason,
        details={
            "approval": approval.name,
            "approval_uid": approval.uid,
            "request": spec.request.name,
            "request_uid": spec.request.uid,
            "approver": spec.approver.username if spec.approver is not None else None,
            "outcome": ApprovalPhase.REJECTED.value,
            "condition_reason": Reason.REQUEST_MISMATCH.value,
            "message": message,
            "decision_digest": spec.decision_digest,
        },
        created_at=now,
    )
