"""The admission handlers against a fake AdmissionContext: stamping, break-glass RBAC, dry-run
predictions, self-approval, a replaced request, policy validation."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from flightdeck_operator.api.pipeline_rules import Node, follow_problem
from flightdeck_operator.kube.gateway import AccessDecision
from flightdeck_operator.webhook.admission import AdmissionRequest, AdmissionResponse, decode_patch
from flightdeck_operator.webhook.handlers import (
    PROMOTION_APPROVALS_PATH,
    PROMOTION_POLICIES_PATH,
    PROMOTION_REQUESTS_PATH,
    RELEASE_POINTERS_PATH,
    AdmissionContext,
    AdmissionHandlers,
)
from flightdeck_operator.webhook.identity import Identity

SIDECAR = "system:serviceaccount:flightdeck:flightdeck-operator"


@dataclass
class FakeContext:
    delegates: Collection[str] = (SIDECAR,)
    requests: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    overriders: set[str] = field(default_factory=set)
    predicted: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)
    governing: dict[tuple[str, str, str], str] = field(default_factory=dict)
    deletions: list[tuple[str, str, str, str]] = field(default_factory=list)
    # Pointers of the namespace for the follow rules: name -> (agent, the pointer it follows).
    pointers: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    async def requester_of(self, namespace: str, name: str) -> tuple[str, str | None] | None:
        return self.requests.get((namespace, name))

    async def predict(self, namespace: str, request_object: Mapping[str, Any]) -> str:
        self.predicted.append((namespace, request_object))
        if request_object["spec"].get("pointer") == "broken":
            raise RuntimeError("store unavailable")
        return "would be Promoted: first promotion"

    async def may_override(self, identity: Identity, namespace: str) -> AccessDecision:
        self.asked.append((identity.username, namespace))
        return AccessDecision(allowed=identity.username in self.overriders, reason="")

    async def duplicate_of(self, namespace: str, agent_id: str, environment: str) -> str | None:
        governing = self.governing.get((namespace, agent_id, environment))
        return None if governing is None else f"{governing} already governs {agent_id}/{environment}"

    async def follow_problem(self, namespace: str, name: str, agent_id: str, upstream: str) -> str | None:
        nodes = {n: Node(agent, follows) for n, (agent, follows) in self.pointers.items()}
        return follow_problem(name, agent_id, upstream, nodes)

    async def note_deletion(self, namespace: str, name: str, uid: str, username: str) -> None:
        self.deletions.append((namespace, name, uid, username))


def admission(
    resource: str,
    spec: Mapping[str, Any] | None,
    *,
    user: str = "alice",
    operation: str = "CREATE",
    dry_run: bool = False,
    namespace: str = "agents",
) -> AdmissionRequest:
    return AdmissionRequest.model_validate(
        {
            "uid": "u-1",
            "kind": {"group": "flightdeck.dev", "version": "v1alpha1", "kind": resource.title()},
            "resource": {"group": "flightdeck.dev", "version": "v1alpha1", "resource": resource},
            "name": "obj",
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": user, "uid": f"{user}-uid", "groups": ["g"]},
            "object": {"metadata": {"name": "obj"}, "spec": spec} if spec is not None else None,
            "dryRun": dry_run,
        }
    )


def patch_of(response: AdmissionResponse) -> list[dict[str, Any]]:
    assert response.allowed, response.status
    assert response.patch is not None
    return decode_patch(response.patch)


REQUEST_SPEC = {"pointer": "p", "release": "r", "reason": "ship it"}


def test_the_fake_is_an_admission_context() -> None:
    context: AdmissionContext = FakeContext()
    assert set(AdmissionHandlers(context).routes()) == {
        PROMOTION_REQUESTS_PATH,
        PROMOTION_APPROVALS_PATH,
        PROMOTION_POLICIES_PATH,
        RELEASE_POINTERS_PATH,
    }


async def test_a_request_is_stamped_with_its_creator() -> None:
    context = FakeContext()
    spec = {**REQUEST_SPEC, "requestedBy": {"username": "admin", "groups": ["system:masters"]}}
    response = await AdmissionHandlers(context).promotion_request(admission("promotionrequests", spec))
    assert patch_of(response) == [
        {
            "op": "replace",
            "path": "/spec/requestedBy",
            "value": {"username": "alice", "uid": "alice-uid", "groups": ["g"]},
        }
    ]
    assert response.warnings is None
    assert context.predicted == context.asked == []


async def test_the_sidecar_creates_requests_for_its_caller() -> None:
    spec = {**REQUEST_SPEC, "requestedBy": {"username": "bob", "groups": ["managers"]}}
    response = await AdmissionHandlers(FakeContext()).promotion_request(
        admission("promotionrequests", spec, user=SIDECAR)
    )
    assert patch_of(response)[0]["value"] == {"username": "bob", "groups": ["managers"], "via": SIDECAR}


async def test_override_needs_the_override_verb() -> None:
    context = FakeContext()
    spec = {**REQUEST_SPEC, "override": {"reason": "incident 42"}}
    denied = await AdmissionHandlers(context).promotion_request(admission("promotionrequests", spec))
    assert not denied.allowed
    assert denied.status is not None
    assert denied.status.code == 403
    assert denied.status.message == (
        'breaking glass needs RBAC: alice may not "override" promotionrequests.flightdeck.dev in namespace agents'
    )
    context.overriders.add("alice")
    allowed = await AdmissionHandlers(context).promotion_request(admission("promotionrequests", spec))
    assert patch_of(allowed)[0]["path"] == "/spec/requestedBy"
    assert context.asked == [("alice", "agents"), ("alice", "agents")]


async def test_override_is_checked_for_the_user_the_sidecar_acts_for() -> None:
    context = FakeContext(overriders={SIDECAR})
    spec = {**REQUEST_SPEC, "override": {"reason": "r"}, "requestedBy": {"username": "bob"}}
    denied = await AdmissionHandlers(context).promotion_request(
        admission("promotionrequests", spec, user=SIDECAR)
    )
    assert not denied.allowed
    assert context.asked == [("bob", "agents")]


async def test_a_dry_run_gets_the_predicted_decision_as_a_warning() -> None:
    context = FakeContext()
    response = await AdmissionHandlers(context).promotion_request(
        admission("promotionrequests", REQUEST_SPEC, dry_run=True)
    )
    assert response.warnings == ("would be Promoted: first promotion",)
    assert patch_of(response)[0]["op"] == "add"
    ((namespace, predicted),) = context.predicted
    assert namespace == "agents"
    # Predicted as it would be stored: with the stamp.
    assert predicted["spec"]["requestedBy"]["username"] == "alice"


async def test_a_failed_prediction_still_admits_the_dry_run() -> None:
    spec = {**REQUEST_SPEC, "pointer": "broken"}
    response = await AdmissionHandlers(FakeContext()).promotion_request(
        admission("promotionrequests", spec, dry_run=True)
    )
    assert response.allowed
    assert response.warnings == ("FlightDeck could not predict the decision: store unavailable",)


async def test_a_denied_override_is_denied_in_a_dry_run_too() -> None:
    context = FakeContext()
    spec = {**REQUEST_SPEC, "override": {"reason": "r"}}
    response = await AdmissionHandlers(context).promotion_request(
        admission("promotionrequests", spec, dry_run=True)
    )
    assert not response.allowed
    assert context.predicted == []


APPROVAL_SPEC = {"request": {"name": "req", "uid": "uid-1"}, "decisionDigest": "a" * 64, "reason": "ok"}


async def test_an_approval_is_stamped_with_its_approver() -> None:
    context = FakeContext(requests={("agents", "req"): ("uid-1", "bob")})
    spec = {**APPROVAL_SPEC, "approver": {"username": "bob"}}
    response = await AdmissionHandlers(context).promotion_approval(admission("promotionapprovals", spec))
    assert patch_of(response) == [
        {
            "op": "replace",
            "path": "/spec/approver",
            "value": {"username": "alice", "uid": "alice-uid", "groups": ["g"]},
        }
    ]


async def test_a_requester_cannot_approve_their_own_request() -> None:
    context = FakeContext(requests={("agents", "req"): ("uid-1", "alice")})
    response = await AdmissionHandlers(context).promotion_approval(
        admission("promotionapprovals", APPROVAL_SPEC)
    )
    assert not response.allowed
    assert response.status is not None
    assert (response.status.code, response.status.message) == (
        403,
        "alice requested this promotion and cannot approve it; another approver must",
    )


async def test_self_approval_through_the_sidecar_is_refused_too() -> None:
    context = FakeContext(requests={("agents", "req"): ("uid-1", "bob")})
    spec = {**APPROVAL_SPEC, "approver": {"username": "bob"}}
    response = await AdmissionHandlers(context).promotion_approval(
        admission("promotionapprovals", spec, user=SIDECAR)
    )
    assert not response.allowed


async def test_an_approval_naming_a_replaced_request_is_refused() -> None:
    context = FakeContext(requests={("agents", "req"): ("uid-2", "bob")})
    response = await AdmissionHandlers(context).promotion_approval(
        admission("promotionapprovals", APPROVAL_SPEC)
    )
    assert response.status is not None
    assert (response.status.code, response.status.message) == (
        422,
        "PromotionApproval names request req with uid uid-1, but that request has uid uid-2",
    )


@pytest.mark.parametrize("known", [None, ("uid-1", None)])
async def test_an_approval_of_an_unknown_requester_is_left_to_the_operator(
    known: tuple[str, str | None] | None,
) -> None:
    context = FakeContext(requests={("agents", "req"): known} if known else {})
    response = await AdmissionHandlers(context).promotion_approval(
        admission("promotionapprovals", APPROVAL_SPEC)
    )
    assert response.allowed


async def test_valid_policies_pass_unchanged() -> None:
    handlers = AdmissionHandlers(FakeContext())
    for operation in ("CREATE", "UPDATE"):
        response = await handlers.promotion_policy(
            admission("promotionpolicies", {"maxErrorRate": 0.05}, operation=operation)
        )
        assert (response.allowed, response.patch) == (True, None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"maxErrorRate": 2}, "spec.maxErrorRate: Input should be less than or equal to 1"),
        ({"maxLatencyMs": -1}, "spec.maxLatencyMs: Input should be greater than or equal to 0"),
        ({"unknownField": 1}, "spec.unknownField: Extra inputs are not permitted"),
    ],
)
async def test_an_invalid_policy_is_denied_with_the_first_error(spec: dict[str, Any], message: str) -> None:
    response = await AdmissionHandlers(FakeContext()).promotion_policy(admission("promotionpolicies", spec))
    assert not response.allowed
    assert response.status is not None
    assert (response.status.code, response.status.message) == (422, message)


async def test_other_operations_are_allowed_untouched() -> None:
    handlers = AdmissionHandlers(FakeContext())
    for response in (
        await handlers.promotion_request(admission("promotionrequests", REQUEST_SPEC, operation="UPDATE")),
        await handlers.promotion_approval(admission("promotionapprovals", APPROVAL_SPEC, operation="DELETE")),
        await handlers.promotion_policy(
            admission("promotionpolicies", {"maxErrorRate": 2}, operation="DELETE")
        ),
        await handlers.promotion_request(admission("promotionrequests", None)),
    ):
        assert (response.allowed, response.patch) == (True, None)


async def test_a_second_pointer_for_an_agent_and_environment_is_refused() -> None:
    context = FakeContext(governing={("agents", "support-bot", "production"): "support-prod"})
    handlers = AdmissionHandlers(context)
    second = await handlers.release_pointer(
        admission("releasepointers", {"agentId": "support-bot", "environment": "production"})
    )
    assert not second.allowed
    assert second.status is not None
    assert (second.status.code, second.status.message) == (
        409,
        "support-prod already governs support-bot/production",
    )
    other_environment = await handlers.release_pointer(
        admission("releasepointers", {"agentId": "support-bot", "environment": "canary"})
    )
    assert other_environment.allowed
    assert other_environment.patch is None  # pointers are only checked, never mutated


async def test_who_deletes_a_pointer_is_noted_but_a_dry_run_delete_is_not() -> None:
    context = FakeContext()
    handlers = AdmissionHandlers(context)
    for dry_run in (True, False):
        request = admission("releasepointers", None, user="bob", operation="DELETE", dry_run=dry_run)
        request = request.model_copy(
            update={"name": "support-prod", "old_object": {"metadata": {"uid": "uid-9"}}}
        )
        assert (await handlers.release_pointer(request)).allowed
    assert context.deletions == [("agents", "support-prod", "uid-9", "bob")]


async def test_a_pointer_following_another_agents_pointer_or_in_a_cycle_is_refused() -> None:
    context = FakeContext(pointers={"canary": ("support-bot", "production"), "other": ("billing-bot", None)})
    handlers = AdmissionHandlers(context)

    def follows(upstream: str, operation: str = "CREATE") -> Any:
        spec = {
            "agentId": "support-bot",
            "environment": "production",
            "follows": {"pointer": upstream, "soakTime": "1h"},
        }
        request = admission("releasepointers", spec, operation=operation)
        return request.model_copy(update={"name": "production"})

    other_agent = await handlers.release_pointer(follows("other"))
    assert not other_agent.allowed
    assert other_agent.status is not None
    assert other_agent.status.code == 422
    assert other_agent.status.message == (
        'spec.follows: ReleasePointer "other" governs agent "billing-bot", but "production" governs agent '
        '"support-bot": a pointer can only follow a pointer of the same agent'
    )
    cycle = await handlers.release_pointer(follows("canary", operation="UPDATE"))
    assert not cycle.allowed
    assert cycle.status is not None
    assert cycle.status.message == (
        'spec.follows: following "canary" would make a cycle: production -> canary -> production'
    )
    itself = await handlers.release_pointer(follows("production"))
    assert itself.status is not None
    assert "cannot follow itself" in itself.status.message
    context.pointers["canary"] = ("support-bot", None)
    assert (await handlers.release_pointer(follows("canary"))).allowed
