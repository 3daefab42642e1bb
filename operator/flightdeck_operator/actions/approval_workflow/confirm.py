"""promote-confirm: a PromotionApproval for the caller, judged once by the operator, answered from
its ledger entry (accepted, blocked, rejected or stale)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flightdeck_operator.actions.approval_workflow.common import (
    ACTOR_ANNOTATION,
    APPROVAL_PREFIX,
    APPROVAL_REASON_REQUIRED,
    FORBIDDEN_REASONS,
    NOT_PENDING,
    RANDOM_HEX,
    Deadline,
    RequestWait,
    approval_outcome,
    approved_by,
    awaits_approval,
    judgement,
    phase_of,
    self_approval_message,
    watch_wait,
)
from flightdeck_operator.actions.errors import (
    ApprovalConflict,
    ApprovalForbidden,
    DecisionTimeout,
    IdempotencyConflict,
    InvalidAction,
    RequestDeleted,
    gateway_failure,
)
from flightdeck_operator.actions.promotions import (
    REQUESTED_BY_ANNOTATION,
    SOURCE_LABEL,
    ActionResult,
    Requester,
    RequestRef,
    Verdict,
    closed_window_next_open,
    is_decided,
    request_name,
    result_from_request,
)
from flightdeck_operator.api.conditions import ApprovalPhase, Reason
from flightdeck_operator.api.v1alpha1 import (
    API_VERSION,
    DNS1123_SUBDOMAIN_PATTERN,
    PROMOTION_APPROVAL,
    PROMOTION_REQUEST,
)
from flightdeck_operator.engine.decide import blocked_message
from flightdeck_operator.engine.ledger import LedgerEntry
from flightdeck_operator.engine.models import (
    PromotionAction,
)
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import Body, KubeGateway

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
    deadline = Deadline(timeout)
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


def _await_judgement(gateway: KubeGateway, approval: Body, deadline: Deadline) -> Body:
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
    deadline: Deadline,
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
