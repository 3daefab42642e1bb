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

from flightdeck_operator.api.v1alpha1 import DEFAULT_HISTORY_LIMIT, PROMOTION_REQUEST, RELEASE_POINTER
from flightdeck_operator.conditions import Reason
from flightdeck_operator.decide import Comparison, Decision, Outcome, decide
from flightdeck_operator.errors import Conflict, DependencyPending, NotFound
from flightdeck_operator.evidence import (
    EvidenceError,
    InvalidWindowError,
    PricingModelMissingError,
    window_bounds,
)
from flightdeck_operator.gateway import KubeGateway
from flightdeck_operator.ledger import LedgerEntry
from flightdeck_operator.models import ConfidenceThresholds
from flightdeck_operator.projection import (
    action_id_for,
    decided_message,
    dry_run_status,
    failed_status,
    ledger_record,
    outcome_reason,
    pointer_in_sync,
    pointer_status,
    request_status_from_entry,
)
from flightdeck_operator.resolve import Failure, NamespaceView, Plan, parse_request_spec, resolve
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

Body = Mapping[str, Any]
POINTER_CAS_ATTEMPTS = 5
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

    @property
    def order(self) -> tuple[str, str]:
        """DESIGN 2: oldest first by creationTimestamp, then name."""
        return (self.created, self.name)


@dataclass
class Controller:
    store: Store
    gateway: KubeGateway
    thresholds: ConfidenceThresholds
    dependency_grace: dt.timedelta
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    _projected: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _pointer_bodies: dict[tuple[str, str], Body] = field(default_factory=dict)

    # -- the queue of one pointer ----------------------------------------------------------------

    def drain(
        self, namespace: str, pointer: str, pending: Sequence[PendingRequest], view: NamespaceView
    ) -> None:
        """Decide every undecided request for ``pointer``, oldest first.

        Raises :class:`DependencyPending` when the oldest request waits for an object that may
        still arrive: the requests behind it wait too (order is part of the contract).
        """
        for request in sorted(pending, key=lambda r: r.order):
            if request.uid in self._projected:
                continue
            self.decide_one(namespace, pointer, request, view)

    def decide_one(self, namespace: str, pointer: str, request: PendingRequest, view: NamespaceView) -> None:
        entry = self.store.ledger_entry_for_request(request.uid)
        if entry is None:
            entry = self._evaluate(namespace, pointer, request, view)
            if entry is None:  # failed before evaluation, or a dry run: status already written
                self._remember(request.uid)
                return
        if entry.pointer_changed:
            self.sync_pointer(namespace, pointer, reason_if_drifted=None)
        self._project_request(namespace, request, entry)
        self._remember(request.uid)

    # -- evaluation ------------------------------------------------------------------------------

    def _evaluate(
        self, namespace: str, pointer: str, request: PendingRequest, view: NamespaceView
    ) -> LedgerEntry | None:
        now = self.clock()
        spec = parse_request_spec(request.spec)
        if isinstance(spec, Failure):
            self._fail(namespace, request, spec, now)
            return None
        last_move = self.store.last_pointer_entry(namespace, pointer)
        plan = resolve(spec, view, last_move)
        if isinstance(plan, Failure):
            if plan.dependency and self._within_grace(request, now):
                raise DependencyPending(plan.message, delay=1.0)
            self._fail(namespace, request, plan, now)
            return None
        try:
            decision = self._decide(plan, now)
        except InvalidWindowError as error:
            self._fail(namespace, request, Failure(Reason.INVALID_WINDOW, str(error)), now)
            return None
        except PricingModelMissingError as error:
            self._fail(namespace, request, Failure(Reason.PRICING_ENTRY_MISSING, str(error)), now)
            return None
        except EvidenceError as error:  # cross-agent evidence
            self._fail(namespace, request, Failure(Reason.AGENT_MISMATCH, str(error)), now)
            return None
        if decision.outcome is Outcome.NOTHING_TO_ROLL_BACK:
            self._fail(namespace, request, Failure(Reason.NOTHING_TO_ROLL_BACK, decision.message), now)
            return None
        if spec.dry_run:
            self._write_dry_run(namespace, request, decision, now)
            return None
        record = ledger_record(
            decision,
            request_uid=request.uid,
            request_name=request.name,
            namespace=namespace,
            pointer=pointer,
            actor=spec.actor or "unknown",
            reason=spec.reason,
        )
        entry = self.store.append(record)  # the commit point
        log.info("Ledgered %s/%s as seq %d (%s)", namespace, request.name, entry.seq, decided_message(entry))
        return entry

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
        created = dt.datetime.fromisoformat(request.created.replace("Z", "+00:00"))
        return now - created < self.dependency_grace

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
