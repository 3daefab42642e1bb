"""Promote and rollback as the HTTP sidecar and the CLI do them: one code path for both.

Promote and rollback never decide anything here. They create a ``PromotionRequest``, wait for
the operator to decide it, and read the answer from the request's status. HTTP, the CLI,
kubectl and GitOps therefore always agree: they all show the same status.

Idempotency: with an idempotency key, the request's name is derived from
sha256(namespace, caller identity, key). Retrying (even concurrently) with the same key finds
that one object instead of creating a second. The request body's digest is kept in an
annotation, so reusing a key for a different body is reported, not silently merged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from flightdeck_operator.actions.errors import (
    DecisionTimeout,
    IdempotencyConflict,
    InvalidAction,
    RequestDeleted,
    gateway_failure,
)
from flightdeck_operator.actions.replays import DecisionLookup, conflict, outcome_of, same_request
from flightdeck_operator.api.conditions import ConditionType, Phase, Reason, find_condition, is_true
from flightdeck_operator.api.pointer_rules import first_pointer
from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    API_VERSION,
    DNS1123_SUBDOMAIN_PATTERN,
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    WINDOW_MESSAGE,
    AgentReleaseSpec,
    PromotionPolicySpec,
    is_valid_window,
)
from flightdeck_operator.engine.decide import blocked_message
from flightdeck_operator.engine.evidence import (
    EvidenceError,
    parse_window,
)
from flightdeck_operator.engine.ledger import canonical_json
from flightdeck_operator.engine.models import (
    ActionOutcome,
    PolicyResult,
    PromotionAction,
)
from flightdeck_operator.kube.errors import GatewayError, NotFound
from flightdeck_operator.kube.gateway import Body, KubeGateway

# Who asked, as the sidecar authenticated them. spec.actor is free text the caller chooses.
REQUESTED_BY_ANNOTATION: Final = "flightdeck.dev/requested-by"
# SHA-256 of the canonical request body, used to detect a key reused for another body.
REQUEST_DIGEST_ANNOTATION: Final = "flightdeck.dev/request-sha256"
# Set on requests made through the HTTP API or the CLI (kubectl shows where a request came from).
SOURCE_LABEL: Final = "flightdeck.dev/source"
REQUEST_NAME_PREFIX: Final = "http-"
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
# Printable ASCII: the key is echoed in messages and hashed; anything else is a client bug.
IDEMPOTENCY_KEY_PATTERN: Final = r"^[!-~]+$"

REASON_REQUIRED: Final = "Reason is required for promote/rollback actions."
# The reference's approval-workflow messages (flightdeck-behaviour 1.9). The reference's flag is
# one per workspace (promotion_requires_approval); here it is the pointer's policy's spec.approval.
APPROVAL_REQUIRED: Final = (
    "Workspace promotion_requires_approval=true: use promote-request then promote-confirm "
    "(HTTP POST /v1/promote/request and POST /v1/promote/confirm)."
)
APPROVAL_NOT_REQUIRED: Final = (
    "promotion_requires_approval is false in flightdeck.yaml; use direct `release promote` or set "
    "promotion_requires_approval: true to use the approval workflow."
)
REQUEST_REASON_REQUIRED: Final = "Reason is required for promotion requests."
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_KUBE_NAME = re.compile(DNS1123_SUBDOMAIN_PATTERN)


# --- inputs -----------------------------------------------------------------------------------------


class ActionInput(BaseModel):
    """A promote or rollback, as the reference HTTP body and CLI flags describe it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: PromotionAction
    release_id: str
    environment: str
    window: str
    reason: str
    actor: str

    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Requester:
    """The authenticated caller: ``identity`` scopes idempotency keys, ``username`` is recorded.

    ``verified``: the API server vouched for this caller (the sidecar's TokenReview); the sidecar
    then creates objects on the caller's behalf, naming them in spec.requestedBy / spec.approver,
    which the admission webhook keeps because the sidecar is a trusted delegate. Unverified (the
    CLI, whose own kubeconfig identity the webhook stamps; the static-token and ``none`` modes):
    nothing is claimed."""

    identity: str
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    verified: bool = False

    def claimed_identity(self) -> dict[str, Any] | None:
        """spec.requestedBy / spec.approver as the sidecar supplies it (None: let the webhook stamp)."""
        if not self.verified:
            return None
        identity: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            identity["uid"] = self.uid
        return identity


# --- results ----------------------------------------------------------------------------------------


class Verdict(StrEnum):
    PASSED = "passed"  # 200: the pointer moved
    BLOCKED = "blocked"  # 409: the policy said no (ledgered)
    FAILED = "failed"  # 400: the request could not be evaluated (not ledgered)
    # 409: another request for the pointer is undecided (concurrencyPolicy Forbid); retry later.
    CONFLICT = "conflict"


# Failed requests whose cause is another request, not this one: 409 (Conflict) rather than 400.
CONFLICT_REASONS: Final = frozenset({Reason.CONCURRENCY_FORBIDDEN.value})


@dataclass(frozen=True, slots=True)
class RequestRef:
    namespace: str
    name: str

    def to_json(self) -> dict[str, JsonValue]:
        return {"namespace": self.namespace, "name": self.name}


@dataclass(frozen=True, slots=True)
class ActionResult:
    """A decided request, read from its status alone."""

    request: RequestRef
    verdict: Verdict
    phase: str
    # Passed or blocked: the reference ActionOutcome. Failed: None.
    outcome: ActionOutcome | None
    # Blocked: the reference 409 message. Failed: the Stalled condition's message.
    message: str
    created: bool = True
    # The Ready condition's reason (PromotionWindowClosed, ConcurrencyForbidden, ...).
    reason: str | None = None
    # Blocked by a closed promotion window: when it opens again (Retry-After), if known.
    next_open: dt.datetime | None = None


def is_decided(body: Mapping[str, Any]) -> bool:
    """The operator's terminal marker: ``Decided=True`` on every outcome."""
    return is_true((body.get("status") or {}).get("conditions") or (), ConditionType.DECIDED)


def result_from_request(body: Mapping[str, Any], *, created: bool = True) -> ActionResult:
    """Map a decided PromotionRequest's status onto the reference outcome (nothing recomputed)."""
    metadata = body["metadata"]
    ref = RequestRef(metadata["namespace"], metadata["name"])
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    phase = str(status.get("phase") or "")
    action = PromotionAction(spec.get("action") or PromotionAction.PROMOTE.value)
    decision = status.get("decision") or {}
    ready = find_condition(status.get("conditions") or (), ConditionType.READY)
    reason = str((ready or {}).get("reason") or "") or None
    if phase in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.BLOCKED) and decision.get("policy"):
        policy = decision["policy"]
        outcome = ActionOutcome(
            action_id=decision["actionId"],
            action=action,
            release_id=decision.get("releaseId") or spec.get("release") or "",
            agent_id=decision.get("agentId") or "",
            environment=decision.get("environment") or "",
            baseline_release_id=decision.get("pointerBefore"),
            promoted_pointer_changed=bool(decision.get("pointerChanged")),
            policy=PolicyResult(
                passed=bool(policy["passed"]),
                reasons=tuple(policy.get("reasons") or ()),
                evaluated_at=policy["evaluatedAt"],
            ),
        )
        if phase == Phase.BLOCKED:
            return ActionResult(
                ref,
                Verdict.BLOCKED,
                phase,
                outcome,
                blocked_message(action),
                created,
                reason,
                closed_window_next_open(decision),
            )
        message = str(status.get("message") or "")
        return ActionResult(ref, Verdict.PASSED, phase, outcome, message, created, reason)
    stalled = find_condition(status.get("conditions") or (), ConditionType.STALLED)
    message = str((stalled or {}).get("message") or status.get("message") or f"Request ended {phase}")
    verdict = Verdict.CONFLICT if reason in CONFLICT_REASONS else Verdict.FAILED
    return ActionResult(ref, verdict, phase, None, message, created, reason)


def closed_window_next_open(decision: Mapping[str, Any]) -> dt.datetime | None:
    """``status.decision.promotionWindow.nextOpen`` of a decision a closed window blocked."""
    window = decision.get("promotionWindow") or {}
    if window.get("open", True) or not window.get("nextOpen"):
        return None
    return dt.datetime.fromisoformat(str(window["nextOpen"]).replace("Z", "+00:00"))


def retry_after_seconds(next_open: dt.datetime | None, now: dt.datetime) -> int | None:
    """The Retry-After header's value: whole seconds until ``next_open``, at least 1."""
    if next_open is None:
        return None
    return max(1, math.ceil((next_open - now).total_seconds()))


# --- promote / rollback -----------------------------------------------------------------------------


def request_name(
    namespace: str,
    identity: str,
    idempotency_key: str | None,
    *,
    prefix: str = REQUEST_NAME_PREFIX,
    random_hex: int = 32,
) -> str:
    """Deterministic for a key (one object per namespace, caller, key and prefix); random without
    one (``random_hex`` digits)."""
    if idempotency_key is None:
        return prefix + uuid.uuid4().hex[:random_hex]
    # The prefix is hashed too, so one key used on two routes names two objects.
    scoped = idempotency_key if prefix == REQUEST_NAME_PREFIX else f"{prefix}{idempotency_key}"
    digest = hashlib.sha256(f"{namespace}\n{identity}\n{scoped}".encode()).hexdigest()
    return prefix + digest[:40]


def find_pointer(gateway: KubeGateway, namespace: str, agent_id: str, environment: str) -> str:
    """The name of the one ReleasePointer governing (agent, environment) in ``namespace``."""
    return str(_pointer_body(gateway, namespace, agent_id, environment)["metadata"]["name"])


def _pointer_body(gateway: KubeGateway, namespace: str, agent_id: str, environment: str) -> Body:
    # Pointers' agentId and environment are immutable, so the watch cache is current enough.
    bodies = {
        str(item["metadata"]["name"]): item
        for item in gateway.list_objects(RELEASE_POINTER.plural, namespace, cached=True)
        if (item.get("spec") or {}).get("agentId") == agent_id
        and (item.get("spec") or {}).get("environment") == environment
    }
    # Duplicates (created while the webhook was off) never govern: the first one does, as for the operator.
    governing = first_pointer(
        (str(b["metadata"].get("creationTimestamp")), name) for name, b in bodies.items()
    )
    if governing is None:
        raise InvalidAction(
            f'No ReleasePointer governs agent "{agent_id}" in environment "{environment}" in namespace '
            f'"{namespace}". Create one (kind ReleasePointer, spec.agentId "{agent_id}", '
            f'spec.environment "{environment}") before promoting.'
        )
    return bodies[governing]


def pointer_policy(
    gateway: KubeGateway, namespace: str, pointer: Mapping[str, Any]
) -> PromotionPolicySpec | None:
    """The PromotionPolicy a pointer names (None: no policyRef, or the policy is missing or invalid,
    which the operator reports on the request it decides)."""
    ref = ((pointer.get("spec") or {}).get("policyRef") or {}).get("name")
    if not ref:
        return None
    # Read afresh (not from the watch cache): the approval gate must see a policy change at once.
    body = gateway.find(PROMOTION_POLICY.plural, namespace, str(ref))
    if body is None:
        return None
    try:
        return PromotionPolicySpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None


def release_spec(gateway: KubeGateway, namespace: str, name: str) -> AgentReleaseSpec | None:
    if _KUBE_NAME.fullmatch(name) is None or len(name) > 253:
        return None  # not a valid object name, so no such release
    body = gateway.find(AGENT_RELEASE.plural, namespace, name)
    if body is None:
        return None
    return AgentReleaseSpec.model_validate(body.get("spec") or {})


def build_request(
    namespace: str,
    name: str,
    action: ActionInput,
    pointer: str,
    requester: Requester,
    *,
    dry_run: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pointer": pointer,
        "release": action.release_id,
        "action": action.action.value,
        "window": action.window,
        "reason": action.reason,
        "actor": action.actor,
    }
    if dry_run:
        spec["dryRun"] = True
    claimed = requester.claimed_identity()
    if claimed is not None:
        spec["requestedBy"] = claimed
    return {
        "apiVersion": API_VERSION,
        "kind": PROMOTION_REQUEST.kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SOURCE_LABEL: "http"},
            "annotations": {
                REQUESTED_BY_ANNOTATION: requester.username,
                REQUEST_DIGEST_ANNOTATION: action.digest(),
                **(annotations or {}),
            },
        },
        "spec": spec,
    }


def check_same_body(existing: Mapping[str, Any], action: ActionInput, key: str) -> None:
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if annotations.get(REQUEST_DIGEST_ANNOTATION) != action.digest():
        name = existing["metadata"]["name"]
        raise IdempotencyConflict(
            f"Idempotency-Key {key!r} was already used for a different request (PromotionRequest "
            f"{existing['metadata']['namespace']}/{name}); send the same body to retry it, or use a new key."
        )


def validate_action(
    gateway: KubeGateway, namespace: str, action: ActionInput, *, approval_workflow: bool = False
) -> str:
    """Check the request the way the reference does, before anything is created; returns the
    pointer's name. Order: reason, release, pointer, approval gate, window.

    ``approval_workflow``: a promote-request, which needs the pointer's policy to require
    approval (and has its own reason message, checked after that flag as the reference does).
    A direct promote under such a policy is refused (rollbacks are never gated)."""
    if not approval_workflow and not action.reason.strip():
        raise InvalidAction(REASON_REQUIRED)
    release = release_spec(gateway, namespace, action.release_id)
    if release is None:
        raise InvalidAction(f"Unknown release: {action.release_id}")
    if _IDENTIFIER.fullmatch(action.environment) is None:
        raise InvalidAction(
            f'No ReleasePointer governs agent "{release.agent_id}" in environment "{action.environment}": '
            "an environment is a label-value-like identifier."
        )
    body = _pointer_body(gateway, namespace, release.agent_id, action.environment)
    pointer = str(body["metadata"]["name"])
    if action.action is PromotionAction.PROMOTE:
        policy = pointer_policy(gateway, namespace, body)
        gated = policy is not None and policy.approval is not None
        if approval_workflow and not gated:
            raise InvalidAction(APPROVAL_NOT_REQUIRED)
        if not approval_workflow and gated:
            raise InvalidAction(APPROVAL_REQUIRED)
    if approval_workflow and not action.reason.strip():
        raise InvalidAction(REQUEST_REASON_REQUIRED)
    try:
        parse_window(action.window)  # the reference's messages first
    except EvidenceError as error:
        raise InvalidAction(str(error)) from None
    if not is_valid_window(action.window):  # what the CRD accepts (a subset: no `+7d`, `1_0d`)
        raise InvalidAction(f"Invalid window: {action.window.strip().lower()} ({WINDOW_MESSAGE})")
    return pointer


def submit(
    gateway: KubeGateway,
    namespace: str,
    action: ActionInput,
    requester: Requester,
    *,
    idempotency_key: str | None = None,
) -> tuple[Body, bool]:
    """Create the PromotionRequest (or find the one this idempotency key made). Returns (object,
    created)."""
    name = request_name(namespace, requester.identity, idempotency_key)
    if idempotency_key is not None:
        existing = gateway.find(PROMOTION_REQUEST.plural, namespace, name)
        if existing is not None:  # a retry: answer from the first request, whatever changed since
            check_same_body(existing, action, idempotency_key)
            return existing, False
    pointer = validate_action(gateway, namespace, action)
    body = build_request(namespace, name, action, pointer, requester)
    obj, created = gateway.create_or_get(PROMOTION_REQUEST.plural, namespace, body)
    if not created and idempotency_key is not None:  # a concurrent retry created it first
        check_same_body(obj, action, idempotency_key)
    return obj, created


def answer_from_ledger(
    gateway: KubeGateway,
    namespace: str,
    action: ActionInput,
    requester: Requester,
    idempotency_key: str,
    decisions: DecisionLookup,
) -> ActionResult | None:
    """The answer a retry got the first time, from the ledger, when the request object is gone
    (None: the object exists or was never decided, and answers as usual)."""
    name = request_name(namespace, requester.identity, idempotency_key)
    if gateway.find(PROMOTION_REQUEST.plural, namespace, name) is not None:
        return None
    entry = decisions(namespace, name)
    if entry is None:
        return None
    if not same_request(
        entry, build_request(namespace, name, action, entry.pointer or "", requester)["spec"]
    ):
        raise conflict(entry, idempotency_key, namespace, name)
    outcome, passed, message, next_open = outcome_of(entry)
    if passed:
        verdict, phase = (
            Verdict.PASSED,
            Phase.PROMOTED if action.action is PromotionAction.PROMOTE else Phase.ROLLED_BACK,
        )
    else:
        verdict, phase = Verdict.BLOCKED, Phase.BLOCKED
    return ActionResult(
        RequestRef(namespace, name),
        verdict,
        phase.value,
        outcome,
        message,
        created=False,
        reason=Reason.REPLAYED.value,
        next_open=next_open,
    )


# Waits until a request is decided: (object as created, timeout) -> the decided object, or None on
# timeout; raises NotFound when it is deleted first. Default: a watch on that one object.
DecisionWait = Callable[[Body, float], Body | None]


def await_decision(
    gateway: KubeGateway,
    obj: Body,
    *,
    timeout: float,
    created: bool = True,
    wait: DecisionWait | None = None,
) -> ActionResult:
    """Wait until the operator decided ``obj``, then map its status."""
    metadata = obj["metadata"]
    ref = RequestRef(metadata["namespace"], metadata["name"])
    if is_decided(obj):
        return result_from_request(obj, created=created)
    try:
        if wait is not None:
            decided = wait(obj, timeout)
        else:
            decided = gateway.wait_for(
                PROMOTION_REQUEST.plural,
                ref.namespace,
                ref.name,
                is_decided,
                timeout=timeout,
                resource_version=metadata.get("resourceVersion"),
            )
    except NotFound:
        raise RequestDeleted(
            f"PromotionRequest {ref.namespace}/{ref.name} was deleted before it was decided.",
            {"message": "The PromotionRequest was deleted before it was decided.", "request": ref.to_json()},
        ) from None
    if decided is None:
        message = (
            f"No decision within {timeout:g}s; PromotionRequest {ref.namespace}/{ref.name} is still "
            "pending. Follow it with `kubectl get promotionrequest` or "
            f"GET /v1/promotion-requests/{ref.name}, or retry with the same Idempotency-Key."
        )
        raise DecisionTimeout(message, {"message": message, "request": ref.to_json()})
    return result_from_request(decided, created=created)


def run_action(
    gateway: KubeGateway,
    namespace: str,
    action: ActionInput,
    requester: Requester,
    *,
    timeout: float,
    idempotency_key: str | None = None,
    wait: DecisionWait | None = None,
    decisions: DecisionLookup | None = None,
) -> ActionResult:
    """Submit a promote/rollback and wait for its decision. Raises :class:`ActionError`.
    ``decisions``: the ledger, which answers a retried Idempotency-Key once retention deleted the
    request (``actions/replays.py``)."""
    try:
        if idempotency_key is not None and decisions is not None:
            answered = answer_from_ledger(gateway, namespace, action, requester, idempotency_key, decisions)
            if answered is not None:
                return answered
        obj, created = submit(gateway, namespace, action, requester, idempotency_key=idempotency_key)
        return await_decision(gateway, obj, timeout=timeout, created=created, wait=wait)
    except GatewayError as error:
        raise gateway_failure(error, PROMOTION_REQUEST.kind) from None
