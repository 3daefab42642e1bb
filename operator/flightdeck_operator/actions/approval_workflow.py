"""The reference's approval workflow (flightdeck-behaviour 1.9): promote-request, promote-confirm
and the list of requests, over PromotionRequests and PromotionApprovals. One code path for the
HTTP sidecar and the CLI.

Nothing is decided here; the operator decides and this module reads its answers:

* **request**: the promotion is first evaluated as a dry run (``spec.dryRun``: never ledgered,
  deleted once read), so one the policy blocks records nothing, as in the reference. A passing one
  becomes a real PromotionRequest, which the operator holds in phase ``AwaitingApproval``.
* **confirm**: a PromotionApproval naming the request's UID and current decision digest, created
  for the caller. The operator judges it once (ledgered): accepted (with the quorum met, the
  request is promoted and ledgered with the reason ``<reason> | approval: <approval reason>``),
  blocked (the policy blocks now: the reference's 409 with the full outcome, built from the
  approval's ledger entry), rejected (self-approval, not an approver) or stale (a race).
* **list**: requests that went through approval, in the reference's shape and statuses.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from flightdeck_operator.actions.promotions import (
    REQUESTED_BY_ANNOTATION,
    SOURCE_LABEL,
    ActionError,
    ActionInput,
    ActionResult,
    DecisionTimeout,
    IdempotencyConflict,
    InvalidAction,
    RequestDeleted,
    Requester,
    RequestRef,
    Verdict,
    build_request,
    check_same_body,
    closed_window_next_open,
    gateway_failure,
    is_decided,
    request_name,
    result_from_request,
    validate_action,
)
from flightdeck_operator.api.conditions import ApprovalPhase, ConditionType, Phase, Reason, find_condition
from flightdeck_operator.api.v1alpha1 import (
    API_VERSION,
    DNS1123_SUBDOMAIN_PATTERN,
    PROMOTION_APPROVAL,
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    PromotionPolicySpec,
)
from flightdeck_operator.engine.decide import blocked_message
from flightdeck_operator.engine.ledger import LedgerEntry, action_id_for
from flightdeck_operator.engine.models import ActionOutcome, PolicyResult, PromotionAction
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import Body, KubeGateway

log = logging.getLogger(__name__)

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


# --- errors -----------------------------------------------------------------------------------------


class PolicyDoesNotAllow(ActionError):
    """409 without an outcome: the dry run says the policy blocks; nothing was recorded."""

    status = 409


class ApprovalForbidden(ActionError):
    """403: the caller may not approve this request (self-approval, not an approver, no identity)."""

    status = 403


class ApprovalConflict(ActionError):
    """409: the approval named a decision that is no longer the request's (stale), or the like."""

    status = 409


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


class _Deadline:
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


# --- request ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingPromotion:
    """A request awaiting approval: the reference's promote-request answer."""

    request: RequestRef
    # The evaluation at request time (the dry run's): policy, baseline, agent and environment.
    evaluation: ActionOutcome
    window: str
    created_at: dt.datetime | None
    created: bool = True


def request_promotion(
    gateway: KubeGateway,
    namespace: str,
    action: ActionInput,
    requester: Requester,
    *,
    timeout: float,
    idempotency_key: str | None = None,
    wait: RequestWait | None = None,
) -> PendingPromotion | ActionResult:
    """Evaluate a promotion as a dry run; if the policy allows it, create the request and wait until
    the operator holds it for approval. Returns the pending request, or the decision when the
    operator decided it at once (e.g. concurrencyPolicy Forbid). Raises :class:`ActionError`."""
    wait = wait or watch_wait(gateway)
    deadline = _Deadline(timeout)
    try:
        name = request_name(
            namespace, requester.identity, idempotency_key, prefix=REQUEST_PREFIX, random_hex=RANDOM_HEX
        )
        if idempotency_key is not None:
            existing = gateway.find(PROMOTION_REQUEST.plural, namespace, name)
            if existing is not None:  # a retry: answer from the first request
                check_same_body(existing, action, idempotency_key)
                return _await_pending(existing, deadline, created=False, wait=wait)
        pointer = validate_action(gateway, namespace, action, approval_workflow=True)
        evaluation, next_open = _dry_run(gateway, namespace, action, pointer, requester, deadline, wait)
        if not evaluation.policy.passed:
            message = not_recorded_message(evaluation.policy.reasons)
            raise PolicyDoesNotAllow(message, {"message": message}, next_open=next_open)
        annotations = {EVALUATION_ANNOTATION: evaluation.model_dump_json()}
        body = build_request(namespace, name, action, pointer, requester, annotations=annotations)
        obj, created = gateway.create_or_get(PROMOTION_REQUEST.plural, namespace, body)
        if not created and idempotency_key is not None:  # a concurrent retry created it first
            check_same_body(obj, action, idempotency_key)
        return _await_pending(obj, deadline, created=created, wait=wait)
    except GatewayError as error:
        raise gateway_failure(error, PROMOTION_REQUEST.kind) from None


def _dry_run(
    gateway: KubeGateway,
    namespace: str,
    action: ActionInput,
    pointer: str,
    requester: Requester,
    deadline: _Deadline,
    wait: RequestWait,
) -> tuple[ActionOutcome, dt.datetime | None]:
    """The dry run's outcome, and when a closed promotion window that blocked it opens again."""
    name = request_name(namespace, requester.identity, None, prefix=DRY_RUN_PREFIX, random_hex=RANDOM_HEX)
    body = build_request(namespace, name, action, pointer, requester, dry_run=True)
    obj = gateway.create(PROMOTION_REQUEST.plural, namespace, body)
    ref = RequestRef(namespace, name)
    try:
        decided = wait(obj, deadline.remaining(), is_decided)
    except NotFound:
        raise RequestDeleted(
            f"The dry run {namespace}/{name} was deleted before it was evaluated; nothing was recorded.",
            {"message": "The dry run was deleted before it was evaluated.", "request": ref.to_json()},
        ) from None
    finally:
        _delete_quietly(gateway, namespace, name)  # a dry run has served its purpose once read
    if decided is None:
        message = (
            f"No evaluation within {deadline.seconds:g}s (dry run {namespace}/{name}, now deleted); "
            "nothing was recorded. Retry later."
        )
        raise DecisionTimeout(message, {"message": message, "request": ref.to_json()})
    outcome = dry_run_outcome(decided)
    if isinstance(outcome, str):
        raise InvalidAction(outcome)  # e.g. a missing pricing table: the reference's 400
    return outcome, closed_window_next_open((decided.get("status") or {}).get("decision") or {})


def _delete_quietly(gateway: KubeGateway, namespace: str, name: str) -> None:
    try:
        gateway.delete(PROMOTION_REQUEST.plural, namespace, name)
    except NotFound:
        pass
    except GatewayError as error:  # left behind, harmless: a dry run never moves or records anything
        log.warning("Could not delete the dry run %s/%s: %s", namespace, name, error)


def _await_pending(
    obj: Body, deadline: _Deadline, *, created: bool, wait: RequestWait
) -> PendingPromotion | ActionResult:
    metadata = obj["metadata"]
    ref = RequestRef(metadata["namespace"], metadata["name"])
    try:
        current = wait(obj, deadline.remaining(), awaits_approval_or_decided)
    except NotFound:
        raise RequestDeleted(
            f"PromotionRequest {ref.namespace}/{ref.name} was deleted before it awaited approval.",
            {
                "message": "The PromotionRequest was deleted before it awaited approval.",
                "request": ref.to_json(),
            },
        ) from None
    if current is None:
        message = (
            f"PromotionRequest {ref.namespace}/{ref.name} does not await approval after "
            f"{deadline.seconds:g}s; follow it with GET /v1/promotion-requests/{ref.name} or "
            "`kubectl get promotionrequest`, or retry with the same Idempotency-Key."
        )
        raise DecisionTimeout(message, {"message": message, "request": ref.to_json()})
    if is_decided(current):
        return result_from_request(current, created=created)
    evaluation = request_evaluation(current)
    if evaluation is None:  # created by another client: no request-time evaluation to show
        raise InvalidAction(
            f"PromotionRequest {ref.namespace}/{ref.name} was not created by promote-request "
            "(it has no request-time evaluation); use another Idempotency-Key."
        )
    return PendingPromotion(
        request=ref,
        evaluation=evaluation,
        window=str((current.get("spec") or {}).get("window") or ""),
        created_at=_timestamp(metadata.get("creationTimestamp")),
        created=created,
    )


def request_evaluation(body: Mapping[str, Any]) -> ActionOutcome | None:
    """The request-time evaluation promote-request kept on the request (None: not there)."""
    raw = ((body.get("metadata") or {}).get("annotations") or {}).get(EVALUATION_ANNOTATION)
    if not raw:
        return None
    try:
        return ActionOutcome.model_validate_json(raw)
    except ValidationError:
        return None


# --- confirm ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalRecorded:
    """The approval counts, but more approvals are needed before the request is promoted."""

    request: RequestRef
    approval: RequestRef
    approved_by: tuple[str, ...]
    required: int
    message: str


def confirm_promotion(
    gateway: KubeGateway,
    namespace: str,
    request_id: str,
    approval_reason: str,
    requester: Requester,
    *,
    timeout: float,
    ledger_entry: Callable[[int], LedgerEntry | None] | None = None,
    idempotency_key: str | None = None,
    wait: RequestWait | None = None,
    actor: str | None = None,
) -> ActionResult | ApprovalRecorded:
    """Approve a pending request as ``requester`` and wait for the operator's verdict.

    Returns the request's decision (promoted), the blocked outcome (the policy blocks now; the
    request stays pending) or :class:`ApprovalRecorded` (more approvals needed). ``ledger_entry``
    reads the approval's ledger entry for a blocked outcome. Raises :class:`ActionError`."""
    if not approval_reason.strip():
        raise InvalidAction(APPROVAL_REASON_REQUIRED)
    wait = wait or watch_wait(gateway)
    deadline = _Deadline(timeout)
    try:
        name = request_name(
            namespace,
            requester.identity,
            idempotency_key,
            prefix=APPROVAL_PREFIX,
            random_hex=RANDOM_HEX,
        )
        approval = None
        if idempotency_key is not None:
            approval = gateway.find(PROMOTION_APPROVAL.plural, namespace, name)
            if approval is not None:
                _check_same_approval(approval, request_id, approval_reason, idempotency_key)
        request = _pending_request(gateway, namespace, request_id, requester, replay=approval is not None)
        created = approval is None
        if approval is None:
            body = build_approval(namespace, name, request, approval_reason, requester, actor=actor)
            approval, created = gateway.create_or_get(PROMOTION_APPROVAL.plural, namespace, body)
            if not created and idempotency_key is not None:
                _check_same_approval(approval, request_id, approval_reason, idempotency_key)
        judged = _await_judgement(gateway, approval, deadline)
        return _answer(gateway, namespace, request, approval, judged, deadline, wait, ledger_entry, created)
    except GatewayError as error:
        if error.status == 403 and "denied the request" in str(error):
            # The admission webhook's refusal (self-approval): its message, as our own 403.
            raise ApprovalForbidden(str(error).split("denied the request: ", 1)[-1]) from None
        raise gateway_failure(error, PROMOTION_APPROVAL.kind) from None


def build_approval(
    namespace: str,
    name: str,
    request: Mapping[str, Any],
    reason: str,
    requester: Requester,
    *,
    actor: str | None = None,
) -> dict[str, Any]:
    """A PromotionApproval of ``request``'s current decision, by ``requester``."""
    metadata = request["metadata"]
    spec: dict[str, Any] = {
        "request": {"name": metadata["name"], "uid": metadata["uid"]},
        "decisionDigest": request["status"]["approval"]["decisionDigest"],
        "reason": reason,
    }
    claimed = requester.claimed_identity()
    if claimed is not None:
        spec["approver"] = claimed
    annotations = {REQUESTED_BY_ANNOTATION: requester.username}
    if actor:
        annotations[ACTOR_ANNOTATION] = actor
    return {
        "apiVersion": API_VERSION,
        "kind": PROMOTION_APPROVAL.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SOURCE_LABEL: "http"},
            "annotations": annotations,
        },
        "spec": spec,
    }


def _check_same_approval(approval: Mapping[str, Any], request_id: str, reason: str, key: str) -> None:
    spec = approval.get("spec") or {}
    if (spec.get("request") or {}).get("name") != request_id or spec.get("reason") != reason:
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for a different confirm (PromotionApproval "
            f"{approval['metadata']['namespace']}/{approval['metadata']['name']}); send the same body "
            "to retry it, or use a new key."
        )


_KUBE_NAME_MAX: Final = 253
_KUBE_NAME = re.compile(DNS1123_SUBDOMAIN_PATTERN)


def _pending_request(
    gateway: KubeGateway, namespace: str, request_id: str, requester: Requester, *, replay: bool
) -> Body:
    body = None
    if len(request_id) <= _KUBE_NAME_MAX and _KUBE_NAME.fullmatch(request_id):
        body = gateway.find(PROMOTION_REQUEST.plural, namespace, request_id)
    if body is None:
        raise InvalidAction(NOT_PENDING)
    if replay:
        return body  # a retry answers from its approval, whatever the request's phase now
    if not awaits_approval(body):
        raise InvalidAction(NOT_PENDING)
    requested_by = ((body.get("spec") or {}).get("requestedBy") or {}).get("username")
    if requester.verified and requested_by == requester.username:
        raise ApprovalForbidden(self_approval_message(requester.username))
    return body


def _await_judgement(gateway: KubeGateway, approval: Body, deadline: _Deadline) -> Body:
    metadata = approval["metadata"]
    ref = RequestRef(metadata["namespace"], metadata["name"])
    request_name_ = str(((approval.get("spec") or {}).get("request") or {}).get("name") or "")
    try:
        judged = (
            approval
            if judgement(approval) is not None
            else gateway.wait_for(
                PROMOTION_APPROVAL.plural,
                ref.namespace,
                ref.name,
                lambda obj: judgement(obj) is not None,
                timeout=deadline.remaining(),
                resource_version=metadata.get("resourceVersion"),
            )
        )
    except NotFound:
        raise RequestDeleted(
            f"PromotionApproval {ref.namespace}/{ref.name} was deleted before it was judged.",
            {
                "message": "The PromotionApproval was deleted before it was judged.",
                "request": {"namespace": ref.namespace, "name": request_name_},
                "approval": ref.to_json(),
            },
        ) from None
    if judged is None:
        message = (
            f"No verdict within {deadline.seconds:g}s; PromotionApproval {ref.namespace}/{ref.name} of "
            f"request {request_name_} is still unjudged. Follow it with `kubectl get promotionapproval "
            f"{ref.name}` or GET /v1/promotion-requests/{request_name_}."
        )
        raise DecisionTimeout(
            message,
            {
                "message": message,
                "request": {"namespace": ref.namespace, "name": request_name_},
                "approval": ref.to_json(),
            },
        )
    return judged


def _answer(
    gateway: KubeGateway,
    namespace: str,
    request: Body,
    approval: Body,
    judged: Body,
    deadline: _Deadline,
    wait: RequestWait,
    ledger_entry: Callable[[int], LedgerEntry | None] | None,
    created: bool,
) -> ActionResult | ApprovalRecorded:
    verdict = judgement(judged)
    assert verdict is not None
    phase, reason, message = verdict
    request_ref = RequestRef(namespace, str(request["metadata"]["name"]))
    approval_ref = RequestRef(namespace, str(approval["metadata"]["name"]))
    if phase == ApprovalPhase.ACCEPTED.value:
        approver = str(((judged.get("spec") or {}).get("approver") or {}).get("username") or "")
        try:
            current = wait(request, deadline.remaining(), approved_by(approver))
        except NotFound:
            raise RequestDeleted(
                f"PromotionRequest {request_ref.namespace}/{request_ref.name} was deleted after the approval.",
                {
                    "message": "The PromotionRequest was deleted before it was decided.",
                    "request": request_ref.to_json(),
                },
            ) from None
        if current is None:
            text = (
                f"The approval {approval_ref.name} was accepted, but PromotionRequest "
                f"{request_ref.namespace}/{request_ref.name} was not decided within {deadline.seconds:g}s. "
                f"Follow it with GET /v1/promotion-requests/{request_ref.name}."
            )
            raise DecisionTimeout(
                text, {"message": text, "request": request_ref.to_json(), "approval": approval_ref.to_json()}
            )
        if is_decided(current):
            return result_from_request(current, created=created)
        shown = (current.get("status") or {}).get("approval") or {}
        return ApprovalRecorded(
            request=request_ref,
            approval=approval_ref,
            approved_by=tuple(str(u) for u in shown.get("approvedBy") or ()),
            required=int(shown.get("required") or 1),
            message=str((current.get("status") or {}).get("message") or message),
        )
    if phase == ApprovalPhase.BLOCKED.value:
        seq = (judged.get("status") or {}).get("ledgerSeq")
        entry = ledger_entry(int(seq)) if ledger_entry is not None and seq else None
        if entry is None or entry.policy_result is None:
            raise ApprovalConflict(f"{blocked_message(PromotionAction.PROMOTE)} {message}")
        outcome = approval_outcome(entry, str(judged["metadata"]["uid"]))
        window = (entry.details or {}).get("promotion_window")
        next_open = (
            closed_window_next_open({"promotionWindow": {"open": False, "nextOpen": window.get("next_open")}})
            if isinstance(window, Mapping) and not window.get("open")
            else None
        )
        return ActionResult(
            request_ref,
            Verdict.BLOCKED,
            phase_of(request),
            outcome,
            blocked_message(PromotionAction.PROMOTE),
            created,
            Reason.POLICY_BLOCKED.value,
            next_open,
        )
    if phase == ApprovalPhase.STALE.value:
        raise ApprovalConflict(
            f"The approval {approval_ref.name} is stale: {message}. The request's decision changed "
            "while it was being approved; confirm again."
        )
    if reason in FORBIDDEN_REASONS:
        raise ApprovalForbidden(message)
    if reason == Reason.REQUEST_MISMATCH.value:
        raise InvalidAction(NOT_PENDING)
    raise InvalidAction(message)


# --- list -------------------------------------------------------------------------------------------

REQUEST_STATUSES: Final = ("pending", "completed", "cancelled")
_CANCELLED_PHASES: Final = frozenset({Phase.SUPERSEDED.value, Phase.BLOCKED.value, Phase.FAILED.value})


def list_status(phase: str) -> str:
    """The reference's request status for a phase: completed (promoted), cancelled (superseded,
    blocked or failed: the reference's unreachable "cancelled"), else pending."""
    if phase == Phase.PROMOTED.value:
        return "completed"
    if phase in _CANCELLED_PHASES:
        return "cancelled"
    return "pending"


def went_through_approval(body: Mapping[str, Any]) -> bool:
    status = body.get("status") or {}
    return bool(status.get("approval")) or bool((status.get("decision") or {}).get("approvals"))


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One item of ``GET /v1/promotion-requests`` (the reference's fields)."""

    request_id: str
    status: str
    release_id: str | None
    agent_id: str | None
    environment: str | None
    window: str
    reason: str
    actor: str | None
    baseline_release_id: str | None
    policy: PolicyResult | None
    created_at: dt.datetime | None
    resolved_at: dt.datetime | None
    completed_action_id: str | None


def request_summary(
    body: Mapping[str, Any], pointers: Mapping[str, tuple[str, str]]
) -> RequestSummary | None:
    """The list item of a request that went through approval (None: any other request).
    ``pointers``: pointer name -> (agentId, environment), for requests not decided yet."""
    if not went_through_approval(body):
        return None
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    decision = status.get("decision") or {}
    phase = phase_of(body)
    evaluation = request_evaluation(body)
    agent_id, environment = pointers.get(str(spec.get("pointer") or ""), (None, None))
    policy: PolicyResult | None = evaluation.policy if evaluation is not None else None
    if policy is None and decision.get("policy"):
        raw = decision["policy"]
        policy = PolicyResult(
            passed=bool(raw.get("passed")),
            reasons=tuple(raw.get("reasons") or ()),
            evaluated_at=raw["evaluatedAt"],
        )
    listed = list_status(phase)
    resolved: dt.datetime | None = None
    if listed != "pending":
        decided = find_condition(status.get("conditions") or (), ConditionType.DECIDED) or {}
        resolved = _timestamp(decision.get("decidedAt") or decided.get("lastTransitionTime"))
    return RequestSummary(
        request_id=str(metadata.get("name") or ""),
        status=listed,
        release_id=decision.get("releaseId") or spec.get("release"),
        agent_id=decision.get("agentId") or (evaluation.agent_id if evaluation else None) or agent_id,
        environment=decision.get("environment")
        or (evaluation.environment if evaluation else None)
        or environment,
        window=str(spec.get("window") or ""),
        reason=str(spec.get("reason") or ""),
        actor=spec.get("actor"),
        baseline_release_id=(
            evaluation.baseline_release_id if evaluation is not None else decision.get("pointerBefore")
        ),
        policy=policy,
        created_at=_timestamp(metadata.get("creationTimestamp")),
        resolved_at=resolved,
        completed_action_id=str(decision.get("actionId"))
        if listed == "completed" and decision.get("actionId")
        else None,
    )


def summarize_requests(
    bodies: Iterable[Mapping[str, Any]],
    pointers: Mapping[str, tuple[str, str]],
    *,
    status: str | None,
    limit: int,
) -> list[RequestSummary]:
    """Requests that went through approval, newest first, optionally of one status (an unknown
    status matches nothing, as in the reference)."""
    summaries = [s for s in (request_summary(b, pointers) for b in bodies) if s is not None]
    if status is not None:
        summaries = [s for s in summaries if s.status == status]
    summaries.sort(
        key=lambda s: (s.created_at or dt.datetime.min.replace(tzinfo=dt.UTC), s.request_id), reverse=True
    )
    return summaries[:limit]


def list_requests(
    gateway: KubeGateway, namespace: str, *, status: str | None, limit: int
) -> list[RequestSummary]:
    pointers = {
        str(p["metadata"]["name"]): (
            str((p.get("spec") or {}).get("agentId") or ""),
            str((p.get("spec") or {}).get("environment") or ""),
        )
        for p in gateway.list_objects(RELEASE_POINTER.plural, namespace, cached=True)
    }
    bodies = gateway.list_objects(PROMOTION_REQUEST.plural, namespace)
    return summarize_requests(bodies, pointers, status=status, limit=limit)


def requires_approval(gateway: KubeGateway, namespace: str) -> bool:
    """Whether any PromotionPolicy in the namespace requires approval (the reference's workspace
    flag; here it is per policy, so this says whether the workflow is in use at all)."""
    for body in gateway.list_objects(PROMOTION_POLICY.plural, namespace):
        try:
            if PromotionPolicySpec.model_validate(body.get("spec") or {}).approval is not None:
                return True
        except ValidationError:
            continue
    return False


def _timestamp(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
