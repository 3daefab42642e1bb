"""The decision loop for one pointer: read, decide, commit to the ledger, project.

Blocking code (store and API calls); the kopf handlers run it in a worker thread while holding
the pointer's lock, so requests for one pointer are decided one at a time, oldest first.

Exactly once: the ledger append is unique per request UID and is the commit point. Everything
after it (pointer status, request status, Events) is a projection that can be repeated: a
request found in the ledger is never evaluated again, only projected.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flightdeck_operator.api.approvals import (
    accepted_entries,
    approval_key,
    decision_digest,
    judge,
    stale_key,
)
from flightdeck_operator.api.conditions import ApprovalPhase, Phase, Reason
from flightdeck_operator.api.v1alpha1 import (
    DEFAULT_HISTORY_LIMIT,
    PROMOTION_APPROVAL,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    ApprovalPolicy,
    ConcurrencyPolicy,
    PromotionApprovalSpec,
    PromotionPolicySpec,
    PromotionRequestSpec,
)
from flightdeck_operator.controller.errors import DependencyPending
from flightdeck_operator.controller.projection import (
    approval_record,
    approval_status,
    awaiting_approval_status,
    awaiting_evidence_status,
    decided_message,
    dry_run_status,
    failed_status,
    ledger_record,
    outcome_reason,
    pointer_in_sync,
    pointer_status,
    promotion_window_status,
    request_status_from_entry,
)
from flightdeck_operator.controller.resolve import (
    ApprovalObject,
    Failure,
    NamespaceView,
    Plan,
    parse_request_spec,
    resolve,
)
from flightdeck_operator.engine.decide import Comparison, Decision, Outcome, apply_promotion_window, decide
from flightdeck_operator.engine.evidence import (
    EvidenceError,
    InvalidWindowError,
    PricingModelMissingError,
    window_bounds,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind, LedgerRecord, action_id_for
from flightdeck_operator.engine.models import ConfidenceThresholds, PromotionAction, default_policy
from flightdeck_operator.engine.policy import resolve_thresholds
from flightdeck_operator.engine.windows import WindowState, parse_duration, window_state
from flightdeck_operator.kube.errors import Conflict, NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

Body = Mapping[str, Any]
POINTER_CAS_ATTEMPTS = 5
WAITING_PHASES = frozenset({Phase.AWAITING_APPROVAL.value, Phase.AWAITING_EVIDENCE.value})
DECIDED_MEMORY = 20_000  # request UIDs whose status is known to be written (index lag guard)


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """An undecided PromotionRequest as the index holds it."""

    name: str
    uid: str
    created: str  # creationTimestamp (RFC 3339, sorts as text)
    generation: int | None
    spec: Mapping[str, Any]
    conditions: Sequence[Mapping[str, Any]] = ()
    # What its status shows now (phase, message, approval, evidenceWait), to write only changes.
    shown: Mapping[str, Any] = field(default_factory=dict)

    @property
    def order(self) -> tuple[str, bool, str]:
        """DESIGN 2: oldest first by creationTimestamp, then name. creationTimestamp has whole
        seconds: within one second, a request already waiting (seen before) goes first, so a newer
        one can never overtake it (concurrencyPolicy Forbid would fail the wrong one)."""
        return (self.created, self.phase not in WAITING_PHASES, self.name)

    @property
    def dry_run(self) -> bool:
        return bool(self.spec.get("dryRun"))

    @property
    def rollback(self) -> bool:
        return self.spec.get("action") == PromotionAction.ROLLBACK.value

    @property
    def phase(self) -> str | None:
        value = self.shown.get("phase")
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Waiting:
    """The request stays undecided (awaiting approval or evidence); look again in ``recheck_in`` s."""

    recheck_in: float


@dataclass
class Controller:
    store: Store
    gateway: KubeGateway
    thresholds: ConfidenceThresholds
    dependency_grace: dt.timedelta
    # How often a waiting request (approval, evidence) is re-evaluated.
    recheck_seconds: float = 30.0
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    _projected: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _pointer_bodies: dict[tuple[str, str], Body] = field(default_factory=dict)

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
            contenders = [r for r in ordered if not r.dry_run]
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
            result = self._evaluate(namespace, pointer, request, view)
            if isinstance(result, Waiting):
                return result.recheck_in
            if result is None:  # failed before evaluation, or a dry run: status already written
                self._finish(namespace, request, view)
                return None
            entry = result
        if entry.pointer_changed:
            self.sync_pointer(namespace, pointer, reason_if_drifted=None)
        self._project_request(namespace, request, entry)
        self._finish(namespace, request, view)
        return None

    def _finish(self, namespace: str, request: PendingRequest, view: NamespaceView) -> None:
        """The request is decided: approvals of it not judged yet (made while it waited for evidence,
        or in a race with its decision) are recorded as rejected, so every attempt is on record."""
        self._remember(request.uid)
        for approval in view.approvals.get(request.name, ()):
            if not approval.phase:
                self.judge_orphan_approval(namespace, approval)

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
        """concurrencyPolicy Replace: ``older`` gives way, unless it was already decided (ledgered)."""
        if self.store.ledger_entry_for_request(older.uid) is not None:
            self.decide_one(namespace, pointer, older, view)  # only finishes its projection
            return
        message = (
            f"Superseded by the newer request {newer.name} (concurrencyPolicy Replace); nothing was decided"
        )
        self._fail(namespace, older, Failure(Reason.SUPERSEDED, message), self.clock())
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
        was decided before (ledgered), so it only needs its projection."""
        if self.store.ledger_entry_for_request(request.uid) is not None:
            return False
        message = (
            f"Request {undecided.name} for ReleasePointer {pointer!r} is still undecided "
            f"({undecided.phase or 'Pending'}); concurrencyPolicy Forbid allows one at a time"
        )
        self._fail(namespace, request, Failure(Reason.CONCURRENCY_FORBIDDEN, message), self.clock())
        self._finish(namespace, request, view)
        return True

    # -- evaluation ------------------------------------------------------------------------------

    def assess(
        self, namespace: str, spec: PromotionRequestSpec, view: NamespaceView
    ) -> tuple[Plan, Decision] | Failure:
        """Resolve and decide ``spec`` without writing anything (store reads only): the shared core
        of a decision and of the admission webhook's dry-run prediction."""
        now = self.clock()
        last_move = self.store.last_pointer_entry(namespace, spec.pointer)
        plan = resolve(spec, view, last_move)
        if isinstance(plan, Failure):
            return plan
        try:
            decision = self._decide(plan, now)
        except InvalidWindowError as error:
            return Failure(Reason.INVALID_WINDOW, str(error))
        except PricingModelMissingError as error:
            return Failure(Reason.PRICING_ENTRY_MISSING, str(error))
        except EvidenceError as error:  # cross-agent evidence
            return Failure(Reason.AGENT_MISMATCH, str(error))
        if decision.outcome is Outcome.NOTHING_TO_ROLL_BACK:
            return Failure(Reason.NOTHING_TO_ROLL_BACK, decision.message)
        windows = plan.policy_spec.window_rules() if plan.policy_spec is not None else ()
        state = window_state(windows, now) if windows else None
        override = spec.override.reason if spec.override is not None else None
        return plan, apply_promotion_window(decision, state, override_reason=override)

    def _evaluate(
        self, namespace: str, pointer: str, request: PendingRequest, view: NamespaceView
    ) -> LedgerEntry | Waiting | None:
        now = self.clock()
        spec = parse_request_spec(request.spec)
        if isinstance(spec, Failure):
            self._fail(namespace, request, spec, now)
            return None
        assessed = self.assess(namespace, spec, view)
        if isinstance(assessed, Failure):
            if assessed.dependency and self._within_grace(request, now):
                raise DependencyPending(assessed.message, delay=1.0)
            self._fail(namespace, request, assessed, now)
            return None
        plan, decision = assessed
        if spec.dry_run:
            self._write_dry_run(namespace, request, decision, now)
            return None
        if decision.awaiting_evidence_only and spec.wait_for_evidence is not None:
            deadline = _created(request) + parse_duration(spec.wait_for_evidence.timeout)
            if now < deadline:
                self._await_evidence(namespace, request, plan, decision, deadline, now)
                return Waiting(max(0.5, min(self.recheck_seconds, (deadline - now).total_seconds())))
        approvals: list[LedgerEntry] = []
        gate = self._approval_policy(plan, spec)
        if gate is not None and (decision.passed or request.phase == Phase.AWAITING_APPROVAL.value):
            met = self._approval_gate(namespace, pointer, request, view, decision, gate, spec, now)
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
        )
        entry = self.store.append(record)  # the commit point
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
        thresholds = resolve_thresholds(plan.policy or default_policy(), self.thresholds)
        evidence = decision.evidence
        baseline_runs = evidence.baseline.runs if evidence is not None else 0
        candidate_runs = evidence.candidate.runs if evidence is not None else 0
        status = awaiting_evidence_status(
            decision,
            deadline=deadline,
            missing_baseline_runs=max(0, thresholds.min_baseline_runs - baseline_runs),
            missing_candidate_runs=max(0, thresholds.min_candidate_runs - candidate_runs),
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self._write_waiting(namespace, request, status, Reason.AWAITING_EVIDENCE)

    # -- approvals -------------------------------------------------------------------------------

    @staticmethod
    def _approval_policy(plan: Plan, spec: PromotionRequestSpec) -> ApprovalPolicy | None:
        """Approval gates promotions only (the reference never gates a rollback)."""
        if plan.policy_spec is None or plan.request.action is not PromotionAction.PROMOTE or spec.dry_run:
            return None
        return plan.policy_spec.approval

    def _approval_gate(
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
                self._project_approval(namespace, approval, judged)
        entries = self.store.approvals_for_request(namespace, pointer, request.uid)
        accepted = accepted_entries(entries, digest)
        stale = self._mark_stale(namespace, objects, entries, digest, now)
        if decision.passed and len(accepted) >= gate.min_approvals:
            return accepted
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
        self._write_waiting(namespace, request, status, Reason.AWAITING_APPROVAL)
        return Waiting(self.recheck_seconds)

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
        self._write_approval(namespace, approval, verdict.phase, verdict.reason, verdict.message, entry.seq)

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
                self._write_approval(
                    namespace, approval, ApprovalPhase.STALE, Reason.APPROVAL_STALE, message, marked_entry.seq
                )
        return stale

    def judge_orphan_approval(self, namespace: str, approval: ApprovalObject) -> None:
        """An approval whose request is not awaiting approval (decided, deleted, never existed):
        ledgered as rejected so that every approval attempt is on record."""
        judged = self.store.ledger_entry_for_key(approval_key(approval.uid))
        if judged is not None:
            self._project_approval(namespace, approval, judged)
            return
        spec = _approval_spec(namespace, approval)
        if spec is None:
            return
        message = f"request {spec.request.name} is not awaiting approval (decided, deleted or never created)"
        entry = self.store.append(_orphan_record(namespace, approval, spec, message, self.clock()))
        self._write_approval(
            namespace, approval, ApprovalPhase.REJECTED, Reason.REQUEST_MISMATCH, message, entry.seq
        )

    def _project_approval(self, namespace: str, approval: ApprovalObject, entry: LedgerEntry) -> None:
        """The approval's status from its ledger entry alone (the verdict is never re-judged)."""
        details = entry.details or {}
        self._write_approval(
            namespace,
            approval,
            ApprovalPhase(str(details.get("outcome"))),
            Reason(str(details.get("condition_reason"))),
            str(details.get("message") or ""),
            entry.seq,
        )

    def _write_approval(
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

    # -- dry-run prediction (admission webhook) -------------------------------------------------

    def predict(self, namespace: str, raw_spec: Mapping[str, Any], view: NamespaceView) -> str:
        """One line saying what the operator would decide for this spec now (nothing is written)."""
        spec = parse_request_spec(raw_spec)
        if isinstance(spec, Failure):
            return f"FlightDeck prediction: Failed ({spec.reason.value}): {spec.message}"
        assessed = self.assess(namespace, spec, view)
        if isinstance(assessed, Failure):
            return f"FlightDeck prediction: Failed ({assessed.reason.value}): {assessed.message}"
        plan, decision = assessed
        target = f"{decision.action.value} of {decision.target_release_id} on {spec.pointer}"
        reasons = "; ".join(decision.policy_result.reasons) if decision.policy_result else ""
        if not decision.passed:
            reason = Reason.PROMOTION_WINDOW_CLOSED if decision.blocked_by_window else Reason.POLICY_BLOCKED
            if decision.awaiting_evidence_only and spec.wait_for_evidence is not None:
                return f"FlightDeck prediction: {target} would await evidence (up to {spec.wait_for_evidence.timeout}): {reasons}"
            return f"FlightDeck prediction: {target} would be Blocked ({reason.value}): {reasons}"
        gate = self._approval_policy(plan, spec)
        if gate is not None:
            return f"FlightDeck prediction: {target} passes the policy and would await {gate.min_approvals} approval(s)"
        outcome = (
            "Evaluated (dry run)"
            if spec.dry_run
            else ("Promoted" if decision.action is PromotionAction.PROMOTE else "RolledBack")
        )
        suffix = f" with break-glass override: {decision.override_reason}" if decision.override_reason else ""
        return f"FlightDeck prediction: {target} would be {outcome}{suffix}" + (
            f" ({reasons})" if reasons else ""
        )

    # -- pointer promotion windows ---------------------------------------------------------------

    def window_status(self, policy: PromotionPolicySpec | None) -> dict[str, Any] | None:
        windows = policy.window_rules() if policy is not None else ()
        state: WindowState | None = window_state(windows, self.clock()) if windows else None
        return promotion_window_status(state)

    def sync_window(self, namespace: str, pointer: str, wanted: Mapping[str, Any] | None) -> None:
        """Show whether promotion is open on the pointer (a merge patch of that one field)."""
        # A merge patch keeps a nested key it leaves out: an unknown nextChange must be sent as null.
        patch = None if wanted is None else {"nextChange": None, "activeWindows": [], **wanted}
        try:
            self.gateway.patch_status(RELEASE_POINTER.plural, namespace, pointer, {"promotionWindow": patch})
        except NotFound:
            return
        self._pointer_bodies.pop((namespace, pointer), None)  # its resourceVersion moved on

    def _decide(self, plan: Plan, now: dt.datetime) -> Decision:
        comparison = None
        if plan.current_release_id is not None:
            assert plan.baseline
            assert plan.baseline_pricing
            assert plan.candidate_pricing
            since, until = window_bounds(plan.request.window, now)
            baseline_evidence, candidate_evidence = self.store.diff_evidence(
                plan.current_release_id,
                plan.request.target.release_id,
                plan.request.environment,
                since,
                until,
            )
            comparison = Comparison(
                baseline=plan.baseline,
                baseline_pricing=plan.baseline_pricing,
                candidate_pricing=plan.candidate_pricing,
                baseline_evidence=baseline_evidence,
                candidate_evidence=candidate_evidence,
            )
        return decide(
            plan.request,
            current_release_id=plan.current_release_id,
            comparison=comparison,
            policy=plan.policy,
            now=now,
            thresholds=self.thresholds,
        )

    def _within_grace(self, request: PendingRequest, now: dt.datetime) -> bool:
        return now - _created(request) < self.dependency_grace

    # -- projection ------------------------------------------------------------------------------

    def shows_ledger_head(self, namespace: str, pointer: str, status: Mapping[str, Any]) -> bool:
        """Whether ``status`` (e.g. from a watch event) already equals the ledger's projection."""
        return pointer_in_sync(status, self.store.last_pointer_entry(namespace, pointer))

    def sync_pointer(self, namespace: str, pointer: str, *, reason_if_drifted: str | None) -> bool:
        """Make the pointer's status equal its ledger projection (compare-and-swap on
        resourceVersion). Returns True when it wrote. ``reason_if_drifted``: post a warning Event
        (a status that differs from the ledger outside a decision is drift, e.g. a hand edit)."""
        key = (namespace, pointer)
        for _attempt in range(POINTER_CAS_ATTEMPTS):
            # A decision's projection starts from the body our last write returned (we hold the
            # pointer's lock, so it is current unless a human edited it, and then the write below
            # gets 409 and we re-read). Drift checks always read afresh.
            body = self._pointer_bodies.pop(key, None) if reason_if_drifted is None else None
            if body is None:
                try:
                    body = self.gateway.get(RELEASE_POINTER.plural, namespace, pointer)
                except NotFound:
                    return False
            head = self.store.last_pointer_entry(namespace, pointer)
            current = body.get("status") or {}
            if pointer_in_sync(current, head):
                return False
            spec = body.get("spec") or {}
            history_limit = int(spec.get("historyLimit") or DEFAULT_HISTORY_LIMIT)
            moves = self.store.pointer_moves(namespace, pointer, limit=history_limit)
            status = pointer_status(
                moves,
                history_limit=history_limit,
                generation=body["metadata"].get("generation"),
                conditions=current.get("conditions"),
                now=self.clock(),
            )
            status["promotionWindow"] = current.get("promotionWindow")  # the sweep keeps that one
            try:
                updated = self.gateway.replace_status(
                    RELEASE_POINTER.plural, {**body, "status": _drop_none(status)}
                )
            except Conflict:
                continue  # someone wrote in between: re-read and recompute
            except NotFound:
                return False
            # managedFields are most of a body's size and a PUT of status does not need them.
            self._pointer_bodies[key] = {
                **updated,
                "metadata": {k: v for k, v in updated["metadata"].items() if k != "managedFields"},
            }
            if reason_if_drifted is not None:
                self.gateway.post_event(
                    updated,
                    kind=RELEASE_POINTER.kind,
                    event_type="Warning",
                    reason=Reason.POINTER_REPAIRED.value,
                    message=(
                        f"Status showed release {current.get('releaseId')!r} (ledger seq "
                        f"{current.get('ledgerSeq')!r}); the ledger says {status.get('releaseId')!r} "
                        f"(seq {status.get('ledgerSeq')!r}). {reason_if_drifted}"
                    ),
                )
            elif head is not None:
                self.gateway.post_event(
                    updated,
                    kind=RELEASE_POINTER.kind,
                    event_type="Normal",
                    reason=outcome_reason(head).value,
                    message=decided_message(head),
                )
            return True
        raise Conflict(f"ReleasePointer {namespace}/{pointer} kept changing; will retry", 409)

    def _project_request(self, namespace: str, request: PendingRequest, entry: LedgerEntry) -> None:
        status = request_status_from_entry(
            entry, generation=request.generation, conditions=request.conditions, now=self.clock()
        )
        event_type = "Normal" if entry.pointer_changed else "Warning"
        self._write_request(namespace, request, status, event_type, outcome_reason(entry).value)

    def _fail(self, namespace: str, request: PendingRequest, failure: Failure, now: dt.datetime) -> None:
        status = failed_status(
            failure.reason,
            failure.message,
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self._write_request(namespace, request, status, "Warning", failure.reason.value)

    def _write_dry_run(
        self, namespace: str, request: PendingRequest, decision: Decision, now: dt.datetime
    ) -> None:
        status = dry_run_status(
            decision,
            action_id=action_id_for(request.uid),
            generation=request.generation,
            conditions=request.conditions,
            now=now,
        )
        self._write_request(namespace, request, status, "Normal", Reason.EVALUATED.value)

    def _write_waiting(
        self, namespace: str, request: PendingRequest, status: dict[str, Any], reason: Reason
    ) -> None:
        """Write a waiting status only when what it says changed (rechecks are frequent)."""
        keys = ("phase", "message", "approval")
        if all(_same(request.shown.get(k), status.get(k)) for k in keys) and _same_wait(
            request.shown.get("evidenceWait"), status.get("evidenceWait")
        ):
            return
        self._write_request(namespace, request, status, "Normal", reason.value)

    def _write_request(
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

    def _remember(self, uid: str) -> None:
        self._projected[uid] = None
        while len(self._projected) > DECIDED_MEMORY:
            self._projected.popitem(last=False)

    def forget(self, uid: str) -> None:
        self._projected.pop(uid, None)


def _drop_none(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value is not None}


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


def _with_approvals(reason: str, approvals: Sequence[LedgerEntry]) -> str:
    """The reference's confirm reason, ``<request reason> | approval: <approval reason>``, once
    per approval that met the quorum."""
    return "".join([reason, *(f" | approval: {a.reason}" for a in approvals)])


def _created(request: PendingRequest) -> dt.datetime:
    return dt.datetime.fromisoformat(request.created.replace("Z", "+00:00"))


def _same(shown: Any, wanted: Any) -> bool:
    return (shown or None) == (wanted or None)


def _same_wait(shown: Any, wanted: Any) -> bool:
    """evidenceWait without lastEvaluatedAt (which changes on every recheck)."""

    def strip(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value or None
        return {k: v for k, v in value.items() if k != "lastEvaluatedAt"}

    return bool(strip(shown) == strip(wanted))


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
