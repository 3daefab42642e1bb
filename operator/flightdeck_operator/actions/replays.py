"""Idempotency-Key answers that outlive the request object.

A promote or rollback with an Idempotency-Key names its PromotionRequest after the key. Retention
deletes decided requests; a retry with the same key afterwards is answered from the ledger (the
request's name and authored spec are ledgered with its decision), exactly as the first answer
was, without creating anything: a key is honoured for as long as the ledger exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from flightdeck_operator.actions.errors import IdempotencyConflict
from flightdeck_operator.api.conditions import Reason
from flightdeck_operator.api.replay import request_spec_digest
from flightdeck_operator.api.v1alpha1 import PromotionRequestSpec
from flightdeck_operator.engine.decide import blocked_message
from flightdeck_operator.engine.ledger import LedgerEntry, LedgerKind, action_id_for
from flightdeck_operator.engine.models import ActionOutcome, PromotionAction

# (namespace, request name) -> the newest ledgered decision of a request of that name, or None.
DecisionLookup = Callable[[str, str], LedgerEntry | None]


def same_request(entry: LedgerEntry, spec: dict[str, Any]) -> bool:
    """Whether ``spec`` (as the request would be created now) asks what the ledgered one asked."""
    return entry.spec_digest == request_spec_digest(PromotionRequestSpec.model_validate(spec))


def conflict(entry: LedgerEntry, key: str, namespace: str, name: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"Idempotency-Key {key!r} was already used for a different request (PromotionRequest "
        f"{namespace}/{name}, decided as ledger seq {entry.seq}); send the same body to retry it, or use a new key."
    )


def outcome_of(entry: LedgerEntry) -> tuple[ActionOutcome, bool, str, dt.datetime | None]:
    """(outcome, passed, message, next window opening) of a ledgered decision, as the request's
    status showed them when it was decided."""
    action = PromotionAction.PROMOTE if entry.kind is LedgerKind.PROMOTE else PromotionAction.ROLLBACK
    details = entry.details or {}
    assert entry.policy_result is not None  # every ledgered decision has one
    outcome = ActionOutcome(
        action_id=str(details.get("action_id") or action_id_for(entry.request_uid or "")),
        action=action,
        release_id=entry.release_id or "",
        agent_id=entry.agent_id or "",
        environment=entry.environment or "",
        baseline_release_id=entry.baseline_release_id,
        promoted_pointer_changed=entry.pointer_changed,
        policy=entry.policy_result,
    )
    next_open = None
    window = details.get("promotion_window")
    if isinstance(window, dict) and not window.get("open", True) and window.get("next_open"):
        next_open = dt.datetime.fromisoformat(str(window["next_open"]).replace("Z", "+00:00"))
    if entry.pointer_changed:
        return outcome, True, f"{Reason.REPLAYED.value}: ledger seq {entry.seq}", None
    return outcome, False, blocked_message(action), next_open
