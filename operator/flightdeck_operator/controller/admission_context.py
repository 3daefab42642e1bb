"""The running operator as an :class:`~flightdeck_operator.webhook.handlers.AdmissionContext`.

Every replica serves the admission webhook, leader or standby, so that creates are never refused
while leadership moves. The leader reads kopf's indexes (on the event loop: they are not
thread-safe); a standby, which runs no kopf, reads the same facts from the API server's watch
cache. Who deleted a ReleasePointer is noted in the store, where the leader finds it whichever
replica's webhook saw the delete. Blocking calls (store, API, the prediction) run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from flightdeck_operator.api.pipeline_rules import Node, follow_problem
from flightdeck_operator.api.pointer_rules import first_pointer
from flightdeck_operator.api.v1alpha1 import (
    AGENT_RELEASE,
    GROUP,
    PRICING_TABLE,
    PROMOTION_POLICY,
    PROMOTION_REQUEST,
    RELEASE_POINTER,
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)
from flightdeck_operator.controller.indexes import (
    TERMINAL,
    Index,
    IndexedPointer,
    IndexedPricingTable,
    namespace_view,
)
from flightdeck_operator.controller.pointer_health import second_pointer_message
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.kube.gateway import AccessDecision, Body, KubeGateway, ReviewedUser
from flightdeck_operator.store import Store
from flightdeck_operator.webhook.handlers import OVERRIDE_RESOURCE, OVERRIDE_VERB
from flightdeck_operator.webhook.identity import REQUESTED_BY, Identity

log = logging.getLogger(__name__)

SpecT = TypeVar("SpecT", bound=BaseModel)
# (namespace, raw spec, namespace snapshot) -> one line; blocking (store reads).
Predictor = Callable[[str, Mapping[str, Any], NamespaceView], str]


class OperatorAdmissionContext:
    """``predictor``: ``Assessor.predict``. ``attach(indexes)`` once kopf runs in this process
    (the leader); until then (a standby) reads go to the API server."""

    def __init__(
        self,
        *,
        delegates: Collection[str],
        gateway: KubeGateway,
        store: Store,
        predictor: Predictor,
    ) -> None:
        self._delegates = frozenset(delegates)
        self.gateway = gateway
        self.store = store
        self.predictor = predictor
        self.indexes: Mapping[str, Index] | None = None

    def attach(self, indexes: Mapping[str, Index]) -> None:
        self.indexes = indexes

    @property
    def delegates(self) -> Collection[str]:
        return self._delegates

    async def requester_of(self, namespace: str, name: str) -> tuple[str, str | None] | None:
        # Undecided requests only: an approval of a decided one is the operator's to reject (it
        # re-checks everything), so None ("unknown") is the right answer for those.
        if self.indexes is None:
            body = await asyncio.to_thread(self.gateway.find, PROMOTION_REQUEST.plural, namespace, name)
            if body is None or (body.get("status") or {}).get("phase") in TERMINAL:
                return None
            return str(body["metadata"]["uid"]), _requester(body.get("spec") or {})
        for (request_namespace, _pointer), pending in list(
            self.indexes["pending_requests_by_pointer"].items()
        ):
            if request_namespace != namespace:
                continue
            for request in list(pending):
                if request.name == name:
                    return str(request.uid), _requester(request.spec)
        return None

    async def predict(self, namespace: str, request_object: Mapping[str, Any]) -> str:
        if self.indexes is None:
            view = await asyncio.to_thread(view_from_api, self.gateway, namespace)
        else:
            view = view_from_indexes(namespace, self.indexes)  # on the event loop, before the thread
        spec = request_object.get("spec")
        return await asyncio.to_thread(
            self.predictor, namespace, spec if isinstance(spec, Mapping) else {}, view
        )

    async def may_override(self, identity: Identity, namespace: str) -> AccessDecision:
        user = ReviewedUser(username=identity.username, uid=identity.uid, groups=identity.groups, extra={})
        return await asyncio.to_thread(
            self.gateway.review_access,
            user,
            namespace=namespace,
            verb=OVERRIDE_VERB,
            group=GROUP,
            resource=OVERRIDE_RESOURCE,
        )

    async def duplicate_of(self, namespace: str, agent_id: str, environment: str) -> str | None:
        """Why a new pointer for (agent, environment) would be a second one, or None. Read from the
        API server, not the index: pointers applied together (``kubectl apply -f dir/``) arrive
        faster than the watch, and a pointer created a moment ago must already count."""
        pointers = await asyncio.to_thread(self.gateway.list_objects, RELEASE_POINTER.plural, namespace)
        governing = first_pointer(
            (str(body["metadata"].get("creationTimestamp")), str(body["metadata"]["name"]))
            for body in pointers
            if (body.get("spec") or {}).get("agentId") == agent_id
            and (body.get("spec") or {}).get("environment") == environment
        )
        if governing is None:
            return None
        return second_pointer_message(governing, agent_id, environment)

    async def follow_problem(self, namespace: str, name: str, agent_id: str, upstream: str) -> str | None:
        """Read from the API server, like ``duplicate_of``: pointers applied together must count."""
        pointers = await asyncio.to_thread(self.gateway.list_objects, RELEASE_POINTER.plural, namespace)
        nodes = {}
        for body in pointers:
            spec = body.get("spec") or {}
            follows = spec.get("follows") or {}
            nodes[str(body["metadata"]["name"])] = Node(str(spec.get("agentId")), follows.get("pointer"))
        return follow_problem(name, agent_id, upstream, nodes)

    async def note_deletion(self, namespace: str, name: str, uid: str, username: str) -> None:
        try:
            await asyncio.to_thread(self.store.note_pointer_deletion, namespace, name, uid, username)
        except Exception:  # the delete goes ahead regardless; the retirement says "unknown"
            log.exception("Could not note who deletes ReleasePointer %s/%s", namespace, name)


def _requester(spec: Mapping[str, Any]) -> str | None:
    requested_by = spec.get(REQUESTED_BY)
    username = requested_by.get("username") if isinstance(requested_by, Mapping) else None
    return None if username is None else str(username)


def view_from_indexes(namespace: str, indexes: Mapping[str, Index]) -> NamespaceView:
    return namespace_view(
        namespace,
        indexes["pointers_by_namespace"],
        indexes["releases_by_namespace"],
        indexes["policies_by_namespace"],
        indexes["pricing_tables_by_namespace"],
    )


def view_from_api(gateway: KubeGateway, namespace: str) -> NamespaceView:
    """The namespace as the indexes would show it, from the API server's watch cache (blocking)."""

    def listed(plural: str, model: type[SpecT]) -> list[tuple[Body, SpecT]]:
        # An object whose spec does not validate is left out, as the index leaves it out.
        valid = []
        for body in gateway.list_objects(plural, namespace, cached=True):
            try:
                valid.append((body, model.model_validate(body.get("spec") or {})))
            except ValidationError:
                continue
        return valid

    pointers = [
        IndexedPointer(
            name=body["metadata"]["name"],
            spec=spec,
            created=str(body["metadata"].get("creationTimestamp")),
            release_id=None,
            ledger_seq=None,
            window=None,
            ready_reason=None,
        )
        for body, spec in listed(RELEASE_POINTER.plural, ReleasePointerSpec)
    ]
    releases = [
        (body["metadata"]["name"], spec) for body, spec in listed(AGENT_RELEASE.plural, AgentReleaseSpec)
    ]
    policies = [
        (body["metadata"]["name"], spec)
        for body, spec in listed(PROMOTION_POLICY.plural, PromotionPolicySpec)
    ]
    tables = [
        IndexedPricingTable(body["metadata"]["name"], str(body["metadata"].get("creationTimestamp")), spec)
        for body, spec in listed(PRICING_TABLE.plural, PricingTableSpec)
    ]
    return namespace_view(
        namespace,
        {namespace: pointers},
        {namespace: releases},
        {namespace: policies},
        {namespace: tables},
    )
