"""promote-request: a dry run first (a blocked promotion records nothing), then a PromotionRequest
that the operator holds in phase AwaitingApproval."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from flightdeck_operator.actions.approval_workflow.common import (
    DRY_RUN_PREFIX,
    EVALUATION_ANNOTATION,
    RANDOM_HEX,
    REQUEST_PREFIX,
    Deadline,
    RequestWait,
    awaits_approval_or_decided,
    dry_run_outcome,
    not_recorded_message,
    parse_timestamp,
    watch_wait,
)
from flightdeck_operator.actions.errors import (
    DecisionTimeout,
    InvalidAction,
    PolicyDoesNotAllow,
    RequestDeleted,
    gateway_failure,
)
from flightdeck_operator.actions.promotions import (
    ActionInput,
    ActionResult,
    Requester,
    RequestRef,
    build_request,
    check_same_body,
    closed_window_next_open,
    is_decided,
    request_name,
    result_from_request,
    validate_action,
)
from flightdeck_operator.api.v1alpha1 import (
    PROMOTION_REQUEST,
)
from flightdeck_operator.engine.models import (
    ActionOutcome,
)
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import Body, KubeGateway

log = logging.getLogger(__name__)


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
    deadline = Deadline(timeout)
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
    deadline: Deadline,
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
    obj: Body, deadline: Deadline, *, created: bool, wait: RequestWait
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
        created_at=parse_timestamp(metadata.get("creationTimestamp")),
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
