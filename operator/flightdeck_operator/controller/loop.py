"""The decision loop for one pointer: read, decide, commit to the ledger, project.

Blocking code (store and API calls); the kopf handlers run it in a worker thread while holding
the pointer's lock, so requests for one pointer are decided one at a time, oldest first.

Exactly once: the ledger append is unique per request UID and is the commit point. Everything
after it (pointer status, request status, Events) is a projection that can be repeated: a
request found in the ledger is never evaluated again, only projected.

The loop (draining, the concurrency policy, deciding one request, waiting for evidence) lives here;
it composes the parts with their own responsibility: ``Assessor`` (resolve and decide, no writes),
``ApprovalGate`` (judging approvals, the quorum), ``StatusWriter`` (request and approval statuses)
and ``PointerProjector`` (the pointer's status from the ledger).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from flightdeck_operator.api.automation import automation_details
from flightdeck_operator.api.conditions import Phase, Reason, phase_for
from flightdeck_operator.api.replay import request_spec_digest
from flightdeck_operator.api.v1alpha1 import ConcurrencyPolicy, PromotionPolicySpec
from flightdeck_operator.controller.approval_gate import ApprovalGate
from flightdeck_operator.controller.assessment import Assessor
from flightdeck_operator.controller.errors import DependencyPending
from flightdeck_operator.controller.notable_records import failure_record
from flightdeck_operator.controller.pending import PendingRequest, Waiting
from flightdeck_operator.controller.pointers import PointerProjector
from flightdeck_operator.controller.projection import awaiting_evidence_status, decided_message, ledger_record
from flightdeck_operator.controller.resolve import Failure, Plan, parse_request_spec
from flightdeck_operator.controller.status_writer import StatusWriter
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.engine.decide import Decision
from flightdeck_operator.engine.ledger import LedgerEntry, request_failed_key
from flightdeck_operator.engine.models import ConfidenceThresholds, default_policy
from flightdeck_operator.engine.policy import resolve_thresholds
from flightdeck_operator.engine.windows import parse_duration
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

# Request UIDs whose status is known to be written: guards the seconds until the pending index
# drops them (78 s of lag at 64 decisions/s); 20,000 cost 4 MB of the retention plateau.
DECIDED_MEMORY = 5_000


@dataclass
class Controller:
    store: Store
    gateway: KubeGateway
    thresholds: ConfidenceThresholds
    dependency_grace: dt.timedelta
    # How often a waiting request (approval, evidence) is re-evaluated.
    recheck_seconds: float = 30.0
    # The operator's own username: its automatic requests are recorded as such in the ledger.
    identity: str | None = None
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    _projected: OrderedDict[str, None] = field(default_factory=OrderedDict)
    assessor: Assessor = field(init=False)
    writer: StatusWriter = field(init=False)
    approvals: ApprovalGate = field(init=False)
    pointers: PointerProjector = field(init=False)

    def __post_init__(self) -> None:
        self.assessor = Assessor(self.store, self.thresholds, self.clock)
        self.writer = StatusWriter(self.gateway, self.clock)
        self.approvals = ApprovalGate(self.store, self.writer, self.clock, self.recheck_seconds)
        self.pointers = PointerProjector(self.store, self.gateway, self.clock)

    # -- the queue of one pointer ----------------------------------------------------------------

    def drain(
        self, namespace: str, pointer: str, pending: Sequence[PendingRequest], view: NamespaceView
    ) -> float | None:
        """Decide every undecided request for ``pointer``, oldest first, under the policy's
        concurrencyPolicy. Returns the seconds until a waiting request wants another look (None:
        nothing waits).

        Raises :class:`DependencyPending` when the oldest request waits for an object that may
        still arrive: the requests behind it wait too (order is part of the contract).
        """
        ordered = [r for r in sorted(pending, key=lambda r: r.order) if r.uid not in self._projected]
        concurrency = self._concurrency_policy(view, pointer)
        if concurrency is ConcurrencyPolicy.REPLACE:
            # Requests decided already (or re-created copies of decided ones) only need their
            # projection: they neither supersede nor are superseded.
            contenders = [r for r in ordered if not r.dry_run and not self._already_decided(namespace, r)]
            for older in contenders[:-1]:
                self._supersede(namespace, pointer, older, contenders[-1], view)
            ordered = [r for r in ordered if r.uid not in self._projected]
        recheck: float | None = None
        undecided: PendingRequest | None = None  # Forbid: the oldest request still undecided
        for request in ordered:
            if (
                undecided is not None
                and not request.dry_run
                and not request.rollback  # backing out is never held up by a waiting promotion
                and self._forbid(namespace, pointer, request, undecided, view)
            ):
                continue
            wait = self.decide_one(namespace, pointer, request, view)
            if wait is not None:
                recheck = wait if recheck is None else min(recheck, wait)
                if concurrency is ConcurrencyPolicy.FORBID and not request.dry_run and undecided is None:
                    undecided = request
        return recheck

    def decide_one(
        self, namespace: str, pointer: str, request: PendingRequest, view: NamespaceView
    ) -> float | None:
        """Decide (or re-examine) one request; returns seconds until a recheck while it waits."""
        entry = self.store.ledger_entry_for_request(request.uid)
        if entry is None:
            earlier = self._decided_before(namespace, request)
            if earlier is not None:  # re-created after retention deleted it: answered, not decided
                log.info("Replayed %s/%s from ledger seq %d", namespace, request.name, earlier.seq)
                self.writer.project_request(namespace, request, earlier, replay=True)
                self._finish(namespace, request, view)
                return None
            failed = self.store.ledger_entry_for_key(request_failed_key(request.uid))
            if failed is not None:  # failed before a crash, status not written yet
                details = failed.details or {}
                failure = Failure(Reason(str(details.get("failure_reason"))), str(details.get("message")))
                self.writer.fail(namespace, request, failure, self.clock())
                self._finish(namespace, request, view)
                return None
            result = self._evaluate(namespace, pointer, request, view)
            if isinstance(result, Waiting):
                return result.recheck_in
            if result is None:  # failed before evaluation, or a dry run: status already written
                self._finish(namespace, request, view)
                return None
            entry = result
        if entry.pointer_changed:
            self.pointers.sync_pointer(namespace, pointer, reason_if_drifted=None)
        elif entry.evidence is not None and entry.evidence.statistics is not None:
            # A move is announced on the pointer anyway; under statistical gates a block is too,
            # naming the gates' verdict.
            self.pointers.announce_blocked(namespace, pointer, entry)
        self.writer.project_request(namespace, request, entry)
        self._finish(namespace, request, view)
        return None

    def _already_decided(self, namespace: str, request: PendingRequest) -> bool:
        """Ledgered, or a copy of a ledgered request (replayed by ``decide_one``, never decided again)."""
        return (
            self.store.ledger_entry_for_request(request.uid) is not None
            or self._decided_before(namespace, request) is not None
        )

    def _decided_before(self, namespace: str, request: PendingRequest) -> LedgerEntry | None:
        """The ledgered decision of an earlier request with this name and authored spec."""
        spec = parse_request_spec(request.spec)
        if isinstance(spec, Failure) or spec.dry_run:
            return None
        entry = self.store.replay_entry(namespace, request.name, request_spec_digest(spec))
        return entry if entry is not None and entry.request_uid != request.uid else None

    def _finish(self, namespace: str, request: PendingRequest, view: NamespaceView) -> None:
        """The request is decided: approvals of it not judged yet (made while it waited for evidence,
        or in a race with its decision) are recorded as rejected, so every attempt is on record."""
        self._remember(request.uid)
        for approval in view.approvals.get(request.name, ()):
            if not approval.phase:
                self.approvals.judge_orphan(namespace, approval)

    def _concurrency_policy(self, view: NamespaceView, pointer: str) -> ConcurrencyPolicy:
        spec = self._policy_spec(view, pointer)
        return spec.concurrency_policy if spec is not None else ConcurrencyPolicy.QUEUE

    @staticmethod
    def _policy_spec(view: NamespaceView, pointer: str) -> PromotionPolicySpec | None:
        pointer_spec = view.pointers.get(pointer)
        if pointer_spec is None or pointer_spec.policy_ref is None:
            return None
        return view.policies.get(pointer_spec.policy_ref.name)

    def _supersede(
        self, namespace: str, pointer: str, older: PendingRequest, newer: PendingRequest, view: NamespaceView
    ) -> None:
        """concurrencyPolicy Replace: ``older`` (undecided: see ``drain``) gives way."""
        message = (
            f"Superseded by the newer request {newer.name} (concurrencyPolicy Replace); nothing was decided"
        )
        self.writer.fail(namespace, older, Failure(Reason.SUPERSEDED, message), self.clock())
        self._finish(namespace, older, view)

    def _forbid(
        self,
        namespace: str,
        pointer: str,
        request: PendingRequest,
        undecided: PendingRequest,
        view: NamespaceView,
    ) -> bool:
        """concurrencyPolicy Forbid: fail ``request`` while an older one is undecided. False when it
        was decided before (ledgered, or a re-created copy to replay), so it only needs its projection."""
        if self._already_decided(namespace, request):
            return False
        message = (
            f"Request {undecided.name} for ReleasePointer {pointer!r} is still undecided "
            f"({undecided.phase or 'Pending'}); concurrencyPolicy Forbid allows one at a time"
        )
        self._fail(namespace, pointer, request, Failure(Reason.CONCURRENCY_FORBIDDEN, message), view)
        self._finish(namespace, request, view)
        return True

    def _fail(
        self, namespace: str, pointer: str, request: PendingRequest, failure: Failure, view: NamespaceView
    ) -> None:
        """End the request Failed. Not a decision, but recorded first (``request-failed``) so that
        it is notified; dry runs record nothing, as ever."""
        now = self.clock()
        if not request.dry_run and phase_for(failure.reason) is Phase.FAILED:
            entry = self.store.append(
                failure_record(namespace, pointer, request, failure, view.pointers.get(pointer), now)
            )
            log.info(
                "Ledgered the failure of %s/%s as seq %d (%s)",
                namespace,
                request.name,
                entry.seq,
                failure.reason.value,
            )
        self.writer.fail(namespace, request, failure, now)

    def _evaluate(
        self, namespace: str, pointer: str, request: PendingRequest, view: NamespaceView
    ) -> LedgerEntry | Waiting | None:
        now = self.clock()
        spec = parse_request_spec(request.spec)
        if isinstance(spec, Failure):
            self._fail(namespace, pointer, request, spec, view)
            return None
        assessed = self.assessor.assess(namespace, spec, view, created=_created(request))
        if isinstance(assessed, Failure):
            if assessed.dependency and self._within_grace(request, now):
                raise DependencyPending(assessed.message, delay=1.0)
            self._fail(namespace, pointer, request, assessed, view)
            return None
        plan, decision = assessed
        if spec.dry_run:
            self.writer.write_dry_run(namespace, request, decision, now)
            return None
        if decision.awaiting_evidence_only and spec.wait_for_evidence is not None:
            deadline = _created(request) + parse_duration(spec.wait_for_evidence.timeout)
            if now < deadline:
                self._await_evidence(namespace, request, plan, decision, deadline, now)
                return Waiting(max(0.5, min(self.recheck_seconds, (deadline - now).total_seconds())))
        approvals: list[LedgerEntry] = []
        gate = self.assessor.approval_policy(plan, spec)
        if gate is not None and (decision.passed or request.phase == Phase.AWAITING_APPROVAL.value):
            met = self.approvals.check(namespace, pointer, request, view, decision, gate, spec, now)
            if isinstance(met, Waiting):
                return met
            approvals = met
        record = ledger_record(
            decision,
            request_uid=request.uid,
            request_name=request.name,
            namespace=namespace,
            pointer=pointer,
            actor=spec.actor or (spec.requested_by.username if spec.requested_by else "unknown"),
            reason=_with_approvals(spec.reason, approvals),
            requested_by=spec.requested_by,
            approvals=approvals,
            spec_digest=request_spec_digest(spec),
            window=spec.window,
            automation=automation_details(
                request.labels,
                request.annotations,
                spec.requested_by.username if spec.requested_by else None,
                self.identity,
            ),
        )
        # The commit point. PointerMoved (the pointer's history moved since the plan was read: only
        # another writer can do that) propagates, and the drain evaluates the request again.
        entry = self.store.append(record, expected_pointer_seq=plan.pointer_seq)
        log.info("Ledgered %s/%s as seq %d (%s)", namespace, request.name, entry.seq, decided_message(entry))
        return entry

    # -- waiting for evidence --------------------------------------------------------------------

    def _await_evidence(
        self,
        namespace: str,
        request: PendingRequest,
        plan: Plan,
        decision: Decision,
        deadline: dt.datetime,
        now: dt.datetime,
    ) -> None:
        policy = plan.policy or default_policy()
        thresholds = resolve_thresholds(policy, self.thresholds)
        evidence = decision.evidence
        baseline_runs = evidence.baseline.runs if evidence is not None else 0
        candidate_runs = evidence.candidate.runs if evidence is not None else 0
        if policy.statistical_gates is not None and not policy.require_high_diff_confidence:
            # The HIGH-confidence minimums do not apply: only what the gates need is missing.
            baseline_runs, candidate_runs = thresholds.min_baseline_runs, thresholds.min_candidate_runs
        status = awaiting_evidence_status(
            decision,
            deadline=deadline,
            missing_baseline_runs=max(0, thresholds.min_baseline_runs - baseline_runs),
            missing_candidate_runs=max(0, thresholds.min_candidate_runs - candidate_runs),
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self.writer.write_waiting(namespace, request, status, Reason.AWAITING_EVIDENCE)

    def _within_grace(self, request: PendingRequest, now: dt.datetime) -> bool:
        return now - _created(request) < self.dependency_grace

    def _remember(self, uid: str) -> None:
        self._projected[uid] = None
        while len(self._projected) > DECIDED_MEMORY:
            self._projected.popitem(last=False)

    def forget(self, uid: str) -> None:
        self._projected.pop(uid, None)


def _with_approvals(reason: str, approvals: Sequence[LedgerEntry]) -> str:
    """The reference's confirm reason, ``<request reason> | approval: <approval reason>``, once
    per approval that met the quorum."""
    return "".join([reason, *(f" | approval: {a.reason}" for a in approvals)])


def _created(request: PendingRequest) -> dt.datetime:
    return dt.datetime.fromisoformat(request.created.replace("Z", "+00:00"))
