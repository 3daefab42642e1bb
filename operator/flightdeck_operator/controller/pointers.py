"""The pointer's status as a projection of the ledger: written with a resourceVersion precondition
(compare-and-swap), repaired with a warning Event when it drifted, its health (duplicate, missing
policy), the promotion-window field, and the ledgered retirement of a deleted pointer."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.v1alpha1 import DEFAULT_HISTORY_LIMIT, RELEASE_POINTER, PromotionPolicySpec
from flightdeck_operator.controller.pointer_health import PointerProblem
from flightdeck_operator.controller.projection import (
    decided_message,
    outcome_reason,
    pointer_in_sync,
    pointer_ready,
    pointer_status,
    promotion_window_status,
    shows_health,
)
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind, LedgerRecord, retirement_key
from flightdeck_operator.engine.models import format_time
from flightdeck_operator.engine.windows import WindowState, window_state
from flightdeck_operator.kube.errors import Conflict, NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

log = logging.getLogger(__name__)

Body = Mapping[str, Any]


class PackedBodies:
    """The last body written per pointer, kept as compact JSON: as parsed objects the bodies of
    1,000 pointers held about 10 MB (tracemalloc, benchmarks/memory.py), packed about a tenth of
    that; unpacking one costs microseconds, the GET it saves milliseconds."""

    def __init__(self) -> None:
        self._packed: dict[tuple[str, str], bytes] = {}

    def put(self, key: tuple[str, str], body: Body) -> None:
        self._packed[key] = msgspec.json.encode(body)

    def get(self, key: tuple[str, str]) -> Body | None:
        packed = self._packed.get(key)
        return None if packed is None else cast(Body, msgspec.json.decode(packed))

    def pop(self, key: tuple[str, str]) -> Body | None:
        packed = self._packed.pop(key, None)
        return None if packed is None else cast(Body, msgspec.json.decode(packed))

    def discard(self, key: tuple[str, str]) -> None:
        self._packed.pop(key, None)

    def __len__(self) -> int:
        return len(self._packed)


POINTER_CAS_ATTEMPTS = 5


@dataclass
class PointerProjector:
    store: Store
    gateway: KubeGateway
    clock: Callable[[], dt.datetime]
    # The body our last write returned, per pointer: a decision's projection starts from it.
    _bodies: PackedBodies = field(default_factory=PackedBodies)

    def shows(
        self, namespace: str, pointer: str, status: Mapping[str, Any], problem: PointerProblem | None
    ) -> bool:
        """Whether ``status`` (e.g. from a watch event) already shows the ledger's projection and
        what keeps the pointer from governing (``problem``), so there is nothing to write."""
        head = self.store.last_pointer_entry(namespace, pointer)
        return pointer_in_sync(status, head) and shows_health(status.get("conditions"), problem)

    def sync_pointer(
        self,
        namespace: str,
        pointer: str,
        *,
        reason_if_drifted: str | None,
        problem: PointerProblem | None = None,
    ) -> bool:
        """Make the pointer's status equal its ledger projection and its Ready condition say what
        ``problem`` means (compare-and-swap on resourceVersion). Returns True when it wrote.
        ``reason_if_drifted``: a release or seq that differs from the ledger outside a decision is
        drift (e.g. a hand edit): the repair shows in Ready (``PointerRepaired``) and a warning Event."""
        key = (namespace, pointer)
        for _attempt in range(POINTER_CAS_ATTEMPTS):
            # A decision's projection starts from the body our last write returned (we hold the
            # pointer's lock, so it is current unless a human edited it, and then the write below
            # gets 409 and we re-read). Drift checks always read afresh.
            body = self._bodies.pop(key) if reason_if_drifted is None else None
            if body is None:
                try:
                    body = self.gateway.get(RELEASE_POINTER.plural, namespace, pointer)
                except NotFound:
                    return False
            head = self.store.last_pointer_entry(namespace, pointer)
            current = body.get("status") or {}
            in_sync = pointer_in_sync(current, head)
            if in_sync and shows_health(current.get("conditions"), problem):
                return False
            now = self.clock()
            drift = None
            if not in_sync and reason_if_drifted is not None:
                drift = (
                    f"Status showed release {current.get('releaseId')!r} (ledger seq "
                    f"{current.get('ledgerSeq')!r}); the ledger says {head.release_id if head else None!r} "
                    f"(seq {head.seq if head else None!r}). {reason_if_drifted}"
                )
            spec = body.get("spec") or {}
            history_limit = int(spec.get("historyLimit") or DEFAULT_HISTORY_LIMIT)
            moves = self.store.pointer_moves(namespace, pointer, limit=history_limit)
            retired = self.store.last_retirement(namespace, pointer)
            ready_update = pointer_ready(
                head,
                problem,
                repaired=None if drift is None else f"Repaired from the audit ledger at {format_time(now)}",
                current=current.get("conditions") if in_sync else None,
                retired=retired,
            )
            status = pointer_status(
                moves,
                history_limit=history_limit,
                generation=body["metadata"].get("generation"),
                conditions=current.get("conditions"),
                now=now,
                ready_update=ready_update,
                retired=retired,
            )
            status["promotionWindow"] = current.get("promotionWindow")  # the sweep keeps that one
            # The verification loop keeps these (controller/verifier.py).
            status["verification"] = current.get("verification")
            status["pipeline"] = current.get("pipeline")
            try:
                updated = self.gateway.replace_status(
                    RELEASE_POINTER.plural, {**body, "status": _drop_none(status)}
                )
            except Conflict:
                continue  # someone wrote in between: re-read and recompute
            except NotFound:
                return False
            # Kept for this pointer's next projection, without what it does not read: managedFields
            # (most of a body) and the history (recomputed from the ledger on every write).
            self._bodies.put(
                key,
                {
                    **updated,
                    "metadata": {k: v for k, v in updated["metadata"].items() if k != "managedFields"},
                    "status": {k: v for k, v in (updated.get("status") or {}).items() if k != "history"},
                },
            )
            self._announce(updated, current, head, drift, problem, in_sync)
            return True
        raise Conflict(f"ReleasePointer {namespace}/{pointer} kept changing; will retry", 409)

    def _announce(
        self,
        updated: Body,
        shown: Mapping[str, Any],
        head: LedgerEntry | None,
        drift: str | None,
        problem: PointerProblem | None,
        in_sync: bool,
    ) -> None:
        """One Event saying what the write changed: a repair, a move, or a new problem."""
        if drift is not None:
            event = ("Warning", Reason.POINTER_REPAIRED.value, drift)
        elif not in_sync and head is not None:
            event = ("Normal", outcome_reason(head).value, decided_message(head))
        elif problem is not None and not shows_health(shown.get("conditions"), problem):
            event = ("Warning", problem.reason.value, problem.message)
        else:
            return
        event_type, reason, message = event
        self.gateway.post_event(
            updated, kind=RELEASE_POINTER.kind, event_type=event_type, reason=reason, message=message
        )

    def forget_body(self, namespace: str, pointer: str) -> None:
        """Someone else wrote the pointer's status: our last body is stale."""
        self._bodies.discard((namespace, pointer))

    def announce_blocked(self, namespace: str, pointer: str, entry: LedgerEntry) -> None:
        """A warning Event on the pointer for a blocked decision (it does not move the pointer, so
        nothing else would tell someone watching the pointer)."""
        body = self._bodies.get((namespace, pointer))
        if body is None:
            try:
                body = self.gateway.get(RELEASE_POINTER.plural, namespace, pointer)
            except NotFound:
                return
        self.gateway.post_event(
            body,
            kind=RELEASE_POINTER.kind,
            event_type="Warning",
            reason=outcome_reason(entry).value,
            message=decided_message(entry),
        )

    def retire(
        self,
        namespace: str,
        pointer: str,
        *,
        deleted: Body | None,
        deleted_by: str | None,
        found_by_sweep: bool,
    ) -> LedgerEntry | None:
        """Ledger the retirement of a deleted pointer that has history (once per incarnation: the
        watch and the sweep append the same key). A pointer that never moved leaves nothing to end."""
        head = self.store.last_pointer_entry(namespace, pointer)
        if head is None:
            return None
        how = (
            "found deleted by the operator's sweep (deleted while the operator was not watching)"
            if found_by_sweep
            else "deleted"
        )
        entry = self.store.append(
            LedgerRecord(
                kind=LedgerKind.POINTER_RETIRED,
                idempotency_key=retirement_key(namespace, pointer, head.seq),
                actor=deleted_by or "unknown",
                namespace=namespace,
                pointer=pointer,
                agent_id=head.agent_id,
                environment=head.environment,
                release_id=head.release_id,
                reason=f"ReleasePointer {how}; its history ends at ledger seq {head.seq}",
                details={
                    "last_move_seq": head.seq,
                    "pointer_uid": None if deleted is None else deleted["metadata"].get("uid"),
                    "deleted_by_known": deleted_by is not None,
                    "found_by_sweep": found_by_sweep,
                },
                created_at=self.clock(),
            )
        )
        self._bodies.discard((namespace, pointer))
        log.info(
            "Ledgered the retirement of ReleasePointer %s/%s as seq %d (last release %s, by %s)",
            namespace,
            pointer,
            entry.seq,
            head.release_id,
            entry.actor,
        )
        if deleted is not None:
            self.gateway.post_event(
                deleted,
                kind=RELEASE_POINTER.kind,
                event_type="Normal",
                reason=Reason.POINTER_RETIRED.value,
                message=f"{entry.reason} (release {head.release_id} was live); ledger seq {entry.seq}",
            )
        return entry

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
        self._bodies.discard((namespace, pointer))  # its resourceVersion moved on


def _drop_none(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value is not None}
