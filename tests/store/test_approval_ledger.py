"""The approval gate's bookkeeping on real stores (SQLite and PostgreSQL): each approval is judged
and ledgered once, a crash between the ledger and the approval's status is finished from the ledger
without judging again, and the quorum is counted from the ledger.

The Kubernetes side is a recording fake (the cluster tier runs the same flow on a real API server,
tests/cluster/test_gates.py); what is under test here is the controller's use of the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from flightdeck_operator.api.v1alpha1 import (
    AgentReleaseSpec,
    PricingTableSpec,
    PromotionPolicySpec,
    ReleasePointerSpec,
)
from flightdeck_operator.controller.loop import Controller
from flightdeck_operator.controller.pending import PendingRequest
from flightdeck_operator.controller.view import ApprovalObject, NamespaceView
from flightdeck_operator.engine.ledger import LedgerKind
from flightdeck_operator.engine.models import ConfidenceThresholds
from flightdeck_operator.kube.errors import GatewayError

from .conftest import Backend

NS, POINTER = "agents", "bot-prod"
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


class FakeGateway:
    """Records status patches and Events; ``fail_approval_patches`` simulates a crash right after
    the ledger append (the status write never happens)."""

    def __init__(self) -> None:
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []
        self.fail_approval_patches = 0

    def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        if plural == "promotionapprovals" and self.fail_approval_patches:
            self.fail_approval_patches -= 1
            raise GatewayError("connection reset (simulated crash)", 500)
        self.statuses[(plural, name)] = {**self.statuses.get((plural, name), {}), **status}
        return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"}}

    def post_event(self, body: Mapping[str, Any], **fields: Any) -> None:
        self.events.append((str(fields.get("kind")), str(fields.get("reason"))))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "generation": 1, "resourceVersion": "1"}, "spec": {}, "status": {}}

    def replace_status(self, plural: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self.statuses[(plural, body["metadata"]["name"])] = dict(body["status"])
        return dict(body)


def view(approvals: list[ApprovalObject]) -> NamespaceView:
    table = PricingTableSpec.model_validate(
        {
            "provider": "openai",
            "pricingVersion": "v1",
            "entries": [{"model": "m", "inputUsdPer1kTokens": 1.0, "outputUsdPer1kTokens": 2.0}],
        }
    )
    release = AgentReleaseSpec.model_validate(
        {
            "agentId": "bot",
            "version": "2.0.0",
            "runtime": {"provider": "openai", "model": "m"},
            "pricingReference": {"provider": "openai", "pricingVersion": "v1"},
            "checksum": "0" * 64,
        }
    )
    return NamespaceView(
        namespace=NS,
        pointers={
            POINTER: ReleasePointerSpec.model_validate(
                {"agentId": "bot", "environment": "prod", "policyRef": {"name": "gate"}}
            )
        },
        releases={"bot-2": release},
        policies={"gate": PromotionPolicySpec.model_validate({"approval": {"minApprovals": 2}})},
        pricing_tables={("openai", "v1"): table},
        approvals={"ship": approvals},
    )


REQUEST = PendingRequest(
    name="ship",
    uid="req-uid-1",
    created="2026-11-25T11:59:00Z",
    generation=1,
    spec={"pointer": POINTER, "release": "bot-2", "reason": "ship it", "requestedBy": {"username": "alice"}},
)


def approval(name: str, approver: str, digest: str, phase: str | None = None) -> ApprovalObject:
    return ApprovalObject(
        name=name,
        uid=f"uid-{name}",
        created=f"2026-11-25T12:00:0{len(name) % 10}Z",
        generation=1,
        spec={
            "request": {"name": "ship", "uid": REQUEST.uid},
            "decisionDigest": digest,
            "reason": f"ok from {approver}",
            "approver": {"username": approver, "groups": []},
        },
        phase=phase,
    )


@pytest.fixture
def controller(backend: Backend) -> tuple[Controller, FakeGateway]:
    gateway = FakeGateway()
    ctl = Controller(
        store=backend.store,
        gateway=gateway,  # type: ignore[arg-type]
        thresholds=ConfidenceThresholds(min_candidate_runs=0, min_baseline_runs=0, min_low_runs=0),
        dependency_grace=dt.timedelta(seconds=0),
        clock=lambda: NOW,
    )
    return ctl, gateway


def approvals_in_ledger(backend: Backend) -> list[Any]:
    return list(reversed(backend.store.list_ledger(kind=LedgerKind.APPROVAL, limit=100)))


def test_each_approval_is_judged_once_and_the_quorum_comes_from_the_ledger(
    backend: Backend, controller: tuple[Controller, FakeGateway]
) -> None:
    ctl, gateway = controller
    # First look: a first promotion passes the policy and waits for two approvals.
    assert ctl.drain(NS, POINTER, [REQUEST], view([])) is not None
    waiting = gateway.statuses[("promotionrequests", "ship")]
    assert waiting["phase"] == "AwaitingApproval"
    digest = waiting["approval"]["decisionDigest"]
    shown = dataclasses.replace(REQUEST, shown={"phase": "AwaitingApproval", "approval": waiting["approval"]})

    # bob approves; the operator crashes after ledgering the verdict, before the approval's status.
    gateway.fail_approval_patches = 1
    bob = approval("by-bob", "bob", digest)
    with pytest.raises(GatewayError):
        ctl.drain(NS, POINTER, [shown], view([bob]))
    assert [(e.actor, (e.details or {})["outcome"]) for e in approvals_in_ledger(backend)] == [
        ("bob", "Accepted")
    ]
    assert ("promotionapprovals", "by-bob") not in gateway.statuses

    # Restart: the verdict is projected from the ledger, not judged again.
    assert ctl.drain(NS, POINTER, [shown], view([bob])) is not None
    assert gateway.statuses[("promotionapprovals", "by-bob")]["phase"] == "Accepted"
    assert len(approvals_in_ledger(backend)) == 1
    assert gateway.statuses[("promotionrequests", "ship")]["approval"]["approvedBy"] == ["bob"]

    # bob again counts once; alice (the requester) is rejected; carol completes the quorum.
    judged_bob = approval("by-bob", "bob", digest, phase="Accepted")
    again = approval("by-bob-2", "bob", digest)
    own = approval("by-alice", "alice", digest)
    assert ctl.drain(NS, POINTER, [shown], view([judged_bob, again, own])) is not None
    assert gateway.statuses[("promotionapprovals", "by-alice")]["phase"] == "Rejected"
    assert gateway.statuses[("promotionrequests", "ship")]["approval"]["approvedBy"] == ["bob"]

    carol = approval("by-carol", "carol", digest)
    assert ctl.drain(NS, POINTER, [shown], view([judged_bob, again, carol])) is None
    decided = gateway.statuses[("promotionrequests", "ship")]
    assert decided["phase"] == "Promoted"
    assert [a["approver"] for a in decided["decision"]["approvals"]] == ["bob", "carol"]
    [promote] = backend.store.list_ledger(kind=LedgerKind.PROMOTE, limit=10)
    assert promote.reason == "ship it | approval: ok from bob | approval: ok from carol"
    assert promote.request_uid == REQUEST.uid
    assert len(approvals_in_ledger(backend)) == 4  # bob, bob again, alice, carol: each once
    assert backend.store.verify_ledger().ok
