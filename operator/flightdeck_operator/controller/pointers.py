"""The pointer's status as a projection of the ledger: written with a resourceVersion precondition
(compare-and-swap), repaired with a warning Event when it drifted, and the promotion-window field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.v1alpha1 import DEFAULT_HISTORY_LIMIT, RELEASE_POINTER, PromotionPolicySpec
from flightdeck_operator.controller.projection import (
    decided_message,
    outcome_reason,
    pointer_in_sync,
    pointer_status,
    promotion_window_status,
)
from flightdeck_operator.engine.windows import WindowState, window_state
from flightdeck_operator.kube.errors import Conflict, NotFound
from flightdeck_operator.kube.gateway import KubeGateway
from flightdeck_operator.store import Store

Body = Mapping[str, Any]
POINTER_CAS_ATTEMPTS = 5


@dataclass
class PointerProjector:
    store: Store
    gateway: KubeGateway
    clock: Callable[[], dt.datetime]
    # The body our last write returned, per pointer: a decision's projection starts from it.
    _bodies: dict[tuple[str, str], Body] = field(default_factory=dict)

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
            body = self._bodies.pop(key, None) if reason_if_drifted is None else None
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
            self._bodies[key] = {
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
        self._bodies.pop((namespace, pointer), None)  # its resourceVersion moved on


def _drop_none(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value is not None}
