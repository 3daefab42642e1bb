"""The three admission handlers, against a small :class:`AdmissionContext` the operator provides.

The webhook answers before anything is stored, so what it checks is a courtesy to the writer
(a clear message at ``kubectl apply`` time) and the stamping of who wrote: the operator re-checks
every rule when it decides. Handlers never write anything (``sideEffects: None``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, Protocol

from pydantic import ValidationError

from flightdeck_operator.api.v1alpha1 import GROUP, PromotionPolicySpec
from flightdeck_operator.kube.gateway import AccessDecision
from flightdeck_operator.webhook.admission import (
    AdmissionRequest,
    AdmissionResponse,
    Operation,
    allow,
    deny,
)
from flightdeck_operator.webhook.identity import APPROVER, REQUESTED_BY, Identity, identity_patch, stamp

log = logging.getLogger(__name__)

PROMOTION_REQUESTS_PATH: Final = "/mutate/promotionrequests"
PROMOTION_APPROVALS_PATH: Final = "/mutate/promotionapprovals"
PROMOTION_POLICIES_PATH: Final = "/mutate/promotionpolicies"
RELEASE_POINTERS_PATH: Final = "/mutate/releasepointers"
# The RBAC verb that allows spec.override (break glass), on promotionrequests.flightdeck.dev.
OVERRIDE_VERB: Final = "override"
OVERRIDE_RESOURCE: Final = "promotionrequests"

Handler = Callable[[AdmissionRequest], Awaitable[AdmissionResponse]]


class AdmissionContext(Protocol):
    """What the handlers need from the running operator (its indexes, the controller, RBAC)."""

    @property
    def delegates(self) -> Collection[str]:
        """Usernames trusted to create objects on behalf of the identity they supply."""
        ...

    async def requester_of(self, namespace: str, name: str) -> tuple[str, str | None] | None:
        """(uid, requester username or None) of a PromotionRequest; None when it is unknown."""
        ...

    async def predict(self, namespace: str, request_object: Mapping[str, Any]) -> str:
        """One line: the decision a PromotionRequest would get now, computed without writing."""
        ...

    async def may_override(self, identity: Identity, namespace: str) -> AccessDecision:
        """SubjectAccessReview: may ``identity`` "override" promotionrequests in ``namespace``?"""
        ...

    async def duplicate_of(self, namespace: str, agent_id: str, environment: str) -> str | None:
        """Why a new ReleasePointer for (agent, environment) would be a second one, or None."""
        ...

    async def follow_problem(self, namespace: str, name: str, agent_id: str, upstream: str) -> str | None:
        """Why ReleasePointer ``name`` of ``agent_id`` cannot follow ``upstream`` (another agent's
        pointer, itself, a cycle), or None."""
        ...

    async def note_deletion(self, namespace: str, name: str, uid: str, username: str) -> None:
        """Remember who deletes a ReleasePointer (the retirement's actor in the ledger)."""
        ...


def override_denied_message(username: str, namespace: str) -> str:
    return (
        f'breaking glass needs RBAC: {username} may not "{OVERRIDE_VERB}" '
        f"{OVERRIDE_RESOURCE}.{GROUP} in namespace {namespace}"
    )


def self_approval_message(username: str) -> str:
    return f"{username} requested this promotion and cannot approve it; another approver must"


def request_mismatch_message(name: str, named_uid: str, actual_uid: str) -> str:
    return (
        f"PromotionApproval names request {name} with uid {named_uid}, but that request has uid {actual_uid}"
    )


def first_error(error: ValidationError) -> str:
    """``spec.promotionWindows[0].schedule: <message>``: where, then what (pydantic's first error)."""
    first = error.errors()[0]
    location = "spec"
    for part in first["loc"]:
        location += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}"


def _spec(request: AdmissionRequest) -> Mapping[str, Any]:
    spec = (request.object or {}).get("spec")
    return spec if isinstance(spec, Mapping) else {}


class AdmissionHandlers:
    """``routes()`` maps each webhook path to its handler."""

    def __init__(self, context: AdmissionContext) -> None:
        self.context = context

    def routes(self) -> dict[str, Handler]:
        return {
            PROMOTION_REQUESTS_PATH: self.promotion_request,
            PROMOTION_APPROVALS_PATH: self.promotion_approval,
            PROMOTION_POLICIES_PATH: self.promotion_policy,
            RELEASE_POINTERS_PATH: self.release_pointer,
        }

    async def promotion_request(self, request: AdmissionRequest) -> AdmissionResponse:
        """Stamp spec.requestedBy; break glass only with RBAC; a dry run gets the predicted decision."""
        if request.operation is not Operation.CREATE or request.object is None:
            return allow(request)
        spec = _spec(request)
        identity = stamp(request.user_info, spec.get(REQUESTED_BY), self.context.delegates)
        patch = identity_patch(request.object, REQUESTED_BY, identity)
        if spec.get("override") is not None:
            access = await self.context.may_override(identity, request.namespace)
            if not access.allowed:
                return deny(request, 403, override_denied_message(identity.username, request.namespace))
        if not request.dry_run:
            return allow(request, patch=[patch])
        # kubectl apply --dry-run=server: show what would be decided, as the object would be stored.
        stamped = {**request.object, "spec": {**spec, REQUESTED_BY: identity.to_wire()}}
        try:
            prediction = await self.context.predict(request.namespace, stamped)
        except Exception as error:  # a dry run stores nothing: no reason to refuse it
            log.exception("Predicting the decision of %s/%s failed", request.namespace, request.name)
            prediction = f"FlightDeck could not predict the decision: {error}"
        return allow(request, patch=[patch], warnings=[prediction])

    async def promotion_approval(self, request: AdmissionRequest) -> AdmissionResponse:
        """Stamp spec.approver; refuse self-approval and an approval of a replaced request."""
        if request.operation is not Operation.CREATE or request.object is None:
            return allow(request)
        spec = _spec(request)
        identity = stamp(request.user_info, spec.get(APPROVER), self.context.delegates)
        patch = identity_patch(request.object, APPROVER, identity)
        named = spec.get("request")
        named = named if isinstance(named, Mapping) else {}
        name, named_uid = named.get("name"), named.get("uid")
        known = await self.context.requester_of(request.namespace, name) if isinstance(name, str) else None
        if known is not None:
            actual_uid, requester = known
            # A missing uid is the schema's to reject (after mutation), not ours.
            if isinstance(named_uid, str) and named_uid and named_uid != actual_uid:
                return deny(request, 422, request_mismatch_message(str(name), named_uid, actual_uid))
            if requester is not None and requester == identity.username:
                return deny(request, 403, self_approval_message(identity.username))
        return allow(request, patch=[patch])

    async def promotion_policy(self, request: AdmissionRequest) -> AdmissionResponse:
        """Validate only: cron schedules and time zones need code, not an OpenAPI pattern."""
        if request.operation not in (Operation.CREATE, Operation.UPDATE) or request.object is None:
            return allow(request)
        try:
            PromotionPolicySpec.model_validate(_spec(request))
        except ValidationError as error:
            return deny(request, 422, first_error(error))
        return allow(request)

    async def release_pointer(self, request: AdmissionRequest) -> AdmissionResponse:
        """Refuse a second pointer for an (agent, environment); note who deletes one.

        Deletes are only observed (their webhook entry fails open: a pointer can always be
        deleted); the note names the actor of the ledgered retirement. The duplicate check lists
        the namespace's pointers, so two creates at the same instant can both pass: the operator
        then ranks them (oldest first) and the later one cannot be promoted (``DuplicatePointer``).
        """
        if request.operation is Operation.DELETE:
            metadata = (request.old_object or {}).get("metadata") or {}
            uid = metadata.get("uid")
            if not request.dry_run and isinstance(uid, str):
                await self.context.note_deletion(
                    request.namespace, request.name, uid, request.user_info.username
                )
            return allow(request)
        if request.operation not in (Operation.CREATE, Operation.UPDATE) or request.object is None:
            return allow(request)
        spec = _spec(request)
        agent_id, environment = spec.get("agentId"), spec.get("environment")
        if not isinstance(agent_id, str) or not isinstance(environment, str):
            return allow(request)  # the schema rejects it with its own message
        follows = spec.get("follows")
        upstream = follows.get("pointer") if isinstance(follows, Mapping) else None
        if isinstance(upstream, str):
            problem = await self.context.follow_problem(request.namespace, request.name, agent_id, upstream)
            if problem is not None:
                return deny(request, 422, f"spec.follows: {problem}")
        if request.operation is Operation.CREATE:
            refusal = await self.context.duplicate_of(request.namespace, agent_id, environment)
            if refusal is not None:
                return deny(request, 409, refusal)
        return allow(request)
