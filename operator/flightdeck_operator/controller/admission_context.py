"""The running operator as an :class:`~flightdeck_operator.webhook.handlers.AdmissionContext`.

Reads come from kopf's indexes (on the event loop: they are not thread-safe); the prediction and
the SubjectAccessReview are blocking and run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any

from flightdeck_operator.api.pipeline_rules import Node, follow_problem
from flightdeck_operator.api.pointer_rules import first_pointer
from flightdeck_operator.api.v1alpha1 import GROUP, RELEASE_POINTER
from flightdeck_operator.controller.pointer_health import second_pointer_message
from flightdeck_operator.controller.view import NamespaceView
from flightdeck_operator.kube.gateway import AccessDecision, KubeGateway, ReviewedUser
from flightdeck_operator.webhook.handlers import OVERRIDE_RESOURCE, OVERRIDE_VERB
from flightdeck_operator.webhook.identity import REQUESTED_BY, Identity

# (namespace, raw spec, namespace snapshot) -> one line; blocking (store reads).
Predictor = Callable[[str, Mapping[str, Any], NamespaceView], str]


class DeletionNotes:
    """Who asked the API server to delete each ReleasePointer, as the admission webhook saw it,
    until the watch reports the delete and the retirement is ledgered under that name.

    Bounded (oldest notes dropped first): a note whose delete never happens (a failed or
    dry-run delete) must not pile up. Used on the event loop only (webhook and watch handlers).
    """

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._notes: OrderedDict[tuple[str, str, str], str] = OrderedDict()

    def note(self, namespace: str, name: str, uid: str, username: str) -> None:
        self._notes[(namespace, name, uid)] = username
        while len(self._notes) > self._limit:
            self._notes.popitem(last=False)

    def pop(self, namespace: str, name: str, uid: str) -> str | None:
        return self._notes.pop((namespace, name, uid), None)


class OperatorAdmissionContext:
    """``pending_requests``: kopf's index of undecided PromotionRequests by (namespace, pointer),
    whose values carry ``name``, ``uid`` and ``spec`` (``controller.pending.PendingRequest``).
    ``view_of``: the namespace snapshot the controller decides from. ``predictor``:
    ``Controller.predict``."""

    def __init__(
        self,
        *,
        delegates: Collection[str],
        gateway: KubeGateway,
        pending_requests: Mapping[Any, Any],
        view_of: Callable[[str], NamespaceView],
        predictor: Predictor,
        deletions: DeletionNotes,
    ) -> None:
        self._delegates = frozenset(delegates)
        self.gateway = gateway
        self.pending_requests = pending_requests
        self.view_of = view_of
        self.predictor = predictor
        self.deletions = deletions

    @property
    def delegates(self) -> Collection[str]:
        return self._delegates

    def requester_of(self, namespace: str, name: str) -> tuple[str, str | None] | None:
        # Only undecided requests are indexed: an approval of a decided one is the operator's to
        # reject (it re-checks everything), so None ("unknown") is the right answer for those.
        for (request_namespace, _pointer), pending in list(self.pending_requests.items()):
            if request_namespace != namespace:
                continue
            for request in list(pending):
                if request.name == name:
                    requested_by = request.spec.get(REQUESTED_BY)
                    username = requested_by.get("username") if isinstance(requested_by, Mapping) else None
                    return str(request.uid), None if username is None else str(username)
        return None

    async def predict(self, namespace: str, request_object: Mapping[str, Any]) -> str:
        view = self.view_of(namespace)  # on the event loop, before the thread
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

    def note_deletion(self, namespace: str, name: str, uid: str, username: str) -> None:
        self.deletions.note(namespace, name, uid, username)
