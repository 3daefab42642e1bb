"""What the approval workflow's steps share: object names, the reference's messages, waiting for
the operator, and pure mappings from object statuses to the reference's answers."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from flightdeck_operator.actions.promotions import is_decided, result_from_request
from flightdeck_operator.api.conditions import ConditionType, Phase, Reason, find_condition
from flightdeck_operator.api.v1alpha1 import (
    PROMOTION_REQUEST,
)
from flightdeck_operator.engine.ledger import LedgerEntry, action_id_for
from flightdeck_operator.engine.models import (
    ActionOutcome,
    PolicyResult,
    PromotionAction,
)
from flightdeck_operator.kube.gateway import Body, KubeGateway

# Reference messages (flightdeck-behaviour 1.9).
NOT_RECORDED_PREFIX: Final = "Policy does not allow this promotion; request not recorded. Reasons: "
APPROVAL_REASON_REQUIRED: Final = "approval_reason is required for promote-confirm."
NOT_PENDING: Final = "Unknown promotion request_id or request is not pending."

# Object names: the reference's ids are prq_<12 hex>; "_" is not allowed in a Kubernetes name.
REQUEST_PREFIX: Final = "prq-"
DRY_RUN_PREFIX: Final = "prq-dry-"
APPROVAL_PREFIX: Final = "papr-"
RANDOM_HEX: Final = 12
# The dry run's evaluation (an ActionOutcome as JSON), kept on the real request: the policy and
# baseline at request time, which the reference's list shows.
EVALUATION_ANNOTATION: Final = "flightdeck.dev/request-evaluation"
# The confirm body's free-text actor (the ledger records the authenticated approver).
ACTOR_ANNOTATION: Final = "flightdeck.dev/actor"


# --- waiting ----------------------------------------------------------------------------------------

# Waits until ``wanted(request)``: (object as last seen, timeout, wanted) -> the object, or None on
# timeout; raises NotFound when it is deleted first. The sidecar shares one watch (DecisionWatcher).
RequestWait = Callable[[Body, float, Callable[[Body], bool]], Body | None]


def watch_wait(gateway: KubeGateway) -> RequestWait:
    """A RequestWait with a watch of its own on the one object (the CLI's)."""

    def wait(obj: Body, timeout: float, wanted: Callable[[Body], bool]) -> Body | None:
        if wanted(obj):
            return obj
        metadata = obj["metadata"]
        return gateway.wait_for(
            PROMOTION_REQUEST.plural,
            metadata["namespace"],
            metadata["name"],
            wanted,
            timeout=timeout,
            resource_version=metadata.get("resourceVersion"),
        )

    return wait


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


# --- pure mappings ----------------------------------------------------------------------------------


def phase_of(body: Mapping[str, Any]) -> str:
    return str((body.get("status") or {}).get("phase") or "")


def awaits_approval(body: Mapping[str, Any]) -> bool:
    """The operator holds the request for approvals (it shows the digest to approve)."""
    status = body.get("status") or {}
    return phase_of(body) == Phase.AWAITING_APPROVAL.value and bool(
        (status.get("approval") or {}).get("decisionDigest")
    )


def awaits_approval_or_decided(body: Mapping[str, Any]) -> bool:
    return awaits_approval(body) or is_decided(body)


def approved_by(username: str) -> Callable[[Mapping[str, Any]], bool]:
    """Wanted once the request is decided, or shows ``username`` among its counted approvers."""

    def wanted(obj: Mapping[str, Any]) -> bool:
        approval = (obj.get("status") or {}).get("approval") or {}
        return is_decided(obj) or username in (approval.get("approvedBy") or ())

    return wanted


def dry_run_outcome(body: Mapping[str, Any]) -> ActionOutcome | str:
    """A decided dry run: its evaluation (phase Evaluated), or the reason it failed (a message)."""
    status = body.get("status") or {}
    decision = status.get("decision") or {}
    policy = decision.get("policy")
    if phase_of(body) != Phase.EVALUATED.value or not policy:
        failed = result_from_request(body)
        return failed.message
    spec = body.get("spec") or {}
    return ActionOutcome(
        action_id=str(decision.get("actionId") or ""),
        action=PromotionAction(spec.get("action") or PromotionAction.PROMOTE.value),
        release_id=str(decision.get("releaseId") or spec.get("release") or ""),
        agent_id=str(decision.get("agentId") or ""),
        environment=str(decision.get("environment") or ""),
        baseline_release_id=decision.get("pointerBefore"),
        promoted_pointer_changed=False,
        policy=PolicyResult(
            passed=bool(policy.get("passed")),
            reasons=tuple(policy.get("reasons") or ()),
            evaluated_at=policy["evaluatedAt"],
        ),
    )


def not_recorded_message(reasons: Iterable[str]) -> str:
    return NOT_RECORDED_PREFIX + "; ".join(reasons)


def approval_outcome(entry: LedgerEntry, approval_uid: str) -> ActionOutcome:
    """The reference's confirm outcome for an approval the policy blocked, from its ledger entry
    (the operator's re-evaluation at confirm time). Its id is derived from the approval's UID, as a
    request's is from the request's."""
    if entry.policy_result is None:
        raise ValueError(f"ledger entry {entry.seq} has no policy result")
    return ActionOutcome(
        action_id=action_id_for(approval_uid),
        action=PromotionAction.PROMOTE,
        release_id=entry.release_id or "",
        agent_id=entry.agent_id or "",
        environment=entry.environment or "",
        baseline_release_id=entry.baseline_release_id,
        promoted_pointer_changed=False,
        policy=entry.policy_result,
    )


def judgement(approval: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(phase, condition reason, message) once the operator judged the approval; None before."""
    status = approval.get("status") or {}
    phase = status.get("phase")
    if not phase:
        return None
    ready = find_condition(status.get("conditions") or (), ConditionType.READY) or {}
    return (
        str(phase),
        str(ready.get("reason") or ""),
        str(status.get("message") or ready.get("message") or ""),
    )


# Rejections that are the caller's lack of standing: 403. Others mean the request moved on: 400.
FORBIDDEN_REASONS: Final = frozenset(
    {Reason.SELF_APPROVAL.value, Reason.NOT_AN_APPROVER.value, Reason.IDENTITY_UNVERIFIED.value}
)


def self_approval_message(username: str) -> str:
    # The operator's and the admission webhook's wording.
    return f"{username} requested this promotion and cannot approve it; another approver must"


def parse_timestamp(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
